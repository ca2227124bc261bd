//! `earlyexitoverlay` on rendered frames, compared region by region with the meta the frames
//! carry: each element's gauge shows the stage where the frame left, the label region holds
//! the meta's answer, and the panel sits in the corner asked for.

use earlyexit_testkit::cut;
use gst::prelude::*;
use gstearlyexit::EarlyExitInfo;
use gstearlyexit::earlyexitoverlay::panel::{Argb, Line, Painter, Style};

const GREEN: [u8; 4] = [0, 255, 0, 255];
const MAGENTA: [u8; 4] = [255, 0, 255, 255];
const GREY: [u8; 4] = [128, 128, 128, 255];
const BLACK: [u8; 4] = [0, 0, 0, 255];
const WIDTH: usize = 480;
const HEIGHT: usize = 270;
const MARGIN: usize = 8;

/// Opaque colours, so that blended pixels are exactly the panel's.
fn style_properties() -> &'static str {
    "color=0xffffffff background-color=0xff000000 gauge-color=0xff00ff00 \
     gauge-empty-color=0xffff00ff mark-color=0xffffa000 font-desc=\"Sans 12\""
}

fn style() -> Style {
    Style {
        font: "Sans 12".into(),
        text: Argb(0xffff_ffff),
        background: Argb(0xff00_0000),
        gauge: Argb(0xff00_ff00),
        gauge_empty: Argb(0xffff_00ff),
        mark: Argb(0xffff_a000),
    }
}

/// `frames` grey RGBA frames, WIDTH × HEIGHT.
fn grey_source(frames: usize) -> String {
    format!(
        "videotestsrc num-buffers={frames} pattern=solid-color foreground-color=0xff808080 \
         ! video/x-raw,format=RGBA,width={WIDTH},height={HEIGHT}"
    )
}

/// A frame's RGBA pixels and the metas it carried.
struct Frame {
    pixels: Vec<u8>,
    metas: Vec<EarlyExitInfo>,
}

impl Frame {
    fn at(&self, x: usize, y: usize) -> [u8; 4] {
        let i = (y * WIDTH + x) * 4;
        self.pixels[i..i + 4].try_into().unwrap()
    }
}

/// Grey frames through one `earlyexit` per threshold pair (all leave at the first stage with
/// 0, at the last with 1), then the overlay with `overlay` properties; the frames at the end.
fn render(thresholds: &[[f64; 2]], overlay: &str) -> Vec<Frame> {
    let bundles: Vec<_> = thresholds.iter().map(|t| cut::valid_dir(*t)).collect();
    let classifiers: String = bundles
        .iter()
        .enumerate()
        .map(|(n, (_, dir))| {
            format!(
                "! earlyexit name=ee{n} model=\"{}\" audit=0 ",
                dir.display()
            )
        })
        .collect();
    let desc = format!(
        "{} {classifiers}\
         ! earlyexitoverlay {} {overlay} \
         ! appsink name=sink sync=false caps=video/x-raw,format=RGBA",
        grey_source(3),
        style_properties()
    );
    let (pipeline, sink) = earlyexit_testkit::gst::with_appsink(&desc);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer().unwrap();
        let map = buffer.map_readable().unwrap();
        assert_eq!(map.len(), WIDTH * HEIGHT * 4, "packed RGBA");
        frames.push(Frame {
            pixels: map.to_vec(),
            metas: EarlyExitInfo::all_from_buffer(buffer),
        });
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(frames.len(), 3);
    frames
}

/// The gauges found by colour alone: for each band of rows holding gauge cells, top to
/// bottom, the cells' colours left to right.
fn gauges(frame: &Frame) -> Vec<Vec<[u8; 4]>> {
    let is_cell = |p: [u8; 4]| p == GREEN || p == MAGENTA;
    let rows: Vec<usize> = (0..HEIGHT)
        .filter(|&y| (0..WIDTH).any(|x| is_cell(frame.at(x, y))))
        .collect();
    // Consecutive rows make a band; its middle row is read left to right.
    let mut bands: Vec<Vec<usize>> = Vec::new();
    for y in rows {
        match bands.last_mut() {
            Some(band) if band.last() == Some(&(y - 1)) => band.push(y),
            _ => bands.push(vec![y]),
        }
    }
    bands
        .iter()
        .map(|band| {
            let y = band[band.len() / 2];
            let mut cells = Vec::new();
            let mut previous = None;
            for x in 0..WIDTH {
                let p = frame.at(x, y);
                let here = is_cell(p).then_some(p);
                if here.is_some() && here != previous {
                    cells.push(p);
                }
                previous = here;
            }
            cells
        })
        .collect()
}

/// What each meta's gauge should show: green up to its stage, magenta after.
fn expected_gauge(meta: &EarlyExitInfo) -> Vec<[u8; 4]> {
    (0..meta.stages)
        .map(|k| if k <= meta.stage { GREEN } else { MAGENTA })
        .collect()
}

/// Two elements, one whose frames all leave at the first stage and one whose frames all run
/// to the last: two lines, each gauge matching its own element's meta.
#[test]
fn each_elements_gauge_shows_the_stage_in_its_meta() {
    for frame in render(&[[0.0, 0.0], [1.0, 1.0]], "") {
        assert_eq!(frame.metas.len(), 2);
        assert_eq!((frame.metas[0].stage, frame.metas[1].stage), (0, 2));
        let expected: Vec<_> = frame.metas.iter().map(expected_gauge).collect();
        assert_eq!(gauges(&frame), expected);
    }
}

/// The panel in the top-left corner is, pixel for pixel, the panel drawn for the frame's own
/// metas: label and confidence in the label region, gauge beside it. Outside it the frame is
/// untouched.
#[test]
fn the_label_region_holds_the_metas_answer() {
    let painter = Painter::new(style(), HEIGHT as u32);
    for frame in render(&[[0.0, 0.0], [1.0, 1.0]], "position=top-left margin=8") {
        let lines: Vec<Line> = frame.metas.iter().map(Line::from_info).collect();
        let picture = painter.paint(&lines).unwrap();
        let (w, h) = (picture.width as usize, picture.height as usize);
        let mut differing = 0;
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 4;
                // cairo's BGRA, opaque, against the frame's RGBA.
                let [b, g, r, a] = picture.data[i..i + 4].try_into().unwrap();
                differing += usize::from(frame.at(MARGIN + x, MARGIN + y) != [r, g, b, a]);
            }
        }
        assert_eq!(differing, 0, "of {w}×{h} panel pixels");
        for line in &picture.lines {
            let text = line.text;
            let white = (text.y..text.y + text.height)
                .flat_map(|y| (text.x..text.x + text.width).map(move |x| (x, y)))
                .filter(|&(x, y)| {
                    frame.at(MARGIN + x as usize, MARGIN + y as usize) == [255, 255, 255, 255]
                })
                .count();
            assert!(white > 30, "the label region has {white} text pixels");
        }
        assert_eq!(frame.at(MARGIN + w + 2, MARGIN + h / 2), GREY);
        assert_eq!(frame.at(MARGIN / 2, MARGIN / 2), GREY);
        assert_eq!(frame.at(WIDTH - 1, HEIGHT - 1), GREY);
    }
}

/// `position=bottom-right` puts the panel there, `margin` pixels from the edges.
#[test]
fn the_panel_goes_to_the_corner_asked_for() {
    for frame in render(&[[1.0, 1.0]], "position=bottom-right margin=12") {
        assert_eq!(frame.at(WIDTH - 13, HEIGHT - 13), BLACK);
        assert_eq!(frame.at(WIDTH - 11, HEIGHT - 11), GREY);
        assert_eq!(frame.at(12, 12), GREY);
        assert_eq!(gauges(&frame), vec![expected_gauge(&frame.metas[0])]);
    }
}

/// When downstream takes `meta:GstVideoOverlayComposition` and lists the meta in its answer to
/// the allocation query, the panel travels as that meta and the pixels stay untouched.
#[test]
fn a_sink_that_draws_overlays_gets_the_panel_as_meta() {
    let (_tmp, bundle) = cut::valid_dir([1.0, 1.0]);
    let desc = format!(
        "{} \
         ! earlyexit model=\"{}\" audit=0 ! earlyexitoverlay \
         ! appsink name=sink sync=false \
           caps=video/x-raw(meta:GstVideoOverlayComposition),format=RGBA",
        grey_source(3),
        bundle.display()
    );
    let (pipeline, sink) = earlyexit_testkit::gst::with_appsink(&desc);
    // The sink says it draws overlay compositions, as a compositor-backed sink would.
    let pad = sink.static_pad("sink").unwrap();
    pad.add_probe(gst::PadProbeType::QUERY_DOWNSTREAM, |_, info| {
        if let Some(gst::PadProbeData::Query(query)) = &mut info.data
            && let gst::QueryViewMut::Allocation(allocation) = query.view_mut()
        {
            allocation.add_allocation_meta::<gst_video::VideoOverlayCompositionMeta>(None);
        }
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = 0;
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer().unwrap();
        let meta = buffer
            .meta::<gst_video::VideoOverlayCompositionMeta>()
            .expect("the panel as meta");
        assert_eq!(meta.overlay().n_rectangles(), 1);
        let map = buffer.map_readable().unwrap();
        assert!(map.chunks(4).all(|p| p == GREY), "the frame was drawn on");
        frames += 1;
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(frames, 3);
}

/// A sink that takes any caps but draws no overlays (an appsink without caps, as fakesink)
/// gets the panel blended, under caps without the overlay feature.
#[test]
fn a_sink_that_takes_anything_gets_the_panel_blended() {
    let (_tmp, bundle) = cut::valid_dir([1.0, 1.0]);
    let desc = format!(
        "{} \
         ! earlyexit model=\"{}\" audit=0 ! earlyexitoverlay {} \
         ! appsink name=sink sync=false",
        grey_source(2),
        bundle.display(),
        style_properties()
    );
    let (pipeline, sink) = earlyexit_testkit::gst::with_appsink(&desc);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = 0;
    while let Ok(sample) = sink.pull_sample() {
        let caps = sample.caps().unwrap();
        let feature = gst_video::CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION;
        assert!(!caps.features(0).unwrap().contains(feature), "{caps}");
        let buffer = sample.buffer().unwrap();
        assert!(
            buffer
                .meta::<gst_video::VideoOverlayCompositionMeta>()
                .is_none()
        );
        let map = buffer.map_readable().unwrap();
        let at =
            |x: usize, y: usize| -> [u8; 4] { map[(y * WIDTH + x) * 4..][..4].try_into().unwrap() };
        assert_eq!(at(MARGIN + 1, MARGIN + 1), BLACK, "the panel is blended in");
        assert_eq!(at(WIDTH - 1, HEIGHT - 1), GREY);
        frames += 1;
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(frames, 2);
}
