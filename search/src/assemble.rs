//! A choice as a bundle: its description, and its ONNX files (the backbone's segments and the
//! exit heads), cut and built with the graph tools.

use std::path::Path;

use anyhow::Result;
use earlyexit::bundle::{Bundle, Exit, File, Format, Labels, Stage};
use earlyexit::input::InputSpec;
use earlyexit::rule::Output;
use earlyexit_graph::heads::build_head;
use earlyexit_graph::{Graph, encode_model};

use crate::problem::Choice;

/// What every bundle of one search shares: the backbone and how it is fed and read.
pub struct Backbone<'a> {
    pub graph: &'a Graph,
    pub path: &'a Path,
    pub input: &'a InputSpec,
    pub labels: Option<&'a Labels>,
    pub output: Output,
    pub classes: usize,
}

/// `choice` as a bundle, with the ONNX files it names.
pub fn bundle(backbone: &Backbone, choice: &Choice) -> Result<(Bundle, Vec<File>)> {
    let graph = backbone.graph;
    let cuts: Vec<&str> = choice.exits.iter().map(|e| e.cut.tensor.as_str()).collect();
    let segments = graph.split(&cuts)?;
    let heads = choice
        .exits
        .iter()
        .map(|e| {
            build_head(
                &e.head.spec(),
                &e.cut.shape,
                backbone.classes,
                graph.opset(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let last = segments.len() - 1;
    let stages = segments
        .iter()
        .enumerate()
        .map(|(k, s)| Stage {
            segment: format!("stage-{k}.onnx"),
            macs: Some(s.macs),
            exit: (k < last).then(|| Exit {
                head: format!("exit-{k}.onnx"),
                threshold: choice.exits[k].threshold,
                macs: Some(heads[k].macs),
                gate: choice.gates.as_ref().map(|g| g.weights[k].clone()),
            }),
        })
        .collect();
    let bundle = Bundle {
        file: Default::default(),
        // The first format that can say everything, so that every reader it can takes it.
        format: if choice.reuse.is_some() {
            Format::V3
        } else if choice.gates.is_some() {
            Format::V2
        } else {
            Format::naming(choice.metric)
        },
        name: backbone
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned()),
        input: backbone.input.clone(),
        labels: backbone.labels.cloned(),
        metric: choice.metric,
        gate: choice.gates.as_ref().map(|g| g.gate.clone()),
        promise: choice.promise.clone(),
        reuse: choice.reuse.clone(),
        stages,
        output: backbone.output,
    };
    let mut files = Vec::new();
    for (k, s) in segments.iter().enumerate() {
        files.push(File::new(format!("stage-{k}.onnx"), encode_model(&s.model)));
    }
    for (k, h) in heads.iter().enumerate() {
        files.push(File::new(format!("exit-{k}.onnx"), encode_model(&h.model)));
    }
    Ok((bundle, files))
}
