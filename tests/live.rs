//! The element in a running pipeline: a bundle swapped while PLAYING, and properties that
//! cannot change then.

use earlyexit_testkit::cut;
use gst::glib;
use gst::prelude::*;
use gstearlyexit::EarlyExitInfo;

/// What a live run saw: the bundle each frame ran, the messages named `earlyexit-model` and
/// the WARNINGs' texts.
struct Run {
    bundles: Vec<String>,
    swapped_to: Vec<String>,
    warnings: Vec<String>,
}

/// Runs `frames` live frames through `earlyexit model=first`, and after `at` frames sets
/// `property` to `value` on it.
fn run(first: &str, frames: usize, at: usize, property: &str, value: glib::Value) -> Run {
    let desc = format!(
        "videotestsrc is-live=true num-buffers={frames} pattern=ball ! video/x-raw,format=GRAY8,width=28,height=28,framerate=100/1 ! earlyexit name=ee model=\"{first}\" audit=0 ! appsink name=sink sync=false"
    );
    let (pipeline, sink) = earlyexit_testkit::gst::with_appsink(&desc);
    let ee = pipeline.by_name("ee").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut bundles = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let meta = EarlyExitInfo::from_buffer(sample.buffer().unwrap()).expect("meta");
        bundles.push(meta.bundle);
        if bundles.len() == at {
            ee.set_property_from_value(property, &value);
        }
    }
    let bus = pipeline.bus().unwrap();
    let (mut swapped_to, mut warnings) = (Vec::new(), Vec::new());
    while let Some(message) = bus.pop() {
        match message.view() {
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name() == "earlyexit-model") {
                    swapped_to.push(s.get::<String>("model").unwrap());
                }
            }
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    Run {
        bundles,
        swapped_to,
        warnings,
    }
}

#[test]
fn a_bundle_set_while_playing_takes_over_between_frames_and_no_frame_is_lost() {
    let (_a, first) = cut::valid_dir([0.5, 0.75]);
    let (_b, second) = cut::valid_dir([0.0, 0.0]);
    let (first, second) = (first.display().to_string(), second.display().to_string());
    let r = run(&first, 200, 20, "model", second.to_value());
    assert_eq!(r.bundles.len(), 200, "every frame has its meta");
    let switch = r
        .bundles
        .iter()
        .position(|b| *b == second)
        .expect("the new bundle ran");
    assert!(switch >= 20, "{switch}");
    assert!(r.bundles[..switch].iter().all(|b| *b == first));
    assert!(
        r.bundles[switch..].iter().all(|b| *b == second),
        "no way back"
    );
    assert_eq!(r.swapped_to, [second]);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn a_broken_bundle_set_while_playing_warns_and_the_old_one_keeps_running() {
    let (_a, first) = cut::valid_dir([0.5, 0.75]);
    let first = first.display().to_string();
    let r = run(&first, 100, 10, "model", "/no/such/bundle".to_value());
    assert_eq!(r.bundles.len(), 100);
    assert!(r.bundles.iter().all(|b| *b == first));
    assert!(r.swapped_to.is_empty());
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("Cannot switch to bundle /no/such/bundle") && w.contains(&first)),
        "{:?}",
        r.warnings
    );
}

#[test]
fn a_property_that_cannot_change_while_playing_says_so_on_the_bus() {
    let (_a, first) = cut::valid_dir([0.5, 0.75]);
    let r = run(
        &first.display().to_string(),
        30,
        5,
        "threads",
        3u32.to_value(),
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("Property 'threads' cannot change while the element runs")),
        "{:?}",
        r.warnings
    );
}
