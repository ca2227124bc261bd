//! gst-plugins-rs's `fallbackswitch` plugin (`fallbacksrc`, `fallbackswitch`), built as a
//! GStreamer plugin file with the project, as `libgstfallbackswitch.so`. `pipelines/rtsp.sh`
//! reconnects to cameras with `fallbacksrc`, and `scripts/setup.sh` installs this file beside the
//! `earlyexit` plugin.
//!
//! Cargo builds a registry crate's cdylib only under a hashed name, which GStreamer cannot load
//! (it finds the plugin's entry point from the file name). This crate links the upstream crate
//! and exports its entry point under the name GStreamer looks for; the code is all upstream's.

pub use upstream::plugin_desc::{gst_plugin_fallbackswitch_get_desc, plugin_register_static};
