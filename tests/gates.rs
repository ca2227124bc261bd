//! Format-2 bundles through the element: a gate that reads the previous frame's answer decides
//! as the core's `Classifier` does over the same frames, and the element forgets that answer on
//! a DISCONT buffer, a flush, a new segment and a new stream.

use earlyexit_testkit::cut;

use std::path::{Path, PathBuf};

use earlyexit::gate::GateInput;
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

/// The core's view of a buffer of `info`'s format.
fn classify_buffer(
    c: &mut Classifier,
    buf: &gst::BufferRef,
    info: &gst_video::VideoInfo,
) -> (u32, i32) {
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info).unwrap();
    let format = PixelFormat::from_name(frame.format().to_str()).unwrap();
    let stride = usize::try_from(frame.plane_stride()[0]).unwrap();
    let data = frame.plane_data(0).unwrap();
    let input = Frame::new(format, frame.width(), frame.height(), stride, data).unwrap();
    let d = c.classify(&input).unwrap();
    (d.stage as u32, d.class_id as i32)
}

#[test]
fn a_last_frame_gate_decides_on_footage_as_the_core_does() {
    const FRAMES: usize = 400;
    init();
    let (_tmp, file) = last_frame_bundle();
    let desc = format!(
        "filesrc location={} ! decodebin ! videoconvert ! earlyexit name=ee model={} threads=1 \
         ! appsink name=sink sync=false",
        footage("fmnist-test-a-5k.mkv").display(),
        file.display()
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let ee = pipeline.by_name("ee").unwrap();
    end_after(&ee.static_pad("sink").unwrap(), FRAMES);
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
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
    assert_eq!(samples.len(), FRAMES);

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
