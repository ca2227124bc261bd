//! The `earlyexitpublish` element: frames pass through untouched, and each one's
//! `EarlyExitMeta`s leave the pipeline as one JSON record: to a file or standard output, as
//! JSON lines, and to an MQTT broker.
//!
//! The outputs open in `start()` (READY → PAUSED), so a file that cannot be written or a broker
//! address that cannot be read is an ERROR there. A broker that cannot be reached is not: the
//! element keeps trying, buffers `max-buffered` records meanwhile, counts what it drops, and
//! says so on the bus. At EOS it waits up to `drain-timeout` for the broker to take what is
//! still buffered.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use super::mqtt::{self, Broker, Counts, MqttSettings, Publisher, Sent, Status};
use super::record::Record;
use crate::lock;
use crate::meta::EarlyExitInfo;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "earlyexitpublish",
        gst::DebugColorFlags::empty(),
        Some("Publishes each frame's early-exit results"),
    )
});

const DEFAULT_TOPIC: &str = "earlyexit";
const DEFAULT_QOS: u32 = 1;
const DEFAULT_MAX_BUFFERED: u32 = 1000;
const DEFAULT_DRAIN_TIMEOUT_MS: u32 = 5000;
const MAX_DRAIN_TIMEOUT_MS: u32 = 600_000;
/// `location`'s name for standard output.
const STDOUT: &str = "-";

#[derive(Debug, Clone)]
struct Settings {
    location: Option<String>,
    broker: Option<String>,
    topic: String,
    client_id: Option<String>,
    qos: u32,
    max_buffered: u32,
    drain_timeout_ms: u32,
    stream: Option<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            location: None,
            broker: None,
            topic: DEFAULT_TOPIC.into(),
            client_id: None,
            qos: DEFAULT_QOS,
            max_buffered: DEFAULT_MAX_BUFFERED,
            drain_timeout_ms: DEFAULT_DRAIN_TIMEOUT_MS,
            stream: None,
        }
    }
}

impl Settings {
    /// Where JSON lines go: `location`, or standard output when neither it nor a broker is set.
    fn lines_location(&self) -> Option<&str> {
        match (&self.location, &self.broker) {
            (Some(location), _) => Some(location.as_str()),
            (None, None) => Some(STDOUT),
            (None, Some(_)) => None,
        }
    }
}

/// Everything that lives from `start()` to `stop()`.
struct State {
    lines: Option<Lines>,
    mqtt: Option<Publisher>,
    /// The next frame's number.
    frames: u64,
    /// The stream's name in records: the `stream` property, else the STREAM_START id.
    stream: String,
    /// Whether `stream` was set by the user, so that STREAM_START does not replace it.
    stream_named: bool,
    /// Whether the bus has heard of a record too large to publish: once per start.
    told_too_large: bool,
}

/// The JSON-lines output and the name it goes by in errors.
struct Lines {
    out: Box<dyn Write + Send>,
    name: String,
}

#[derive(Default)]
pub struct EarlyExitPublish {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// The MQTT counts, kept past `stop()` so the properties still read them.
    counts: Mutex<Option<Counts>>,
    /// Set by a flush or a stop: the wait at EOS for the broker ends at once.
    unblock: AtomicBool,
}

impl EarlyExitPublish {
    fn open_lines(location: &str) -> Result<Lines, gst::ErrorMessage> {
        if location == STDOUT {
            return Ok(Lines {
                out: Box::new(std::io::stdout()),
                name: "standard output".into(),
            });
        }
        let file = std::fs::File::create(location).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenWrite,
                (
                    "Could not open '{}' (property 'location') for writing: {}",
                    location,
                    e
                )
            )
        })?;
        Ok(Lines {
            out: Box::new(std::io::BufWriter::new(file)),
            name: format!("'{location}'"),
        })
    }

    fn open_mqtt(&self, settings: &Settings, broker: &str) -> Result<Publisher, gst::ErrorMessage> {
        let broker: Broker = broker.parse().map_err(|e| {
            gst::error_msg!(gst::ResourceError::Settings, ("Property 'broker': {}", e))
        })?;
        mqtt::check_topic(&settings.topic).map_err(|e| {
            gst::error_msg!(gst::ResourceError::Settings, ("Property 'topic': {}", e))
        })?;
        let qos = rumqttc::qos(u8::try_from(settings.qos).unwrap_or(u8::MAX)).map_err(|_| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("Property 'mqtt-qos' must be 0, 1 or 2")
            )
        })?;
        let client_id = settings.client_id.clone().unwrap_or_else(|| {
            format!(
                "earlyexitpublish-{}-{}",
                std::process::id(),
                self.obj().name()
            )
        });
        let mqtt = MqttSettings {
            broker: broker.clone(),
            topic: settings.topic.clone(),
            client_id,
            qos,
            max_buffered: usize::try_from(settings.max_buffered).unwrap_or(usize::MAX),
        };
        let element = self.obj().downgrade();
        let max_buffered = settings.max_buffered;
        Publisher::start(mqtt, move |status| {
            let Some(element) = element.upgrade() else {
                return;
            };
            match status {
                Status::Connected => {
                    gst::info!(
                        CAT,
                        obj = element,
                        "Connected to the MQTT broker {}",
                        broker
                    );
                    gst::element_info!(
                        element,
                        gst::ResourceError::Write,
                        ("Connected to the MQTT broker {}", broker)
                    );
                }
                Status::Lost(why) => gst::element_warning!(
                    element,
                    gst::ResourceError::Write,
                    (
                        "No connection to the MQTT broker {} ({}): reconnecting, with up to {} \
                         records buffered meanwhile",
                        broker,
                        why,
                        max_buffered
                    )
                ),
            }
        })
        .map_err(|e| {
            gst::error_msg!(
                gst::LibraryError::Init,
                ["Could not start the MQTT thread: {}", e]
            )
        })
    }

    /// Writes and publishes one frame's record.
    fn publish(&self, state: &mut State, buf: &gst::BufferRef) -> Result<(), gst::ErrorMessage> {
        let results = EarlyExitInfo::all_from_buffer(buf);
        let mut line = Record {
            stream: &state.stream,
            frame: state.frames,
            pts_ns: buf.pts().map(gst::ClockTime::nseconds),
            results: &results,
        }
        .to_line();
        state.frames += 1;
        if let Some(lines) = &mut state.lines {
            // Flushed per record, so that a reader following the file sees each frame as it
            // passes.
            lines
                .out
                .write_all(&line)
                .and_then(|()| lines.out.flush())
                .map_err(|e| {
                    gst::error_msg!(
                        gst::ResourceError::Write,
                        ("Could not write a record to {}: {}", lines.name, e)
                    )
                })?;
        }
        if let Some(mqtt) = &state.mqtt {
            // Without the newline: one message is one record. The line is not needed after.
            line.pop();
            let bytes = line.len();
            let sent = mqtt.send(line);
            if sent == Sent::TooLarge && !state.told_too_large {
                state.told_too_large = true;
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    (
                        "A record of {} bytes is larger than the {} an MQTT message may hold: \
                         dropped, and counted in 'dropped', as others will be",
                        bytes,
                        mqtt::MAX_RECORD
                    )
                );
            }
        }
        Ok(())
    }

    /// At EOS: waits for the broker to take what is buffered, and says what was dropped.
    fn drain(&self) {
        let timeout = Duration::from_millis(u64::from(lock(&self.settings).drain_timeout_ms));
        let state = lock(&self.state);
        let Some(mqtt) = state.as_ref().and_then(|s| s.mqtt.as_ref()) else {
            return;
        };
        let drained = mqtt.drain(timeout, || self.unblock.load(Ordering::Relaxed));
        gst::debug!(
            CAT,
            imp = self,
            "At EOS: {} published, {} dropped, {} still buffered",
            mqtt.published(),
            mqtt.dropped(),
            mqtt.outstanding()
        );
        if !drained || mqtt.dropped() > 0 {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                (
                    "At end of stream, {} records were published to the MQTT broker, {} dropped, \
                     and {} still waited for it after {:?} (they are dropped when the element \
                     stops)",
                    mqtt.published(),
                    mqtt.dropped(),
                    mqtt.outstanding(),
                    timeout
                )
            );
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for EarlyExitPublish {
    const NAME: &'static str = "GstEarlyExitPublish";
    type Type = super::EarlyExitPublish;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for EarlyExitPublish {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb(
                        "File to write one JSON record per frame to, a line each (created or \
                         truncated); '-' for standard output. Unset: standard output, unless \
                         'broker' is set",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("broker")
                    .nick("MQTT broker")
                    .blurb(
                        "MQTT broker to publish each frame's record to, one message each: \
                         host, host:port or mqtt://host:port (port 1883 by default). Unset: no \
                         MQTT",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("topic")
                    .nick("MQTT topic")
                    .blurb("MQTT topic the records are published under (no wildcards)")
                    .default_value(Some(DEFAULT_TOPIC))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("client-id")
                    .nick("MQTT client id")
                    .blurb(
                        "MQTT client identifier. Unset: earlyexitpublish-<process id>-<element \
                         name>",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("mqtt-qos")
                    .nick("MQTT QoS")
                    .blurb(
                        "MQTT quality of service: 0 (at most once: a record counts as published \
                         once handed to the connection), 1 (at least once: once the broker \
                         acknowledged it) or 2 (as 1, once the broker completed it; exactly once \
                         within a connection, and a record may arrive twice across a reconnect)",
                    )
                    .maximum(2)
                    .default_value(DEFAULT_QOS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-buffered")
                    .nick("Records buffered")
                    .blurb(
                        "Records kept while the broker is slow or away (besides 100 in flight); \
                         further records are dropped and counted in 'dropped'",
                    )
                    .minimum(1)
                    .default_value(DEFAULT_MAX_BUFFERED)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("drain-timeout")
                    .nick("Drain timeout")
                    .blurb(
                        "At end of stream, milliseconds to wait for the broker to take the \
                         records still buffered before EOS goes on",
                    )
                    .maximum(MAX_DRAIN_TIMEOUT_MS)
                    .default_value(DEFAULT_DRAIN_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("stream")
                    .nick("Stream name")
                    .blurb(
                        "The 'stream' field of every record, such as a camera's name. Unset: \
                         the stream id of the STREAM_START event",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("published")
                    .nick("Published")
                    .blurb(
                        "Records the MQTT broker took since the element last started (see \
                         'mqtt-qos')",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("dropped")
                    .nick("Dropped")
                    .blurb(
                        "Records not published to the MQTT broker since the element last \
                         started: beyond 'max-buffered' while it was away, or still waiting \
                         when the element stopped",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        let text = || value.get::<Option<String>>().ok().flatten();
        let number = || value.get::<u32>().unwrap_or_default();
        match pspec.name() {
            "location" => settings.location = text(),
            "broker" => settings.broker = text(),
            "topic" => settings.topic = text().unwrap_or_else(|| DEFAULT_TOPIC.into()),
            "client-id" => settings.client_id = text(),
            "mqtt-qos" => settings.qos = number(),
            "max-buffered" => settings.max_buffered = number(),
            "drain-timeout" => settings.drain_timeout_ms = number(),
            "stream" => settings.stream = text(),
            other => gst::warning!(CAT, imp = self, "No writable property '{}'", other),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "location" => settings.location.to_value(),
            "broker" => settings.broker.to_value(),
            "topic" => settings.topic.to_value(),
            "client-id" => settings.client_id.to_value(),
            "mqtt-qos" => settings.qos.to_value(),
            "max-buffered" => settings.max_buffered.to_value(),
            "drain-timeout" => settings.drain_timeout_ms.to_value(),
            "stream" => settings.stream.to_value(),
            "published" => lock(&self.counts)
                .as_ref()
                .map_or(0, Counts::published)
                .to_value(),
            "dropped" => lock(&self.counts)
                .as_ref()
                .map_or(0, Counts::dropped)
                .to_value(),
            other => {
                gst::warning!(CAT, imp = self, "No property '{}'", other);
                pspec.default_value().clone()
            }
        }
    }
}

impl GstObjectImpl for EarlyExitPublish {}

impl ElementImpl for EarlyExitPublish {
    /// Going down to READY ends a wait at EOS at once, so that the state change is not held
    /// up by an absent broker.
    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::PausedToReady {
            self.unblock.store(true, Ordering::Relaxed);
        }
        self.parent_change_state(transition)
    }

    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Early-exit results publisher",
                "Filter/Metadata",
                "Publishes each frame's EarlyExitMeta as one JSON record (stream, frame, pts-ns \
                 and the results of every earlyexit element) to a file, standard output or an \
                 MQTT broker; frames pass through unchanged",
                "earlyexit developers <earlyexit@example.invalid>",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::new_any();
            let template = |name, direction| {
                gst::PadTemplate::new(name, direction, gst::PadPresence::Always, &caps)
                    .expect("valid pad template")
            };
            vec![
                template("src", gst::PadDirection::Src),
                template("sink", gst::PadDirection::Sink),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for EarlyExitPublish {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    // The element only reads buffers: they pass as they are, read-only ones included.
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let lines = settings
            .lines_location()
            .map(EarlyExitPublish::open_lines)
            .transpose()?;
        let mqtt = settings
            .broker
            .as_deref()
            .map(|broker| self.open_mqtt(&settings, broker))
            .transpose()?;
        *lock(&self.counts) = mqtt.as_ref().map(Publisher::counts);
        self.unblock.store(false, Ordering::Relaxed);
        *lock(&self.state) = Some(State {
            lines,
            mqtt,
            frames: 0,
            stream: settings.stream.clone().unwrap_or_default(),
            stream_named: settings.stream.is_some(),
            told_too_large: false,
        });
        gst::info!(CAT, imp = self, "Started");
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Dropping the publisher stops its thread and counts what it still held as dropped.
        let state = lock(&self.state).take();
        if let Some(mut lines) = state.and_then(|s| s.lines) {
            let _ = lines.out.flush();
        }
        gst::info!(CAT, imp = self, "Stopped");
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::StreamStart(start) => {
                if let Some(state) = lock(&self.state).as_mut().filter(|s| !s.stream_named) {
                    state.stream = start.stream_id().to_owned();
                }
            }
            gst::EventView::Eos(_) => self.drain(),
            gst::EventView::FlushStart(_) => self.unblock.store(true, Ordering::Relaxed),
            gst::EventView::FlushStop(_) => self.unblock.store(false, Ordering::Relaxed),
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn transform_ip_passthrough(
        &self,
        buf: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut state = lock(&self.state);
        let Some(state) = state.as_mut() else {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ["Not started"]);
            return Err(gst::FlowError::Flushing);
        };
        self.publish(state, buf).map_err(|message| {
            self.post_error_message(message);
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
