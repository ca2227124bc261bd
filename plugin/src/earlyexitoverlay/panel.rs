//! The picture `earlyexitoverlay` puts on a frame: one line per `earlyexit` element, each with
//! its answer and confidence, a mark when the answer was not the cascade's own, and a gauge of
//! the stage where the frame left out of how many. Drawn with pango and cairo into a
//! premultiplied ARGB image, with where each part went.

use gst::glib;
use pango::prelude::*;

use crate::meta::EarlyExitInfo;

/// A colour as `0xAARRGGBB`, as `textoverlay`'s `color` property takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argb(pub u32);

impl Argb {
    fn channel(self, shift: u32) -> f64 {
        f64::from((self.0 >> shift) & 0xff) / 255.0
    }

    fn set_on(self, cr: &cairo::Context) {
        cr.set_source_rgba(
            self.channel(16),
            self.channel(8),
            self.channel(0),
            self.channel(24),
        );
    }

    /// For pango markup: `#RRGGBB` and the alpha as a percentage.
    fn markup(self) -> (String, u32) {
        (
            format!("#{:06x}", self.0 & 0x00ff_ffff),
            ((self.0 >> 24) * 100 / 255).max(1),
        )
    }
}

/// How the panel looks.
#[derive(Debug, Clone, PartialEq)]
pub struct Style {
    /// A pango font description, such as "Sans Bold 14"; without a size, one in proportion
    /// to the frame's height.
    pub font: String,
    pub text: Argb,
    pub background: Argb,
    /// The gauge's cells up to the stage where the frame left, and the rest.
    pub gauge: Argb,
    pub gauge_empty: Argb,
    /// The mark of an answer that is not the cascade's own.
    pub mark: Argb,
}

/// One element's answer on one frame, as drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The label (or class number) and the confidence.
    pub text: String,
    /// Why the answer is not the cascade's own, when it is not.
    pub mark: Option<String>,
    /// 0-based stage where the frame left, of `stages`.
    pub stage: u32,
    pub stages: u32,
}

impl Line {
    pub fn from_info(info: &EarlyExitInfo) -> Line {
        let name = info
            .label
            .clone()
            .unwrap_or_else(|| format!("class {}", info.class_id));
        let marks: Vec<String> = [
            (info.non_finite, "no answer".to_owned()),
            (info.reused > 0, format!("reused ({} ago)", info.reused)),
            (info.degraded != "none", format!("late: {}", info.degraded)),
            (info.fallback, "full depth (audit)".to_owned()),
        ]
        .into_iter()
        .filter_map(|(applies, mark)| applies.then_some(mark))
        .collect();
        Line {
            text: format!("{name} {:.0}%", info.confidence * 100.0),
            mark: (!marks.is_empty()).then(|| marks.join(", ")),
            stage: info.stage,
            stages: info.stages.max(1),
        }
    }
}

/// A rectangle in the panel's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Where a line's parts went.
#[derive(Debug, Clone, PartialEq)]
pub struct LineBox {
    pub text: Rect,
    /// The gauge's cells, left to right; the first `stage + 1` are filled. Past
    /// `MAX_CELLS` stages the gauge is one bar, filled in proportion, and this holds it alone.
    pub cells: Vec<Rect>,
}

/// The drawn panel: premultiplied ARGB in native byte order (BGRA on little-endian machines),
/// `width * 4` bytes a row.
#[derive(Debug, Clone)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
    pub lines: Vec<LineBox>,
}

/// Gauges with more stages than this are drawn as one bar.
const MAX_CELLS: u32 = 16;

/// Draws panels; keeps its pango layout from frame to frame.
pub struct Painter {
    layout: pango::Layout,
    style: Style,
    frame_height: u32,
}

impl Painter {
    /// A painter for frames `frame_height` pixels high: a font given without a size gets
    /// one in proportion to the frame, so that the panel suits any resolution.
    pub fn new(style: Style, frame_height: u32) -> Painter {
        let context = pangocairo::FontMap::new().create_context();
        context.set_base_dir(pango::Direction::Ltr);
        let layout = pango::Layout::new(&context);
        let mut font = pango::FontDescription::from_string(&style.font);
        if font.size() == 0 {
            let pixels = (frame_height / 24).clamp(9, 48);
            font.set_absolute_size(f64::from(pixels) * f64::from(pango::SCALE));
        }
        layout.set_font_description(Some(&font));
        Painter {
            layout,
            style,
            frame_height,
        }
    }

    /// Whether this painter draws in `style` for frames `frame_height` pixels high.
    pub fn suits(&self, style: &Style, frame_height: u32) -> bool {
        self.style == *style && self.frame_height == frame_height
    }

    /// Sets the line's text and mark on the layout; its size in pixels.
    fn set_text(&self, line: &Line) -> (u32, u32) {
        let text = glib::markup_escape_text(&line.text);
        let markup = match &line.mark {
            Some(mark) => {
                let (colour, alpha) = self.style.mark.markup();
                format!(
                    "{text}  <span foreground=\"{colour}\" alpha=\"{alpha}%\">{}</span>",
                    glib::markup_escape_text(mark)
                )
            }
            None => text.to_string(),
        };
        self.layout.set_markup(&markup);
        let (_, logical) = self.layout.pixel_extents();
        (
            u32::try_from(logical.width()).unwrap_or(0),
            u32::try_from(logical.height()).unwrap_or(0),
        )
    }

    /// Lays the lines out: each text's size, the cell size, and the panel's.
    fn layout(&self, lines: &[Line]) -> (Vec<LineBox>, u32, u32) {
        let sizes: Vec<(u32, u32)> = lines.iter().map(|line| self.set_text(line)).collect();
        let line_height = sizes.iter().map(|s| s.1).max().unwrap_or(0).max(8);
        let pad = (line_height / 4).max(2);
        let cell = (line_height * 2 / 3).max(4);
        let gap = (cell / 4).max(1);
        let text_width = sizes.iter().map(|s| s.0).max().unwrap_or(0);
        let gauge_x = pad + text_width + 2 * pad;
        let mut boxes = Vec::with_capacity(lines.len());
        let mut gauge_width = 0;
        for (n, (line, (width, height))) in lines.iter().zip(&sizes).enumerate() {
            let y = pad + n as u32 * (line_height + pad);
            let cell_y = y + (line_height - cell) / 2;
            let cells: Vec<Rect> = if line.stages <= MAX_CELLS {
                (0..line.stages)
                    .map(|k| Rect {
                        x: gauge_x + k * (cell + gap),
                        y: cell_y,
                        width: cell,
                        height: cell,
                    })
                    .collect()
            } else {
                vec![Rect {
                    x: gauge_x,
                    y: cell_y,
                    width: MAX_CELLS * (cell + gap) - gap,
                    height: cell,
                }]
            };
            gauge_width = gauge_width.max(cells.last().map_or(0, |c| c.x + c.width - gauge_x));
            boxes.push(LineBox {
                text: Rect {
                    x: pad,
                    y,
                    width: *width,
                    height: *height,
                },
                cells,
            });
        }
        let width = gauge_x + gauge_width + pad;
        let height = pad + lines.len() as u32 * (line_height + pad);
        (boxes, width, height)
    }

    /// Draws the panel for `lines`, one line each.
    pub fn paint(&self, lines: &[Line]) -> Result<Picture, cairo::Error> {
        let (boxes, width, height) = self.layout(lines);
        let as_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let mut surface =
            cairo::ImageSurface::create(cairo::Format::ARgb32, as_i32(width), as_i32(height))?;
        {
            let cr = cairo::Context::new(&surface)?;
            cr.set_operator(cairo::Operator::Source);
            self.style.background.set_on(&cr);
            cr.paint()?;
            cr.set_operator(cairo::Operator::Over);
            for (line, parts) in lines.iter().zip(&boxes) {
                self.set_text(line);
                cr.move_to(f64::from(parts.text.x), f64::from(parts.text.y));
                self.style.text.set_on(&cr);
                pangocairo::functions::show_layout(&cr, &self.layout);
                self.draw_gauge(&cr, line, &parts.cells)?;
            }
        }
        surface.flush();
        let stride = usize::try_from(surface.stride()).unwrap_or(0);
        let row = width as usize * 4;
        let data = surface.data().map_err(|_| cairo::Error::SurfaceFinished)?;
        let data = data
            .chunks(stride.max(1))
            .take(height as usize)
            .flat_map(|r| &r[..row.min(r.len())])
            .copied()
            .collect();
        Ok(Picture {
            width,
            height,
            data,
            lines: boxes,
        })
    }

    fn draw_gauge(
        &self,
        cr: &cairo::Context,
        line: &Line,
        cells: &[Rect],
    ) -> Result<(), cairo::Error> {
        let rect = |r: &Rect, width: u32| {
            cr.rectangle(
                f64::from(r.x),
                f64::from(r.y),
                f64::from(width),
                f64::from(r.height),
            )
        };
        if let [bar] = cells
            && line.stages > MAX_CELLS
        {
            self.style.gauge_empty.set_on(cr);
            rect(bar, bar.width);
            cr.fill()?;
            // In 64 bits: stage and stages come from a meta any application may have written.
            let run = u64::from(line.stage)
                .saturating_add(1)
                .min(u64::from(line.stages));
            let filled = u64::from(bar.width) * run / u64::from(line.stages.max(1));
            let filled = u32::try_from(filled).unwrap_or(bar.width);
            self.style.gauge.set_on(cr);
            rect(bar, filled);
            return cr.fill();
        }
        for (k, cell) in cells.iter().enumerate() {
            let colour = if k as u32 <= line.stage {
                self.style.gauge
            } else {
                self.style.gauge_empty
            };
            colour.set_on(cr);
            rect(cell, cell.width);
            cr.fill()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style() -> Style {
        Style {
            font: "Sans 12".into(),
            text: Argb(0xffff_ffff),
            background: Argb(0xff00_0000),
            gauge: Argb(0xff00_ff00),
            gauge_empty: Argb(0xff40_4040),
            mark: Argb(0xffff_a000),
        }
    }

    fn pixel(picture: &Picture, x: u32, y: u32) -> u32 {
        let at = (y * picture.width + x) as usize * 4;
        u32::from_ne_bytes(picture.data[at..at + 4].try_into().unwrap())
    }

    fn line(stage: u32, stages: u32) -> Line {
        Line {
            text: "Sneaker 94%".into(),
            mark: None,
            stage,
            stages,
        }
    }

    #[test]
    fn the_gauge_fills_one_cell_per_stage_run() {
        let painter = Painter::new(style(), 480);
        let picture = painter.paint(&[line(1, 4), line(3, 4)]).unwrap();
        assert_eq!(
            picture.data.len(),
            (picture.width * picture.height * 4) as usize
        );
        for (parts, stage) in picture.lines.iter().zip([1, 3]) {
            assert_eq!(parts.cells.len(), 4);
            for (k, cell) in parts.cells.iter().enumerate() {
                let centre = pixel(&picture, cell.x + cell.width / 2, cell.y + cell.height / 2);
                let expected = if k as u32 <= stage {
                    0xff00_ff00
                } else {
                    0xff40_4040
                };
                assert_eq!(centre, expected, "stage {stage}, cell {k}");
            }
            // The text is drawn, left of the gauge.
            let text = parts.text;
            assert!(text.width > 20 && text.x + text.width < parts.cells[0].x);
            let white = (text.y..text.y + text.height)
                .flat_map(|y| (text.x..text.x + text.width).map(move |x| (x, y)))
                .filter(|&(x, y)| pixel(&picture, x, y) == 0xffff_ffff)
                .count();
            assert!(white > 20, "{white} white pixels");
        }
        // Lines stack downwards.
        assert!(picture.lines[1].text.y > picture.lines[0].text.y);
    }

    #[test]
    fn many_stages_make_one_bar_filled_in_proportion() {
        let painter = Painter::new(style(), 480);
        let picture = painter.paint(&[line(19, 40)]).unwrap();
        let [bar] = picture.lines[0].cells.as_slice() else {
            panic!("one bar");
        };
        let y = bar.y + bar.height / 2;
        let green = (bar.x..bar.x + bar.width)
            .filter(|&x| pixel(&picture, x, y) == 0xff00_ff00)
            .count() as u32;
        assert_eq!(green, bar.width / 2);
    }

    #[test]
    fn answers_not_from_the_cascade_are_marked() {
        let mut info = EarlyExitInfo {
            stage: 0,
            stages: 3,
            class_id: 4,
            label: None,
            confidence: 0.5,
            score: 0.5,
            cost: None,
            inference_ns: 0,
            reused: 0,
            audited: false,
            fallback: false,
            non_finite: false,
            degraded: "none".into(),
            element: "e".into(),
            bundle: "b".into(),
        };
        assert_eq!(Line::from_info(&info).text, "class 4 50%");
        assert_eq!(Line::from_info(&info).mark, None);
        info.reused = 3;
        info.degraded = "reused".into();
        assert_eq!(
            Line::from_info(&info).mark.as_deref(),
            Some("reused (3 ago), late: reused")
        );
        let painter = Painter::new(style(), 480);
        let plain = painter.paint(&[line(0, 3)]).unwrap();
        let marked = painter
            .paint(&[Line {
                mark: Some("reused".into()),
                ..line(0, 3)
            }])
            .unwrap();
        assert!(marked.lines[0].text.width > plain.lines[0].text.width);
        // Orange, give or take antialiasing over the black background: red well above green,
        // green well above blue.
        let orangish = |picture: &Picture| {
            picture
                .data
                .chunks(4)
                .map(|p| u32::from_ne_bytes([p[0], p[1], p[2], p[3]]))
                .filter(|&argb| {
                    let (r, g, b) = ((argb >> 16) & 0xff, (argb >> 8) & 0xff, argb & 0xff);
                    r > 0x80 && g * 4 > r && g < r * 7 / 8 && b * 4 < g
                })
                .count()
        };
        assert_eq!(orangish(&plain), 0);
        assert!(
            orangish(&marked) > 30,
            "{} orange pixels",
            orangish(&marked)
        );
    }
}
