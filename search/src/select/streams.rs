//! The stream rule chosen on the selecting frames (format 3): the rule that makes the backbone
//! alone cheapest there while it still meets the target there. Reused answers cost almost
//! nothing, so the rule is chosen for itself, before the exits take any of the error the
//! target allows. Its detector and cap are kept; the ladder then walks its threshold and the
//! exits' together ([`super::ladder`]), and how far they may go is the certifying frames' call.

use earlyexit::reuse::ReuseRule;

use super::zoo::{Structure, Zoo};

/// A rule is kept only when it saves at least this share of the backbone's cost on the
/// selecting frames: on footage with no redundancy (shuffled pictures), a rule that fires on a
/// few lookalike neighbours would add a detector, a ladder and a format for nothing.
pub const MIN_SAVING: f64 = 0.1;

/// The stream rule the selecting frames prefer, or None when no rule meets the target there
/// and saves [`MIN_SAVING`] of the backbone's cost.
pub fn reuse_rule(zoo: &Zoo) -> Option<ReuseRule> {
    let frames = &zoo.problem.frames;
    let base = Structure::backbone();
    let own = zoo.run(&base, false)?.mean_cost;
    let limit = zoo.problem.goal.limit();
    let rules = crate::reuse::candidates(&frames.train, &frames.train_ranges, &zoo.problem.input);
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
            (zoo.error(&sim) <= limit).then_some((sim.mean_cost, s.reuse?))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0));
    bar.finish_and_clear();
    best.filter(|(cost, _)| *cost <= (1.0 - MIN_SAVING) * own)
        .map(|(_, rule)| rule)
}
