//! The chosen structure against its baselines on the certifying frames: the full backbone,
//! Shallow-Deep Networks (an exit at every kept position), evenly spaced exits, and the oracle
//! for the chosen heads.

use super::zoo::{Found, Zoo};
use crate::paired::Paired;
use crate::simulate::share_alike;

/// The baselines' figures on the certifying frames, and how each differs from the chosen
/// structure there.
pub struct Baselines {
    pub shallow_deep: Found,
    pub even: Found,
    /// Frames only the chosen structure, or only the baseline, gets right under the target's
    /// measure.
    pub against_backbone: Paired,
    pub against_shallow_deep: Paired,
    pub against_even: Paired,
    /// The full backbone's accuracy on the certifying frames, when they have ground truth.
    pub backbone_accuracy: Option<f64>,
    /// The oracle's mean cost for the chosen heads: each frame leaves at the earliest chosen
    /// exit that gives the backbone's answer.
    pub oracle: f64,
}

impl Baselines {
    pub fn compare(zoo: &Zoo, chosen: &Found, shallow_deep: Found, even: Found) -> Baselines {
        let against = |answers: &[u32]| against_chosen(zoo, chosen, answers);
        Baselines {
            against_backbone: against(zoo.certify.teacher),
            against_shallow_deep: against(&shallow_deep.certify.answers),
            against_even: against(&even.certify.answers),
            backbone_accuracy: zoo
                .certify
                .labels
                .map(|l| share_alike(l, zoo.certify.teacher)),
            oracle: oracle_cost(zoo, chosen),
            shallow_deep,
            even,
        }
    }
}

/// The frames of the certifying frames where only the chosen structure, or only a structure
/// answering `answers`, is right.
fn against_chosen(zoo: &Zoo, chosen: &Found, answers: &[u32]) -> Paired {
    let measure = zoo.problem.goal.measure;
    let mut paired = Paired::default();
    for (i, (&ours, &theirs)) in chosen.certify.answers.iter().zip(answers).enumerate() {
        paired.add(
            zoo.certify.right(measure, i, ours),
            zoo.certify.right(measure, i, theirs),
        );
    }
    paired
}

/// The oracle's mean cost on the certifying frames for the found structure's heads.
fn oracle_cost(zoo: &Zoo, f: &Found) -> f64 {
    let Some(costs) = zoo.costs(&f.structure.placed) else {
        return 1.0;
    };
    let n = zoo.certify.frames();
    let total: f64 = (0..n)
        .map(|i| {
            let stage = f
                .structure
                .placed
                .iter()
                .position(|p| {
                    zoo.option(p)
                        .is_some_and(|o| o.certify.class(i) == zoo.certify.teacher[i])
                })
                .unwrap_or(f.structure.placed.len());
            costs.cost(stage, true)
        })
        .sum();
    total / n.max(1) as f64
}
