//! One family searched with NSGA-II on the selecting frames, then its cheapest configurations
//! that meet the target there certified one by one on frames nothing was fitted on.

use std::collections::HashSet;

use super::certificate::Certificate;
use super::rules::{LEVELS, Rule};
use super::zoo::{Family, Found, Zoo};
use crate::nas::{self, Genome};
use crate::simulate::Simulation;

/// Configurations certified at most; the confidence is split among them (Bonferroni).
pub const CERTIFY_TRIES: usize = 5;

/// The confidence each try's bound holds with, so that all of them hold with `confidence`.
pub fn per_try(confidence: f64) -> f64 {
    1.0 - (1.0 - confidence) / CERTIFY_TRIES as f64
}

/// One configuration scored on the selecting frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Configuration {
    pub rule: Rule,
    /// The structure's genes, then its threshold level.
    pub genome: Genome,
    /// Mean cost and error on the selecting frames (see [`Zoo::error`]).
    pub objectives: [f64; 2],
}

impl Configuration {
    /// How many exits the configuration places.
    pub fn exits(&self) -> usize {
        self.genome
            .split_last()
            .map_or(0, |(_, g)| g.iter().filter(|g| **g > 0).count())
    }
}

/// A configuration scored on the certifying frames.
#[derive(Clone)]
pub struct Try {
    pub rule: Rule,
    pub select: Simulation,
    pub certify: Simulation,
    pub certificate: Certificate,
}

/// What searching one family found, and how.
pub struct Searched {
    /// The configuration kept: the first certified try, else the best try not refuted, else
    /// no exit at all.
    pub found: Found,
    /// Every configuration scored on the selecting frames, in the order scored.
    pub configurations: Vec<Configuration>,
    /// Distinct structures scored, each at every threshold level.
    pub structures: usize,
    /// The family's size: kept positions, head architectures and exit rules.
    pub positions: usize,
    pub kinds: usize,
    pub rules: usize,
    /// The tries on the certifying frames, in order.
    pub tries: Vec<Try>,
}

impl Searched {
    /// The configurations no other beats in both mean cost and error, cheapest first, one per
    /// point.
    pub fn front(&self) -> Vec<&Configuration> {
        nas::pareto_front(&self.configurations, |c| c.objectives)
    }

    pub fn refuted(&self) -> usize {
        self.tries.iter().filter(|t| t.certificate.refuted).count()
    }

    /// Every try was refuted: none is kept, however well it did on the selecting frames.
    pub fn all_refuted(&self) -> bool {
        let refuted = self.refuted();
        refuted > 0 && refuted == self.tries.len()
    }
}

/// NSGA-II over `family` for each of its exit rules on the selecting frames, then the cheapest
/// configurations that meet the target there, certified one by one, at most `tries` of them.
pub fn search_and_certify(
    zoo: &Zoo,
    family: &Family,
    budget: usize,
    seed: u64,
    confidence: f64,
    tries: usize,
) -> Searched {
    let (configurations, structures) = search(zoo, family, budget, seed);
    let max_error = zoo.problem.goal.limit();
    let mut feasible: Vec<&Configuration> = configurations
        .iter()
        .filter(|c| c.objectives[1] <= max_error)
        .collect();
    feasible.sort_by(|a, b| a.objectives[0].total_cmp(&b.objectives[0]));

    let each = per_try(confidence);
    let mut done: Vec<Try> = Vec::new();
    let mut best: Option<Found> = None;
    let mut tried = HashSet::new();
    // After a refuted try, only configurations stricter on the selecting frames are worth a
    // try: those as lax as it are likely refuted too.
    let mut laxest_worth_trying = f64::INFINITY;
    for c in feasible {
        if tried.len() >= tries {
            break;
        }
        if c.objectives[1] >= laxest_worth_trying {
            continue;
        }
        let Some((level, genome)) = c.genome.split_last() else {
            continue;
        };
        let Some(placed) = zoo.placed(family, genome, usize::from(*level)) else {
            continue;
        };
        let (Some(select), Some(certify)) = (
            zoo.simulate(c.rule, &placed, false),
            zoo.simulate(c.rule, &placed, true),
        ) else {
            continue;
        };
        // Structures that answer every frame alike (an exit nobody leaves at) would certify
        // alike: one try, the cheapest of them.
        if !tried.insert((select.answers.clone(), certify.answers.clone())) {
            continue;
        }
        let certificate = zoo.certificate(&certify, each);
        if certificate.refuted {
            laxest_worth_trying = laxest_worth_trying.min(c.objectives[1]);
        }
        done.push(Try {
            rule: c.rule,
            select: select.clone(),
            certify: certify.clone(),
            certificate: certificate.clone(),
        });
        let found = Found {
            rule: c.rule,
            placed,
            gated: None,
            certificate,
            select,
            certify,
        };
        if found.certificate.certified {
            best = Some(found);
            break;
        }
        if found
            .certificate
            .better_uncertified_than(best.as_ref().map(|b| &b.certificate))
        {
            best = Some(found);
        }
    }
    // No exit at all is what is left when no structure meets the target on the selecting
    // frames, or the certifying frames refute every one that does. When some do but none
    // certifies, the best certified of those not refuted is kept, with the promise it did
    // certify: the backbone alone would certify more and save nothing.
    let found = best.unwrap_or_else(|| no_exit(zoo, each));
    Searched {
        found,
        configurations,
        structures,
        positions: family.positions.len(),
        kinds: family.kinds.len(),
        rules: family.rules.len(),
        tries: done,
    }
}

/// Every configuration of `family` NSGA-II scores on the selecting frames, in the order scored,
/// and the number of distinct structures among them.
fn search(zoo: &Zoo, family: &Family, budget: usize, seed: u64) -> (Vec<Configuration>, usize) {
    let space = family.space();
    let mut scored: Vec<Configuration> = Vec::new();
    let mut structures = 0;
    let per_rule = (budget / family.rules.len()).max(10);
    let bar = crate::progress::bar(
        "searching structures",
        Some((per_rule * family.rules.len()) as u64),
    );
    let max_error = zoo.problem.goal.limit();
    for &rule in &family.rules {
        let settings = nas::Settings {
            budget: per_rule,
            population: 48,
            seed: seed.wrapping_add(rule.ordinal() as u64),
        };
        // A structure is worth its cheapest feasible level, else its most accurate one.
        let outcome = nas::search(&space, &settings, &[vec![0; space.positions]], |g| {
            bar.inc(1);
            let mut best = [f64::INFINITY; 2];
            let Some(mut placed) = zoo.placed(family, g, 0) else {
                return best;
            };
            let Some(costs) = zoo.costs(&placed) else {
                return best;
            };
            for level in 0..LEVELS.len() {
                for p in &mut placed {
                    p.level = level;
                }
                let Some(sim) = zoo.simulate_costed(rule, &placed, false, &costs) else {
                    continue;
                };
                let objectives = [sim.mean_cost, zoo.error(&sim)];
                let mut genome = g.to_vec();
                genome.push(level as u16);
                scored.push(Configuration {
                    rule,
                    genome,
                    objectives,
                });
                let feasible = |o: &[f64; 2]| o[1] <= max_error;
                let better = match (feasible(&objectives), feasible(&best)) {
                    (true, true) => objectives[0] < best[0],
                    (true, false) => true,
                    (false, true) => false,
                    (false, false) => objectives[1] < best[1],
                };
                if better {
                    best = objectives;
                }
            }
            best
        });
        structures += outcome.scored.len();
    }
    bar.finish_and_clear();
    (scored, structures)
}

/// The structure with no exit: the backbone alone, certified like any try.
fn no_exit(zoo: &Zoo, confidence: f64) -> Found {
    let placed = Vec::new();
    let select = zoo
        .simulate(Rule::PLAIN, &placed, false)
        .unwrap_or_else(|| empty_simulation(zoo.select.frames()));
    let certify = zoo
        .simulate(Rule::PLAIN, &placed, true)
        .unwrap_or_else(|| empty_simulation(zoo.certify.frames()));
    Found {
        rule: Rule::PLAIN,
        placed,
        gated: None,
        certificate: zoo.certificate(&certify, confidence),
        select,
        certify,
    }
}

fn empty_simulation(frames: usize) -> Simulation {
    Simulation {
        exits: vec![frames],
        agree: vec![frames],
        correct: vec![0],
        frames,
        mean_cost: 1.0,
        answers: Vec::new(),
    }
}
