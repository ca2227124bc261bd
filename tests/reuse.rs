//! Format-3 bundles through the element: the stream rule reuses the last answer exactly as the
//! core's `Classifier` does over the same buffers, across a seek, and forgets it on a DISCONT
//! buffer, a flush, a new segment or stream and a gap.

use earlyexit_testkit::cut;

use std::path::{Path, PathBuf};

use earlyexit::reuse::{Detector, ReuseRule};
use earlyexit::{Classifier, Frame, Mode, PixelFormat, SessionOptions, bundle};
use gst::prelude::*;
use gst_video::prelude::*;
use gstearlyexit::EarlyExitInfo;

use earlyexit_testkit::footage;
use earlyexit_testkit::gst::init;

/// The valid bundle with a stream rule: `shape` over 8 × 8 blocks, at most 30 frames in a row.
fn reusing_bundle(threshold: f64) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = cut::valid_bundle([0.9, 0.9]);
    b.format = bundle::Format::V3;
    b.reuse = Some(ReuseRule {
        detector: Detector::Shape,
        grid: 8,
        threshold,
        max_age: 30,
    });
    let file = cut::write_bundle(&tmp.path().join("bundle"), &b);
    (tmp, file)
}

fn classifier(file: &Path) -> Classifier {
    let (b, _) = bundle::read(file).unwrap();
    Classifier::open(&b, Mode::EarlyExit, SessionOptions::default()).unwrap()
}

/// The core's decision on a buffer: (stage, class id, age of a reused answer or 0).
fn core_decision(c: &mut Classifier, sample: &gst::Sample) -> (u32, i32, u32) {
    let buf = sample.buffer().unwrap();
    let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &info).unwrap();
    let format = PixelFormat::from_name(frame.format().to_str()).unwrap();
    let stride = usize::try_from(frame.plane_stride()[0]).unwrap();
    let f = Frame::new(
        format,
        frame.width(),
        frame.height(),
        stride,
        frame.plane_data(0).unwrap(),
    )
    .unwrap();
    let d = c.classify(&f).unwrap();
    (d.stage as u32, d.class_id as i32, d.reused.unwrap_or(0))
}

fn meta_decision(sample: &gst::Sample) -> (u32, i32, u32) {
    let m = EarlyExitInfo::from_buffer(sample.buffer().unwrap()).unwrap();
    (m.stage, m.class_id, m.reused)
}

/// Pulls `n` samples from `sink`.
fn pull(sink: &gst_app::AppSink, n: usize) -> Vec<gst::Sample> {
    (0..n).map(|_| sink.pull_sample().unwrap()).collect()
}

#[test]
fn the_element_reuses_answers_as_the_core_does_across_a_seek() {
    init();
    let (_tmp, file) = reusing_bundle(0.3);
    let desc = format!(
        "filesrc location={} ! decodebin ! videoconvert ! earlyexit model={} threads=1 \
         ! appsink name=sink sync=false max-buffers=1",
        footage("fmnist-belt-test-a.mkv").display(),
        file.display()
    );
    let (pipeline, sink) = earlyexit_testkit::gst::with_appsink(&desc);
    pipeline.set_state(gst::State::Paused).unwrap();
    pipeline.state(gst::ClockTime::from_seconds(10)).0.unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let before = pull(&sink, 300);
    // 20 s in: frame 500, far from where the stream was.
    pipeline
        .seek_simple(
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
            gst::ClockTime::from_seconds(20),
        )
        .unwrap();
    let after = pull(&sink, 300);
    pipeline.set_state(gst::State::Null).unwrap();

    let mut core = classifier(&file);
    let mut reused = 0;
    for (part, samples) in [("before", &before), ("after", &after)] {
        // The seek flushes the element; the core starts a new stream where it does.
        core.reset_stream();
        for (i, sample) in samples.iter().enumerate() {
            if sample
                .buffer()
                .unwrap()
                .flags()
                .contains(gst::BufferFlags::DISCONT)
            {
                core.reset_stream();
            }
            let want = core_decision(&mut core, sample);
            assert_eq!(meta_decision(sample), want, "{part} the seek, frame {i}");
            reused += usize::from(want.2 > 0);
        }
    }
    let first_after = meta_decision(&after[0]);
    assert_eq!(first_after.2, 0, "a seek forgets the last answer");
    // The belt holds each item for 4 to 40 frames: most frames reuse, not all.
    assert!((300..550).contains(&reused), "{reused} of 600 reused");
}

/// A reference image as a 28×28 GRAY8 buffer.
fn image(k: usize) -> Vec<u8> {
    let (_, values) = earlyexit_testkit::npy::read_npy(&earlyexit_testkit::model(
        "fmnist_resnet20w32.ref_in.npy",
    ));
    values[k * 784..(k + 1) * 784]
        .iter()
        .map(|v| (v * 255.0).round() as u8)
        .collect()
}

#[test]
fn discont_flush_segment_stream_start_and_gap_forget_the_answer_to_reuse() {
    init();
    let (_tmp, file) = reusing_bundle(0.3);
    let pixels = image(0);
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
        EarlyExitInfo::from_buffer(&h.pull().unwrap())
            .unwrap()
            .reused
    };
    assert_eq!(push(&mut h, false), 0);
    assert_eq!(push(&mut h, false), 1);
    assert_eq!(push(&mut h, false), 2);
    assert_eq!(push(&mut h, true), 0, "DISCONT");
    assert_eq!(push(&mut h, false), 1);

    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(false)));
    assert_eq!(push(&mut h, false), 0, "flush");
    assert_eq!(push(&mut h, false), 1);

    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    assert_eq!(push(&mut h, false), 0, "segment");

    assert!(h.push_event(gst::event::StreamStart::new("another stream")));
    assert_eq!(push(&mut h, false), 0, "stream-start");

    assert!(h.push_event(gst::event::Gap::builder(gst::ClockTime::ZERO).build()));
    assert_eq!(push(&mut h, false), 0, "gap");
    assert_eq!(push(&mut h, false), 1);

    let stats = ee.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("reused").unwrap(), 5);
    assert_eq!(stats.get::<u64>("frames").unwrap(), 11);
}
