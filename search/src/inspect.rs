//! `inspect`: every place where the backbone can be cut, with its tensor's shape and the share of
//! MACs before it.

use anyhow::Result;

use crate::cli::InspectArgs;

pub fn run(args: &InspectArgs) -> Result<()> {
    // Validates the flags against the model, as the search would.
    let (graph, spec) = crate::input::load_backbone(&args.backbone, &args.input)?;
    let input = graph.input();
    let total = graph.total_macs();
    println!("backbone  {}", args.backbone.display());
    println!(
        "input     {} {:?} ({:?}, {:?}, {}×{})",
        input.name, input.shape, spec.layout, spec.color, spec.width, spec.height
    );
    println!(
        "output    {} {:?}{}",
        graph.output().name,
        graph.output().shape,
        if graph.ends_with_softmax() {
            " (ends with a Softmax: probabilities)"
        } else {
            ""
        }
    );
    println!("MACs      {total}");
    let cuts = graph.cut_points();
    println!("\n{} cut points:", cuts.len());
    println!("{:>4}  {:>7}  {:<24}  tensor", "#", "MACs", "shape");
    for (i, cut) in cuts.iter().enumerate() {
        println!(
            "{:>4}  {:>6.2}%  {:<24}  {}",
            i,
            100.0 * cut.macs_before as f64 / total.max(1) as f64,
            format!("{:?}", cut.shape),
            cut.tensor
        );
    }
    Ok(())
}
