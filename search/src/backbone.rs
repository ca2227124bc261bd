//! The backbone as the search reads it: its graph, input, output kind, classes and the cut
//! points worth an exit. `extract`, `fit` and `search` read it alike.

use std::path::Path;

use anyhow::{Result, bail};
use earlyexit::input::InputSpec;
use earlyexit::rule::Output;
use earlyexit_graph::{CutPoint, Graph};

use crate::cli::{InputArgs, OutputArg};
use earlyexit::SessionOptions;

use crate::features::{Extractor, detect_output};
use crate::placement;

pub struct Backbone {
    pub graph: Graph,
    pub input: InputSpec,
    pub output: Output,
    pub classes: usize,
    pub candidates: Vec<CutPoint>,
}

impl Backbone {
    /// Reads the backbone at `path`, its input from the model and `input`.
    pub fn load(path: &Path, input: &InputArgs, output: Option<OutputArg>) -> Result<Backbone> {
        let (graph, input) = crate::input::load_backbone(path, input)?;
        let output = match output {
            Some(OutputArg::Logits) => Output::Logits,
            Some(OutputArg::Probabilities) => Output::Probabilities,
            None => detect_output(&graph),
        };
        let classes = classes(&graph, path)?;
        let candidates = candidates(&graph, path)?;
        Ok(Backbone {
            graph,
            input,
            output,
            classes,
            candidates,
        })
    }

    /// The backbone with every candidate cut exposed, on `threads` ONNX Runtime threads.
    pub fn extractor(&self, threads: usize) -> Result<Extractor> {
        let options = SessionOptions {
            threads,
            ..SessionOptions::default()
        };
        Extractor::new(
            &self.graph,
            &self.candidates,
            self.input.clone(),
            self.output,
            self.classes,
            options,
        )
    }
}

/// The number of classes the backbone predicts, from its output `[N, classes]`.
fn classes(graph: &Graph, backbone: &Path) -> Result<usize> {
    match graph.output().shape.as_slice() {
        [1, c] if *c > 0 => Ok(*c as usize),
        other => bail!(
            "backbone {}: the output must be [N, classes], found {other:?}",
            backbone.display()
        ),
    }
}

/// The backbone's cut points worth an exit.
fn candidates(graph: &Graph, backbone: &Path) -> Result<Vec<CutPoint>> {
    let cut_points = graph.cut_points();
    let candidates: Vec<CutPoint> = placement::candidates(&cut_points, graph.total_macs())
        .into_iter()
        .cloned()
        .collect();
    if candidates.is_empty() {
        bail!(
            "backbone {}: no cut point is worth an exit",
            backbone.display()
        );
    }
    Ok(candidates)
}
