//! `earlyexitpublish` in real pipelines: records to a file, and to a real Mosquitto broker on
//! 127.0.0.1 that is stopped and started again mid-stream.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use earlyexit_testkit::cut;
use gst::prelude::*;
use gstearlyexit::EarlyExitInfo;

fn source(frames: usize, live: bool) -> String {
    format!(
        "videotestsrc num-buffers={frames} is-live={live} pattern=ball \
         ! video/x-raw,format=GRAY8,width=28,height=28,framerate=50/1"
    )
}

/// The pipeline `desc`, set PLAYING.
fn playing(desc: &str) -> gst::Pipeline {
    earlyexit_testkit::gst::init();
    let pipeline = gst::parse::launch(desc)
        .unwrap_or_else(|e| panic!("{desc}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    pipeline
}

/// The `published` and `dropped` counts of the element named `publish`.
fn counts(pipeline: &gst::Pipeline) -> (u64, u64) {
    let publish = pipeline.by_name("publish").unwrap();
    (
        publish.property::<u64>("published"),
        publish.property::<u64>("dropped"),
    )
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

/// Each frame's record holds what the buffer's metas hold, two `earlyexit` elements' worth, in
/// order, with its number and time; frames pass on unchanged with their metas.
#[test]
fn every_frame_leaves_as_one_json_line_with_its_metas() {
    let (_tmp, bundle) = cut::valid_dir([0.5, 0.5]);
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("records.jsonl");
    let desc = format!(
        "{} ! earlyexit name=first model=\"{b}\" audit=0 ! earlyexit name=second model=\"{b}\" \
         audit=0 ! earlyexitpublish location=\"{}\" stream=cam-1 ! appsink name=sink sync=false",
        source(30, false),
        file.display(),
        b = bundle.display(),
    );
    let (pipeline, sink) = earlyexit_testkit::gst::with_appsink(&desc);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut passed = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer().unwrap();
        passed.push((buffer.pts(), EarlyExitInfo::all_from_buffer(buffer)));
    }
    pipeline.set_state(gst::State::Null).unwrap();

    let records = records(&file);
    assert_eq!(records.len(), 30);
    assert_eq!(passed.len(), 30);
    for (n, (record, (pts, metas))) in records.iter().zip(&passed).enumerate() {
        assert_eq!(record["stream"], "cam-1");
        assert_eq!(record["frame"], n as u64);
        assert_eq!(record["pts-ns"], pts.unwrap().nseconds());
        let results = record["results"].as_array().unwrap();
        assert_eq!(results.len(), 2, "{record}");
        for (result, meta) in results.iter().zip(metas) {
            assert_eq!(result["element"], meta.element.as_str());
            assert_eq!(result["stage"], meta.stage);
            assert_eq!(result["class-id"], meta.class_id);
            let confidence = result["confidence"].as_f64().unwrap();
            assert!((confidence - meta.confidence).abs() < 1e-12, "{record}");
        }
        assert_eq!(results[0]["element"], "first");
    }
}

/// A file that cannot be written, and a broker address that cannot be read, stop the pipeline
/// at start with an error naming the property.
#[test]
fn outputs_that_cannot_open_are_errors_that_name_the_property() {
    let cases = [
        ("location=/nonexistent-dir/records.jsonl", "'location'"),
        ("broker=ws://127.0.0.1", "'broker'"),
        ("broker=127.0.0.1 topic=cameras/#", "'topic'"),
    ];
    for (setting, named) in cases {
        let desc = format!(
            "{} ! earlyexitpublish {setting} ! fakesink",
            source(3, false)
        );
        earlyexit_testkit::gst::init();
        let pipeline = gst::parse::launch(&desc).unwrap();
        let _ = pipeline.set_state(gst::State::Playing);
        let bus = pipeline.bus().unwrap();
        let message = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(10),
                &[gst::MessageType::Error, gst::MessageType::Eos],
            )
            .expect("a message");
        pipeline.set_state(gst::State::Null).unwrap();
        let gst::MessageView::Error(error) = message.view() else {
            panic!("{setting}: the pipeline ran to its end");
        };
        let text = error.error().to_string();
        assert!(text.contains(named), "{setting}: {text}");
    }
}

/// A Mosquitto broker on a free loopback port, with its messages kept on disk across a
/// restart; stopped when dropped.
struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    process: Option<Child>,
}

impl Broker {
    fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        // Started as root, mosquitto drops to its own user, which must be able to save there.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut broker = Broker {
            dir,
            port,
            process: None,
        };
        broker.restart();
        broker
    }

    fn config(&self) -> PathBuf {
        let config = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nlog_dest stderr\n",
                self.port,
                self.dir.path().display()
            ),
        )
        .unwrap();
        config
    }

    fn restart(&mut self) {
        let process = Command::new(mosquitto())
            .arg("-c")
            .arg(self.config())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", mosquitto().display()));
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker as a service manager would (SIGTERM), so that it saves its queues.
    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = Command::new("kill").arg(process.id().to_string()).status();
            let _ = process.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// Debian installs the broker in /usr/sbin, which is not on every user's PATH.
fn mosquitto() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/mosquitto");
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from("mosquitto")
    }
}

/// A subscriber with a session the broker keeps, which reconnects on its own; it stops when
/// dropped.
struct Subscriber {
    frames: Arc<Mutex<BTreeSet<u64>>>,
    client: rumqttc::Client,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    /// Subscribes to `topic` on the broker at `port`; returns once subscribed.
    fn start(port: u16, topic: &str) -> Subscriber {
        // Its own id per broker, so that no two tests' sessions are ever confused.
        let id = format!("earlyexit-test-subscriber-{port}-{}", std::process::id());
        let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        options.set_clean_session(false);
        let (client, mut connection) = rumqttc::Client::new(options, 10);
        let frames = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopping, subscriber) = (Arc::clone(&frames), Arc::clone(&stop), client.clone());
        let (subscribed, ready) = std::sync::mpsc::channel();
        let topic = topic.to_owned();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match connection.recv() {
                    // A session the broker did not keep needs its subscription again.
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))))
                        if !ack.session_present =>
                    {
                        let _ = subscriber.try_subscribe(topic.as_str(), rumqttc::QoS::AtLeastOnce);
                    }
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)))) => {
                        let _ = subscribed.send(());
                    }
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                        let record: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                        seen.lock()
                            .unwrap()
                            .insert(record["frame"].as_u64().unwrap());
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
                    Err(_) => return,
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("subscribed");
        Subscriber {
            frames,
            client,
            stop,
            thread: Some(thread),
        }
    }

    fn frames(&self) -> BTreeSet<u64> {
        self.frames.lock().unwrap().clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What one run over a broker restart gave.
struct Outcome {
    published: u64,
    dropped: u64,
    received: BTreeSet<u64>,
    warnings: Vec<String>,
}

/// Publishes `frames` frames at 50 fps while the broker goes away for `outage` mid-stream.
fn publish_across_a_restart(frames: u64, max_buffered: u32, outage: Duration) -> Outcome {
    let mut broker = Broker::start();
    let topic = "earlyexit/test";
    let subscriber = Subscriber::start(broker.port, topic);
    let (_tmp, bundle) = cut::valid_dir([0.5, 0.5]);
    let desc = format!(
        "{} ! earlyexit model=\"{}\" audit=0 ! earlyexitpublish name=publish \
         broker=127.0.0.1:{} topic={topic} max-buffered={max_buffered} ! fakesink",
        source(frames as usize, true),
        bundle.display(),
        broker.port,
    );
    let pipeline = playing(&desc);
    std::thread::sleep(Duration::from_millis(1500));
    broker.stop();
    std::thread::sleep(outage);
    broker.restart();

    let bus = pipeline.bus().unwrap();
    let mut warnings = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let message = bus
            .timed_pop(gst::ClockTime::from_seconds(1))
            .filter(|_| Instant::now() < deadline);
        assert!(Instant::now() < deadline, "no EOS within a minute");
        let Some(message) = message else { continue };
        match message.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{}: {:?}", e.error(), e.debug()),
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            _ => {}
        }
    }
    let (published, dropped) = counts(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    // What the broker acknowledged reaches the subscriber, whose session it kept.
    let deadline = Instant::now() + Duration::from_secs(20);
    while (subscriber.frames().len() as u64) < published && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let received = subscriber.frames();
    Outcome {
        published,
        dropped,
        received,
        warnings,
    }
}

/// With room for the outage, every record reaches the subscriber, though the broker was gone
/// for 1.5 s mid-stream; the bus says the broker was lost.
#[test]
fn a_broker_restart_loses_no_record_that_fits_the_buffer() {
    let frames = 250;
    let outcome = publish_across_a_restart(frames, 1000, Duration::from_millis(1500));
    assert_eq!((outcome.published, outcome.dropped), (frames, 0));
    assert_eq!(outcome.received, (0..frames).collect::<BTreeSet<u64>>());
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains("No connection to the MQTT broker")),
        "{:?}",
        outcome.warnings
    );
}

/// With a buffer smaller than the outage, records are dropped, and every record is either
/// published (and received) or counted as dropped.
#[test]
fn records_beyond_the_buffer_are_counted_as_dropped() {
    let frames = 250;
    let outcome = publish_across_a_restart(frames, 20, Duration::from_millis(1500));
    assert!(
        outcome.dropped > 0,
        "1.5 s at 50 fps is more than 20 records"
    );
    assert_eq!(outcome.published + outcome.dropped, frames);
    assert!(
        outcome.received.len() as u64 >= outcome.published,
        "received {} of {} published",
        outcome.received.len(),
        outcome.published
    );
    assert!(outcome.received.iter().all(|&frame| frame < frames));
    assert!(
        outcome.warnings.iter().any(|w| w.contains("dropped")),
        "{:?}",
        outcome.warnings
    );
}

/// A TCP relay on 127.0.0.1 to `target` that holds every chunk `delay` before passing it on,
/// as a far broker's round trip does; returns its port. It runs until the test process ends.
fn slow_link(target: u16, delay: Duration) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let mut chunk = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = std::io::Read::read(&mut from, &mut chunk) {
                        std::thread::sleep(delay);
                        if std::io::Write::write_all(&mut to, &chunk[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            };
            pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
            pipe(server, client);
        }
    });
    port
}

/// Over a link with 60 ms each way (a broker across a WAN), the connection is made and every
/// record is published: connecting and writing take as long as they take.
#[test]
fn a_far_broker_gets_every_record() {
    let broker = Broker::start();
    let port = slow_link(broker.port, Duration::from_millis(60));
    let (_tmp, bundle) = cut::valid_dir([0.5, 0.5]);
    let desc = format!(
        "{} ! earlyexit model=\"{}\" audit=0 ! earlyexitpublish name=publish \
         broker=127.0.0.1:{port} drain-timeout=30000 ! fakesink",
        source(50, true),
        bundle.display(),
    );
    let pipeline = playing(&desc);
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS within a minute");
    assert!(matches!(message.view(), gst::MessageView::Eos(_)));
    let published = counts(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(published, (50, 0));
}

/// With no broker at all and a long drain timeout, stopping the pipeline after EOS does not
/// wait for the timeout: what was left is counted as dropped.
#[test]
fn stopping_does_not_wait_for_an_absent_broker() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let desc = format!(
        "{} ! earlyexitpublish name=publish broker=127.0.0.1:{closed} drain-timeout=120000 \
         ! fakesink",
        source(10, false)
    );
    let pipeline = playing(&desc);
    // The streaming thread now waits at EOS for a broker that never comes.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    let took = started.elapsed();
    assert_eq!(counts(&pipeline).1, 10);
    assert!(took < Duration::from_secs(20), "stopping took {took:?}");
}
