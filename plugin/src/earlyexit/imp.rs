//! The `earlyexit` video filter: classifies every frame with an exit bundle, in place, and
//! attaches the decision as `EarlyExitMeta`.
//!
//! The bundle is read and every ONNX session is created in `start()` (READY → PAUSED), so any
//! fault in the bundle surfaces there as an ERROR message instead of on the first frame.
//!
//! A format-2 gate may read the class answered for the previous frame. That answer is forgotten
//! wherever the frames stop being one continuous stream: FLUSH_STOP, SEGMENT (a seek),
//! STREAM_START (new footage), GAP (no frames for a while) and DISCONT buffers; start() and
//! stop() make a fresh classifier.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use earlyexit::audit::{self, AuditEvent, AuditSettings};
use earlyexit::{Classifier, Decision, Frame, PixelFormat, SessionOptions};

use super::Mode;
use crate::meta::EarlyExitInfo;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "earlyexit",
        gst::DebugColorFlags::empty(),
        Some("Early-exit neural-network classifier"),
    )
});

/// A poisoned lock only means another thread panicked mid-update; the data is still usable and
/// the element must not panic in turn.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Default)]
struct Settings {
    model: Option<String>,
    mode: Mode,
    threads: u32,
    post_messages: bool,
    audit: AuditSettings,
}

/// Everything that lives from `start()` to `stop()`.
struct State {
    classifier: Classifier,
    /// Frames classified since start; the next frame's number.
    frames: u64,
    post_messages: bool,
    /// The negotiated frame layout and its pixel format (from `set_info`), to map and read
    /// each buffer by.
    negotiated: Option<(gst_video::VideoInfo, PixelFormat)>,
    /// This element's name and the bundle it runs, for each frame's meta.
    element: String,
    bundle: String,
    /// Whether the bus has been told that a model gave non-finite values: once per start.
    told_non_finite: bool,
}

/// Counts for the `stats` property. Kept after `stop()` so that they can be read at EOS or in
/// NULL; reset by `start()`.
#[derive(Debug, Default)]
struct Stats {
    frames: u64,
    exits: Vec<u64>,
    reused: u64,
    audited: u64,
    audit_agreed: u64,
    fallbacks: u64,
    /// Frames with no finite answer.
    non_finite: u64,
    /// The audit's window after the last audited frame: agreeing and audited frames. Its
    /// bounds are worked out when `stats` is read, not on every frame.
    audit_window: Option<(usize, usize)>,
    cost_sum: f64,
    cost_frames: u64,
    inference_ns_sum: u128,
}

impl Stats {
    fn add(&mut self, decision: &Decision) {
        if self.exits.len() < decision.stages {
            self.exits.resize(decision.stages, 0);
        }
        if decision.reused.is_some() {
            self.reused += 1;
        } else if let Some(count) = self.exits.get_mut(decision.stage) {
            *count += 1;
        }
        self.fallbacks += u64::from(decision.fallback);
        self.non_finite += u64::from(decision.unanswered);
        self.frames += 1;
        if let Some(cost) = decision.cost {
            self.cost_sum += cost;
            self.cost_frames += 1;
        }
        self.inference_ns_sum += u128::from(decision.inference_ns);
    }

    fn structure(&self) -> gst::Structure {
        let mean_ns = match self.frames {
            0 => 0,
            n => u64::try_from(self.inference_ns_sum / u128::from(n)).unwrap_or(u64::MAX),
        };
        let mut s = gst::Structure::builder("earlyexit-stats")
            .field("frames", self.frames)
            .field("exits", gst::Array::new(self.exits.iter().copied()))
            .field("reused", self.reused)
            .field("audited", self.audited)
            .field("fallback-frames", self.fallbacks)
            .field("non-finite-frames", self.non_finite)
            .field("mean-inference-ns", mean_ns)
            .build();
        // Cost is known only when the bundle gives every MACs count, hence for every frame.
        if self.frames > 0 && self.cost_frames == self.frames {
            s.set("mean-cost", self.cost_sum / self.frames as f64);
        }
        if self.audited > 0 {
            s.set(
                "audit-agreement",
                self.audit_agreed as f64 / self.audited as f64,
            );
        }
        if let Some((lower, upper)) = self.audit_window.map(|(k, n)| audit::bounds(k, n)) {
            s.set("audit-lower-bound", lower);
            s.set("audit-upper-bound", upper);
        }
        s
    }
}

#[derive(Default)]
pub struct EarlyExit {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    stats: Mutex<Stats>,
    /// From start() to stop(): settings are read and may no longer change. A flag of its own,
    /// because the streaming thread holds `state` for a whole inference.
    running: AtomicBool,
}

impl EarlyExit {
    /// Reads the bundle and opens every session; the error is what the ERROR message says.
    fn open(&self, settings: &Settings) -> Result<Classifier, gst::ErrorMessage> {
        let Some(model) = settings.model.as_deref().filter(|m| !m.is_empty()) else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ("No model set: set the 'model' property to a bundle's exits.yaml or its folder")
            ));
        };
        let (bundle, warnings) =
            earlyexit::bundle::read(std::path::Path::new(model)).map_err(|err| {
                // The reader reports an unreadable file under the key "model".
                let code = if err.key == "model" {
                    gst::ResourceError::OpenRead
                } else {
                    gst::ResourceError::Settings
                };
                gst::error_msg!(code, ("{}", err))
            })?;
        // On the bus, not only in the debug log: an unknown key is most often a misspelt one.
        for warning in warnings {
            gst::element_imp_warning!(self, gst::ResourceError::Settings, ("{}", warning));
        }
        gst::info!(
            CAT,
            imp = self,
            "Loading {} ({} stages, mode {:?}, threads {})",
            bundle.file.display(),
            bundle.stages.len(),
            settings.mode,
            settings.threads
        );
        let options = SessionOptions {
            threads: settings.threads as usize,
        };
        let mut classifier = Classifier::open(&bundle, settings.mode.into(), options)
            .map_err(|err| gst::error_msg!(gst::LibraryError::Init, ("{}", err)))?;
        classifier.set_audit(settings.audit);
        Ok(classifier)
    }

    /// Tells the application what the audit concluded: a WARNING when the bundle does not
    /// keep its promise here, an INFO when it is trusted (again); both name the figures.
    fn report_audit(&self, event: AuditEvent, frame: u64, fallback: bool) {
        match event {
            AuditEvent::Broken {
                agreement,
                upper,
                promise,
            } => gst::element_imp_warning!(
                self,
                gst::StreamError::Failed,
                (
                    "Frame {}: the bundle does not keep its promise here: audited agreement with the full backbone {:.1}% (at most {:.1}% with 95% confidence) is below the promised {:.1}%; {}",
                    frame,
                    100.0 * agreement,
                    100.0 * upper,
                    100.0 * promise,
                    if fallback {
                        "answering at full depth until the audit recovers"
                    } else {
                        "audit-fallback is off, so early answers continue"
                    }
                )
            ),
            AuditEvent::Trusted {
                agreement,
                lower,
                promise,
            } => gst::element_imp_info!(
                self,
                gst::StreamError::Failed,
                (
                    "Frame {}: the audit trusts the bundle here: audited agreement {:.1}% (at least {:.1}% with 95% confidence) keeps the promised {:.1}%",
                    frame,
                    100.0 * agreement,
                    100.0 * lower,
                    100.0 * promise
                )
            ),
        }
    }

    /// Forgets the previous frame's answer, which a format-2 gate may read.
    fn reset_stream(&self, why: &str) {
        if let Some(state) = lock(&self.state).as_mut() {
            state.classifier.reset_stream();
            gst::debug!(CAT, imp = self, "Stream reset: {}", why);
        }
    }

    /// Builds the core's view of a mapped frame and classifies it.
    fn classify(
        classifier: &mut Classifier,
        frame: &gst_video::VideoFrameRef<&gst::BufferRef>,
        format: PixelFormat,
    ) -> Result<Decision, String> {
        let stride = frame
            .plane_stride()
            .first()
            .and_then(|&s| usize::try_from(s).ok())
            .ok_or("the frame has no usable row stride")?;
        let data = frame.plane_data(0).map_err(|e| e.to_string())?;
        let input = Frame::new(format, frame.width(), frame.height(), stride, data)
            .map_err(|e| e.to_string())?;
        // A gap in the stream: the previous frame's answer says nothing about this one.
        if frame.buffer().flags().contains(gst::BufferFlags::DISCONT) {
            classifier.reset_stream();
        }
        classifier.classify(&input).map_err(|e| e.to_string())
    }

    /// Classifies the frame in `buf`, mapped for reading only, so that pixels shared with
    /// another branch are not copied. Returns the decision, its meta, the frame's number and
    /// whether to post it.
    fn decide(
        &self,
        buf: &gst::BufferRef,
    ) -> Result<(Decision, EarlyExitInfo, u64, bool), gst::FlowError> {
        let mut guard = lock(&self.state);
        let Some(state) = guard.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        let Some((video_info, format)) = &state.negotiated else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("A frame came before its caps")
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let number = state.frames;
        let fail = |what: &str, err: String| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Frame {}: cannot {}: {}", number, what, err)
            );
            gst::FlowError::Error
        };
        let mapped = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, video_info)
            .map_err(|e| fail("map for reading", e.to_string()))?;
        let decision = EarlyExit::classify(&mut state.classifier, &mapped, *format)
            .map_err(|e| fail("classify", e))?;
        let info = EarlyExitInfo::from_decision(
            &decision,
            state.classifier.label(decision.class_id),
            &state.element,
            &state.bundle,
        );
        if let Some(file) = &decision.non_finite
            && !state.told_non_finite
        {
            state.told_non_finite = true;
            gst::element_imp_warning!(
                self,
                gst::StreamError::Decode,
                (
                    "Frame {}: {} gave non-finite values (NaN or infinity); {}. Such frames are counted in stats (non-finite-frames) and marked in EarlyExitMeta (non-finite); this is said once",
                    number,
                    file.display(),
                    if decision.unanswered {
                        "the frame has no answer: class-id 0 at confidence 0"
                    } else {
                        "no frame leaves at that exit"
                    }
                )
            );
        }
        state.frames += 1;
        let mut stats = lock(&self.stats);
        stats.add(&decision);
        if let Some(a) = state.classifier.auditor() {
            (stats.audited, stats.audit_agreed) = (a.audited, a.agreed);
            stats.audit_window = (a.audited > 0).then(|| a.window());
        }
        Ok((decision, info, number, state.post_messages))
    }

    /// Posts the frame's decision on the bus as an `earlyexit` element message.
    fn post(&self, info: &EarlyExitInfo, frame: u64, pts: Option<gst::ClockTime>) {
        let mut s = gst::Structure::new_empty("earlyexit");
        info.write(&mut s);
        s.set("frame", frame);
        if let Some(pts) = pts {
            s.set("pts", pts.nseconds());
        }
        let obj = self.obj();
        let message = gst::message::Element::builder(s).src(&*obj).build();
        // Fails only without a bus (no parent), where nobody could read it anyway.
        let _ = obj.post_message(message);
    }
}

#[glib::object_subclass]
impl ObjectSubclass for EarlyExit {
    const NAME: &'static str = "GstEarlyExit";
    type Type = super::EarlyExit;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for EarlyExit {
    fn constructed(&self) {
        self.parent_constructed();
        // The contract is a decision on every frame; QoS would drop late frames before they
        // are classified.
        self.obj().set_qos(false);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb(
                        "Required. Path of an exit bundle's exits.yaml (format earlyexit/1, \
                         earlyexit/2 with learned exit gates, or earlyexit/3 with the stream \
                         rule), or of the folder that holds it. Read when the element starts \
                         (READY to PAUSED); starting fails if it is unset, or with an error \
                         naming the file and key if the bundle is invalid. A gate may read the \
                         previous frame's answer, and the stream rule may reuse it while the \
                         picture has not changed; both forget it on a flush, a new segment or \
                         stream, a gap event and a DISCONT buffer.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder::<Mode>("mode")
                    .nick("Mode")
                    .blurb(
                        "early-exit runs the exit heads and lets a frame leave at the first \
                         confident stage; full runs every segment and no head (the baseline \
                         backbone).",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb(
                        "ONNX Runtime intra-op threads for each segment; 0 lets ONNX Runtime \
                         choose. Exit heads always run on one thread: they are too small to gain \
                         from more. On few cores, a small number leaves room for the decoder.",
                    )
                    .minimum(0)
                    .maximum(1024)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb(
                        "Post one element message named 'earlyexit' per frame on the bus, with \
                         the EarlyExitMeta fields plus 'frame' (count since start) and 'pts' \
                         (nanoseconds; absent when the buffer has no timestamp).",
                    )
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("audit")
                    .nick("Audit")
                    .blurb(
                        "Share of frames also run at full depth, to check that the bundle keeps \
                         its promise on this camera (0 turns the audit off). The audit keeps \
                         exact 95% bounds on the agreement with the full backbone over its last \
                         200 audited frames. It starts by auditing every frame, answering at \
                         full depth, until the lower bound reaches the promise; afterwards, when \
                         the upper bound falls below the promise, it posts a WARNING and audits \
                         every frame again until the lower bound is back.",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(AuditSettings::default().rate)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("audit-seed")
                    .nick("Audit seed")
                    .blurb(
                        "Which frames the audit samples: a hash of this seed and the frame's \
                         number since start, as `earlyexit-search evaluate --audit-seed` picks \
                         them.",
                    )
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("audit-fallback")
                    .nick("Audit fallback")
                    .blurb(
                        "While the audit does not trust the bundle, answer every frame at full \
                         depth (the backbone's answer, at its cost). Off: the bundle's answers \
                         continue, audited and reported all the same.",
                    )
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Counts since the element started, as an 'earlyexit-stats' structure: \
                         frames (guint64), exits (array of guint64, frames that left at each \
                         stage), reused (guint64, frames that reused the last answer under the \
                         stream rule), audited and fallback-frames (guint64: frames the audit \
                         also ran at full depth, and frames answered at full depth because it \
                         did not trust the bundle), non-finite-frames (guint64, frames the \
                         bundle's models gave no finite answer for), audit-agreement (gdouble, over every audited \
                         frame), audit-lower-bound and audit-upper-bound (gdouble, over the \
                         audit's window), mean-cost (gdouble, when the bundle gives MACs) and \
                         mean-inference-ns (guint64).",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        // Settings are applied at start(); changing them while running would not take effect,
        // so refuse rather than silently ignore.
        if self.running.load(Ordering::SeqCst) {
            gst::warning!(
                CAT,
                imp = self,
                "Property '{}' can only be changed in the NULL or READY state",
                pspec.name()
            );
            return;
        }
        let mut settings = lock(&self.settings);
        match pspec.name() {
            "model" => settings.model = value.get().unwrap_or_default(),
            "mode" => settings.mode = value.get().unwrap_or_default(),
            "threads" => settings.threads = value.get().unwrap_or_default(),
            "post-messages" => settings.post_messages = value.get().unwrap_or_default(),
            "audit" => settings.audit.rate = value.get().unwrap_or_default(),
            "audit-seed" => settings.audit.seed = value.get().unwrap_or_default(),
            "audit-fallback" => settings.audit.fallback = value.get().unwrap_or(true),
            name => gst::warning!(CAT, imp = self, "No writable property '{}'", name),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "model" => settings.model.to_value(),
            "mode" => settings.mode.to_value(),
            "threads" => settings.threads.to_value(),
            "post-messages" => settings.post_messages.to_value(),
            "audit" => settings.audit.rate.to_value(),
            "audit-seed" => settings.audit.seed.to_value(),
            "audit-fallback" => settings.audit.fallback.to_value(),
            "stats" => lock(&self.stats).structure().to_value(),
            // GObject only asks for properties listed above.
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }
}

impl GstObjectImpl for EarlyExit {}

impl ElementImpl for EarlyExit {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Early-exit classifier",
                "Filter/Analyzer/Video",
                "Classifies each frame with an early-exit network (an exit bundle run by ONNX \
                 Runtime) and attaches the decision as EarlyExitMeta; frames pass unchanged",
                "earlyexit developers <earlyexit@example.invalid>",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // The same caps string as the search's appsink, so negotiation picks the same format.
            let caps = earlyexit::frame::raw_caps_string()
                .parse::<gst::Caps>()
                .expect("the core's caps string parses");
            let src = gst::PadTemplate::new(
                "src",
                gst::PadDirection::Src,
                gst::PadPresence::Always,
                &caps,
            )
            .expect("valid src template");
            let sink = gst::PadTemplate::new(
                "sink",
                gst::PadDirection::Sink,
                gst::PadPresence::Always,
                &caps,
            )
            .expect("valid sink template");
            vec![src, sink]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for EarlyExit {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    // Every buffer gets meta, so the element must never pass read-only buffers through.
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        // Before the settings are read, so that no change slips in while the bundle loads.
        self.running.store(true, Ordering::SeqCst);
        let settings = lock(&self.settings).clone();
        let classifier = self.open(&settings).inspect_err(|err| {
            self.running.store(false, Ordering::SeqCst);
            // Also logged, for hosts without a bus (such as gst-check's harness).
            gst::error!(CAT, imp = self, "Cannot start: {}", err);
        })?;
        *lock(&self.stats) = Stats {
            exits: vec![0; classifier.stages()],
            ..Stats::default()
        };
        *lock(&self.state) = Some(State {
            classifier,
            frames: 0,
            post_messages: settings.post_messages,
            negotiated: None,
            element: self.obj().name().to_string(),
            bundle: settings.model.clone().unwrap_or_default(),
            told_non_finite: false,
        });
        gst::info!(CAT, imp = self, "Started");
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = None;
        self.running.store(false, Ordering::SeqCst);
        gst::info!(CAT, imp = self, "Stopped");
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::FlushStop(_) => self.reset_stream("flush"),
            gst::EventView::Segment(_) => self.reset_stream("new segment"),
            gst::EventView::StreamStart(_) => self.reset_stream("new stream"),
            // The next buffer after a gap need not be flagged DISCONT.
            gst::EventView::Gap(_) => self.reset_stream("gap"),
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (decision, info, frame, post) = self.decide(buf)?;
        if let Err(err) = info.attach(buf) {
            gst::element_imp_error!(
                self,
                gst::CoreError::Failed,
                ("Cannot attach EarlyExitMeta: {}", err)
            );
            return Err(gst::FlowError::Error);
        }
        if let Some(event) = decision.audit {
            let fallback = lock(&self.settings).audit.fallback;
            self.report_audit(event, frame, fallback);
        }
        gst::trace!(CAT, imp = self, "Frame {}: {:?}", frame, info);
        if post {
            self.post(&info, frame, buf.pts());
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

impl VideoFilterImpl for EarlyExit {
    fn set_info(
        &self,
        incaps: &gst::Caps,
        in_info: &gst_video::VideoInfo,
        outcaps: &gst::Caps,
        out_info: &gst_video::VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        // Once per caps, not per frame; the caps template admits only formats the core reads.
        let format = PixelFormat::from_name(in_info.format().to_str()).ok_or_else(|| {
            gst::loggable_error!(CAT, "unsupported video format {}", in_info.format())
        })?;
        if let Some(state) = lock(&self.state).as_mut() {
            state.negotiated = Some((in_info.clone(), format));
        }
        self.parent_set_info(incaps, in_info, outcaps, out_info)
    }
}
