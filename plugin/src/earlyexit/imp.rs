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
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use earlyexit::audit::{self, AuditEvent, AuditSettings};
use earlyexit::{Classifier, Decision, Frame, Hurry, PixelFormat, SessionOptions};

use super::latency::Latency;
use super::{Mode, Overload};
use crate::lock;
use crate::meta::EarlyExitInfo;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "earlyexit",
        gst::DebugColorFlags::empty(),
        Some("Early-exit neural-network classifier"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    model: Option<String>,
    mode: Mode,
    threads: u32,
    post_messages: bool,
    audit: AuditSettings,
    overload: Overload,
    shared: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            model: None,
            mode: Mode::default(),
            threads: 0,
            post_messages: false,
            audit: AuditSettings::default(),
            overload: Overload::default(),
            shared: true,
        }
    }
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
    overload: Overload,
    /// Late frames answered in a hurry since the last that ran in full.
    hurried_in_a_row: u32,
}

/// Late frames answered in a row at most: the next runs in full however late, so that an
/// answer reused is never more than this many frames old.
const MAX_HURRIED: u32 = 10;

/// Why a bundle could not be opened.
#[derive(Debug)]
enum OpenError {
    NoModel,
    Bundle(earlyexit::bundle::BundleError),
    Load(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            OpenError::NoModel => f.write_str(
                "No model set: set the 'model' property to a bundle's exits.yaml or its folder",
            ),
            OpenError::Bundle(err) => write!(f, "{err}"),
            OpenError::Load(text) => f.write_str(text),
        }
    }
}

impl OpenError {
    fn to_message(&self) -> gst::ErrorMessage {
        match self {
            OpenError::NoModel => gst::error_msg!(gst::ResourceError::NotFound, ("{}", self)),
            // The reader reports an unreadable file under the key "model".
            OpenError::Bundle(err) if err.key == "model" => {
                gst::error_msg!(gst::ResourceError::OpenRead, ("{}", self))
            }
            OpenError::Bundle(_) => gst::error_msg!(gst::ResourceError::Settings, ("{}", self)),
            OpenError::Load(_) => gst::error_msg!(gst::LibraryError::Init, ("{}", self)),
        }
    }
}

/// The latency the element reports, from `start()` on; none before.
type SharedLatency = Mutex<Option<Latency>>;

/// What the element knows of the pipeline's timing, to tell when a frame comes too late.
#[derive(Debug, Default)]
struct Timing {
    /// From downstream's last QoS event: frames whose running time is before this are late.
    earliest: Option<gst::ClockTime>,
    /// From the LATENCY query: whether upstream is live, and its minimum latency.
    upstream: Option<(bool, gst::ClockTime)>,
    /// From the LATENCY event the sinks send up: a frame reaches them in time when it is there
    /// by its running time plus this.
    pipeline_latency: Option<gst::ClockTime>,
    /// A frame's duration by the caps' frame rate, for buffers that carry none.
    frame: Option<gst::ClockTime>,
}

/// A bundle loaded while the element runs, waiting for the next frame.
struct Swap {
    classifier: Classifier,
    model: String,
    worst_ns: u64,
}

/// The bundle swaps asked for while running: the latest one's number, and what it loaded.
#[derive(Default)]
struct Swaps {
    generation: u64,
    pending: Option<Swap>,
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
    /// Late frames answered with the last answer, and at the first exit.
    hurried_reuse: u64,
    hurried_shallowest: u64,
    /// Late frames dropped, with `overload=drop`.
    dropped: u64,
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
        match decision.hurried {
            Some(Hurry::Reuse) => self.hurried_reuse += 1,
            Some(Hurry::Shallowest) => self.hurried_shallowest += 1,
            None => {}
        }
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
            .field("degraded-reused", self.hurried_reuse)
            .field("degraded-shallowest", self.hurried_shallowest)
            .field("dropped", self.dropped)
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
    /// Apart from `state`, which the streaming thread holds for a whole inference, so that a
    /// LATENCY query is answered at once.
    latency: SharedLatency,
    swap: Mutex<Swaps>,
    /// What tells a late frame: downstream's QoS, upstream's latency and the pipeline's.
    timing: Mutex<Timing>,
    /// From start() to stop(): settings are read and may no longer change. A flag of its own,
    /// because the streaming thread holds `state` for a whole inference.
    running: AtomicBool,
}

impl EarlyExit {
    /// Reads the bundle and opens every session; the error is what the ERROR message says.
    fn open(&self, settings: &Settings) -> Result<Classifier, OpenError> {
        let Some(model) = settings.model.as_deref().filter(|m| !m.is_empty()) else {
            return Err(OpenError::NoModel);
        };
        let (bundle, warnings) =
            earlyexit::bundle::read(std::path::Path::new(model)).map_err(OpenError::Bundle)?;
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
            shared: settings.shared,
        };
        let mut classifier = Classifier::open(&bundle, settings.mode.into(), options)
            .map_err(|err| OpenError::Load(err.to_string()))?;
        classifier.set_audit(settings.audit);
        Ok(classifier)
    }

    /// Loads `model` on a thread of its own while the current bundle goes on; the streaming
    /// thread switches to it between two frames ([`Self::take_swap`]). Only the latest of
    /// several quick changes is installed. A bundle that cannot load leaves the current one
    /// running, with a WARNING.
    fn swap_model(&self, model: Option<String>) {
        let generation = {
            let mut swap = lock(&self.swap);
            swap.generation += 1;
            swap.pending = None;
            swap.generation
        };
        let mut settings = lock(&self.settings).clone();
        let old = settings.model.replace(model.clone().unwrap_or_default());
        let obj = self.obj().clone();
        let spawned = std::thread::Builder::new()
            .name("earlyexit-swap".into())
            .spawn(move || {
                let imp = obj.imp();
                let loaded = imp.open(&settings).and_then(|mut classifier| {
                    let worst = classifier
                        .time_every_exit()
                        .map_err(|e| OpenError::Load(e.to_string()))?;
                    Ok((classifier, worst))
                });
                let mut swap = lock(&imp.swap);
                if swap.generation != generation {
                    return;
                }
                match loaded {
                    Ok((classifier, worst)) => {
                        lock(&imp.settings).model = settings.model.clone();
                        swap.pending = Some(Swap {
                            classifier,
                            model: settings.model.clone().unwrap_or_default(),
                            worst_ns: u64::try_from(worst.as_nanos()).unwrap_or(u64::MAX),
                        });
                    }
                    Err(err) => {
                        drop(swap);
                        gst::element_imp_warning!(
                            imp,
                            gst::ResourceError::Settings,
                            (
                                "Cannot switch to bundle {}: {}. The element goes on with {}",
                                settings.model.as_deref().unwrap_or("(none)"),
                                err,
                                old.as_deref().unwrap_or("(none)")
                            )
                        );
                    }
                }
            });
        if let Err(e) = spawned {
            gst::element_imp_warning!(
                self,
                gst::CoreError::Thread,
                ("Cannot start loading bundle {:?}: {}", model, e)
            );
        }
    }

    /// Installs a bundle that [`Self::swap_model`] loaded, between two frames: the new
    /// bundle's counts start afresh in `stats`, and the bus hears of it.
    fn take_swap(&self, state: &mut State) {
        let Some(swap) = lock(&self.swap).pending.take() else {
            return;
        };
        state.classifier = swap.classifier;
        state.bundle = swap.model.clone();
        state.told_non_finite = false;
        *lock(&self.stats) = Stats {
            exits: vec![0; state.classifier.stages()],
            ..Stats::default()
        };
        *lock(&self.latency) = Some(Latency::new(swap.worst_ns));
        gst::info!(
            CAT,
            imp = self,
            "Frame {}: now running {}",
            state.frames,
            swap.model
        );
        let obj = self.obj();
        let s = gst::Structure::builder("earlyexit-model")
            .field("model", swap.model.as_str())
            .field("frame", state.frames)
            .field("stages", state.classifier.stages() as u32)
            .build();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
        let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
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
        hurry: Option<Hurry>,
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
        match hurry {
            Some(hurry) => classifier.classify_in_a_hurry(&input, hurry),
            None => classifier.classify(&input),
        }
        .map_err(|e| e.to_string())
    }

    /// The running time of the frame in `buf`, by the current segment.
    fn running_time(&self, buf: &gst::BufferRef) -> Option<gst::ClockTime> {
        let pts = buf.pts()?;
        self.obj()
            .segment()
            .downcast_ref::<gst::format::Time>()?
            .to_running_time(pts)
    }

    /// Whether the frame in `buf` comes too late to run in full: downstream's QoS says frames
    /// before a time are late, or, behind a live source, it cannot reach the sinks within a frame
    /// of its running time plus the pipeline's latency (with no sink that syncs: it waited
    /// longer than upstream's and the element's own latency allow).
    fn late(&self, buf: &gst::BufferRef) -> bool {
        let obj = self.obj();
        let Some(running) = self.running_time(buf) else {
            return false;
        };
        let timing = lock(&self.timing);
        if timing.earliest.is_some_and(|earliest| running < earliest) {
            return true;
        }
        let Some((true, upstream)) = timing.upstream else {
            return false;
        };
        let pipeline_latency = timing.pipeline_latency.filter(|l| !l.is_zero());
        let frame = buf.duration().or(timing.frame).unwrap_or_default();
        drop(timing);
        let Some(now) = obj
            .clock()
            .map(|c| c.time())
            .zip(obj.base_time())
            .and_then(|(t, base)| t.checked_sub(base))
        else {
            return false;
        };
        let (own, typical) = lock(&self.latency)
            .as_ref()
            .map_or((0, 0), |l| (l.reported_ns(), l.typical_ns()));
        let deadline = match pipeline_latency {
            // Late if, at the time a frame usually takes, it would reach the sinks more than a
            // frame after running time + the pipeline's latency. A sink that syncs holds this
            // thread until each frame's time, so frames come here a frame before that even when
            // nothing waits; the frame of slack lets a network a little slower than the camera
            // still run most frames, one hurried answer catching up.
            Some(latency) => running
                .checked_add(latency)
                .and_then(|t| t.checked_add(frame))
                .map(|t| t.saturating_sub(gst::ClockTime::from_nseconds(typical))),
            // No sink syncs: late once it waited longer than upstream and the element take.
            None => running
                .checked_add(upstream)
                .and_then(|t| t.checked_add(gst::ClockTime::from_nseconds(own))),
        };
        // A deadline past the clock's range: never late.
        let Some(deadline) = deadline else {
            return false;
        };
        gst::trace!(
            CAT,
            imp = self,
            "Frame at {running}: now {now}, deadline {deadline}"
        );
        now > deadline
    }

    /// Reports a frame answered in a hurry, or dropped, on the bus, as a QoS message with the
    /// frames processed and those degraded or dropped so far.
    fn report_hurried(&self, buf: &gst::BufferRef, processed: u64, degraded: u64) {
        let obj = self.obj();
        let running = self.running_time(buf);
        let stream = buf.pts().and_then(|p| {
            obj.segment()
                .downcast_ref::<gst::format::Time>()
                .and_then(|s| s.to_stream_time(p))
        });
        let live = lock(&self.timing).upstream.is_some_and(|(live, _)| live);
        let message = gst::message::Qos::builder(live)
            .running_time(running)
            .stream_time(stream)
            .timestamp(buf.pts())
            .duration(buf.duration())
            .stats(
                gst::format::Buffers::from_u64(processed),
                gst::format::Buffers::from_u64(degraded),
            )
            .src(&*obj)
            .build();
        let _ = obj.post_message(message);
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
        self.take_swap(state);
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
        let hurry = state
            .overload
            .hurry()
            .filter(|_| state.hurried_in_a_row < MAX_HURRIED && self.late(buf));
        state.hurried_in_a_row = if hurry.is_some() {
            state.hurried_in_a_row + 1
        } else {
            0
        };
        let decision = EarlyExit::classify(&mut state.classifier, &mapped, *format, hurry)
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
        if decision.hurried.is_some() {
            let degraded = stats.hurried_reuse + stats.hurried_shallowest;
            self.report_hurried(buf, stats.frames, degraded);
        }
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
                         stream, a gap event and a DISCONT buffer. Set while PLAYING, the new \
                         bundle loads on a thread of its own while the old one goes on; the \
                         element switches between two frames, losing none, and posts an \
                         'earlyexit-model' element message naming it. A new bundle that cannot \
                         load gives a WARNING, and the old one keeps running.",
                    )
                    .mutable_playing()
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
                         bundle's models gave no finite answer for), degraded-reused, \
                         degraded-shallowest and dropped (guint64, late frames answered or \
                         dropped under 'overload'), audit-agreement (gdouble, over every audited \
                         frame), audit-lower-bound and audit-upper-bound (gdouble, over the \
                         audit's window), mean-cost (gdouble, when the bundle gives MACs) and \
                         mean-inference-ns (guint64).",
                    )
                    .read_only()
                    .build(),
            ]
            .into_iter()
            .chain(live_properties())
            .collect()
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if self.running.load(Ordering::SeqCst) {
            if pspec.name() == "model" {
                self.swap_model(value.get::<Option<String>>().ok().flatten());
                return;
            }
            // Settings are applied at start(); changing them while running would not take
            // effect, so refuse, on the bus, rather than ignore.
            gst::element_imp_warning!(
                self,
                gst::CoreError::StateChange,
                (
                    "Property '{}' cannot change while the element runs; set it in the NULL or READY state. It keeps its value",
                    pspec.name()
                )
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
            "overload" => settings.overload = value.get().unwrap_or_default(),
            "share-sessions" => settings.shared = value.get().unwrap_or(true),
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
            "overload" => settings.overload.to_value(),
            "share-sessions" => settings.shared.to_value(),
            "stats" => lock(&self.stats).structure().to_value(),
            // GObject only asks for properties listed above.
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }
}

/// The properties for live pipelines: how late frames are answered, and shared sessions.
fn live_properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecEnum::builder::<Overload>("overload")
            .nick("Overload")
            .blurb(
                "How a frame that comes too late to run in full is answered, so that a \
                 live pipeline never falls behind: 'reuse' (the last answer again, at no \
                 cost; the first exit's before there is one), 'shallowest' (the first \
                 exit's, whatever its rule says), 'drop' (late frames are dropped, as \
                 QoS-aware filters do) or 'off' (every frame in full). A frame is late \
                 when a QoS event from downstream says so, or, behind a live source, \
                 when at the time a frame usually takes it would reach the sinks more \
                 than a frame after their deadline (with no sink that syncs: when it \
                 waited longer than upstream and the element take). Late frames answered are \
                 marked degraded in EarlyExitMeta, counted in stats, and reported in a \
                 QoS message.",
            )
            .default_value(Overload::Reuse)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("share-sessions")
            .nick("Share sessions")
            .blurb(
                "Share ONNX Runtime sessions with the other earlyexit elements of the \
                 process that load the same bundle files with the same threads, as \
                 gvaclassify's model-instance-id does: many streams of one bundle hold \
                 its weights once, and a shared session runs one frame at a time.",
            )
            .default_value(true)
            .mutable_ready()
            .build(),
    ]
}

impl GstObjectImpl for EarlyExit {}

impl ElementImpl for EarlyExit {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Early-exit classifier",
                "Filter/Analyzer/Video",
                "Classifies each frame with an early-exit network (an exit bundle run by ONNX \
                 Runtime) and attaches the decision as EarlyExitMeta; frames pass unchanged. \
                 It adds its processing time to the LATENCY query and posts a LATENCY message \
                 when that changes; late frames are answered as 'overload' says",
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
        let mut classifier = self.open(&settings).map_err(|err| {
            self.running.store(false, Ordering::SeqCst);
            // Also logged, for hosts without a bus (such as gst-check's harness).
            gst::error!(CAT, imp = self, "Cannot start: {}", err);
            err.to_message()
        })?;
        *lock(&self.stats) = Stats {
            exits: vec![0; classifier.stages()],
            ..Stats::default()
        };
        let worst = classifier.time_every_exit().map_err(|e| {
            self.running.store(false, Ordering::SeqCst);
            gst::error_msg!(gst::LibraryError::Init, ["Cannot time the bundle: {}", e])
        })?;
        gst::info!(
            CAT,
            imp = self,
            "A frame through every stage takes {:?}",
            worst
        );
        *lock(&self.latency) = Some(Latency::new(
            u64::try_from(worst.as_nanos()).unwrap_or(u64::MAX),
        ));
        *lock(&self.state) = Some(State {
            classifier,
            frames: 0,
            post_messages: settings.post_messages,
            negotiated: None,
            element: self.obj().name().to_string(),
            bundle: settings.model.clone().unwrap_or_default(),
            told_non_finite: false,
            overload: settings.overload,
            hurried_in_a_row: 0,
        });
        // The base class drops late frames itself when QoS is on; the other ways answer them.
        self.obj().set_qos(settings.overload == Overload::Drop);
        *lock(&self.timing) = Timing::default();
        gst::info!(CAT, imp = self, "Started");
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = None;
        // A bundle still loading is not installed after a restart.
        let mut swap = lock(&self.swap);
        swap.generation += 1;
        swap.pending = None;
        drop(swap);
        *lock(&self.latency) = None;
        self.running.store(false, Ordering::SeqCst);
        gst::info!(CAT, imp = self, "Stopped");
        Ok(())
    }

    /// Adds the element's processing time to the LATENCY query's answer from upstream.
    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction != gst::PadDirection::Src {
            return BaseTransformImplExt::parent_query(self, direction, query);
        }
        let gst::QueryViewMut::Latency(q) = query.view_mut() else {
            return BaseTransformImplExt::parent_query(self, direction, query);
        };
        let Some(own) = lock(&self.latency).as_ref().map(Latency::reported_ns) else {
            return BaseTransformImplExt::parent_query(self, direction, query);
        };
        let own = gst::ClockTime::from_nseconds(own);
        let sink = self.obj().static_pad("sink");
        let mut upstream = gst::query::Latency::new();
        if !sink.is_some_and(|p| p.peer_query(&mut upstream)) {
            return false;
        }
        let (live, min, max) = upstream.result();
        lock(&self.timing).upstream = Some((live, min));
        q.set(live, min + own, max.map(|m| m + own));
        gst::debug!(CAT, imp = self, "Latency: upstream {} + own {}", min, own);
        true
    }

    /// Notes downstream's QoS: frames before `timestamp + diff` (twice the diff when late, as
    /// the base class reckons, for jitter) are late; and the pipeline's latency, which the
    /// sinks send up.
    fn src_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Qos(qos) => {
                let (_, _, diff, timestamp) = qos.get();
                lock(&self.timing).earliest = timestamp.map(|t| {
                    let ahead = if diff > 0 { 2 * diff } else { diff };
                    gst::ClockTime::from_nseconds(t.nseconds().saturating_add_signed(ahead))
                });
            }
            // Read from the structure: a LATENCY event may carry none, and `latency()` panics
            // then.
            gst::EventView::Latency(l) => {
                lock(&self.timing).pipeline_latency = l
                    .structure()
                    .and_then(|s| s.get::<Option<gst::ClockTime>>("latency").ok())
                    .flatten()
            }
            _ => {}
        }
        self.parent_src_event(event)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::FlushStop(_) => {
                lock(&self.timing).earliest = None;
                self.reset_stream("flush");
            }
            gst::EventView::Segment(_) => self.reset_stream("new segment"),
            gst::EventView::StreamStart(_) => self.reset_stream("new stream"),
            // The next buffer after a gap need not be flagged DISCONT.
            gst::EventView::Gap(_) => self.reset_stream("gap"),
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let drops = lock(&self.state)
            .as_ref()
            .is_some_and(|s| s.overload == Overload::Drop);
        if drops && self.late(buf) {
            let mut stats = lock(&self.stats);
            stats.dropped += 1;
            let (processed, dropped) = (stats.frames, stats.dropped);
            drop(stats);
            self.report_hurried(buf, processed, dropped);
            return Ok(gst_base::BASE_TRANSFORM_FLOW_DROPPED);
        }
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
        // A hurried answer says nothing of what a frame takes.
        let latency_changed = decision.hurried.is_none()
            && lock(&self.latency)
                .as_mut()
                .is_some_and(|l| l.record(decision.inference_ns));
        if latency_changed {
            gst::info!(
                CAT,
                imp = self,
                "Processing time changed: asking for latency again"
            );
            let obj = self.obj();
            let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
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
        let fps = in_info.fps();
        lock(&self.timing).frame = (fps.numer() > 0 && fps.denom() > 0).then(|| {
            gst::ClockTime::SECOND
                .mul_div_floor(fps.denom() as u64, fps.numer() as u64)
                .unwrap_or_default()
        });
        self.parent_set_info(incaps, in_info, outcaps, out_info)
    }
}
