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
