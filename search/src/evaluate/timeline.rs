//! `evaluate --timeline DIR`: per footage, the stage where each frame left over the footage,
//! with the frames whose answer disagrees with the full backbone marked, as an SVG. It shows
//! where in the footage the exits work and where they fail.

use plotters::prelude::*;

/// One frame, as the timeline draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// 0-based stage where the frame left.
    pub stage: u16,
    /// Whether the answer was reused from an earlier frame by the stream rule.
    pub reused: bool,
    /// Whether the answer differs from the full backbone's.
    pub disagrees: bool,
}

/// One footage's frames, in order.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub stages: usize,
    pub frames: Vec<Mark>,
}

/// Frames drawn one by one at most; longer footage is drawn in this many columns, each the
/// range and mean of its frames' stages.
const COLUMNS: usize = 1200;
const SIZE: (u32, u32) = (1200, 400);
/// Pixels under the chart for the legend, which inside it would cover frames.
const LEGEND: u32 = 28;

/// A run of consecutive frames drawn as one column.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Column {
    /// The first frame's index.
    first: usize,
    frames: usize,
    min: u16,
    max: u16,
    mean: f64,
    disagree: usize,
    reused: usize,
}

impl Timeline {
    pub fn new(stages: usize) -> Timeline {
        Timeline {
            stages,
            frames: Vec::new(),
        }
    }

    pub fn push(&mut self, mark: Mark) {
        self.frames.push(mark);
    }

    pub fn disagreements(&self) -> usize {
        self.frames.iter().filter(|m| m.disagrees).count()
    }

    /// The frames in at most [`COLUMNS`] columns of consecutive frames.
    fn columns(&self) -> Vec<Column> {
        let per = self.frames.len().div_ceil(COLUMNS).max(1);
        self.frames
            .chunks(per)
            .enumerate()
            .map(|(n, chunk)| Column {
                first: n * per,
                frames: chunk.len(),
                min: chunk.iter().map(|m| m.stage).min().unwrap_or(0),
                max: chunk.iter().map(|m| m.stage).max().unwrap_or(0),
                mean: chunk.iter().map(|m| f64::from(m.stage)).sum::<f64>() / chunk.len() as f64,
                disagree: chunk.iter().filter(|m| m.disagrees).count(),
                reused: chunk.iter().filter(|m| m.reused).count(),
            })
            .collect()
    }

    /// The timeline of footage `name` as an SVG document; the same frames give the same bytes.
    pub fn svg(&self, name: &str) -> String {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            // Drawing into a String cannot fail; an error would only leave the plot incomplete.
            let _ = self.draw(&root, name);
            let _ = root.present();
        }
        svg
    }

    fn draw(
        &self,
        root: &DrawingArea<SVGBackend, plotters::coord::Shift>,
        name: &str,
    ) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
        root.fill(&WHITE)?;
        let (chart_area, legend_area) = root.split_vertically(SIZE.1 - LEGEND);
        let frames = self.frames.len().max(1);
        let last = self.stages.max(1) as f64 - 1.0;
        // Above the last stage, a band for the marks of disagreeing and reused frames.
        let top = last + 1.2;
        let mut chart = ChartBuilder::on(&chart_area)
            .caption(
                format!(
                    "{name}: stage where each frame left ({} frames, {} disagree with the backbone)",
                    self.frames.len(),
                    self.disagreements()
                ),
                ("sans-serif", 18),
            )
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..frames as f64, -0.5..top + 0.3)?;
        let stages = self.stages.max(1);
        chart
            .configure_mesh()
            .x_desc("frame")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("stage (last = the full backbone)")
            .y_labels(stages.min(12) + 1)
            .y_label_formatter(&|y| {
                if *y >= 0.0 && *y <= last && y.fract() == 0.0 {
                    format!("{y:.0}")
                } else {
                    String::new()
                }
            })
            .axis_desc_style(("sans-serif", 14))
            .label_style(("sans-serif", 12))
            .light_line_style(RGBColor(0xF2, 0xF2, 0xF2))
            .draw()?;

        let columns = self.columns();
        let blue = RGBColor(0x1F, 0x77, 0xB4);
        let red = RGBColor(0xD6, 0x27, 0x28);
        let grey = RGBColor(0x99, 0x99, 0x99);
        let band = |c: &Column| (c.first as f64, (c.first + c.frames) as f64);
        // The range of stages in each column, then the mean as a line.
        chart.draw_series(columns.iter().filter(|c| c.frames > 1).map(|c| {
            let (x0, x1) = band(c);
            Rectangle::new(
                [(x0, f64::from(c.min) - 0.1), (x1, f64::from(c.max) + 0.1)],
                blue.mix(0.25).filled(),
            )
        }))?;
        chart.draw_series(LineSeries::new(
            columns.iter().flat_map(|c| {
                let (x0, x1) = band(c);
                [(x0, c.mean), (x1, c.mean)]
            }),
            blue.stroke_width(1),
        ))?;
        // Marks above the stages: red where frames disagree, grey where answers were reused.
        let marks = |share: fn(&Column) -> f64, from: f64, colour: RGBColor| {
            columns
                .iter()
                .filter(move |c| share(c) > 0.0)
                .map(move |c| {
                    let (x0, x1) = band(c);
                    let height = 0.15 + 0.35 * share(c);
                    Rectangle::new(
                        [(x0, from), (x1.max(x0 + 0.8), from + height)],
                        colour.filled(),
                    )
                })
        };
        chart.draw_series(marks(
            |c| c.disagree as f64 / c.frames as f64,
            last + 0.6,
            red,
        ))?;
        chart.draw_series(marks(
            |c| c.reused as f64 / c.frames as f64,
            last + 0.6 - 0.45,
            grey,
        ))?;
        let stage_entry = if columns.iter().all(|c| c.frames == 1) {
            "stage where the frame left".to_owned()
        } else {
            format!(
                "mean stage of each {} frames (band: lowest to highest)",
                columns[0].frames
            )
        };
        let entries = [
            (blue, stage_entry),
            (
                red,
                "disagrees with the full backbone (height: share of the column)".to_owned(),
            ),
            (grey, "answer reused by the stream rule".to_owned()),
        ];
        let mut x = 80;
        for (colour, text) in entries {
            legend_area.draw(&Rectangle::new([(x, 8), (x + 16, 18)], colour.filled()))?;
            legend_area.draw(&Text::new(
                text.clone(),
                (x + 22, 6),
                ("sans-serif", 13).into_font(),
            ))?;
            // About 7 pixels a character at this size.
            x += 22 + 7 * text.chars().count() as i32 + 24;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(stage: u16, disagrees: bool) -> Mark {
        Mark {
            stage,
            reused: false,
            disagrees,
        }
    }

    #[test]
    fn short_footage_is_drawn_frame_by_frame_and_long_footage_in_columns() {
        let mut short = Timeline::new(3);
        for n in 0..300u16 {
            short.push(mark(n % 3, n == 100));
        }
        let columns = short.columns();
        assert_eq!(columns.len(), 300);
        assert_eq!(columns[100].disagree, 1);
        assert_eq!(columns[2].mean, 2.0);

        let mut long = Timeline::new(4);
        for n in 0..12_000usize {
            long.push(mark(if n < 6000 { 0 } else { 3 }, n % 1000 == 0));
        }
        let columns = long.columns();
        assert_eq!(columns.len(), COLUMNS);
        assert!(columns.iter().all(|c| c.frames == 10));
        assert_eq!(
            (columns[0].min, columns[0].max, columns[0].mean),
            (0, 0, 0.0)
        );
        assert_eq!(columns[COLUMNS - 1].mean, 3.0);
        assert_eq!(columns.iter().map(|c| c.disagree).sum::<usize>(), 12);
    }

    #[test]
    fn the_svg_marks_each_disagreeing_frame_and_says_how_many() {
        let mut timeline = Timeline::new(3);
        for n in 0..50u16 {
            timeline.push(mark(n % 3, n % 10 == 0));
        }
        let svg = timeline.svg("clip.mkv");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("clip.mkv: stage where each frame left (50 frames, 5 disagree"));
        // Five red marks on the plot, one in the legend.
        assert_eq!(svg.matches("fill=\"#D62728\"").count(), 6);
        assert!(svg.contains("disagrees with the full backbone"));
        assert_eq!(svg, timeline.svg("clip.mkv"), "not deterministic");
    }
}
