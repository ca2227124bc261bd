//! The `earlyexit` element in real pipelines: decoded footage in, EarlyExitMeta, messages and
//! stats out, checked against `docs/spec/element-v1.md`.

use gst::prelude::*;
use gstearlyexit::EarlyExitInfo;

use earlyexit_testkit::gst::{end_after, init};
use earlyexit_testkit::{fmnist_one_stage_bundle, footage, read_labels_csv};

/// What one pipeline run produced.
struct Run {
    /// Every buffer that reached the appsink, in order.
    buffers: Vec<gst::Buffer>,
    /// The caps the appsink got.
    caps: Option<gst::Caps>,
    /// The `earlyexit` element messages, in order.
    messages: Vec<gst::Structure>,
    stats: gst::Structure,
}

/// Runs `<source> ! earlyexit <props> ! appsink` to EOS, or to `frames` frames.
fn run(source: &str, props: &str, frames: Option<usize>) -> Run {
    init();
    let desc = format!("{source} ! earlyexit name=ee {props} ! appsink name=sink sync=false");
    let (pipeline, sink) = earlyexit_testkit::gst::with_appsink(&desc);
    let ee = pipeline.by_name("ee").unwrap();
    if let Some(n) = frames {
        end_after(&ee.static_pad("sink").unwrap(), n);
    }
    pipeline.set_state(gst::State::Playing).unwrap();

    let mut buffers = Vec::new();
    let mut caps = None;
    // pull_sample fails at EOS, and also on an error, which the bus check below reports.
    while let Ok(sample) = sink.pull_sample() {
        caps = sample.caps_owned();
        buffers.push(sample.buffer_owned().unwrap());
    }

    let bus = pipeline.bus().unwrap();
    let mut messages = Vec::new();
    while let Some(msg) = bus.pop() {
        match msg.view() {
            gst::MessageView::Error(err) => {
                panic!("{desc}: {} ({:?})", err.error(), err.debug())
            }
            gst::MessageView::Element(el) if msg.src() == Some(ee.upcast_ref()) => {
                let s = el.structure().unwrap();
                if s.name() == "earlyexit" {
                    messages.push(s.to_owned());
                }
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    // Stats outlive stop(), so they can be read once the run is over.
    let stats = ee.property::<gst::Structure>("stats");
    Run {
        buffers,
        caps,
        messages,
        stats,
    }
}

fn fmnist_source() -> String {
    format!(
        "filesrc location={} ! decodebin ! videoconvert",
        footage("fmnist-test-a-5k.mkv").display()
    )
}

/// Every buffer has a complete meta whose values make sense for a one-stage bundle.
fn meta_of_every_buffer(run: &Run) -> Vec<EarlyExitInfo> {
    assert!(!run.buffers.is_empty());
    run.buffers
        .iter()
        .enumerate()
        .map(|(i, buf)| {
            let info = EarlyExitInfo::from_buffer(buf)
                .unwrap_or_else(|| panic!("buffer {i} has no complete EarlyExitMeta"));
            assert_eq!((info.stage, info.stages), (0, 1), "buffer {i}");
            assert!((0..10).contains(&info.class_id), "buffer {i}");
            assert!(info.label.as_deref().is_some_and(|l| !l.is_empty()));
            assert!(info.confidence >= 0.1 && info.confidence <= 1.0, "{info:?}");
            assert_eq!(
                info.score, info.confidence,
                "max-prob: score is the top probability"
            );
            assert_eq!(info.cost, Some(1.0), "one stage costs the whole backbone");
            assert!(info.inference_ns > 0);
            info
        })
        .collect()
}

fn exits(stats: &gst::Structure) -> Vec<u64> {
    stats
        .get::<gst::Array>("exits")
        .unwrap()
        .iter()
        .map(|v| v.get::<u64>().unwrap())
        .collect()
}

fn check_stats(run: &Run) {
    let frames = run.buffers.len() as u64;
    assert_eq!(run.stats.name(), "earlyexit-stats");
    assert_eq!(run.stats.get::<u64>("frames").unwrap(), frames);
    let exits = exits(&run.stats);
    assert_eq!(exits.len(), 1);
    assert_eq!(exits.iter().sum::<u64>(), frames);
    assert_eq!(run.stats.get::<f64>("mean-cost").unwrap(), 1.0);
    assert!(run.stats.get::<u64>("mean-inference-ns").unwrap() > 0);
}

#[test]
fn fmnist_footage_gets_meta_messages_stats_and_right_labels() {
    let bundle = fmnist_one_stage_bundle().unwrap();
    let run = run(
        &fmnist_source(),
        &format!(
            "model={} post-messages=true threads=1",
            bundle.model_property()
        ),
        None,
    );
    assert_eq!(run.buffers.len(), 5000);
    let infos = meta_of_every_buffer(&run);
    check_stats(&run);

    // Exactly one message per frame, numbered from 0, with the buffer's pts and its meta.
    assert_eq!(run.messages.len(), run.buffers.len());
    let mut last_pts = None;
    for (i, (msg, (buf, info))) in run
        .messages
        .iter()
        .zip(run.buffers.iter().zip(&infos))
        .enumerate()
    {
        assert_eq!(msg.get::<u64>("frame").unwrap(), i as u64);
        let pts = msg.get::<u64>("pts").unwrap();
        assert_eq!(Some(pts), buf.pts().map(|t| t.nseconds()));
        assert!(last_pts < Some(pts), "pts increases");
        last_pts = Some(pts);
        assert_eq!(&EarlyExitInfo::read(msg).unwrap(), info);
    }

    // The backbone gets 95.08% on these frames: right preprocessing and class ids.
    let truth = read_labels_csv(&footage("fmnist-test-a-5k.labels.csv")).unwrap();
    assert_eq!(truth.len(), infos.len());
    let right = infos
        .iter()
        .zip(&truth)
        .filter(|(info, t)| info.class_id == **t)
        .count();
    let accuracy = right as f64 / truth.len() as f64;
    eprintln!("accuracy {accuracy}");
    assert!(accuracy >= 0.95, "accuracy {accuracy}");
}

#[test]
fn full_mode_runs_without_messages_by_default() {
    let bundle = fmnist_one_stage_bundle().unwrap();
    let run = run(
        &fmnist_source(),
        &format!("model={} mode=full threads=1", bundle.model_property()),
        Some(300),
    );
    assert_eq!(run.buffers.len(), 300);
    meta_of_every_buffer(&run);
    check_stats(&run);
    assert!(run.messages.is_empty(), "post-messages defaults to false");
}

#[test]
fn h264_clip_is_resized_by_the_element_and_keeps_its_size() {
    let bundle = fmnist_one_stage_bundle().unwrap();
    let source = format!(
        "filesrc location={} ! decodebin ! videoconvert",
        footage("bikes-tail.mkv").display()
    );
    let run = run(
        &source,
        &format!(
            "model={} post-messages=true threads=1",
            bundle.model_property()
        ),
        None,
    );
    // No videoscale: frames keep their size; the element resizes for the network itself.
    let caps = run.caps.as_ref().unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.get::<i32>("width").unwrap(), 640);
    assert_eq!(s.get::<i32>("height").unwrap(), 272);
    meta_of_every_buffer(&run);
    check_stats(&run);
    assert_eq!(run.messages.len(), run.buffers.len());

    // An application reads the meta through the plain GStreamer API, by name.
    for buf in &run.buffers {
        let s = buf
            .iter_meta::<gst::Meta>()
            .find_map(|m| {
                m.try_as_custom_meta()
                    .filter(|c| c.has_name("EarlyExitMeta"))
                    .map(|c| c.structure().to_owned())
            })
            .expect("EarlyExitMeta by name");
        for field in [
            "stage",
            "stages",
            "class-id",
            "label",
            "confidence",
            "score",
            "cost",
            "inference-ns",
        ] {
            assert!(s.has_field(field), "{field} in {s}");
        }
        assert_eq!(s.get::<u32>("stages").unwrap(), 1);
        assert!(s.get::<i32>("class-id").is_ok());
        let same = gst::meta::CustomMeta::from_buffer(buf, "EarlyExitMeta").unwrap();
        assert_eq!(same.structure(), s.as_ref());
    }
}
