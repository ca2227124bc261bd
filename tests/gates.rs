//! Format-2 bundles through the element: a gate that reads the previous frame's answer decides
//! as the core's `Classifier` does over the same frames, and the element forgets that answer on
//! a DISCONT buffer, a flush, a new segment and a new stream; and a bundle deciding by any exit
//! metric, format 2's included, decides in the element as in the core.

use earlyexit_testkit::cut;

use std::path::{Path, PathBuf};

use earlyexit::gate::GateInput;
use earlyexit::rule::{Metric, Signals};
use earlyexit::{Classifier, Frame, Mode, PixelFormat, SessionOptions, bundle};
use gst::prelude::*;
use gst_video::prelude::*;
use gstearlyexit::EarlyExitInfo;

use earlyexit_testkit::footage;
use earlyexit_testkit::gst::{end_after, init};

/// A format-2 bundle whose two exits leave when their class agrees with the class answered for
/// the previous frame, and only then.
fn last_frame_bundle() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    let gate = cut::agreement_gate(true);
    let b = cut::gated_bundle(
        vec![GateInput::AgreesLastFrame],
        [gate.clone(), gate],
        [0.5, 0.5],
    );
    let file = cut::write_bundle(&dir, &b);
    (tmp, file)
}

fn classifier(file: &Path) -> Classifier {
    let (b, _) = bundle::read(file).unwrap();
    Classifier::open(&b, Mode::EarlyExit, SessionOptions::default()).unwrap()
}

/// Runs `f` on the core's view of a buffer of `info`'s format.
fn with_frame<R>(
    buf: &gst::BufferRef,
    info: &gst_video::VideoInfo,
    f: impl FnOnce(&Frame) -> R,
) -> R {
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info).unwrap();
    let format = PixelFormat::from_name(frame.format().to_str()).unwrap();
    let stride = usize::try_from(frame.plane_stride()[0]).unwrap();
    let data = frame.plane_data(0).unwrap();
    f(&Frame::new(format, frame.width(), frame.height(), stride, data).unwrap())
}

/// The core's decision on a buffer of `info`'s format: (stage, class id).
fn classify_buffer(
    c: &mut Classifier,
    buf: &gst::BufferRef,
    info: &gst_video::VideoInfo,
) -> (u32, i32) {
    let d = with_frame(buf, info, |frame| c.classify(frame).unwrap());
    (d.stage as u32, d.class_id as i32)
}

/// The first `frames` frames of `clip` through `filesrc ! decodebin ! videoconvert ! earlyexit
/// model=FILE ! appsink`, as the appsink got them.
fn element_samples(clip: &Path, file: &Path, frames: usize) -> Vec<gst::Sample> {
    init();
    let desc = format!(
        "filesrc location={} ! decodebin ! videoconvert ! earlyexit name=ee model={} threads=1 \
         ! appsink name=sink sync=false",
        clip.display(),
        file.display()
    );
    let (pipeline, sink) = earlyexit_testkit::gst::with_appsink(&desc);
    let ee = pipeline.by_name("ee").unwrap();
    end_after(&ee.static_pad("sink").unwrap(), frames);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut samples = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        samples.push(sample);
    }
    let error = pipeline
        .bus()
        .unwrap()
        .pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(error.is_none(), "{error:?}");
    assert_eq!(samples.len(), frames);
    samples
}

#[test]
fn a_last_frame_gate_decides_on_footage_as_the_core_does() {
    const FRAMES: usize = 400;
    let (_tmp, file) = last_frame_bundle();
    let samples = element_samples(&footage("fmnist-test-a-5k.mkv"), &file, FRAMES);

    // The element passes frames through unchanged, so the core can run on what it saw,
    // forgetting the last answer where the element must (DISCONT buffers).
    let mut core = classifier(&file);
    let mut stateless = classifier(&file);
    let mut stages = [0; 3];
    let mut differs_from_stateless = 0;
    for (i, sample) in samples.iter().enumerate() {
        let buf = sample.buffer().unwrap();
        let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        if buf.flags().contains(gst::BufferFlags::DISCONT) {
            core.reset_stream();
        }
        let want = classify_buffer(&mut core, buf, &info);
        let meta = EarlyExitInfo::from_buffer(buf).unwrap();
        assert_eq!((meta.stage, meta.class_id), want, "frame {i}");
        stages[want.0 as usize] += 1;
        stateless.reset_stream();
        differs_from_stateless += usize::from(classify_buffer(&mut stateless, buf, &info) != want);
    }
    eprintln!("stages {stages:?}, {differs_from_stateless} frames decided by the last frame");
    // Without a previous answer no exit agrees, so every early exit came from the stream state.
    assert!(stages[0] + stages[1] > 0, "{stages:?}");
    assert!(stages[2] > 0, "{stages:?}");
    assert_eq!(differs_from_stateless, stages[0] + stages[1]);
}

/// The first reference image (28×28 GRAY8) whose decision in a fresh stream differs from its
/// decision right after itself, which then repeats: (pixels, fresh, following).
fn image_that_shows_the_state(c: &mut Classifier) -> (Vec<u8>, (u32, i32), (u32, i32)) {
    let (shape, values) = earlyexit_testkit::npy::read_npy(&earlyexit_testkit::model(
        "fmnist_resnet20w32.ref_in.npy",
    ));
    assert_eq!(shape[1..], [1, 28, 28]);
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Gray8, 28, 28)
        .build()
        .unwrap();
    for image in values.chunks_exact(28 * 28) {
        let pixels: Vec<u8> = image.iter().map(|v| (v * 255.0).round() as u8).collect();
        let buf = gst::Buffer::from_slice(pixels.clone());
        c.reset_stream();
        let fresh = classify_buffer(c, &buf, &info);
        let following = classify_buffer(c, &buf, &info);
        if fresh != following && classify_buffer(c, &buf, &info) == following {
            return (pixels, fresh, following);
        }
    }
    panic!("no reference image decides differently with a previous answer");
}

#[test]
fn discont_flush_segment_stream_start_and_gap_forget_the_last_frame() {
    init();
    let (_tmp, file) = last_frame_bundle();
    let (pixels, fresh, following) = image_that_shows_the_state(&mut classifier(&file));
    let ee = gst::ElementFactory::make("earlyexit")
        .property("model", file.to_str().unwrap())
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&ee, Some("sink"), Some("src"));
    h.set_src_caps_str("video/x-raw,format=GRAY8,width=28,height=28,framerate=25/1");
    h.play();
    let push = |h: &mut gst_check::Harness, discont: bool| {
        let mut buf = gst::Buffer::from_slice(pixels.clone());
        if discont {
            buf.get_mut().unwrap().set_flags(gst::BufferFlags::DISCONT);
        }
        h.push(buf).unwrap();
        let out = h.pull().unwrap();
        let meta = EarlyExitInfo::from_buffer(&out).unwrap();
        (meta.stage, meta.class_id)
    };
    assert_eq!(push(&mut h, false), fresh);
    assert_eq!(push(&mut h, false), following);
    assert_eq!(push(&mut h, false), following);
    assert_eq!(push(&mut h, true), fresh, "DISCONT");
    assert_eq!(push(&mut h, false), following);

    // The frame follows the flush without the new segment a real source would send, so that
    // only the flush can have reset the state (GStreamer warns about the missing segment).
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(false)));
    assert_eq!(push(&mut h, false), fresh, "flush");
    assert_eq!(push(&mut h, false), following);

    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    assert_eq!(push(&mut h, false), fresh, "segment");
    assert_eq!(push(&mut h, false), following);

    assert!(h.push_event(gst::event::StreamStart::new("another stream")));
    assert_eq!(push(&mut h, false), fresh, "stream-start");
    assert_eq!(push(&mut h, false), following);

    assert!(h.push_event(gst::event::Gap::builder(gst::ClockTime::ZERO).build()));
    assert_eq!(push(&mut h, false), fresh, "gap");
    assert_eq!(push(&mut h, false), following);
}

/// Every exit metric, in a bundle of the first format that names it, decides every frame in
/// the element as the core does, with thresholds that send frames out at more than one stage.
#[test]
fn every_metric_decides_in_the_element_as_in_the_core() {
    const FRAMES: usize = 120;
    let clip = footage("fmnist-test-a-5k.mkv");
    let tmp = tempfile::tempdir().unwrap();
    // Every exit's signals on the first frames, as the element sees them.
    let probe = cut::write_bundle(
        &tmp.path().join("probe"),
        &cut::valid_bundle(cut::THRESHOLDS),
    );
    let mut c = classifier(&probe);
    let mut signals = Vec::new();
    let all: Vec<Vec<Signals>> = element_samples(&clip, &probe, FRAMES)
        .iter()
        .map(|sample| {
            let buf = sample.buffer().unwrap();
            let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
            with_frame(buf, &info, |frame| {
                c.every_exit(frame, &mut signals).unwrap()
            });
            signals.iter().map(|s| s.unwrap()).collect()
        })
        .collect();
    for metric in Metric::ALL {
        // Thresholds at the median of each exit's scores.
        let thresholds = [0, 1].map(|exit| {
            let mut scores: Vec<f64> = all.iter().map(|s| s[exit].score(metric)).collect();
            scores.sort_by(f64::total_cmp);
            scores[scores.len() / 2]
        });
        let mut b = cut::valid_bundle(thresholds);
        b.metric = metric;
        b.format = bundle::Format::naming(metric);
        let file = cut::write_bundle(&tmp.path().join(metric.word()), &b);
        let mut core = classifier(&file);
        let mut stages = std::collections::BTreeSet::new();
        for (i, sample) in element_samples(&clip, &file, FRAMES).iter().enumerate() {
            let buf = sample.buffer().unwrap();
            let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
            let want = classify_buffer(&mut core, buf, &info);
            let meta = EarlyExitInfo::from_buffer(buf).unwrap();
            assert_eq!((meta.stage, meta.class_id), want, "{metric:?}, frame {i}");
            stages.insert(meta.stage);
        }
        assert!(
            stages.len() > 1,
            "{metric:?}: every frame left at {stages:?}"
        );
    }
}
