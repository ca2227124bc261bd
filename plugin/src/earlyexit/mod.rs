//! The `earlyexit` element: see `imp.rs` for the behaviour and `docs/spec/element-v1.md` for
//! the contract.

use gst::glib;
use gst::prelude::*;

mod imp;
mod latency;

glib::wrapper! {
    pub struct EarlyExit(ObjectSubclass<imp::EarlyExit>)
        @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

/// The `mode` property: whether exit heads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstEarlyExitMode")]
pub enum Mode {
    /// Heads run and a frame leaves at the first stage whose exit rule passes.
    #[default]
    #[enum_value(
        name = "Early exit: run exit heads and leave at the first confident stage",
        nick = "early-exit"
    )]
    EarlyExit = 0,
    /// Every segment and no head: the baseline backbone.
    #[enum_value(
        name = "Full: run every segment and no head (the baseline backbone)",
        nick = "full"
    )]
    Full = 1,
}

/// The `overload` property: how a frame that comes too late to run in full is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstEarlyExitOverload")]
pub enum Overload {
    /// The last answer again, at no cost; the first exit's when there is none yet.
    #[default]
    #[enum_value(
        name = "Reuse: answer a late frame with the last answer (or at the first exit)",
        nick = "reuse"
    )]
    Reuse = 0,
    /// The first exit's answer, whatever its rule says.
    #[enum_value(
        name = "Shallowest: answer a late frame at the first exit",
        nick = "shallowest"
    )]
    Shallowest = 1,
    /// Late frames are dropped, as a QoS-aware filter does.
    #[enum_value(
        name = "Drop: drop late frames, as QoS-aware filters do",
        nick = "drop"
    )]
    Drop = 2,
    /// Every frame runs in full, however late.
    #[enum_value(name = "Off: run every frame in full, however late", nick = "off")]
    Off = 3,
}

impl Overload {
    /// How a late frame is answered, when it is answered at all.
    pub fn hurry(self) -> Option<earlyexit::Hurry> {
        match self {
            Overload::Reuse => Some(earlyexit::Hurry::Reuse),
            Overload::Shallowest => Some(earlyexit::Hurry::Shallowest),
            Overload::Drop | Overload::Off => None,
        }
    }
}

impl From<Mode> for earlyexit::Mode {
    fn from(mode: Mode) -> earlyexit::Mode {
        match mode {
            Mode::EarlyExit => earlyexit::Mode::EarlyExit,
            Mode::Full => earlyexit::Mode::Full,
        }
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "earlyexit",
        gst::Rank::NONE,
        EarlyExit::static_type(),
    )
}
