//! ONNX Runtime: the process-wide library and the sessions made from it.

pub mod library;
pub mod session;
pub mod shared;

pub use library::{LibraryError, environment};
pub use session::{Model, OnnxError, SessionOptions, Tensor};
pub use shared::SharedModel;
