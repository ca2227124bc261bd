//! GStreamer plugin `earlyexit`:
//! - `earlyexit`, the video filter that classifies each frame with an exit bundle and attaches
//!   the decision to the buffer as `EarlyExitMeta`;
//! - `earlyexitoverlay`, which draws each frame's metas on the video;
//! - `earlyexitpublish`, which sends each frame's metas out of the pipeline as JSON records.
//!
//! The contract (properties, meta fields, messages, stats, errors) is
//! `docs/spec/element-v1.md`.
//!
//! ONNX Runtime is loaded once per process by the first element that starts, from
//! `~/.local/lib/earlyexit/libonnxruntime.so` (or the other default locations of
//! `earlyexit::runtime::library`); the environment variable `ORT_DYLIB_PATH` overrides it.

use gst::glib;

mod earlyexit;
pub mod earlyexitoverlay;
mod earlyexitpublish;
pub mod meta;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use earlyexit::Mode;
pub use meta::EarlyExitInfo;

/// A poisoned lock only means another thread panicked mid-update; the data is still usable and
/// the elements must not panic in turn.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    meta::register();
    earlyexit::register(plugin)?;
    earlyexitoverlay::register(plugin)?;
    earlyexitpublish::register(plugin)
}

// Also generates `pub fn plugin_register_static()`, which tests and apps call to use the
// element without installing the `.so`.
gst::plugin_define!(
    earlyexit,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
