//! Driving the element: GStreamer initialised and the plugin registered statically (the freshly
//! built element, not whatever is installed), pipelines run to their end, meta collected.

use std::path::Path;
use std::sync::OnceLock;

/// Initialises GStreamer and registers the plugin statically, once per process, so tests use
/// the freshly built element rather than whatever is installed.
pub fn init() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        gst::init().map_err(|e| e.to_string())?;
        gstearlyexit::plugin_register_static().map_err(|e| e.to_string())
    });
    if let Err(err) = result {
        panic!("cannot set up GStreamer and the earlyexit plugin: {err}");
    }
}

/// The first `frames` frames of the shipped footage `name` as a lossless clip at `out`, so that
/// a test runs in seconds on real frames; returns `out`. Exactly that many ([`end_after`]).
pub fn first_frames(name: &str, frames: usize, out: &Path) -> std::path::PathBuf {
    let desc = format!(
        "filesrc location=\"{}\" ! decodebin ! identity name=cut ! videoconvert ! avenc_ffv1 \
         ! matroskamux ! filesink location=\"{}\"",
        crate::footage(name).display(),
        out.display()
    );
    let pipeline = parse(&desc);
    end_after(&src_pad(&pipeline, "cut"), frames);
    run_parsed_to_eos(&pipeline, &desc, 120);
    out.to_path_buf()
}

/// `clip` twice in a row as a lossless clip at `out`, the second time `gap` later than it would
/// follow: a gap in the stream, which the demuxer announces with a GAP event and no DISCONT
/// flag. Returns `out`.
pub fn twice_with_a_gap(clip: &Path, gap: gst::ClockTime, out: &Path) -> std::path::PathBuf {
    use gst::prelude::*;
    let source = |name: &str| {
        format!(
            "filesrc location=\"{}\" ! decodebin ! identity name={name} ! c.",
            clip.display()
        )
    };
    let desc = format!(
        "concat name=c ! videoconvert ! avenc_ffv1 ! matroskamux ! filesink location=\"{}\" {} {}",
        out.display(),
        source("first"),
        source("later")
    );
    let pipeline = parse(&desc);
    src_pad(&pipeline, "later").add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
            let buffer = buffer.make_mut();
            if let Some(pts) = buffer.pts() {
                buffer.set_pts(pts + gap);
            }
        }
        gst::PadProbeReturn::Ok
    });
    run_parsed_to_eos(&pipeline, &desc, 120);
    out.to_path_buf()
}

fn parse(desc: &str) -> gst::Element {
    init();
    gst::parse::launch(desc).unwrap_or_else(|e| panic!("{desc}: {e}"))
}

/// The source pad of the element named `name` in `pipeline`.
fn src_pad(pipeline: &gst::Element, name: &str) -> gst::Pad {
    use gst::prelude::*;
    pipeline
        .downcast_ref::<gst::Bin>()
        .and_then(|bin| bin.by_name(name))
        .and_then(|e| e.static_pad("src"))
        .unwrap_or_else(|| panic!("no element {name} with a src pad"))
}

/// Parses the gst-launch-style pipeline `desc`, which ends in `appsink name=sink`: the
/// pipeline, not yet started, and its appsink. Panics, naming the pipeline, when it does not
/// parse.
pub fn with_appsink(desc: &str) -> (gst::Pipeline, gst_app::AppSink) {
    use gst::prelude::*;
    let pipeline = parse(desc)
        .downcast::<gst::Pipeline>()
        .unwrap_or_else(|_| panic!("{desc}: not a pipeline"));
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .unwrap_or_else(|| panic!("{desc}: no appsink named sink"));
    (pipeline, sink)
}

/// Runs the gst-launch-style pipeline `desc` to its end, within `seconds`. Panics, naming the
/// pipeline, when it fails or does not end in time.
pub fn run_to_eos(desc: &str, seconds: u64) {
    run_parsed_to_eos(&parse(desc), desc, seconds);
}

/// [`run_to_eos`] for a pipeline already parsed from `desc`.
fn run_parsed_to_eos(pipeline: &gst::Element, desc: &str, seconds: u64) {
    use gst::prelude::*;
    pipeline
        .set_state(gst::State::Playing)
        .unwrap_or_else(|e| panic!("{desc}: {e}"));
    let msg = pipeline
        .bus()
        .expect("a pipeline has a bus")
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(seconds),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap_or_else(|| panic!("{desc}: no end within {seconds} s"));
    pipeline
        .set_state(gst::State::Null)
        .expect("the pipeline stops");
    assert!(
        matches!(msg.view(), gst::MessageView::Eos(_)),
        "{desc}: {msg:?}"
    );
}

/// Lets exactly `n` buffers through `pad`, then sends EOS through it and answers EOS upstream.
/// `identity eos-after` is not exact: a decoder may push a few more frames after the EOS answer.
pub fn end_after(pad: &gst::Pad, n: usize) {
    use gst::prelude::*;
    let seen = std::sync::atomic::AtomicUsize::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let seen = seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if seen <= n {
            return gst::PadProbeReturn::Ok;
        }
        if seen == n + 1 {
            pad.send_event(gst::event::Eos::new());
        }
        // Handled, with the buffer taken: the probe owns it (and drops it here), and upstream
        // gets EOS. Drop with an error flow makes GStreamer unref the buffer a second time.
        info.data.take();
        info.flow_res = Err(gst::FlowError::Eos);
        gst::PadProbeReturn::Handled
    });
}

/// Runs `filesrc ! decodebin ! videoconvert ! earlyexit model=BUNDLE audit=0 ! appsink` over
/// `clip` and returns the `EarlyExitMeta` of every buffer, in order: the bundle alone, as
/// `evaluate` runs it unless asked to audit. Panics when a buffer has none or the pipeline
/// fails.
pub fn element_meta(clip: &Path, bundle: &Path) -> Vec<gstearlyexit::EarlyExitInfo> {
    use gst::prelude::*;
    init();
    let desc = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! earlyexit model=\"{}\" audit=0 ! appsink name=sink sync=false",
        clip.display(),
        bundle.display()
    );
    let (pipeline, sink) = with_appsink(&desc);
    pipeline
        .set_state(gst::State::Playing)
        .expect("the pipeline starts");
    let mut meta = Vec::new();
    // pull_sample fails at EOS, and also on an error, which the bus check below reports.
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer().expect("a sample with a buffer");
        meta.push(
            gstearlyexit::EarlyExitInfo::from_buffer(buffer)
                .expect("EarlyExitMeta on every buffer"),
        );
    }
    let error = pipeline
        .bus()
        .and_then(|b| b.pop_filtered(&[gst::MessageType::Error]));
    pipeline
        .set_state(gst::State::Null)
        .expect("the pipeline stops");
    if let Some(msg) = error
        && let gst::MessageView::Error(err) = msg.view()
    {
        panic!("{desc}: {}", err.error());
    }
    meta
}

/// [`element_meta`] as (stage, class id) per buffer: what `evaluate --per-frame` decides.
pub fn element_decisions(clip: &Path, bundle: &Path) -> Vec<(u32, i32)> {
    element_meta(clip, bundle)
        .into_iter()
        .map(|m| (m.stage, m.class_id))
        .collect()
}
