//! The exit-structure search: NSGA-II over which candidate positions get an exit, which head
//! each gets and its threshold, minimising cost and error together. Every configuration is
//! scored from cached head outputs, so scoring runs no backbone.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The space: at each candidate position, no exit or one (head, threshold) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub positions: usize,
    pub heads: usize,
    pub thresholds: usize,
}

impl Space {
    /// Choices per position, "no exit" included.
    fn choices(&self) -> u16 {
        (1 + self.heads * self.thresholds) as u16
    }
}

/// One configuration: per position, 0 for no exit, else 1 + head × thresholds + threshold.
pub type Genome = Vec<u16>;

/// An exit of a configuration, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gene {
    pub position: usize,
    pub head: usize,
    pub threshold: usize,
}

/// The exits a genome places, in position order.
pub fn decode(space: &Space, genome: &[u16]) -> Vec<Gene> {
    genome
        .iter()
        .enumerate()
        .filter(|(_, g)| **g > 0)
        .map(|(position, g)| {
            let i = usize::from(*g - 1);
            Gene {
                position,
                head: i / space.thresholds,
                threshold: i % space.thresholds,
            }
        })
        .collect()
}

/// A scored configuration: objectives to minimise, `[cost, error]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub genome: Genome,
    pub objectives: [f64; 2],
}

/// What the search returns: every configuration it scored, in the order it scored them.
pub struct Outcome {
    pub scored: Vec<Scored>,
}

pub struct Settings {
    /// Configurations scored at most (distinct ones; a repeat is looked up).
    pub budget: usize,
    pub population: usize,
    pub seed: u64,
}

/// Runs NSGA-II. `seeds` are configurations placed in the first population (for example "no
/// exit at all", which is always feasible).
pub fn search(
    space: &Space,
    settings: &Settings,
    seeds: &[Genome],
    mut score: impl FnMut(&[u16]) -> [f64; 2],
) -> Outcome {
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let mut cache: HashMap<Genome, [f64; 2]> = HashMap::new();
    let mut order: Vec<Genome> = Vec::new();
    let mut evaluate = |g: Genome, cache: &mut HashMap<Genome, [f64; 2]>| -> Option<Scored> {
        if let Some(o) = cache.get(&g) {
            return Some(Scored {
                genome: g,
                objectives: *o,
            });
        }
        if cache.len() >= settings.budget {
            return None;
        }
        let o = score(&g);
        cache.insert(g.clone(), o);
        order.push(g.clone());
        Some(Scored {
            genome: g,
            objectives: o,
        })
    };

    let n = settings.population.max(4);
    let mut population: Vec<Scored> = Vec::with_capacity(n);
    for g in seeds
        .iter()
        .cloned()
        .chain(std::iter::repeat_with(|| random(space, &mut rng)))
    {
        if population.len() >= n || cache.len() >= settings.budget {
            break;
        }
        if let Some(s) = evaluate(g, &mut cache) {
            population.push(s);
        }
    }
    // Stop once the budget is spent, or when generations bring nothing new.
    let mut stale = 0;
    while cache.len() < settings.budget && stale < 50 {
        let (rank, crowding) = rank_and_crowd(&population);
        let before = cache.len();
        let mut children = Vec::with_capacity(n);
        while children.len() < n && cache.len() < settings.budget {
            let a = tournament(&population, &rank, &crowding, &mut rng);
            let b = tournament(&population, &rank, &crowding, &mut rng);
            let child = mutate(
                space,
                crossover(&population[a].genome, &population[b].genome, &mut rng),
                &mut rng,
            );
            if let Some(s) = evaluate(child, &mut cache) {
                children.push(s);
            }
        }
        stale = if cache.len() == before { stale + 1 } else { 0 };
        population.extend(children);
        population = survivors(population, n);
    }

    let scored: Vec<Scored> = order
        .into_iter()
        .map(|g| {
            let objectives = cache[&g];
            Scored {
                genome: g,
                objectives,
            }
        })
        .collect();
    Outcome { scored }
}

fn random(space: &Space, rng: &mut StdRng) -> Genome {
    // Sparse starts: most positions without an exit, as good structures have few exits.
    (0..space.positions)
        .map(|_| {
            if rng.random_bool(0.3) {
                rng.random_range(1..space.choices())
            } else {
                0
            }
        })
        .collect()
}

fn crossover(a: &[u16], b: &[u16], rng: &mut StdRng) -> Genome {
    a.iter()
        .zip(b)
        .map(|(x, y)| if rng.random_bool(0.5) { *x } else { *y })
        .collect()
}

fn mutate(space: &Space, mut g: Genome, rng: &mut StdRng) -> Genome {
    let rate = 1.0 / space.positions.max(1) as f64;
    for gene in g.iter_mut() {
        if !rng.random_bool(rate.min(1.0)) {
            continue;
        }
        *gene = match rng.random_range(0..3) {
            // Move the threshold one step, keeping the head: the most common useful change.
            0 if *gene > 0 => {
                let i = usize::from(*gene - 1);
                let (head, t) = (i / space.thresholds, i % space.thresholds);
                let t = if rng.random_bool(0.5) {
                    t.saturating_sub(1)
                } else {
                    (t + 1).min(space.thresholds - 1)
                };
                (1 + head * space.thresholds + t) as u16
            }
            1 => 0,
            _ => rng.random_range(1..space.choices()),
        };
    }
    g
}

/// `a` is no worse in both objectives and better in one.
pub fn dominates(a: &[f64; 2], b: &[f64; 2]) -> bool {
    a[0] <= b[0] && a[1] <= b[1] && (a[0] < b[0] || a[1] < b[1])
}

/// The items no other dominates by `objectives`, ordered by the first objective (stable), one
/// per point.
pub fn pareto_front<T>(items: &[T], objectives: impl Fn(&T) -> [f64; 2]) -> Vec<&T> {
    let mut front: Vec<&T> = items
        .iter()
        .filter(|a| {
            !items
                .iter()
                .any(|b| dominates(&objectives(b), &objectives(a)))
        })
        .collect();
    front.sort_by(|a, b| objectives(a)[0].total_cmp(&objectives(b)[0]));
    front.dedup_by(|a, b| objectives(a) == objectives(b));
    front
}

/// Non-domination rank (0 = the front) and crowding distance of each member.
fn rank_and_crowd(pop: &[Scored]) -> (Vec<usize>, Vec<f64>) {
    let n = pop.len();
    let mut rank = vec![usize::MAX; n];
    let mut remaining: Vec<usize> = (0..n).collect();
    let mut level = 0;
    let mut crowding = vec![0.0; n];
    while !remaining.is_empty() {
        let front: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|&i| {
                !remaining
                    .iter()
                    .any(|&j| dominates(&pop[j].objectives, &pop[i].objectives))
            })
            .collect();
        for &i in &front {
            rank[i] = level;
        }
        for m in 0..2 {
            let mut f = front.clone();
            f.sort_by(|&a, &b| pop[a].objectives[m].total_cmp(&pop[b].objectives[m]));
            let (lo, hi) = (pop[f[0]].objectives[m], pop[f[f.len() - 1]].objectives[m]);
            crowding[f[0]] = f64::INFINITY;
            crowding[f[f.len() - 1]] = f64::INFINITY;
            if hi > lo {
                for w in f.windows(3) {
                    crowding[w[1]] +=
                        (pop[w[2]].objectives[m] - pop[w[0]].objectives[m]) / (hi - lo);
                }
            }
        }
        remaining.retain(|i| rank[*i] == usize::MAX);
        level += 1;
    }
    (rank, crowding)
}

fn tournament(pop: &[Scored], rank: &[usize], crowding: &[f64], rng: &mut StdRng) -> usize {
    let a = rng.random_range(0..pop.len());
    let b = rng.random_range(0..pop.len());
    if (rank[a], -crowding[a]) < (rank[b], -crowding[b]) {
        a
    } else {
        b
    }
}

/// The best `n` by rank, then crowding; duplicates dropped first.
fn survivors(mut pop: Vec<Scored>, n: usize) -> Vec<Scored> {
    let mut seen = std::collections::HashSet::new();
    pop.retain(|s| seen.insert(s.genome.clone()));
    let (rank, crowding) = rank_and_crowd(&pop);
    let mut idx: Vec<usize> = (0..pop.len()).collect();
    idx.sort_by(|&a, &b| {
        rank[a]
            .cmp(&rank[b])
            .then(crowding[b].total_cmp(&crowding[a]))
    });
    idx.truncate(n);
    idx.sort_unstable();
    let keep: std::collections::HashSet<usize> = idx.into_iter().collect();
    pop.into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, s)| s)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cheapest scored configuration whose error is at most `max_error`.
    fn cheapest_within(scored: &[Scored], max_error: f64) -> Option<&Scored> {
        scored
            .iter()
            .filter(|s| s.objectives[1] <= max_error)
            .min_by(|a, b| a.objectives[0].total_cmp(&b.objectives[0]))
    }

    /// A toy cascade: position p costs (p+1)/5 of the backbone; head h is better but dearer;
    /// a higher threshold index lets fewer frames out but errs less.
    fn toy(space: &Space, g: &[u16]) -> [f64; 2] {
        let mut remaining = 1.0;
        let (mut cost, mut error) = (0.0, 0.0);
        for gene in decode(space, g) {
            let at = (gene.position + 1) as f64 / (space.positions + 1) as f64;
            let head_cost = 0.01 * (1 + gene.head) as f64;
            let leave = remaining
                * (0.9 - 0.2 * gene.threshold as f64 / space.thresholds as f64)
                * (0.3 + 0.2 * gene.head as f64 + at * 0.5);
            let err = leave
                * (0.08 - 0.06 * gene.threshold as f64 / space.thresholds as f64)
                * (1.0 - 0.4 * gene.head as f64)
                * (1.0 - at);
            // Every frame that reaches the exit pays for its head; those leaving stop here.
            cost += remaining * head_cost + leave * at;
            error += err;
            remaining -= leave;
        }
        cost += remaining * 1.0;
        [cost, error]
    }

    fn exhaustive(space: &Space) -> Vec<Scored> {
        let choices = space.choices();
        let total = u64::from(choices).pow(space.positions as u32);
        (0..total)
            .map(|mut k| {
                let g: Genome = (0..space.positions)
                    .map(|_| {
                        let c = (k % u64::from(choices)) as u16;
                        k /= u64::from(choices);
                        c
                    })
                    .collect();
                let o = toy(space, &g);
                Scored {
                    genome: g,
                    objectives: o,
                }
            })
            .collect()
    }

    #[test]
    fn finds_the_exhaustive_optimum_with_a_smaller_budget() {
        let space = Space {
            positions: 4,
            heads: 2,
            thresholds: 4,
        };
        let all = exhaustive(&space);
        assert_eq!(all.len(), 6561);
        for max_error in [0.005, 0.01, 0.02] {
            let best = cheapest_within(&all, max_error).unwrap();
            let settings = Settings {
                budget: 2000,
                population: 40,
                seed: 3,
            };
            let outcome = search(&space, &settings, &[vec![0; space.positions]], |g| {
                toy(&space, g)
            });
            assert!(outcome.scored.len() <= 2000);
            let found = cheapest_within(&outcome.scored, max_error).unwrap();
            assert!(
                found.objectives[0] <= best.objectives[0] * 1.01,
                "error ≤ {max_error}: found cost {} vs optimum {}",
                found.objectives[0],
                best.objectives[0]
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_search() {
        let space = Space {
            positions: 5,
            heads: 3,
            thresholds: 6,
        };
        let settings = Settings {
            budget: 300,
            population: 20,
            seed: 9,
        };
        let a = search(&space, &settings, &[], |g| toy(&space, g));
        let b = search(&space, &settings, &[], |g| toy(&space, g));
        assert_eq!(a.scored, b.scored);
        assert!(a.scored.len() <= 300);
    }
}
