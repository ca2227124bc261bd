//! The `earlyexitoverlay` element: draws each frame's `EarlyExitMeta`s on the video, one line
//! per `earlyexit` element (see `panel.rs` for what a line shows).
//!
//! Built as gst-plugins-rs's `onvifmetadataoverlay`: when downstream takes
//! `meta:GstVideoOverlayComposition` and says so in the allocation query, the panel travels as
//! a `VideoOverlayCompositionMeta` for the sink to draw; otherwise it is blended into the frame.

use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::prelude::*;

use super::panel::{Argb, Line, Painter, Picture, Style};
use super::{Corner, DEFAULT_CORNER};
use crate::lock;
use crate::meta::EarlyExitInfo;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "earlyexitoverlay",
        gst::DebugColorFlags::empty(),
        Some("Draws early-exit results on the video"),
    )
});

const DEFAULT_FONT: &str = "Sans Bold";
const DEFAULT_TEXT: u32 = 0xffff_ffff;
const DEFAULT_BACKGROUND: u32 = 0xa000_0000;
const DEFAULT_GAUGE: u32 = 0xff3c_d050;
const DEFAULT_GAUGE_EMPTY: u32 = 0xff50_5050;
const DEFAULT_MARK: u32 = 0xffff_b020;
const DEFAULT_MARGIN: u32 = 8;

#[derive(Debug, Clone)]
struct Settings {
    style: Style,
    corner: Corner,
    margin: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            style: Style {
                font: DEFAULT_FONT.into(),
                text: Argb(DEFAULT_TEXT),
                background: Argb(DEFAULT_BACKGROUND),
                gauge: Argb(DEFAULT_GAUGE),
                gauge_empty: Argb(DEFAULT_GAUGE_EMPTY),
                mark: Argb(DEFAULT_MARK),
            },
            corner: DEFAULT_CORNER,
            margin: DEFAULT_MARGIN,
        }
    }
}

#[derive(Default)]
struct State {
    /// The caps from upstream, and the frame layout they give.
    caps: Option<gst::Caps>,
    video_info: Option<gst_video::VideoInfo>,
    /// Whether downstream draws the composition itself.
    attach: bool,
    painter: Option<Painter>,
    /// The last frame's lines and their composition: frames that show the same answers (a
    /// reused answer, a steady scene) are not drawn again.
    last: Option<(Vec<Line>, gst_video::VideoOverlayComposition)>,
}

// SAFETY: `Painter` holds a `pango::Layout`, which is not `Send`. The layout is only used with
// the state's lock held, and no reference to it leaves the state, so one thread at a time uses
// it; as in onvifmetadataoverlay.
unsafe impl Send for State {}

pub struct EarlyExitOverlay {
    srcpad: gst::Pad,
    sinkpad: gst::Pad,
    state: Mutex<State>,
    settings: Mutex<Settings>,
}

impl EarlyExitOverlay {
    /// Sends the caps on, with the overlay-composition feature when downstream takes it, and
    /// finds out from the allocation query whether to attach the panel or blend it.
    fn negotiate(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(received) = lock(&self.state).caps.clone() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ["No video caps received before the first frame"]
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let feature = gst_video::CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION;
        let upstream_has_meta = received.features(0).is_some_and(|f| f.contains(feature));
        let mut caps = received.clone();
        if !upstream_has_meta {
            // Either spelling of the feature that downstream accepts, the first it lists.
            let asked = with_overlay_feature(&received);
            let mut taken = self.srcpad.peer_query_caps(Some(&asked));
            gst::debug!(CAT, imp = self, "Downstream takes {} of {}", taken, asked);
            if !taken.is_empty() {
                taken.fixate();
                caps = taken;
            }
        }
        if !self.srcpad.push_event(gst::event::Caps::new(&caps)) {
            gst::info!(CAT, imp = self, "Downstream did not take the caps {}", caps);
            return Err(gst::FlowError::NotNegotiated);
        }
        let mut attach = false;
        if caps.features(0).is_some_and(|f| f.contains(feature)) {
            let mut query = gst::query::Allocation::new(Some(&caps), false);
            if !self.srcpad.peer_query(&mut query)
                && self.srcpad.pad_flags().contains(gst::PadFlags::FLUSHING)
            {
                return Err(gst::FlowError::NotNegotiated);
            }
            attach = query
                .find_allocation_meta::<gst_video::VideoOverlayCompositionMeta>()
                .is_some();
            // Some elements (fakesink, an appsink without caps) accept any caps but draw no
            // overlays: the panel is then blended, and the caps go without the feature, as
            // basetextoverlay does.
            if !attach && !upstream_has_meta && caps != received {
                caps = received;
                if !self.srcpad.push_event(gst::event::Caps::new(&caps)) {
                    return Err(gst::FlowError::NotNegotiated);
                }
            }
        }
        gst::debug!(
            CAT,
            imp = self,
            "Caps {}: attach the panel: {}",
            caps,
            attach
        );
        let mut state = lock(&self.state);
        state.attach = attach;
        state.last = None;
        Ok(gst::FlowSuccess::Ok)
    }

    /// The panel for these lines, at the settings' corner of a `width` × `height` frame.
    fn composition(
        &self,
        state: &mut State,
        lines: Vec<Line>,
        width: u32,
        height: u32,
    ) -> Option<gst_video::VideoOverlayComposition> {
        if let Some((last, composition)) = &state.last
            && *last == lines
        {
            return Some(composition.clone());
        }
        let settings = lock(&self.settings).clone();
        let painter = match &state.painter {
            Some(painter) if painter.suits(&settings.style, height) => painter,
            _ => state
                .painter
                .insert(Painter::new(settings.style.clone(), height)),
        };
        let picture = painter
            .paint(&lines)
            .map_err(|e| gst::warning!(CAT, imp = self, "Could not draw the panel: {}", e))
            .ok()?;
        let (x, y) = settings.corner.place(
            picture.width,
            picture.height,
            width,
            height,
            settings.margin,
        );
        let rectangle = rectangle(picture, x, y)?;
        let composition = gst_video::VideoOverlayComposition::new(Some(&rectangle)).ok()?;
        state.last = Some((lines, composition.clone()));
        Some(composition)
    }

    fn sink_chain(&self, mut buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.srcpad.check_reconfigure()
            && let Err(err) = self.negotiate()
        {
            if self.srcpad.pad_flags().contains(gst::PadFlags::FLUSHING) {
                self.srcpad.mark_reconfigure();
                return Ok(gst::FlowSuccess::Ok);
            }
            return Err(err);
        }
        let lines: Vec<Line> = EarlyExitInfo::all_from_buffer(&buffer)
            .iter()
            .map(Line::from_info)
            .collect();
        if lines.is_empty() {
            return self.srcpad.push(buffer);
        }
        let mut state = lock(&self.state);
        let Some(info) = state.video_info.clone() else {
            return Err(gst::FlowError::NotNegotiated);
        };
        if let Some(composition) = self.composition(&mut state, lines, info.width(), info.height())
        {
            let buffer = buffer.make_mut();
            if state.attach {
                gst_video::VideoOverlayCompositionMeta::add(buffer, &composition);
            } else {
                match gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &info) {
                    Ok(mut frame) => {
                        if composition.blend(&mut frame).is_err() {
                            gst::warning!(CAT, imp = self, "Could not blend the panel");
                        }
                    }
                    Err(e) => gst::warning!(CAT, imp = self, "Could not map the frame: {}", e),
                }
            }
        }
        drop(state);
        self.srcpad.push(buffer)
    }

    /// Caps queries: downstream may take the video as it is or with the overlay-composition
    /// feature; upstream is always offered plain system-memory video, which the element can
    /// blend into.
    fn caps_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        let gst::QueryViewMut::Caps(q) = query.view_mut() else {
            return gst::Pad::query_default(pad, Some(&*self.obj()), query);
        };
        let filter = q.filter_owned();
        let result = if pad == &self.srcpad {
            let upstream = self
                .sinkpad
                .peer_query_caps(filter.as_ref().map(without_overlay_feature).as_ref());
            let mut either = upstream.clone();
            either.merge(with_overlay_feature(&upstream));
            either
        } else {
            let downstream_filter = filter.as_ref().map(|f| {
                let mut either = f.clone();
                either.merge(with_overlay_feature(f));
                either
            });
            without_overlay_feature(&self.srcpad.peer_query_caps(downstream_filter.as_ref()))
        };
        let result = result.intersect(&pad.pad_template_caps());
        let result = match filter {
            Some(filter) => filter.intersect_with_mode(&result, gst::CapsIntersectMode::First),
            None => result,
        };
        q.set_result(&result);
        true
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Caps(caps) => {
                let caps = caps.caps_owned();
                let info = match gst_video::VideoInfo::from_caps(&caps) {
                    Ok(info) => info,
                    Err(e) => {
                        gst::warning!(CAT, imp = self, "Caps {} are not video: {}", caps, e);
                        return false;
                    }
                };
                let mut state = lock(&self.state);
                state.video_info = Some(info);
                state.caps = Some(caps);
                drop(state);
                self.srcpad.check_reconfigure();
                let negotiated = self.negotiate().is_ok();
                if !negotiated {
                    self.srcpad.mark_reconfigure();
                }
                negotiated
            }
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }
}

/// `caps` with the overlay-composition feature added to every structure. System memory is
/// spelt both ways sinks write it: `(memory:SystemMemory, meta:…)` and `(meta:…)`.
fn with_overlay_feature(caps: &gst::Caps) -> gst::Caps {
    let meta = gst_video::CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION;
    let mut out = gst::Caps::new_empty();
    let out_mut = out.make_mut();
    for (structure, features) in caps.iter_with_features() {
        let mut added = features.to_owned();
        added.add(meta);
        out_mut.append_structure_full(structure.to_owned(), Some(added));
        if features.is_equal(&gst::CapsFeatures::new([
            gst::CAPS_FEATURE_MEMORY_SYSTEM_MEMORY,
        ])) {
            out_mut
                .append_structure_full(structure.to_owned(), Some(gst::CapsFeatures::new([meta])));
        }
    }
    out
}

/// `caps` without the overlay-composition feature: what is left, or system memory.
fn without_overlay_feature(caps: &gst::Caps) -> gst::Caps {
    let mut caps = caps.clone();
    for (_, features) in caps.make_mut().iter_with_features_mut() {
        features.remove(gst_video::CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION);
        if features.size() == 0 && !features.is_any() {
            features.add(gst::CAPS_FEATURE_MEMORY_SYSTEM_MEMORY);
        }
    }
    caps
}

/// The picture as an overlay rectangle at (`x`, `y`).
fn rectangle(picture: Picture, x: i32, y: i32) -> Option<gst_video::VideoOverlayRectangle> {
    let (width, height) = (picture.width, picture.height);
    let mut buffer = gst::Buffer::from_mut_slice(picture.data);
    gst_video::VideoMeta::add(
        buffer.get_mut()?,
        gst_video::VideoFrameFlags::empty(),
        // cairo's ARGB32 in memory order.
        #[cfg(target_endian = "little")]
        gst_video::VideoFormat::Bgra,
        #[cfg(target_endian = "big")]
        gst_video::VideoFormat::Argb,
        width,
        height,
    )
    .ok()?;
    Some(gst_video::VideoOverlayRectangle::new_raw(
        &buffer,
        x,
        y,
        width,
        height,
        gst_video::VideoOverlayFormatFlags::PREMULTIPLIED_ALPHA,
    ))
}

/// Both pads' query function.
fn on_query(pad: &gst::Pad, parent: Option<&gst::Object>, query: &mut gst::QueryRef) -> bool {
    EarlyExitOverlay::catch_panic_pad_function(
        parent,
        || false,
        |overlay| overlay.caps_query(pad, query),
    )
}

#[glib::object_subclass]
impl ObjectSubclass for EarlyExitOverlay {
    const NAME: &'static str = "GstEarlyExitOverlay";
    type Type = super::EarlyExitOverlay;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass
            .pad_template("sink")
            .expect("the class has a sink template");
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|_pad, parent, buffer| {
                EarlyExitOverlay::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |overlay| overlay.sink_chain(buffer),
                )
            })
            .event_function(|pad, parent, event| {
                EarlyExitOverlay::catch_panic_pad_function(
                    parent,
                    || false,
                    |overlay| overlay.sink_event(pad, event),
                )
            })
            .query_function(on_query)
            .flags(gst::PadFlags::PROXY_ALLOCATION)
            .build();
        let templ = klass
            .pad_template("src")
            .expect("the class has a src template");
        let srcpad = gst::Pad::builder_from_template(&templ)
            .query_function(on_query)
            .flags(gst::PadFlags::PROXY_ALLOCATION)
            .build();
        EarlyExitOverlay {
            srcpad,
            sinkpad,
            state: Mutex::new(State::default()),
            settings: Mutex::new(Settings::default()),
        }
    }
}

/// A colour property's spec: `0xAARRGGBB`, as `textoverlay`'s `color`.
fn colour(name: &str, nick: &str, blurb: &str, default: u32) -> glib::ParamSpec {
    glib::ParamSpecUInt::builder(name)
        .nick(nick)
        .blurb(&format!("{blurb}, as 0xAARRGGBB"))
        .default_value(default)
        .mutable_playing()
        .build()
}

impl ObjectImpl for EarlyExitOverlay {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecEnum::builder_with_default("position", DEFAULT_CORNER)
                    .nick("Position")
                    .blurb("The corner of the frame the panel is drawn in")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("margin")
                    .nick("Margin")
                    .blurb("Pixels between the panel and the frame's edges")
                    .default_value(DEFAULT_MARGIN)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("font-desc")
                    .nick("Font description")
                    .blurb(
                        "Pango font description of the panel's text, such as 'Sans Bold 14'; \
                         without a size, the text is a 24th of the frame's height (9 to 48 \
                         pixels)",
                    )
                    .default_value(Some(DEFAULT_FONT))
                    .mutable_playing()
                    .build(),
                colour(
                    "color",
                    "Text colour",
                    "Colour of the label and confidence",
                    DEFAULT_TEXT,
                ),
                colour(
                    "background-color",
                    "Background colour",
                    "Colour of the panel behind the text (alpha 0: none)",
                    DEFAULT_BACKGROUND,
                ),
                colour(
                    "gauge-color",
                    "Gauge colour",
                    "Colour of the gauge's cells up to the stage where the frame left",
                    DEFAULT_GAUGE,
                ),
                colour(
                    "gauge-empty-color",
                    "Empty gauge colour",
                    "Colour of the gauge's cells past the stage where the frame left",
                    DEFAULT_GAUGE_EMPTY,
                ),
                colour(
                    "mark-color",
                    "Mark colour",
                    "Colour of the mark on answers that are not the cascade's own (reused, \
                     late, audit fallback, no answer)",
                    DEFAULT_MARK,
                ),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        let argb = || Argb(value.get::<u32>().unwrap_or_default());
        match pspec.name() {
            "position" => settings.corner = value.get().unwrap_or(DEFAULT_CORNER),
            "margin" => settings.margin = value.get().unwrap_or(DEFAULT_MARGIN),
            "font-desc" => {
                settings.style.font = value
                    .get::<Option<String>>()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| DEFAULT_FONT.into())
            }
            "color" => settings.style.text = argb(),
            "background-color" => settings.style.background = argb(),
            "gauge-color" => settings.style.gauge = argb(),
            "gauge-empty-color" => settings.style.gauge_empty = argb(),
            "mark-color" => settings.style.mark = argb(),
            other => gst::warning!(CAT, imp = self, "No writable property '{}'", other),
        }
        drop(settings);
        // Drawn again on the next frame.
        lock(&self.state).last = None;
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "position" => settings.corner.to_value(),
            "margin" => settings.margin.to_value(),
            "font-desc" => settings.style.font.to_value(),
            "color" => settings.style.text.0.to_value(),
            "background-color" => settings.style.background.0.to_value(),
            "gauge-color" => settings.style.gauge.0.to_value(),
            "gauge-empty-color" => settings.style.gauge_empty.0.to_value(),
            "mark-color" => settings.style.mark.0.to_value(),
            other => {
                gst::warning!(CAT, imp = self, "No property '{}'", other);
                pspec.default_value().clone()
            }
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        for pad in [&self.sinkpad, &self.srcpad] {
            if let Err(e) = obj.add_pad(pad) {
                gst::error!(CAT, imp = self, "Could not add pad {}: {}", pad.name(), e);
            }
        }
    }
}

impl GstObjectImpl for EarlyExitOverlay {}

impl ElementImpl for EarlyExitOverlay {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Early-exit overlay",
                "Filter/Editor/Video/Overlay",
                "Draws each frame's EarlyExitMeta on the video: per earlyexit element, the \
                 label and confidence, a gauge of the stage where the frame left out of how \
                 many, and a mark on reused, late or fallback answers. Attaches the drawing as \
                 a VideoOverlayComposition when downstream takes it, else blends it",
                "earlyexit developers <earlyexit@example.invalid>",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // Any raw video, and the same with the overlay-composition feature, for a
            // downstream that draws the panel itself (the caps sent on gain the feature then).
            let raw = gst_video::VideoFormat::iter_raw()
                .into_video_caps()
                .map(|caps| caps.build())
                .unwrap_or_else(gst::Caps::new_empty);
            let mut caps = raw.clone();
            caps.merge(with_overlay_feature(&raw));
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

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if let gst::StateChange::ReadyToPaused | gst::StateChange::PausedToReady = transition {
            *lock(&self.state) = State::default();
        }
        self.parent_change_state(transition)
    }
}
