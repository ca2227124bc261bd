//! The `earlyexitpublish` element: one record per frame, out of the pipeline. See `imp.rs` for
//! the behaviour and `docs/spec/element-v1.md` for the contract.

use gst::glib;
use gst::prelude::*;

mod imp;
mod mqtt;
mod record;

glib::wrapper! {
    pub struct EarlyExitPublish(ObjectSubclass<imp::EarlyExitPublish>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "earlyexitpublish",
        gst::Rank::NONE,
        EarlyExitPublish::static_type(),
    )
}
