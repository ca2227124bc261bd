//! The stream rule chosen on the selecting frames (format 3): for the structure they prefer,
//! the rule that makes it cheapest there while it still meets the target there. Whether and
//! how far the rule may go is then the certifying frames' call, up its own ladder.

use super::zoo::{Structure, Zoo};

/// A rule is kept only when it saves at least this share of the structure's cost on the
/// selecting frames: on footage with no redundancy (shuffled pictures), a rule that fires on a
/// few lookalike neighbours would add a detector, a ladder and a format for nothing.
pub const MIN_SAVING: f64 = 0.1;

/// `base` with the stream rule the selecting frames prefer, or None when no rule meets the
/// target there and saves [`MIN_SAVING`] of `base`'s cost.
pub fn with_reuse(zoo: &Zoo, base: &Structure) -> Option<Structure> {
    let frames = &zoo.problem.frames;
    let own = zoo.run(base, false)?.mean_cost;
    let limit = zoo.problem.goal.limit();
    let rules = crate::reuse::candidates(&frames.select, &frames.select_ranges);
    let bar = crate::progress::bar("trying stream rules", Some(rules.len() as u64));
    let best = rules
        .into_iter()
        .filter_map(|rule| {
            bar.inc(1);
            let s = Structure {
                reuse: Some(rule),
                ..base.clone()
            };
            let sim = zoo.run(&s, false)?;
            (zoo.error(&sim) <= limit).then_some((sim.mean_cost, s))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0));
    bar.finish_and_clear();
    best.filter(|(cost, _)| *cost <= (1.0 - MIN_SAVING) * own)
        .map(|(_, s)| s)
}
