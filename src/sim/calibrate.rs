//! A replica's capacity profile: for each mix of mean prompt and output lengths, the
//! load one replica of the simulator's model sustains with its SLOs met, as the token
//! rates a profile's `capacity.profile` holds. `keda-llm-scaler calibrate` prints it.

use super::error::SimError;
use rayon::prelude::*;

use super::{
    fleet::{Pool, Router},
    model::{ModelProfile, Request, Role},
    stats::{SloThresholds, Stats},
    trace::{Draws, seeded},
};

/// The grid `keda-llm-scaler calibrate` measures on the replica model, and how.
#[derive(Debug, Clone)]
pub struct ModelGrid {
    /// The replica model.
    pub model: ModelProfile,
    /// Mean prompt lengths of the grid, tokens.
    pub inputs: Vec<u32>,
    /// Mean output lengths of the grid, tokens.
    pub outputs: Vec<u32>,
    /// The TTFT threshold, seconds.
    pub ttft: f64,
    /// The TPOT threshold, seconds.
    pub tpot: f64,
    /// The feasible attainment both SLOs must reach, between 0 and 1.
    pub target: f64,
    /// Replicas behind the router while measuring (the rates are per replica).
    pub replicas: u32,
}

/// The profile as the YAML `capacity.profile` takes, with the command that made it.
pub fn calibrate(args: &ModelGrid) -> Result<String, SimError> {
    for (key, values) in [("--inputs", &args.inputs), ("--outputs", &args.outputs)] {
        if values.is_empty() || values.iter().any(|&v| v == 0 || v > 1_000_000) {
            return Err(
                format!("{key} {values:?}: expected token counts from 1 to 1000000").into(),
            );
        }
    }
    check_thresholds(args.ttft, args.tpot)?;
    let calibration = Calibration {
        thresholds: SloThresholds {
            ttft: args.ttft,
            tpot: args.tpot,
        },
        target: args.target,
        replicas: args.replicas,
        ..Calibration::default()
    };
    let points = profile(
        &args.model,
        &Shape::azure(),
        &args.inputs,
        &args.outputs,
        calibration,
    );
    let mut out = format!(
        "# Per replica of {name}, measured on {replicas} behind a least-outstanding router:\n\
         # the output tokens/s at which they hold both SLOs (TPOT <= {tpot} s, TTFT <= {ttft}\n\
         # s) and the input tokens/s at which they hold TTFT, for {share} % of the requests\n\
         # that can meet them; lengths shaped like Azure's conversation trace, scaled to each\n\
         # point's means (keda-llm-scaler calibrate). Paste under a profile's `capacity:`.\n\
         {floor}\
         profile:\n",
        floor = floor_comment(&args.model, args.tpot),
        replicas = args.replicas,
        name = args.model.name,
        tpot = args.tpot,
        ttft = args.ttft,
        share = args.target * 100.0
    );
    for p in &points {
        out.push_str(&format!(
            "  - {{input_tokens: {}, output_tokens: {}, output_tokens_per_second: {:.0}, input_tokens_per_second: {:.0}}}\n",
            p.input_tokens,
            p.output_tokens,
            p.output_tokens_per_second(),
            p.input_tokens_per_second()
        ));
    }
    Ok(out)
}

/// Refuses a `--ttft` or `--tpot` that is not a number of seconds above 0, at most an hour.
pub fn check_thresholds(ttft: f64, tpot: f64) -> Result<(), String> {
    for (key, value) in [("--ttft", ttft), ("--tpot", tpot)] {
        if !(value.is_finite() && value > 0.0 && value <= 3600.0) {
            return Err(format!(
                "{key} {value}: expected seconds above 0, at most 3600"
            ));
        }
    }
    Ok(())
}

/// What a TPOT SLO at `tpot` seconds sets as `floor_context_tokens` on this model, as a
/// comment above the profile.
fn floor_comment(model: &ModelProfile, tpot: f64) -> String {
    match model.tpot_floor_context(tpot) {
        None => format!(
            "# A TPOT SLO at {tpot} s needs no floor_context_tokens: one request alone decodes\n\
             # in time at any context the KV cache holds ({} tokens).\n",
            model.kv_capacity_tokens
        ),
        Some(0) => {
            format!("# A TPOT SLO at {tpot} s is out of reach: one request alone decodes slower.\n")
        }
        Some(floor) => format!(
            "# A TPOT SLO at {tpot} s: floor_context_tokens: {floor} (longer prompts decode slower\n\
             # than that alone, on any replica).\n"
        ),
    }
}

/// One point of the profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Mean prompt tokens per request.
    pub input_tokens: u32,
    /// Mean output tokens per request.
    pub output_tokens: u32,
    /// The request rate at which one replica still holds both SLOs (what the output
    /// throughput term divides by, as `capacity.output_tokens_per_second` means).
    pub tpot_requests_per_second: f64,
    /// The request rate at which it still holds the TTFT SLO (what the input terms
    /// divide by, as `capacity.input_tokens_per_second` means).
    pub ttft_requests_per_second: f64,
}

impl Point {
    /// The profile's `output_tokens_per_second` at this point.
    pub fn output_tokens_per_second(&self) -> f64 {
        self.tpot_requests_per_second * f64::from(self.output_tokens)
    }

    /// The profile's `input_tokens_per_second` at this point.
    pub fn input_tokens_per_second(&self) -> f64 {
        self.ttft_requests_per_second * f64::from(self.input_tokens)
    }
}

/// Which SLOs a sustained rate holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// TTFT only: the input rate.
    Ttft,
    /// TTFT and TPOT: the output rate.
    Both,
}

/// How the profile is measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// The SLO thresholds requests are judged against.
    pub thresholds: SloThresholds,
    /// Feasible attainment both SLOs must reach (see [`super::feasible`]).
    pub target: f64,
    /// Simulated seconds of Poisson arrivals per tried rate.
    pub seconds: f64,
    /// Seeds the arrivals and length draws: the same seed gives the same profile.
    pub seed: u64,
    /// Replicas behind a least-outstanding router; the rates are per replica. A fleet
    /// spreads long requests over its replicas, so one replica alone would understate
    /// what each sustains in a fleet.
    pub replicas: u32,
}

impl Default for Calibration {
    fn default() -> Self {
        Self {
            thresholds: SloThresholds::default(),
            target: 0.99,
            seconds: 1200.0,
            seed: 1,
            replicas: 4,
        }
    }
}

/// A length distribution with both means 1: each request's prompt and output length
/// over the means. A grid point scales it to its own means, so every point has the
/// shape (spread, tail, correlation) of real traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape(Vec<(f64, f64)>);

impl Shape {
    /// The shape of `(input, output)` pairs, such as a trace's requests.
    pub fn of(lengths: &[(u32, u32)]) -> Result<Self, String> {
        if lengths.is_empty() {
            return Err("no requests to take the length shape from".to_owned());
        }
        let n = lengths.len() as f64;
        let mean_in = lengths.iter().map(|l| f64::from(l.0)).sum::<f64>() / n;
        let mean_out = lengths.iter().map(|l| f64::from(l.1)).sum::<f64>() / n;
        if mean_in <= 0.0 || mean_out <= 0.0 {
            return Err("the length shape needs requests with tokens".to_owned());
        }
        Ok(Self(
            lengths
                .iter()
                .map(|l| (f64::from(l.0) / mean_in, f64::from(l.1) / mean_out))
                .collect(),
        ))
    }

    /// The shape of the bundled Azure conversation trace.
    pub fn azure() -> Self {
        let Ok(super::trace::Trace::Requests(trace)) =
            super::trace::Trace::parse("azure", super::trace::AZURE_CONV)
        else {
            unreachable!("the bundled trace parses")
        };
        let lengths: Vec<(u32, u32)> = trace.requests.iter().map(|r| (r.1, r.2)).collect();
        Self::of(&lengths).expect("the bundled trace has requests")
    }
}

/// Every point of the grid `inputs` x `outputs`, measured in parallel.
pub fn profile(
    model: &ModelProfile,
    shape: &Shape,
    inputs: &[u32],
    outputs: &[u32],
    calibration: Calibration,
) -> Vec<Point> {
    let grid: Vec<(u32, u32)> = inputs
        .iter()
        .flat_map(|&i| outputs.iter().map(move |&o| (i, o)))
        .collect();
    grid.par_iter()
        .map(|&(input, output)| Point {
            input_tokens: input,
            output_tokens: output,
            tpot_requests_per_second: sustained_rate(
                model,
                shape,
                (input, output),
                Holds::Both,
                calibration,
            ),
            ttft_requests_per_second: sustained_rate(
                model,
                shape,
                (input, output),
                Holds::Ttft,
                calibration,
            ),
        })
        .collect()
}

/// The highest request rate (to 2 %) at which one replica meets the target for one
/// SLO, by doubling then bisection on a log scale.
pub fn sustained_rate(
    model: &ModelProfile,
    shape: &Shape,
    mix: (u32, u32),
    slo: Holds,
    c: Calibration,
) -> f64 {
    let holds = |rate: f64| {
        let counts = run(model, shape, mix, rate, c);
        match slo {
            Holds::Ttft => counts.ttft_attainment() >= c.target,
            // TPOT alone would hold past saturation (requests wait instead of joining
            // the batch), so the output rate is one at which nothing queues past TTFT either.
            Holds::Both => counts.reaches(c.target),
        }
    };
    // The slowest rate worth asking: a request a minute.
    let mut low = 1.0 / 60.0;
    if !holds(low) {
        return low;
    }
    let mut high = low * 2.0;
    while holds(high) {
        low = high;
        high *= 2.0;
        if high > 1e4 {
            return low;
        }
    }
    while high / low > 1.02 {
        let middle = (low * high).sqrt();
        if holds(middle) {
            low = middle;
        } else {
            high = middle;
        }
    }
    low
}

/// How long a request waits at the router before it is refused, as in the backtests.
const REQUEST_TIMEOUT_S: f64 = 300.0;

/// `replicas` replicas under Poisson arrivals at `rate` each, lengths drawn from `shape`
/// scaled to the means; their feasible counts.
fn run(
    model: &ModelProfile,
    shape: &Shape,
    (input, output): (u32, u32),
    rate: f64,
    c: Calibration,
) -> super::stats::FeasibleCounts {
    let mut pool = Pool::new(
        Role::Unified,
        model.clone(),
        Router::LeastOutstanding,
        REQUEST_TIMEOUT_S,
    );
    pool.start_warm(c.replicas, 0.0);
    let mut stats = Stats::new(c.thresholds);
    let mut rng = seeded(c.seed);
    let tokens = |relative: f64, mean: u32| ((relative * f64::from(mean)).round() as u32).max(1);
    let fleet_rate = rate * f64::from(c.replicas);
    let mut t = 0.0;
    loop {
        t += rng.exponential(fleet_rate);
        if t > c.seconds {
            break;
        }
        pool.advance(t, &mut stats, &mut Vec::new());
        let (a, b) = shape.0[rng.below(shape.0.len())];
        let (i, o) = (tokens(a, input), tokens(b, output));
        let mut request = Request::new(t, i, o);
        request.feasible = model.feasible(i, o, c.thresholds);
        stats.arrived(&request);
        pool.route(request, t);
    }
    // Requests still queued at the end count: a fleet that falls behind fails here.
    pool.advance(c.seconds * 4.0 + 3600.0, &mut stats, &mut Vec::new());
    stats.feasible
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_outputs_sustain_more_output_tokens_and_longer_prompts_fewer() {
        let model = ModelProfile::preset("70b").unwrap();
        let c = Calibration {
            seconds: 300.0,
            ..Calibration::default()
        };
        let shape = Shape::azure();
        let points = profile(&model, &shape, &[500, 8000], &[100, 1000], c);
        let at = |i: u32, o: u32| {
            points
                .iter()
                .find(|p| p.input_tokens == i && p.output_tokens == o)
                .unwrap()
                .output_tokens_per_second()
        };
        // Decoding dominates with long outputs: more output tokens per second.
        assert!(at(500, 1000) > at(500, 100), "{points:?}");
        // Long prompts' prefill takes the steps decoding would use.
        assert!(at(8000, 100) < at(500, 100), "{points:?}");
        // Each rate is one where the replica holds its SLO, and twice it does not.
        let p = points[0];
        let mix = (p.input_tokens, p.output_tokens);
        let both = |rate| run(&model, &shape, mix, rate, c).reaches(c.target);
        assert!(both(p.tpot_requests_per_second));
        assert!(!both(p.tpot_requests_per_second * 2.0));
        let ttft = |rate| run(&model, &shape, mix, rate, c).ttft_attainment();
        assert!(ttft(p.ttft_requests_per_second) >= c.target);
        assert!(ttft(p.ttft_requests_per_second * 2.0) < c.target);
    }
}
