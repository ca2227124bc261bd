//! earlyexit's engine, with no GStreamer in it: exit bundles, frame preprocessing, the staged
//! ONNX Runtime cascade with its exit rule, and the ONNX graph tools the search uses.
//!
//! Data flows one way: [`frame::Frame`] → [`preprocess`] → [`cascade`] (segments, heads,
//! [`rule`], [`gate`]) → [`cascade::Decision`].

pub mod bundle;
pub mod cascade;
pub mod cost;
pub mod frame;
pub mod gate;
pub mod graph;
pub mod preprocess;
pub mod rule;
pub mod runtime;

pub use cascade::{Classifier, Decision, LoadError, Mode, RunError, StreamState};
pub use frame::{Frame, PixelFormat};
pub use runtime::SessionOptions;
