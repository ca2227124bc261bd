//! earlyexit's engine, with no GStreamer in it: exit bundles, frame preprocessing, and the
//! staged ONNX Runtime cascade with its exit rule. The ONNX graph tools that cut backbones are
//! the search's, in the `earlyexit-graph` crate; `docs/architecture.md` has the crate map.
//!
//! Dependencies run one way: [`rule`] ← [`gate`] ← [`bundle`] ← [`cascade`] ← [`classifier`],
//! and a frame flows [`frame::Frame`] → [`preprocess`] → [`cascade`] (segments, heads, [`rule`],
//! [`gate`]) → [`classifier::Decision`].

pub mod audit;
pub mod bundle;
pub mod cascade;
pub mod classifier;
pub mod cost;
pub mod frame;
pub mod gate;
pub mod input;
pub mod preprocess;
pub mod reuse;
pub mod rule;
pub mod runtime;
pub mod stream;

pub use cascade::{Hurry, LoadError, Mode};
pub use classifier::{Classifier, Decision, RunError};
pub use frame::{Frame, PixelFormat};
pub use runtime::SessionOptions;
pub use stream::StreamState;
