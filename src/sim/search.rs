//! The references found by searching with the simulator itself: `static-best`,
//! `keda-tuned` and `oracle`. None of them reads the profile's `capacity`: each tries
//! fleets (or thresholds) on the trace and keeps the cheapest one whose *feasible*
//! attainment (see [`super::feasible`]) of both SLOs reaches the target.
//!
//! The oracle knows every arrival. Window by window (at most [`ORACLE_WINDOW`] long) it
//! tries fleet sizes from the state the previous windows left (in-flight requests,
//! draining replicas) and keeps the smallest whose requests of that window reach the
//! target; the replicas it adds were created one cold start earlier and are billed
//! from then. Two approximations: the search is greedy (a window never buys capacity
//! for the next one's sake), and a trial holds its fleet until the window's requests
//! finish, while the next window may change it. A causal policy pays the same cold
//! starts without knowing when to start them, so it should not beat this floor by more
//! than the greedy slack, a few percent.

use std::collections::{HashMap, VecDeque};

use rayon::prelude::*;

use super::{
    model::Request,
    run::{Found, KedaThresholds, Outcome, Policy, Setup, Simulation, drive, run},
    stats::Stats,
    trace::Arrivals,
};

pub use super::stats::ORACLE_WINDOW;

/// Queue thresholds `keda-tuned` tries (the seed's 15 among them).
pub const QUEUE_GRID: [f64; 7] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0];
/// Output-token thresholds it tries, per replica (the seed's 5,000 among them); a
/// prefill pool's input-token threshold is [`INPUT_FACTOR`] times as large, as the seed's.
pub const TOKENS_GRID: [f64; 9] = [
    25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3000.0, 5000.0,
];
/// The seed's input-token threshold over its output-token threshold.
pub const INPUT_FACTOR: f64 = 8.0;

/// Makes the trace's arrivals afresh; shared by the searches' threads.
pub type MakeArrivals<'a> = &'a (dyn Fn() -> Arrivals + Sync);

/// Runs one policy: the searched ones search, the others run once.
pub fn evaluate(setup: &Setup, policy: Policy, arrivals: MakeArrivals, target: f64) -> Outcome {
    match policy {
        Policy::StaticBest => static_best(setup, arrivals, target),
        Policy::KedaTuned => keda_tuned(setup, arrivals, target),
        Policy::Oracle => oracle(setup, arrivals, target),
        Policy::OracleHpa => oracle_hpa(setup, arrivals, target),
        policy => run(setup, policy, arrivals),
    }
}

/// Each pool's (minReplicaCount, maxReplicaCount): the references run within the
/// scaler's bounds, since the warm pool is the user's choice, not a scaling decision.
fn bounds(setup: &Setup) -> Vec<(u32, u32)> {
    setup
        .pools
        .iter()
        .map(|p| {
            let max = p.scaled_object.max_replicas.max(1);
            (p.scaled_object.min_replicas.min(max), max)
        })
        .collect()
}

/// Both feasible attainments of a run reach `target`.
fn reaches(outcome: &Outcome, target: f64) -> bool {
    outcome.stats.feasible.reaches(target)
}

/// The lower of the two feasible attainments: what "most attaining" ranks by.
fn worst_attainment(outcome: &Outcome) -> f64 {
    let feasible = &outcome.stats.feasible;
    feasible.ttft_attainment().min(feasible.tpot_attainment())
}

/// The smallest `n` in `lo..=hi` for which `ok(n)` holds, assuming it holds from some
/// `n` on, found from `guess` outwards (adjacent windows need similar fleets); `hi` and
/// `false` when even `hi` fails.
pub fn smallest(lo: u32, hi: u32, guess: u32, mut ok: impl FnMut(u32) -> bool) -> (u32, bool) {
    let mut seen: HashMap<u32, bool> = HashMap::new();
    let mut test = |n: u32| *seen.entry(n).or_insert_with(|| ok(n));
    let guess = guess.clamp(lo, hi);
    // `bad` fails (or is below the range), `good` holds.
    let mut bad = i64::from(lo) - 1;
    let mut good;
    if test(guess) {
        good = i64::from(guess);
        let mut step = 1;
        while good - step >= i64::from(lo) {
            let n = (good - step) as u32;
            if !test(n) {
                bad = i64::from(n);
                break;
            }
            good = i64::from(n);
            step *= 2;
        }
    } else {
        bad = i64::from(guess);
        let mut step = 1;
        loop {
            let n = (bad + step).min(i64::from(hi)) as u32;
            if n as i64 <= bad {
                return (hi, false);
            }
            if test(n) {
                good = i64::from(n);
                break;
            }
            bad = i64::from(n);
            step *= 2;
        }
    }
    while good - bad > 1 {
        let mid = (bad + good) / 2;
        if test(mid as u32) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    (good as u32, true)
}

/// A fixed fleet over the whole trace, with feasible counts per oracle window.
fn run_fixed(setup: &Setup, fleet: &[u32], arrivals: MakeArrivals) -> Outcome {
    let simulation = Simulation::with_fleet(setup.clone(), Policy::StaticBest, fleet);
    drive(simulation, arrivals())
}

/// The windows of [`ORACLE_WINDOW`] (by index) whose feasible attainment of either SLO
/// falls under `target` in `outcome`.
pub fn missed_windows(outcome: &Outcome, target: f64) -> Vec<u64> {
    let windows = &outcome.stats.windows;
    windows
        .iter()
        .filter(|(_, counts)| !counts.reaches(target))
        .map(|(index, _)| *index)
        .collect()
}

/// `static-best`: the smallest fixed fleet with which every window of
/// [`ORACLE_WINDOW`] reaches `target`, as the oracle's windows must (a fixed fleet
/// sized to hold the SLOs all day); windows that miss it even at maxReplicaCount are
/// left out, as the oracle runs those at the maximum. Pool by pool, later pools at their
/// maximum while an earlier one is searched.
pub fn static_best(setup: &Setup, arrivals: MakeArrivals, target: f64) -> Outcome {
    let bounds = bounds(setup);
    let mut fleet: Vec<u32> = bounds.iter().map(|b| b.1).collect();
    let at_max = run_fixed(setup, &fleet, arrivals);
    let unreachable = missed_windows(&at_max, target);
    let mut reached = true;
    for (index, &(lo, hi)) in bounds.iter().enumerate() {
        let (n, ok) = smallest(lo.max(1), hi, lo.max(1), |n| {
            let mut trial = fleet.clone();
            trial[index] = n;
            let outcome = run_fixed(setup, &trial, arrivals);
            missed_windows(&outcome, target)
                .iter()
                .all(|w| unreachable.contains(w))
        });
        fleet[index] = n;
        reached &= ok && unreachable.is_empty();
    }
    let mut outcome = run_fixed(setup, &fleet, arrivals);
    outcome.policy = Policy::StaticBest;
    outcome.found = Some(Found::Replicas {
        replicas: fleet,
        reached,
    });
    outcome
}

/// `keda-tuned`: the seed's two triggers and behavior with thresholds chosen with
/// hindsight: for each queue threshold of [`QUEUE_GRID`], the largest token threshold
/// of [`TOKENS_GRID`] that reaches `target` (attainment falls as thresholds rise), and
/// the seed's own pair; the cheapest that reaches it, else the most attaining.
pub fn keda_tuned(setup: &Setup, arrivals: MakeArrivals, target: f64) -> Outcome {
    let try_pair = |queue: f64, tokens: f64| -> (KedaThresholds, Outcome) {
        let thresholds = KedaThresholds {
            queue,
            output_tokens: tokens,
            input_tokens: tokens * INPUT_FACTOR,
        };
        let tuned = Setup {
            keda: thresholds,
            ..setup.clone()
        };
        (thresholds, run(&tuned, Policy::KedaTuned, arrivals))
    };
    let mut candidates: Vec<(KedaThresholds, Outcome)> = QUEUE_GRID
        .par_iter()
        .flat_map_iter(|&queue| {
            let mut tried = Vec::new();
            // Indices into TOKENS_GRID: the largest one that reaches the target.
            let last = TOKENS_GRID.len() as u32 - 1;
            smallest(0, last, last / 2, |k| {
                let tokens = TOKENS_GRID[(last - k) as usize];
                let (thresholds, outcome) = try_pair(queue, tokens);
                let ok = reaches(&outcome, target);
                tried.push((thresholds, outcome));
                ok
            });
            tried
        })
        .collect();
    candidates.push(try_pair(
        KedaThresholds::SEED.queue,
        KedaThresholds::SEED.output_tokens,
    ));
    let cheapest = candidates
        .iter()
        .enumerate()
        .filter(|(_, (_, o))| reaches(o, target))
        .min_by(|a, b| a.1.1.gpu_hours.total_cmp(&b.1.1.gpu_hours))
        .map(|(i, _)| i);
    let reached = cheapest.is_some();
    let chosen = cheapest.unwrap_or_else(|| {
        candidates
            .iter()
            .enumerate()
            .max_by(|a, b| {
                worst_attainment(&a.1.1)
                    .total_cmp(&worst_attainment(&b.1.1))
                    .then(b.1.1.gpu_hours.total_cmp(&a.1.1.gpu_hours))
            })
            .map(|(i, _)| i)
            .expect("the seed's pair is always a candidate")
    });
    let (thresholds, mut outcome) = candidates.swap_remove(chosen);
    outcome.policy = Policy::KedaTuned;
    outcome.found = Some(Found::Thresholds {
        thresholds,
        reached,
    });
    outcome
}

/// Arrivals read ahead of the oracle's clock: a trial needs the window's requests and
/// those that follow while the window's last ones finish.
struct Upcoming {
    arrivals: Arrivals,
    buffer: VecDeque<Request>,
}

impl Upcoming {
    /// Reads arrivals up to `until`.
    fn fill(&mut self, until: f64) {
        while self.buffer.back().is_none_or(|r| r.arrival < until) {
            match self.arrivals.next() {
                Some(request) => self.buffer.push_back(request),
                None => return,
            }
        }
    }
}

/// The oracle's state between windows.
struct OracleRun<'a> {
    setup: &'a Setup,
    target: f64,
    upcoming: Upcoming,
    /// The committed fleet; `None` before the first window.
    simulation: Option<Simulation>,
    /// The committed fleet's timeline, kept out of it so that trials clone less.
    timeline: Vec<super::run::Point>,
}

impl OracleRun<'_> {
    /// Whether window `window` (from `start`) reaches the target with `fleet`, held
    /// until the window's requests are done (or the drain limit).
    fn trial(&self, window: u64, start: f64, fleet: &[u32]) -> bool {
        let mut trial = match &self.simulation {
            None => Simulation::with_fleet(self.setup.clone(), Policy::Oracle, fleet),
            Some(committed) => {
                let mut trial = committed.clone();
                for (index, &n) in fleet.iter().enumerate() {
                    trial.set_fleet(index, n, start);
                }
                trial
            }
        };
        trial.stats = Stats::windowed(self.setup.thresholds, ORACLE_WINDOW);
        let end = start + ORACLE_WINDOW;
        let limit = end + self.setup.drain_limit;
        for request in &self.upcoming.buffer {
            if request.arrival >= end && trial.stats.window_counts(window).is_complete() {
                break;
            }
            if request.arrival >= limit {
                break;
            }
            trial.arrive(*request);
        }
        let mut until = trial.now.max(end);
        while !trial.stats.window_counts(window).is_complete() && until < limit {
            until = (until + self.setup.scrape_interval).min(limit);
            trial.run_timers(until);
        }
        trial.stats.window_counts(window).reaches(self.target)
    }

    /// Chooses window `window`'s fleet, pool by pool from `guess`; whether it reached
    /// the target.
    fn choose(&self, window: u64, bounds: &[(u32, u32)], guess: &mut [u32]) -> bool {
        let start = window as f64 * ORACLE_WINDOW;
        let mut reached = true;
        for (index, &(lo, hi)) in bounds.iter().enumerate() {
            let (n, ok) = smallest(lo, hi, guess[index], |n| {
                let mut fleet = guess.to_vec();
                fleet[index] = n;
                for (later, bound) in fleet.iter_mut().zip(bounds).skip(index + 1) {
                    *later = bound.1;
                }
                self.trial(window, start, &fleet)
            });
            guess[index] = n;
            reached &= ok;
        }
        reached
    }

    /// Runs the committed fleet through window `window` with `fleet`.
    fn commit(&mut self, window: u64, fleet: &[u32]) {
        let start = window as f64 * ORACLE_WINDOW;
        let simulation = self.simulation.get_or_insert_with(|| {
            Simulation::with_fleet(self.setup.clone(), Policy::Oracle, fleet)
        });
        for (index, &n) in fleet.iter().enumerate() {
            simulation.set_fleet(index, n, start);
        }
        let end = start + ORACLE_WINDOW;
        while self
            .upcoming
            .buffer
            .front()
            .is_some_and(|r| r.arrival < end)
        {
            let request = self.upcoming.buffer.pop_front().expect("front exists");
            simulation.arrive(request);
        }
        self.timeline.append(&mut simulation.timeline);
    }
}

/// `oracle`: per window, the fewest replicas that reach `target` (see the module's
/// documentation); within the scaler's bounds, at the maximum where even that misses
/// (`capped` windows).
pub fn oracle(setup: &Setup, arrivals: MakeArrivals, target: f64) -> Outcome {
    let arrivals = arrivals();
    let duration = arrivals.duration();
    let windows = ((duration / ORACLE_WINDOW).ceil() as u64).max(1);
    let bounds = bounds(setup);
    let mut state = OracleRun {
        setup,
        target,
        upcoming: Upcoming {
            arrivals,
            buffer: VecDeque::new(),
        },
        simulation: None,
        timeline: Vec::new(),
    };
    let mut fleet: Vec<u32> = bounds.iter().map(|b| b.0).collect();
    let mut fleets = Vec::with_capacity(windows as usize);
    let mut capped = 0;
    for window in 0..windows {
        let start = window as f64 * ORACLE_WINDOW;
        state
            .upcoming
            .fill(start + ORACLE_WINDOW + setup.drain_limit);
        if !state.choose(window, &bounds, &mut fleet) {
            capped += 1;
        }
        state.commit(window, &fleet);
        fleets.push(fleet.clone());
    }
    let mut simulation = state.simulation.expect("at least one window was committed");
    state.timeline.append(&mut simulation.timeline);
    simulation.timeline = state.timeline;
    // Arrivals at the trace's very end (past the last window's start) still arrive.
    for request in state.upcoming.buffer.drain(..) {
        simulation.arrive(request);
    }
    let mut outcome = simulation.drain(duration);
    outcome.found = Some(Found::Windows {
        windows,
        capped,
        fleets,
    });
    outcome
}

/// `oracle-hpa`: the oracle's fleets asked of the scaler's ScaledObject one cold start
/// ahead, through the HPA (see [`Policy::OracleHpa`]).
pub fn oracle_hpa(setup: &Setup, arrivals: MakeArrivals, target: f64) -> Outcome {
    through_hpa(setup, &oracle(setup, arrivals, target), arrivals)
}

/// The fleets an `oracle` outcome chose, asked through the HPA: `oracle-hpa` without a
/// second search when the oracle has run already.
pub fn through_hpa(setup: &Setup, oracle: &Outcome, arrivals: MakeArrivals) -> Outcome {
    let Some(Found::Windows { fleets, .. }) = &oracle.found else {
        panic!("through_hpa takes the oracle's outcome");
    };
    let slots_per_window = (ORACLE_WINDOW / 15.0).round() as usize;
    let lookahead = fleets
        .iter()
        .flat_map(|fleet| std::iter::repeat_n(fleet.clone(), slots_per_window))
        .collect();
    drive(
        Simulation::new(setup.clone(), Policy::OracleHpa, lookahead),
        arrivals(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_finds_the_threshold_from_any_guess() {
        for threshold in 1..=20 {
            for guess in 0..=22 {
                let mut calls = 0;
                let found = smallest(1, 20, guess, |n| {
                    calls += 1;
                    n >= threshold
                });
                assert_eq!(found, (threshold, true), "guess {guess}");
                assert!(calls <= 12, "{calls} calls");
            }
        }
        assert_eq!(smallest(2, 20, 5, |_| false), (20, false));
        assert_eq!(smallest(2, 20, 5, |_| true), (2, true));
        assert_eq!(smallest(0, 0, 3, |n| n == 0), (0, true));
    }
}
