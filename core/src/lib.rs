//! earlyexit's engine, with no GStreamer in it: exit bundles, frame preprocessing, the staged
//! ONNX Runtime cascade with its exit rule, and the ONNX graph tools the search uses.

pub mod graph;
pub mod runtime;
