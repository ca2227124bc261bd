//! Many file streams through one bundle in one process, with `earlyexit` elements that share
//! their ONNX Runtime sessions or do not: the process's peak resident memory and the frames per
//! second of all streams together. `scripts/many-streams.sh` runs both side by side.
//!
//! ```text
//! cargo run --release --example many_streams -- BUNDLE CLIP STREAMS true|false
//! ```

use anyhow::{Context, Result, bail};
use gst::prelude::*;

#[path = "support.rs"]
mod support;

fn peak_kb() -> u64 {
    support::status_kb("VmHWM")
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bundle, clip, streams, shared] = args.as_slice() else {
        bail!("usage: many_streams BUNDLE CLIP STREAMS true|false");
    };
    let streams: usize = streams.parse().context("STREAMS")?;
    gst::init()?;
    gstearlyexit::plugin_register_static()?;
    let pipelines = (0..streams)
        .map(|_| {
            gst::parse::launch(&format!(
                "filesrc location=\"{clip}\" ! decodebin ! videoconvert ! earlyexit name=ee \
                 model=\"{bundle}\" share-sessions={shared} audit=0 ! fakesink sync=false"
            ))
            .context("the pipeline")
        })
        .collect::<Result<Vec<_>>>()?;
    let start = std::time::Instant::now();
    for p in &pipelines {
        p.set_state(gst::State::Playing)?;
    }
    let mut frames = 0u64;
    for p in &pipelines {
        support::wait_for_end(p)?;
        let bin = p.downcast_ref::<gst::Bin>().context("not a bin")?;
        let stats = bin
            .by_name("ee")
            .context("no earlyexit")?
            .property::<gst::Structure>("stats");
        frames += stats.get::<u64>("frames")?;
    }
    let took = start.elapsed().as_secs_f64();
    for p in &pipelines {
        p.set_state(gst::State::Null)?;
    }
    println!(
        "{streams} streams, share-sessions={shared}: {frames} frames in {took:.1} s, {:.1} frames/s in all; peak RSS {:.0} MB",
        frames as f64 / took,
        peak_kb() as f64 / 1024.0
    );
    Ok(())
}
