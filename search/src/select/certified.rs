//! One family searched with NSGA-II on the selecting frames, then its best structure certified
//! on frames nothing was fitted on, up a ladder of thresholds fixed before they are seen:
//! *Learn then Test* by fixed-sequence testing ([`certify::fixed_sequence`]), so a ladder pays
//! no multiplicity penalty however long it is, and no configuration is kept that the
//! certifying frames did not certify.

use super::rules::{LEVELS, Rule};
use super::zoo::{Family, Found, Step, Structure, Zoo};
use std::collections::HashMap;

use crate::certify;
use crate::nas::{self, Genome};
use crate::reuse::{self, Replay};
use crate::simulate::Simulation;
use earlyexit::reuse::ReuseRule;

/// One configuration scored on the selecting frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Configuration {
    pub rule: Rule,
    /// The structure's genes, then its threshold level.
    pub genome: Genome,
    /// Mean cost and error on the selecting frames (see [`Zoo::error`]).
    pub objectives: [f64; 2],
    /// The target's measure (accuracy or agreement) on the selecting frames, for the plot.
    pub rate: f64,
}

impl Configuration {
    /// How many exits the configuration places.
    pub fn exits(&self) -> usize {
        self.genome
            .split_last()
            .map_or(0, |(_, g)| g.iter().filter(|g| **g > 0).count())
    }
}

/// Every configuration of a family NSGA-II scored on the selecting frames.
pub struct Explored {
    /// In the order scored.
    pub configurations: Vec<Configuration>,
    /// Distinct structures scored, each at every threshold level.
    pub structures: usize,
    /// The family's size: kept positions, head architectures and exit rules.
    pub positions: usize,
    pub kinds: usize,
    pub rules: usize,
}

impl Explored {
    /// The configurations no other beats in both mean cost and error, cheapest first, one per
    /// point.
    pub fn front(&self) -> Vec<&Configuration> {
        nas::pareto_front(&self.configurations, |c| c.objectives)
    }
}

/// One ladder tested on the certifying frames.
pub struct Climbed {
    /// The steps tested, in order: each one certified but perhaps the last, where testing
    /// stopped.
    pub tries: Vec<Found>,
    /// Steps on the ladder, tested or not.
    pub steps: usize,
}

/// Where a try sits: its ladder, and its step on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TryAt {
    pub ladder: usize,
    pub step: usize,
}

/// What searching one family found, and how.
pub struct Searched {
    pub explored: Explored,
    /// Each ladder as the certifying frames climbed it.
    pub ladders: Vec<Climbed>,
    /// The confidence each ladder is tested with, so that all hold together with the search's.
    pub each: f64,
    /// The try kept: the cheapest certified on the certifying frames.
    pub kept: Option<TryAt>,
    /// The step kept, else no exit at all.
    pub found: Found,
}

/// [`explore`], then the ladder of its best structure, certified: the search of a family
/// without gates.
pub fn search_and_certify(
    zoo: &Zoo,
    family: &Family,
    budget: usize,
    seed: u64,
    confidence: f64,
) -> Searched {
    let explored = explore(zoo, family, budget, seed);
    let ladders = best(zoo, family, &explored)
        .map(|structure| ladder(zoo, &structure))
        .into_iter()
        .collect();
    certify(zoo, explored, ladders, confidence)
}

/// The structure the selecting frames prefer: the cheapest configuration there that meets the
/// target there.
pub fn best(zoo: &Zoo, family: &Family, explored: &Explored) -> Option<Structure> {
    let limit = zoo.problem.goal.limit();
    let c = explored
        .configurations
        .iter()
        .filter(|c| c.objectives[1] <= limit)
        .min_by(|a, b| a.objectives[0].total_cmp(&b.objectives[0]))?;
    let (level, genome) = c.genome.split_last()?;
    let placed = zoo.placed(family, genome, usize::from(*level))?;
    Some(Structure {
        rule: c.rule,
        thresholds: zoo.thresholds(&placed, c.rule.metric),
        placed,
        gated: None,
        reuse: None,
    })
}

/// Rungs of a ladder, and how far past its structure's own thresholds it reaches: at the last
/// rung, each exit lets twice as many selecting frames leave as at its own threshold.
pub const RUNGS: usize = 100;
pub const LOOSEST: f64 = 2.0;

/// The ladder through `structure`, safest first; it depends on the selecting frames alone, so
/// it is fixed before the certifying frames are seen, and fixed-sequence testing climbs it as
/// far as they allow.
///
/// Exit rung j lets the surest j/RUNGS × LOOSEST of the frames that leave at each exit under
/// its own threshold (counted on the selecting frames) leave there, from none (the backbone's
/// answer on every frame) up; the ladder takes each rung that saves cost. With a stream rule,
/// its detector and cap are kept, and its threshold takes rungs from reusing nothing through
/// RUNGS quantiles of the distances between neighbouring selecting frames, whatever threshold
/// the selecting frames preferred: those few frames choose the rule's kind, and the
/// certifying frames how far it may go. The ladder walks both: each step moves one of the two
/// to its next rung that saves cost on the selecting frames, the one with the lower price
/// (error added there per cost saved) to some rung ahead of it, the exits' on a tie. Judged by
/// its next rung alone, the rule could wait until exit rungs had spent the error allowed:
/// its first rungs reuse few frames and may err on one, while reusing most frames adds
/// little more error.
pub fn ladder(zoo: &Zoo, structure: &Structure) -> Vec<Step> {
    let Some(rungs) = exit_rungs(zoo, structure) else {
        return Vec::new();
    };
    let at = |thresholds: &[f64], reuse: Option<(&ReuseRule, &Replay)>| {
        let structure = Structure {
            thresholds: thresholds.to_vec(),
            gated: None,
            reuse: reuse.map(|(rule, _)| rule.clone()),
            ..structure.clone()
        };
        let select = zoo.run_replayed(&structure, false, reuse.map(|(_, replay)| replay))?;
        Some(Step { structure, select })
    };
    let Some(rule) = &structure.reuse else {
        let mut steps: Vec<Step> = Vec::new();
        for (j, thresholds) in rungs.iter().enumerate() {
            let Some(next) = at(thresholds, None) else {
                break;
            };
            let saves = steps
                .last()
                .is_none_or(|s| next.select.mean_cost < s.select.mean_cost);
            if saves || j + 1 == rungs.len() {
                steps.push(next);
            }
        }
        return steps;
    };
    let frames = &zoo.problem.frames;
    let rules: Vec<ReuseRule> = std::iter::once(0.0)
        .chain(reuse::thresholds(
            rule.detector,
            rule.grid,
            &frames.train,
            &frames.train_ranges,
            RUNGS,
        ))
        .map(|threshold| ReuseRule {
            threshold,
            ..rule.clone()
        })
        .collect();
    // Which frames reuse depends on the rule alone: one replay per rule rung.
    let replays: Vec<Replay> = rules.iter().map(|r| zoo.replay(r, false)).collect();
    let run = |[e, r]: [usize; 2]| at(&rungs[e], Some((&rules[r], &replays[r])));
    let mut memo: HashMap<[usize; 2], Option<Point>> = HashMap::new();
    let mut point = |rung: [usize; 2]| {
        *memo.entry(rung).or_insert_with(|| {
            run(rung).map(|step| Point {
                cost: step.select.mean_cost,
                error: zoo.error(&step.select),
            })
        })
    };
    let last = [rungs.len() - 1, rules.len() - 1];
    let mut rung = [0, 0];
    let Some(mut here) = point(rung) else {
        return Vec::new();
    };
    let mut path = vec![rung];
    loop {
        // Per axis, its next rung that saves cost and the best price to any rung ahead.
        let mut chosen: Option<(f64, [usize; 2], Point)> = None;
        for axis in 0..2 {
            let mut next = None;
            let mut price = f64::INFINITY;
            for k in rung[axis] + 1..=last[axis] {
                let mut to = rung;
                to[axis] = k;
                let Some(p) = point(to).filter(|p| p.cost < here.cost) else {
                    continue;
                };
                next.get_or_insert((to, p));
                price = price.min((p.error - here.error) / (here.cost - p.cost));
            }
            if let Some((to, p)) = next
                && chosen.is_none_or(|(best, _, _)| price < best)
            {
                chosen = Some((price, to, p));
            }
        }
        let Some((_, next, p)) = chosen else {
            break;
        };
        (rung, here) = (next, p);
        path.push(rung);
    }
    path.into_iter().filter_map(run).collect()
}

/// What a pair of an exit rung and a stream rule rung costs and errs on the selecting frames
/// ([`Zoo::error`]).
#[derive(Clone, Copy)]
struct Point {
    cost: f64,
    error: f64,
}

/// Each exit rung's thresholds, from none leaving to LOOSEST times the structure's own
/// leavers; rungs that change no threshold are one. None when an exit has no head.
fn exit_rungs(zoo: &Zoo, structure: &Structure) -> Option<Vec<Vec<f64>>> {
    let metric = structure.rule.metric;
    // Each exit's scores on the selecting frames, surest first, and how many leave there.
    let exits = structure
        .placed
        .iter()
        .zip(&structure.thresholds)
        .map(|(p, &threshold)| {
            let o = zoo.option(p)?;
            let mut scores = o.select.scores(metric);
            scores.retain(|s| !s.is_nan());
            scores.sort_by(|a, b| metric.surest_first(*a, *b));
            let leaving = scores
                .iter()
                .filter(|&&s| metric.leaves(s, threshold))
                .count();
            Some((scores, leaving))
        })
        .collect::<Option<Vec<(Vec<f64>, usize)>>>()?;
    let mut rungs: Vec<Vec<f64>> = Vec::new();
    for j in 0..=RUNGS {
        let scale = LOOSEST * j as f64 / RUNGS as f64;
        let thresholds: Vec<f64> = exits
            .iter()
            .map(|(scores, leaving)| {
                let n = ((*leaving as f64 * scale).round() as usize).min(scores.len());
                if n == 0 {
                    metric.never()
                } else {
                    scores[n - 1]
                }
            })
            .collect();
        if rungs.last() != Some(&thresholds) {
            rungs.push(thresholds);
        }
    }
    Some(rungs)
}

/// Climbs each of `ladders` on the certifying frames by fixed-sequence testing, the search's
/// `confidence` split evenly among them (Bonferroni), and keeps the cheapest step certified
/// there, when it costs less than the backbone alone (1); else no exit at all.
pub fn certify(
    zoo: &Zoo,
    explored: Explored,
    ladders: Vec<Vec<Step>>,
    confidence: f64,
) -> Searched {
    let each = 1.0 - (1.0 - confidence) / ladders.len().max(1) as f64;
    let climbed: Vec<Climbed> = ladders
        .into_iter()
        .map(|ladder| climb(zoo, ladder, each))
        .collect();
    let at = |t: TryAt| &climbed[t.ladder].tries[t.step];
    let kept = climbed
        .iter()
        .enumerate()
        .flat_map(|(ladder, c)| (0..c.tries.len()).map(move |step| TryAt { ladder, step }))
        .filter(|&t| at(t).certificate.certified && at(t).certify.mean_cost < 1.0)
        .min_by(|&a, &b| at(a).certify.mean_cost.total_cmp(&at(b).certify.mean_cost));
    let found = kept.map_or_else(|| no_exit(zoo, each), |t| at(t).clone());
    Searched {
        explored,
        ladders: climbed,
        each,
        kept,
        found,
    }
}

/// One ladder tested in order, each step with confidence `each`, until the first that fails.
fn climb(zoo: &Zoo, ladder: Vec<Step>, each: f64) -> Climbed {
    let steps = ladder.len();
    let tested = ladder.into_iter().filter_map(|s| s.certified(zoo, each));
    let (passed, failed) = certify::fixed_sequence(tested, |f| f.certificate.certified);
    Climbed {
        tries: passed.into_iter().chain(failed).collect(),
        steps,
    }
}

/// Every configuration of `family` NSGA-II scores on the selecting frames, for each of its
/// exit rules.
pub fn explore(zoo: &Zoo, family: &Family, budget: usize, seed: u64) -> Explored {
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
                    rate: sim.rate(zoo.problem.goal.measure),
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
    Explored {
        configurations: scored,
        structures,
        positions: family.positions.len(),
        kinds: family.kinds.len(),
        rules: family.rules.len(),
    }
}

/// The structure with no exit: the backbone alone. It agrees with the backbone on every frame
/// by construction; its certificate says what the certifying frames show of the target.
fn no_exit(zoo: &Zoo, confidence: f64) -> Found {
    let placed = Vec::new();
    let select = zoo
        .simulate(Rule::PLAIN, &placed, false)
        .unwrap_or_else(|| empty_simulation(zoo.select.frames()));
    let certify = zoo
        .simulate(Rule::PLAIN, &placed, true)
        .unwrap_or_else(|| empty_simulation(zoo.certify.frames()));
    Found {
        structure: Structure::backbone(),
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
        reused: Default::default(),
    }
}
