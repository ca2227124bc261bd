//! Times the `earlyexit` element over raw frames decoded beforehand, as `scripts/bench.sh`
//! does: `filesrc ! rawvideoparse ! earlyexit ! fakesink`, then reads `mean-inference-ns` from
//! the element's `stats`. No per-frame messages are posted, so printing them costs no CPU.
//!
//! ```text
//! cargo run --release --example element_timing -- BUNDLE RAW FORMAT WIDTH HEIGHT MODE THREADS
//! ```

use anyhow::{Context, Result, bail};
use gst::prelude::*;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bundle, raw, format, width, height, mode, threads] = args.as_slice() else {
        bail!("usage: element_timing BUNDLE RAW FORMAT WIDTH HEIGHT MODE THREADS");
    };
    gst::init()?;
    gstearlyexit::plugin_register_static()?;
    let pipeline = gst::parse::launch(&format!(
        "filesrc location=\"{raw}\" ! rawvideoparse format={} width={width} height={height} \
         framerate=25/1 ! earlyexit name=ee model=\"{bundle}\" mode={mode} threads={threads} \
         ! fakesink sync=false",
        format.to_lowercase()
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let element = pipeline
        .by_name("ee")
        .context("no earlyexit in the pipeline")?;
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().context("no bus")?;
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::NONE,
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .context("no end of stream")?;
    pipeline.set_state(gst::State::Null)?;
    if let gst::MessageView::Error(err) = msg.view() {
        bail!("{}", err.error());
    }
    let stats = element.property::<gst::Structure>("stats");
    println!(
        "{} frames, mean-inference-ns {}",
        stats.get::<u64>("frames")?,
        stats.get::<u64>("mean-inference-ns")?
    );
    Ok(())
}
