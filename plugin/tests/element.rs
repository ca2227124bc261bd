//! The element on its own: properties, start errors, and meta on pushed buffers.

use gst::prelude::*;
use gstearlyexit::{EarlyExitInfo, Mode};

use earlyexit_testkit::gst::init;
use earlyexit_testkit::{TempBundle, fmnist_one_stage_bundle, model};

/// The one-stage Fashion-MNIST bundle; panics when it cannot be written.
fn one_stage_bundle() -> TempBundle {
    fmnist_one_stage_bundle().expect("write the one-stage bundle")
}

/// Starts `videotestsrc ! earlyexit ! fakesink` with `model` and returns the ERROR message text.
fn start_error(model: Option<&str>) -> String {
    init();
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("videotestsrc")
        .property("num-buffers", 1)
        .build()
        .unwrap();
    let mut ee = gst::ElementFactory::make("earlyexit");
    if let Some(model) = model {
        ee = ee.property("model", model);
    }
    let ee = ee.build().unwrap();
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    pipeline.add_many([&src, &ee, &sink]).unwrap();
    gst::Element::link_many([&src, &ee, &sink]).unwrap();

    assert!(pipeline.set_state(gst::State::Paused).is_err());
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("an ERROR message");
    pipeline.set_state(gst::State::Null).unwrap();
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    assert_eq!(msg.src(), Some(ee.upcast_ref::<gst::Object>()));
    err.error().to_string()
}

#[test]
fn properties_have_the_spec_defaults() {
    init();
    let ee = gst::ElementFactory::make("earlyexit").build().unwrap();
    assert_eq!(ee.property::<Option<String>>("model"), None);
    assert_eq!(ee.property::<Mode>("mode"), Mode::EarlyExit);
    assert_eq!(ee.property::<u32>("threads"), 0);
    assert!(!ee.property::<bool>("post-messages"));
    let stats = ee.property::<gst::Structure>("stats");
    assert_eq!(stats.name(), "earlyexit-stats");
    assert_eq!(stats.get::<u64>("frames").unwrap(), 0);

    let klass = ee.factory().unwrap();
    assert_eq!(
        klass.metadata(gst::ELEMENT_METADATA_KLASS),
        Some("Filter/Analyzer/Video")
    );
    // Every property explains itself in gst-inspect-1.0.
    for name in ["model", "mode", "threads", "post-messages", "stats"] {
        let pspec = ee.find_property(name).unwrap();
        assert!(pspec.blurb().is_some_and(|b| b.len() > 30), "{name}");
    }
}

/// Every property each element of the plugin declares itself (not those of GObject and
/// GstObject) explains itself in gst-inspect-1.0.
#[test]
fn every_property_of_every_element_is_documented() {
    init();
    for factory in ["earlyexit", "earlyexitoverlay", "earlyexitpublish"] {
        let element = gst::ElementFactory::make(factory).build().unwrap();
        let own: Vec<_> = element
            .list_properties()
            .into_iter()
            .filter(|p| !["name", "parent", "qos"].contains(&p.name()))
            .collect();
        assert!(own.len() >= 5, "{factory}: {} properties", own.len());
        for pspec in own {
            let blurb = pspec.blurb().unwrap_or_default();
            assert!(blurb.len() > 30, "{factory}.{}: '{blurb}'", pspec.name());
        }
    }
}

#[test]
fn properties_round_trip_and_mode_parses_from_nicks() {
    init();
    let ee = gst::ElementFactory::make("earlyexit")
        .property("model", "/some/bundle")
        .property("threads", 2u32)
        .property("post-messages", true)
        .property_from_str("mode", "full")
        .build()
        .unwrap();
    assert_eq!(
        ee.property::<Option<String>>("model").as_deref(),
        Some("/some/bundle")
    );
    assert_eq!(ee.property::<Mode>("mode"), Mode::Full);
    assert_eq!(ee.property::<u32>("threads"), 2);
    assert!(ee.property::<bool>("post-messages"));
}

#[test]
fn missing_model_path_posts_an_error_naming_it() {
    let text = start_error(Some("/nonexistent/bundle-dir/exits.yaml"));
    assert!(
        text.contains("/nonexistent/bundle-dir/exits.yaml"),
        "error text: {text}"
    );
}

#[test]
fn unset_model_posts_an_error() {
    let text = start_error(None);
    assert!(text.contains("model"), "error text: {text}");
}

#[test]
fn invalid_bundle_posts_an_error_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("exits.yaml");
    std::fs::write(
        &yaml,
        "format: earlyexit/1\n\
         input: {layout: nchw, width: 28, height: 28, color: gray, mean: [0], std: [0]}\n\
         stages:\n  - segment: net.onnx\n",
    )
    .unwrap();
    let text = start_error(Some(dir.path().to_str().unwrap()));
    assert!(text.contains(yaml.to_str().unwrap()), "error text: {text}");
    assert!(text.contains("std"), "error text: {text}");
}

#[test]
fn unloadable_onnx_posts_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("net.onnx"), b"not an onnx file").unwrap();
    std::fs::write(
        dir.path().join("exits.yaml"),
        "format: earlyexit/1\n\
         input: {layout: nchw, width: 28, height: 28, color: gray, mean: [0], std: [255]}\n\
         stages:\n  - segment: net.onnx\n",
    )
    .unwrap();
    let text = start_error(Some(dir.path().to_str().unwrap()));
    assert!(text.contains("net.onnx"), "error text: {text}");
}

fn push_frames(
    caps: &str,
    frame_bytes: usize,
    count: u64,
    mode: &str,
) -> (Vec<gst::Buffer>, gst::Structure) {
    init();
    let bundle = one_stage_bundle();
    // The harness starts the element as soon as it has it, so the model must be set first.
    let ee = gst::ElementFactory::make("earlyexit")
        .property("model", bundle.dir.path().to_str().unwrap())
        .property_from_str("mode", mode)
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&ee, Some("sink"), Some("src"));
    h.set_src_caps_str(caps);
    h.play();
    let mut out = Vec::new();
    for i in 0..count {
        let mut buf = gst::Buffer::from_mut_slice(vec![(i * 40) as u8; frame_bytes]);
        buf.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(40 * i));
        h.push(buf).unwrap();
        out.push(h.pull().unwrap());
    }
    // Settings cannot change while running.
    ee.set_property("threads", 7u32);
    assert_eq!(ee.property::<u32>("threads"), 0);
    let stats = ee.property::<gst::Structure>("stats");
    (out, stats)
}

fn check_meta(buffers: &[gst::Buffer], stats: &gst::Structure) {
    for buf in buffers {
        let info = EarlyExitInfo::from_buffer(buf).expect("EarlyExitMeta on every buffer");
        assert_eq!((info.stage, info.stages), (0, 1));
        assert!((0..10).contains(&info.class_id));
        let labels = std::fs::read_to_string(model("fmnist_classes.txt")).unwrap();
        let expected = labels.lines().nth(info.class_id as usize).unwrap();
        assert_eq!(info.label.as_deref(), Some(expected));
        assert!(info.confidence > 0.0 && info.confidence <= 1.0);
        assert_eq!(info.score, info.confidence, "max-prob score");
        assert_eq!(info.cost, Some(1.0));
        assert!(info.inference_ns > 0);
    }
    assert_eq!(stats.get::<u64>("frames").unwrap(), buffers.len() as u64);
    let exits = stats.get::<gst::Array>("exits").unwrap();
    let exits: Vec<u64> = exits.iter().map(|v| v.get::<u64>().unwrap()).collect();
    assert_eq!(exits, vec![buffers.len() as u64]);
    assert_eq!(stats.get::<f64>("mean-cost").unwrap(), 1.0);
    assert!(stats.get::<u64>("mean-inference-ns").unwrap() > 0);
}

#[test]
fn gray_frames_at_model_size_get_meta() {
    let (buffers, stats) = push_frames(
        "video/x-raw,format=GRAY8,width=28,height=28,framerate=25/1",
        28 * 28,
        5,
        "early-exit",
    );
    check_meta(&buffers, &stats);
}

#[test]
fn rgb_frames_of_another_size_are_resized_in_full_mode() {
    // 30 pixels × 3 bytes = 90 bytes a row, padded to a stride of 92.
    let (buffers, stats) = push_frames(
        "video/x-raw,format=RGB,width=30,height=20,framerate=25/1",
        92 * 20,
        3,
        "full",
    );
    check_meta(&buffers, &stats);
}

/// An element's decision replaces only the meta that the same element attached before; another
/// element's stays, first.
#[test]
fn a_decision_replaces_only_its_own_elements_meta() {
    init();
    let decision = |element: &str, stage: u32, label: Option<&str>| EarlyExitInfo {
        stage,
        stages: 3,
        class_id: 4,
        label: label.map(str::to_owned),
        confidence: 0.9,
        score: 0.9,
        cost: None,
        inference_ns: 1,
        reused: 0,
        audited: false,
        fallback: false,
        non_finite: false,
        degraded: "none".to_owned(),
        element: element.to_owned(),
        bundle: "b".to_owned(),
    };
    let mut buffer = gst::Buffer::with_size(4).unwrap();
    let buf = buffer.get_mut().unwrap();
    let fast = decision("fast", 0, Some("Coat"));
    fast.attach(buf).unwrap();
    decision("specialist", 1, None).attach(buf).unwrap();
    let second = decision("specialist", 2, None);
    second.attach(buf).unwrap();
    assert_eq!(EarlyExitInfo::from_buffer(buf), Some(fast.clone()));
    assert_eq!(EarlyExitInfo::all_from_buffer(buf), vec![fast, second]);
    assert_eq!(
        buf.iter_meta::<gst::Meta>().count(),
        2,
        "one meta per element"
    );
}

/// The element only reads pixels: a frame shared with another branch (as after a `tee`) leaves
/// with the same memory, not a copy made to be written.
#[test]
fn shared_frames_are_read_in_place_not_copied() {
    init();
    let bundle = one_stage_bundle();
    let ee = gst::ElementFactory::make("earlyexit")
        .property("model", bundle.dir.path().to_str().unwrap())
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&ee, Some("sink"), Some("src"));
    h.set_src_caps_str("video/x-raw,format=GRAY8,width=28,height=28,framerate=25/1");
    h.play();
    let input = gst::Buffer::from_mut_slice(vec![90u8; 28 * 28]);
    // A second reference makes the buffer shared.
    h.push(input.clone()).unwrap();
    let out = h.pull().unwrap();
    assert!(EarlyExitInfo::from_buffer(&out).is_some());
    let pixels = |b: &gst::Buffer| b.map_readable().unwrap().as_ptr();
    assert_eq!(
        pixels(&out),
        pixels(&input),
        "the frame's pixels were copied"
    );
}

/// The LATENCY query's answer adds the element's own processing time to upstream's, so that a
/// sink with `sync=true` allows for it.
#[test]
fn latency_adds_the_elements_processing_time() {
    init();
    let bundle = one_stage_bundle();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=GRAY8,width=28,height=28,framerate=30/1 ! capsfilter name=up ! earlyexit name=ee model=\"{}\" ! fakesink sync=true",
        bundle.dir.path().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (changed, _, _) = pipeline.state(gst::ClockTime::from_seconds(10));
    changed.unwrap();
    let latency = |name: &str| {
        let mut q = gst::query::Latency::new();
        let pad = pipeline.by_name(name).unwrap().static_pad("src").unwrap();
        assert!(pad.query(&mut q), "{name} answers");
        q.result()
    };
    let (up_live, up_min, up_max) = latency("up");
    let (live, min, max) = latency("ee");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(up_live && live);
    let own = min - up_min;
    assert!(
        own > gst::ClockTime::ZERO,
        "the element adds nothing to {up_min}"
    );
    // A frame of the one-stage model takes well under a second.
    assert!(own < gst::ClockTime::from_seconds(1), "{own}");
    assert_eq!(max.zip(up_max).map(|(m, u)| m - u), up_max.map(|_| own));
}
