//! Reads the `EarlyExitMeta` that the `earlyexit` element attaches to each frame, the way any
//! application would: through the plain GStreamer API, by the meta's name.
//!
//! ```text
//! cargo run --release --example read_meta -- BUNDLE MEDIA
//! ```
//! BUNDLE is an `exits.yaml` or its folder; MEDIA is a file path or a URI.

use anyhow::{Context, Result, bail};
use gst::prelude::*;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bundle, media] = args.as_slice() else {
        bail!(
            "usage: read_meta BUNDLE MEDIA   (BUNDLE: exits.yaml or its folder; MEDIA: file or URI)"
        );
    };
    let uri = if media.contains("://") {
        media.clone()
    } else {
        let path = std::fs::canonicalize(media).with_context(|| media.clone())?;
        gst::glib::filename_to_uri(&path, None)?.to_string()
    };

    gst::init()?;
    // Uses the element built with this program; with the plugin installed this is not needed.
    gstearlyexit::plugin_register_static()?;

    // uridecodebin ! videoconvert ! earlyexit ! appsink
    let pipeline = gst::Pipeline::new();
    let decode = gst::ElementFactory::make("uridecodebin")
        .property("uri", &uri)
        .build()?;
    let convert = gst::ElementFactory::make("videoconvert").build()?;
    let earlyexit = gst::ElementFactory::make("earlyexit")
        .property("model", bundle)
        .build()?;
    let sink = gst_app::AppSink::builder().sync(false).build();
    pipeline.add_many([&decode, &convert, &earlyexit, sink.upcast_ref()])?;
    gst::Element::link_many([&convert, &earlyexit, sink.upcast_ref()])?;
    // uridecodebin makes its pads once it knows the streams; link the video one.
    let convert_sink = convert
        .static_pad("sink")
        .context("videoconvert has a sink pad")?;
    decode.connect_pad_added(move |_, pad| {
        let is_video = pad
            .current_caps()
            .and_then(|caps| caps.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        if is_video && !convert_sink.is_linked() {
            let _ = pad.link(&convert_sink);
        }
    });

    if pipeline.set_state(gst::State::Playing).is_err() {
        // The element says why on the bus, e.g. which file or key of the bundle is wrong.
        let error = bus_error(&pipeline);
        pipeline.set_state(gst::State::Null)?;
        bail!(error.unwrap_or_else(|| "the pipeline did not start".into()));
    }
    println!("frame  stage  class  label                 confidence  cost    reused");
    let mut frame = 0u64;
    // Fails at EOS or on an error; the bus says which.
    while let Ok(sample) = sink.pull_sample() {
        let Some(buffer) = sample.buffer() else {
            continue;
        };
        // gst_buffer_get_custom_meta (buf, "EarlyExitMeta") + gst_custom_meta_get_structure
        let Ok(meta) = gst::meta::CustomMeta::from_buffer(buffer, "EarlyExitMeta") else {
            println!("{frame:>5}  (no EarlyExitMeta)");
            frame += 1;
            continue;
        };
        let s = meta.structure();
        let stage = s.get::<u32>("stage")?;
        let class_id = s.get::<i32>("class-id")?;
        let label = s.get_optional::<String>("label")?.unwrap_or_default();
        let confidence = s.get::<f64>("confidence")?;
        let cost = s
            .get_optional::<f64>("cost")?
            .map_or("-".to_owned(), |c| format!("{c:.3}"));
        // A format-3 stream rule's reused answer: its age in frames, else 0.
        let reused = s.get_optional::<u32>("reused")?.unwrap_or(0);
        println!(
            "{frame:>5}  {stage:>5}  {class_id:>5}  {label:<20}  {confidence:>10.4}  {cost:<6}  {reused}"
        );
        frame += 1;
    }

    let error = bus_error(&pipeline);
    pipeline.set_state(gst::State::Null)?;
    if let Some(error) = error {
        bail!(error);
    }

    // The element's counts, readable at any time and kept after the pipeline stops.
    let stats = earlyexit.property::<gst::Structure>("stats");
    let exits: Vec<u64> = stats
        .get::<gst::Array>("exits")?
        .iter()
        .filter_map(|v| v.get::<u64>().ok())
        .collect();
    println!(
        "\n{} frames; left at each stage: {exits:?}",
        stats.get::<u64>("frames")?
    );
    if let Ok(cost) = stats.get::<f64>("mean-cost") {
        println!("mean cost: {cost:.3} of the backbone");
    }
    println!(
        "mean inference: {:.2} ms",
        stats.get::<u64>("mean-inference-ns")? as f64 / 1e6
    );
    Ok(())
}

/// The first ERROR message waiting on the pipeline's bus.
fn bus_error(pipeline: &gst::Pipeline) -> Option<String> {
    let msg = pipeline.bus()?.pop_filtered(&[gst::MessageType::Error])?;
    match msg.view() {
        gst::MessageView::Error(err) => Some(err.error().to_string()),
        _ => None,
    }
}
