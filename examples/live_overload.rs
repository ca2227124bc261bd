//! A live source that may outrun the network: a camera-like test pattern (I420, as cameras give,
//! converted to RGB before the queue) at FPS frames a second through `earlyexit`, into a sink that plays in time (`sync=true`), for SECONDS, once per
//! `overload` mode. Prints, side by side, the share of frames answered and how, and the delay
//! from capture to the sink minute by minute: bounded when the element keeps up, growing when it
//! falls behind. Not run by CI: `scripts/live-overload.sh` runs it with the benchmark's settings.
//!
//! ```text
//! cargo run --release --example live_overload -- BUNDLE [SECONDS] [FPS] [WIDTHxHEIGHT] [MODE...]
//! ```

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use gst::prelude::*;
use gstearlyexit::EarlyExitInfo;

/// What reached the sink in one run.
#[derive(Default)]
struct Delivered {
    /// Frames the source made.
    made: u64,
    /// Frames that reached the sink, by how they were answered.
    full: u64,
    reused_by_rule: u64,
    degraded_reused: u64,
    degraded_shallowest: u64,
    /// Capture-to-sink delay of each frame that reached the sink, in ms, with the second it
    /// came at.
    delays: Vec<(u64, f64)>,
}

impl Delivered {
    fn out(&self) -> u64 {
        self.full + self.reused_by_rule + self.degraded_reused + self.degraded_shallowest
    }
}

/// The source: frames a second and size.
struct Source {
    fps: u32,
    size: String,
}

fn run(bundle: &str, mode: &str, seconds: u64, source: &Source) -> Result<Delivered> {
    let Source { fps, size } = source;
    let (width, height) = size
        .split_once('x')
        .with_context(|| format!("expected WIDTHxHEIGHT, got {size:?}"))?;
    let frames = seconds * u64::from(*fps);
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc name=src is-live=true num-buffers={frames} pattern=ball \
         ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 \
         ! videoconvert ! video/x-raw,format=RGB ! queue max-size-buffers=0 max-size-time=0 max-size-bytes=0 \
         ! earlyexit model=\"{bundle}\" overload={mode} \
         ! appsink name=sink sync=true"
    ))
    .context("the pipeline")?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let delivered = Arc::new(Mutex::new(Delivered::default()));
    let src = pipeline
        .by_name("src")
        .and_then(|s| s.static_pad("src"))
        .context("no source pad")?;
    let made = Arc::clone(&delivered);
    src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        if let Ok(mut d) = made.lock() {
            d.made += 1;
        }
        gst::PadProbeReturn::Ok
    });
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .context("no appsink")?;
    pipeline.set_state(gst::State::Playing)?;
    let delivered_all = pull_all(&pipeline, &sink, &delivered);
    pipeline.set_state(gst::State::Null)?;
    delivered_all?;
    let mut d = delivered.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    Ok(std::mem::take(&mut *d))
}

/// Reads every frame the sink gets until the end of the stream, noting how each was answered
/// and its delay; an ERROR on the bus ends it with that error.
fn pull_all(
    pipeline: &gst::Pipeline,
    sink: &gst_app::AppSink,
    delivered: &Mutex<Delivered>,
) -> Result<()> {
    let bus = pipeline.bus().context("no bus")?;
    loop {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) else {
            if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
                && let gst::MessageView::Error(err) = msg.view()
            {
                bail!("the pipeline failed: {}", err.error());
            }
            if sink.is_eos() {
                return Ok(());
            }
            continue;
        };
        let buffer = sample.buffer().context("a sample without a buffer")?;
        let meta = EarlyExitInfo::from_buffer(buffer).context("a frame without EarlyExitMeta")?;
        let (Some(now), Some(pts)) = (pipeline.current_running_time(), buffer.pts()) else {
            continue;
        };
        let mut d = delivered.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        match (meta.degraded.as_str(), meta.reused) {
            ("reused", _) => d.degraded_reused += 1,
            ("shallowest", _) => d.degraded_shallowest += 1,
            (_, 0) => d.full += 1,
            _ => d.reused_by_rule += 1,
        }
        let delay_ms = now.saturating_sub(pts).nseconds() as f64 / 1e6;
        d.delays.push((pts.seconds(), delay_ms));
    }
}

/// The `q` quantile of `values` (sorted here), nearest rank.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

fn report(mode: &str, d: &Delivered) {
    let pct = |n: u64| 100.0 * n as f64 / d.made.max(1) as f64;
    println!(
        "overload={mode}: {} frames made, {} out ({:.1}%): ran the network {:.1}%, reused by \
         the stream rule {:.1}%, degraded: reused {:.1}%, shallowest exit {:.1}%; dropped {:.1}%",
        d.made,
        d.out(),
        pct(d.out()),
        pct(d.full),
        pct(d.reused_by_rule),
        pct(d.degraded_reused),
        pct(d.degraded_shallowest),
        pct(d.made.saturating_sub(d.out())),
    );
    let minutes = d.delays.last().map_or(0, |(s, _)| s / 60) + 1;
    for minute in 0..minutes {
        let mut in_minute: Vec<f64> = d
            .delays
            .iter()
            .filter(|(s, _)| s / 60 == minute)
            .map(|(_, ms)| *ms)
            .collect();
        if in_minute.is_empty() {
            continue;
        }
        let n = in_minute.len();
        println!(
            "  minute {}: {n} frames, delay from capture to sink: median {:.0} ms, p99 {:.0} ms, \
             max {:.0} ms",
            minute + 1,
            quantile(&mut in_minute, 0.5),
            quantile(&mut in_minute, 0.99),
            quantile(&mut in_minute, 1.0),
        );
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(bundle) = args.first() else {
        bail!("usage: live_overload BUNDLE [SECONDS] [FPS] [WIDTHxHEIGHT] [MODE...]");
    };
    let seconds: u64 = args
        .get(1)
        .map_or(Ok(180), |a| a.parse())
        .context("SECONDS")?;
    let source = Source {
        fps: args.get(2).map_or(Ok(120), |a| a.parse()).context("FPS")?,
        size: args.get(3).map_or("640x480", String::as_str).to_owned(),
    };
    let modes: Vec<&str> = match args.get(4..) {
        Some(m) if !m.is_empty() => m.iter().map(String::as_str).collect(),
        _ => vec!["reuse", "shallowest", "drop", "off"],
    };
    gst::init()?;
    gstearlyexit::plugin_register_static()?;
    println!(
        "{bundle}: a live {} fps {} source for {seconds} s, per overload mode",
        source.fps, source.size
    );
    for mode in modes {
        let delivered = run(bundle, mode, seconds, &source)?;
        report(mode, &delivered);
    }
    Ok(())
}
