//! `pareto.svg`, written beside `report.md` by `--strategy nas`: every configuration the search
//! scored, its Pareto front, and the baselines, in mean cost × the target's measure.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::element::ComposedElement;
use plotters::prelude::*;

/// The file's name inside the bundle's folder.
pub const FILE: &str = "pareto.svg";

/// Scored configurations drawn at most: beyond that the file grows and the cloud says no more.
const MAX_SCORED: usize = 2000;

const SIZE: (u32, u32) = (960, 640);

/// A position on the drawing, or an offset from one, in pixels.
type Pixel = (i32, i32);

/// What the report says under the plot.
pub const CAPTION: &str = "*The search's configurations (faint dots) and their Pareto front (blue) are scored on the selecting frames; the backbone, the baselines, the oracle and the chosen structure (filled star) on the certifying frames, as in the baselines table; the hollow circle is the chosen structure on the selecting frames. The dashed line is the target; under `--max-accuracy-loss` it is the backbone's accuracy on the certifying frames less the loss allowed. Configurations far below the target are off the bottom of the plot.*";

/// A structure's mean cost (MACs used / backbone MACs) and the target's measure (a share).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub cost: f64,
    pub measure: f64,
}

/// The structures marked on the plot, each with its own marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Backbone,
    ShallowDeep,
    Even,
    ChosenSelect,
    ChosenCertify,
    Oracle,
}

impl Mark {
    /// The legend's entry.
    pub fn legend(self) -> &'static str {
        match self {
            Mark::Backbone => "full backbone",
            Mark::ShallowDeep => "Shallow-Deep Networks (an exit at every kept position)",
            Mark::Even => "evenly spaced exits",
            Mark::ChosenSelect => "chosen (selecting frames)",
            Mark::ChosenCertify => "chosen (certifying frames)",
            Mark::Oracle => "oracle for the chosen heads",
        }
    }

    /// The label beside the marker.
    fn short(self) -> &'static str {
        match self {
            Mark::Backbone => "backbone",
            Mark::ShallowDeep => "SDN",
            Mark::Even => "even",
            Mark::ChosenSelect => "chosen (select)",
            Mark::ChosenCertify => "chosen (certify)",
            Mark::Oracle => "oracle",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Mark::Backbone => RGBColor(0x22, 0x22, 0x22),
            Mark::ShallowDeep => RGBColor(0xE6, 0x7E, 0x22),
            Mark::Even => RGBColor(0x2C, 0xA0, 0x2C),
            Mark::ChosenSelect | Mark::ChosenCertify => RGBColor(0xD6, 0x27, 0x28),
            Mark::Oracle => RGBColor(0x94, 0x67, 0xBD),
        }
    }

    /// The marker's outline, in pixels around its point.
    fn shape(self) -> Vec<(i32, i32)> {
        let r = 7.0;
        let polar = |n: usize, radius: &dyn Fn(usize) -> f64, turn: f64| -> Vec<(i32, i32)> {
            (0..n)
                .map(|i| {
                    let a = turn + std::f64::consts::TAU * i as f64 / n as f64;
                    let d = radius(i);
                    ((d * a.cos()).round() as i32, (d * a.sin()).round() as i32)
                })
                .collect()
        };
        let up = -std::f64::consts::FRAC_PI_2;
        match self {
            Mark::Backbone => vec![(-6, -6), (6, -6), (6, 6), (-6, 6)],
            Mark::ShallowDeep => polar(3, &|_| r + 1.0, up),
            Mark::Even => polar(3, &|_| r + 1.0, -up),
            Mark::ChosenSelect => polar(16, &|_| r, 0.0),
            Mark::ChosenCertify => polar(10, &|i| if i % 2 == 0 { r + 2.0 } else { 4.0 }, up),
            Mark::Oracle => polar(4, &|_| r + 1.0, up),
        }
    }

    /// Filled, except the selecting-frames point of the chosen structure, which is its
    /// certifying point's hollow twin.
    fn filled(self) -> bool {
        self != Mark::ChosenSelect
    }
}

/// What the plot shows.
pub struct Figure {
    /// The target's measure, as the y axis names it ("accuracy", "agreement").
    pub measure: &'static str,
    /// What the x axis measures.
    pub cost: &'static str,
    /// The lowest rate of the measure the target allows, where its line is drawn, and the
    /// line's legend.
    pub target: f64,
    pub target_label: String,
    /// The non-dominated configurations in (cost, measure), cheapest first.
    pub front: Vec<Point>,
    /// Every configuration scored (thinned to [`MAX_SCORED`] when drawn).
    pub scored: Vec<Point>,
    pub marked: Vec<(Mark, Point)>,
}

/// The figure as an SVG document; the same figure gives the same bytes.
pub fn pareto_svg(figure: &Figure) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        // Drawing into a String cannot fail; an error would only leave the plot incomplete.
        let _ = draw(&root, figure);
        let _ = root.present();
    }
    svg
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn draw(root: &Area, f: &Figure) -> Drawn {
    root.fill(&WHITE)?;
    let (x_range, y_range) = ranges(f);
    let pct = |p: &Point| (p.cost, 100.0 * p.measure);
    let inside = |p: &&Point| {
        p.cost.is_finite() && x_range.contains(&p.cost) && y_range.contains(&(100.0 * p.measure))
    };
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("Exit structures: mean cost against {}", f.measure),
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone(), y_range.clone())?;
    chart
        .configure_mesh()
        .x_desc(f.cost)
        .y_desc(format!("{} (%)", f.measure))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(0xF0, 0xF0, 0xF0))
        .bold_line_style(RGBColor(0xDD, 0xDD, 0xDD))
        .draw()?;

    let cloud = RGBColor(0x99, 0x99, 0x99).mix(0.35).filled();
    // Many configurations land on the same pixel (thresholds are quantiles): one dot each.
    let mut seen = std::collections::HashSet::new();
    let shown: Vec<&Point> = f
        .scored
        .iter()
        .filter(inside)
        .filter(|p| seen.insert(chart.backend_coord(&pct(p))))
        .collect();
    let step = shown.len().div_ceil(MAX_SCORED).max(1);
    chart
        .draw_series(
            shown
                .iter()
                .step_by(step)
                .map(|p| Circle::new(pct(p), 2, cloud)),
        )?
        .label("configurations scored (selecting frames)")
        .legend(move |(x, y)| Circle::new((x + 10, y), 3, cloud));

    let target = RGBColor(0x55, 0x55, 0x55);
    chart
        .draw_series(DashedLineSeries::new(
            [x_range.start, x_range.end].map(|x| (x, 100.0 * f.target)),
            6,
            4,
            target.stroke_width(1),
        ))?
        .label(f.target_label.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], target));

    let blue = RGBColor(0x1F, 0x77, 0xB4);
    let front: Vec<&Point> = f.front.iter().filter(inside).collect();
    chart
        .draw_series(LineSeries::new(
            front.iter().map(|p| pct(p)),
            blue.stroke_width(2),
        ))?
        .label("Pareto front (selecting frames)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2)));
    chart.draw_series(front.iter().map(|p| Circle::new(pct(p), 3, blue.filled())))?;

    for &(mark, p) in &f.marked {
        let at = (
            p.cost.clamp(x_range.start, x_range.end),
            (100.0 * p.measure).clamp(y_range.start, y_range.end),
        );
        chart
            .draw_series(std::iter::once(marker(mark, at)))?
            .label(mark.legend())
            .legend(move |(x, y)| marker(mark, (x + 10, y)));
    }
    for l in labels(&chart, f, &x_range, &y_range) {
        let (x, y) = l.offset;
        // A light backing keeps the text readable over the scored configurations.
        let backing = [(x - 2, y - 1), (x + l.size.0, y + l.size.1)];
        chart.draw_series(std::iter::once(
            EmptyElement::at(l.at)
                + Rectangle::new(backing, WHITE.mix(0.8).filled())
                + Text::new(
                    l.text,
                    l.offset,
                    ("sans-serif", 14).into_font().color(&l.color),
                ),
        ))?;
    }

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .margin(12)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(0xBB, 0xBB, 0xBB))
        .draw()?;
    Ok(())
}

/// A marker at `at`: its shape filled (or white), outlined in its color.
fn marker<C, DB: DrawingBackend>(mark: Mark, at: C) -> Marker<C, DB> {
    let shape = mark.shape();
    let mut outline = shape.clone();
    outline.push(shape[0]);
    let fill = if mark.filled() {
        mark.color().filled()
    } else {
        WHITE.filled()
    };
    EmptyElement::at(at)
        + Polygon::new(shape, fill)
        + PathElement::new(outline, mark.color().stroke_width(2))
}

type Marker<C, DB> = ComposedElement<C, DB, Polygon<Pixel>, PathElement<Pixel>>;

/// Axis ranges: cost from 0 past the backbone's 1; the measure around the target and the marked
/// structures, so cheap configurations far below the target do not flatten the part that matters.
fn ranges(f: &Figure) -> (Range<f64>, Range<f64>) {
    let marked = f.marked.iter().map(|(_, p)| p);
    let costs = marked.clone().chain(&f.front).map(|p| p.cost);
    let x_max = costs.filter(|c| c.is_finite()).fold(1.0, f64::max) * 1.05;
    let measures = || {
        marked
            .clone()
            .map(|p| 100.0 * p.measure)
            .chain([100.0 * f.target])
    };
    let lo = measures().fold(f64::INFINITY, f64::min);
    let hi = measures().fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.5).max(2.0);
    let y_min = ((lo - 2.0 * pad).max(0.0) / 2.0).floor() * 2.0;
    let y_max = (hi + pad / 2.0).min(100.5);
    (0.0..x_max, y_min..y_max)
}

/// A marked structure's label.
struct Label {
    text: String,
    color: RGBColor,
    /// The structure's point, in the plot's coordinates.
    at: (f64, f64),
    /// The text's top left corner from `at`, and its estimated size.
    offset: Pixel,
    size: Pixel,
}

/// The labels, each beside its marker, at the first place that covers no other label, marker,
/// the front or the target line, and stays inside the plot. Structures drawn at the same spot
/// (when nothing beats the backbone, every baseline is the backbone) share one label.
fn labels<DB: DrawingBackend>(
    chart: &ChartContext<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    f: &Figure,
    x_range: &Range<f64>,
    y_range: &Range<f64>,
) -> Vec<Label> {
    type Box2 = (i32, i32, i32, i32);
    let overlaps = |a: &Box2, b: &Box2| a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3;
    let mut groups: Vec<(Vec<Mark>, (f64, f64), Pixel)> = Vec::new();
    for &(mark, p) in &f.marked {
        let at = (
            p.cost.clamp(x_range.start, x_range.end),
            (100.0 * p.measure).clamp(y_range.start, y_range.end),
        );
        let (x, y) = chart.backend_coord(&at);
        match groups
            .iter_mut()
            .find(|g| (g.2.0 - x).abs() <= 3 && (g.2.1 - y).abs() <= 3)
        {
            Some(g) => g.0.push(mark),
            None => groups.push((vec![mark], at, (x, y))),
        }
    }
    let (area_x, area_y) = chart.plotting_area().get_pixel_range();
    let inside = |b: &Box2| {
        area_x.contains(&b.0)
            && area_x.contains(&b.2)
            && area_y.contains(&b.1)
            && area_y.contains(&b.3)
    };
    let mut taken: Vec<Box2> = groups
        .iter()
        .map(|&(_, _, (x, y))| (x - 9, y - 9, x + 9, y + 9))
        .collect();
    let front: Vec<Pixel> = f
        .front
        .iter()
        .filter(|p| x_range.contains(&p.cost) && y_range.contains(&(100.0 * p.measure)))
        .map(|p| chart.backend_coord(&(p.cost, 100.0 * p.measure)))
        .collect();
    for pair in front.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        let steps = (x1 - x0).abs().max((y1 - y0).abs()) / 3 + 1;
        taken.extend((0..=steps).map(|s| {
            let (x, y) = (x0 + (x1 - x0) * s / steps, y0 + (y1 - y0) * s / steps);
            (x - 2, y - 2, x + 2, y + 2)
        }));
    }
    let (_, target) = chart.backend_coord(&(x_range.start, 100.0 * f.target));
    taken.push((area_x.start, target - 2, area_x.end, target + 2));
    let mut out = Vec::new();
    for (marks, at, (x, y)) in groups {
        let text = marks
            .iter()
            .map(|m| m.short())
            .collect::<Vec<_>>()
            .join(", ");
        let color = match marks.as_slice() {
            [one] => one.color(),
            _ => RGBColor(0x22, 0x22, 0x22),
        };
        // About 6 pixels a character at this size, whatever sans-serif the viewer has.
        let (w, h) = (6 * text.chars().count() as i32 + 6, 16);
        // Right of the marker first, then left, above, below, and farther out.
        let tries = [
            (12, -h / 2),
            (-12 - w, -h / 2),
            (12, -h - 2),
            (12, 2),
            (-12 - w, -h - 2),
            (-12 - w, 2),
            (-w / 2, -h - 10),
            (-w / 2, 10),
            (12, -2 * h - 4),
            (12, h + 4),
            (-12 - w, -2 * h - 4),
            (-12 - w, h + 4),
            (-w / 2, -2 * h - 10),
            (-w / 2, h + 10),
        ];
        let boxed = |(dx, dy): Pixel| (x + dx, y + dy, x + dx + w, y + dy + h);
        let (dx, dy) = tries
            .iter()
            .copied()
            .find(|t| inside(&boxed(*t)) && !taken.iter().any(|b| overlaps(b, &boxed(*t))))
            .or_else(|| tries.iter().copied().find(|t| inside(&boxed(*t))))
            .unwrap_or(tries[0]);
        taken.push(boxed((dx, dy)));
        out.push(Label {
            text,
            color,
            at,
            offset: (dx, dy),
            size: (w, h),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Mark; 6] = [
        Mark::Backbone,
        Mark::ShallowDeep,
        Mark::Even,
        Mark::ChosenSelect,
        Mark::ChosenCertify,
        Mark::Oracle,
    ];

    fn point(cost: f64, measure: f64) -> Point {
        Point { cost, measure }
    }

    fn figure(marked: Vec<(Mark, Point)>) -> Figure {
        Figure {
            measure: "accuracy",
            cost: "mean cost (MACs used / the backbone's MACs)",
            target: 0.945,
            target_label: "target: accuracy 94.50%".into(),
            front: (0..20)
                .map(|i| point(0.2 + 0.02 * i as f64, 0.9 + 0.003 * i as f64))
                .collect(),
            // A grid of 10,000 distinct configurations, more than are drawn.
            scored: (0..10_000)
                .map(|i| {
                    point(
                        0.2 + 0.8 * (i % 100) as f64 / 100.0,
                        0.9 + 0.0006 * (i / 100) as f64,
                    )
                })
                .collect(),
            marked,
        }
    }

    /// Outlines drawn in `color`: every marker, on the plot and in the legend, has one.
    fn outlines(svg: &str, color: RGBColor) -> usize {
        let stroke = format!(
            "stroke=\"#{:02X}{:02X}{:02X}\" stroke-width=\"2\"",
            color.0, color.1, color.2
        );
        svg.lines()
            .filter(|l| l.starts_with("<polyline") && l.contains(&stroke))
            .count()
    }

    #[test]
    fn marks_every_baseline_once_with_a_legend() {
        let svg = pareto_svg(&figure(spread().to_vec()));
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<svg").count(), 1);
        for mark in ALL {
            assert!(
                svg.contains(mark.legend()),
                "no legend entry {}",
                mark.legend()
            );
            assert!(svg.contains(mark.short()), "no label {}", mark.short());
            // One on the plot and one in the legend; the chosen pair share a color.
            let same = ALL.iter().filter(|m| m.color() == mark.color()).count();
            assert_eq!(outlines(&svg, mark.color()), 2 * same, "{mark:?}");
        }
        for entry in [
            "Pareto front",
            "configurations scored",
            "target: accuracy 94.50%",
        ] {
            assert!(svg.contains(entry), "no legend entry {entry}");
        }
        assert!(svg.contains("mean cost") && svg.contains("accuracy (%)"));
        // The cloud, thinned, and its legend entry.
        let dots = svg.matches("fill=\"#999999\"").count();
        assert!((1000..=MAX_SCORED + 1).contains(&dots), "{dots} dots");
        assert_eq!(
            svg,
            pareto_svg(&figure(spread().to_vec())),
            "not deterministic"
        );
    }

    /// Every structure at its own spot.
    fn spread() -> [(Mark, Point); 6] {
        [
            (Mark::Backbone, point(1.0, 0.955)),
            (Mark::ShallowDeep, point(0.8, 0.948)),
            (Mark::Even, point(0.7, 0.94)),
            (Mark::ChosenSelect, point(0.45, 0.947)),
            (Mark::ChosenCertify, point(0.46, 0.946)),
            (Mark::Oracle, point(0.3, 0.955)),
        ]
    }

    /// The y axis zooms to the target and the marked structures (not 0 to 100%), with every
    /// one of them inside it.
    #[test]
    fn the_axes_zoom_to_the_target_and_every_marker() {
        let mut f = figure(spread().to_vec());
        f.target = 0.9505;
        let (x, y) = ranges(&f);
        assert!(y.start >= 85.0 && y.end <= 100.5, "{y:?}");
        assert!(y.contains(&(100.0 * f.target)));
        for (mark, p) in &f.marked {
            assert!(
                x.contains(&p.cost) && y.contains(&(100.0 * p.measure)),
                "{mark:?}"
            );
        }
    }

    #[test]
    fn structures_at_one_spot_share_a_label() {
        // When nothing beats the backbone, every baseline is the backbone.
        let marked = ALL.iter().map(|m| (*m, point(1.0, 0.955))).collect();
        let svg = pareto_svg(&figure(marked));
        assert!(svg.contains("backbone, SDN, even, chosen (select), chosen (certify), oracle"));
    }
}
