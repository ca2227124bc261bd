//! Endurance benchmark: many frames through one element, then many state cycles of one
//! pipeline, in one process, with the resident memory sampled. Growth past warm-up is a leak
//! to find. Not run by CI: `scripts/endurance.sh` runs it with the benchmark's counts.
//!
//! ```text
//! cargo run --release --example endurance -- BUNDLE [FRAMES] [CYCLES]
//! ```

use anyhow::{Context, Result, bail};
use gst::prelude::*;

#[path = "support.rs"]
mod support;

/// Resident memory, and the heap the allocator has handed out: RSS also holds memory freed but
/// kept by the allocator, so growth in RSS alone may be fragmentation; growth in both is a leak.
fn memory() -> String {
    format!(
        "RSS {:.1} MB, heap in use {:.1} MB",
        support::status_kb("VmRSS") as f64 / 1024.0,
        support::heap_in_use_kb() as f64 / 1024.0
    )
}

/// `frames` frames of a 28×28 GRAY8 test pattern through `earlyexit model=BUNDLE`.
fn pipeline(bundle: &str, frames: u64) -> Result<gst::Pipeline> {
    gst::parse::launch(&format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,format=GRAY8,width=28,height=28 \
         ! earlyexit name=ee model=\"{bundle}\" ! fakesink name=sink sync=false"
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("not a pipeline"))
}

fn run_to_end(p: &gst::Pipeline) -> Result<()> {
    p.set_state(gst::State::Playing)?;
    let end = support::wait_for_end(p.upcast_ref());
    p.set_state(gst::State::Null)?;
    end
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(bundle) = args.first() else {
        bail!("usage: endurance BUNDLE [FRAMES] [CYCLES]");
    };
    let frames: u64 = args.get(1).map_or(Ok(1_000_000), |a| a.parse())?;
    let cycles: u64 = args.get(2).map_or(Ok(1_000), |a| a.parse())?;
    gst::init()?;
    gstearlyexit::plugin_register_static()?;

    // Frames: memory at each tenth, read from a probe on the sink.
    let p = pipeline(bundle, frames)?;
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::atomic::AtomicU64::new(0);
    let tenth = (frames / 10).max(1);
    let pad = p
        .by_name("sink")
        .and_then(|s| s.static_pad("sink"))
        .context("no sink pad")?;
    let probe_samples = samples.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        let n = seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if (n.is_multiple_of(tenth) || n == 1000)
            && let Ok(mut s) = probe_samples.lock()
        {
            s.push((n, memory()));
        }
        gst::PadProbeReturn::Ok
    });
    let start = std::time::Instant::now();
    run_to_end(&p)?;
    let took = start.elapsed().as_secs_f64();
    println!(
        "frames: {frames} in {took:.1} s ({:.0} per second)",
        frames as f64 / took
    );
    for (n, memory) in samples.lock().map(|s| s.clone()).unwrap_or_default() {
        println!("  after {n:>9} frames: {memory}");
    }
    drop(p);

    // State cycles: one pipeline of 10 frames, NULL → PLAYING → EOS → NULL, again and again.
    let p = pipeline(bundle, 10)?;
    println!("state cycles: {cycles}; before: {}", memory());
    let tenth = (cycles / 10).max(1);
    for cycle in 1..=cycles {
        run_to_end(&p)?;
        if cycle == 10 || cycle.is_multiple_of(tenth) {
            println!("  after {cycle:>5} cycles: {}", memory());
        }
    }
    Ok(())
}
