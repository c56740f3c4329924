//! `keda-llm-scaler calibrate`: a `capacity.profile` (the token rates one replica
//! sustains within its SLOs, by mix of mean prompt and output lengths) from one of three
//! sources:
//! - the simulator's replica model (the default; [`crate::sim::calibrate`]);
//! - a load test's results, one CSV row a step (`--load-test`; [`load_test`]);
//! - the fleet's own Prometheus history, read with the queries the service runs
//!   (`--config` and `--profile`; [`history`]).
//!
//! The last two go through [`fit`]: the rate at a point is the highest the fleet served
//! with its SLOs held there.

pub mod fit;
pub mod history;
pub mod load_test;

use std::{fmt::Write as _, path::PathBuf};

use crate::{
    config::ConfigDuration,
    sim::{
        backtest::{parse_model, parse_target},
        calibrate::{ModelGrid, check_thresholds},
        model::ModelProfile,
    },
};
use fit::{Fitted, Grid};

/// The grid the replica model is measured on when none is given.
const DEFAULT_INPUTS: [u32; 4] = [250, 1000, 4000, 16000];
const DEFAULT_OUTPUTS: [u32; 4] = [50, 200, 800, 3200];

/// `keda-llm-scaler calibrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateArgs {
    /// The replica model: llama-3-70b-tp4-h100 (70b) or llama-3-8b-h100 (8b).
    #[arg(long, default_value = "70b", value_parser = parse_model)]
    pub model: ModelProfile,
    /// Mean prompt lengths of the grid, tokens [default: 250,1000,4000,16000; from
    /// history: the median of the fleet's mix].
    #[arg(long, value_delimiter = ',', conflicts_with = "load_test")]
    pub inputs: Option<Vec<u32>>,
    /// Mean output lengths of the grid, tokens [default: 50,200,800,3200; from history:
    /// the median of the fleet's mix].
    #[arg(long, value_delimiter = ',', conflicts_with = "load_test")]
    pub outputs: Option<Vec<u32>>,
    /// From history: shares of short answers (the profile's
    /// `capacity.short_output_min_tokens` to `short_output_tokens` output tokens) to fit a
    /// point each at, per mix; each moment is filed under the nearest. Without it, one
    /// point per mix, whatever the share.
    #[arg(long, value_delimiter = ',', requires = "config", value_parser = parse_share)]
    pub shares: Option<Vec<f64>>,
    /// The TTFT threshold, seconds (from history: the profile's SLOs).
    #[arg(long, default_value_t = 2.0, conflicts_with = "config")]
    pub ttft: f64,
    /// The TPOT threshold, seconds (from history: the profile's SLOs).
    #[arg(long, default_value_t = 0.05, conflicts_with = "config")]
    pub tpot: f64,
    /// The share of requests both SLOs must hold for, between 0 and 1 (a load test's
    /// percentile columns follow it; from history: the profile's objectives).
    #[arg(long, default_value_t = 0.99, value_parser = parse_target, conflicts_with = "config")]
    pub target: f64,
    /// Replicas behind the router while measuring the replica model (the rates are per
    /// replica): a fleet spreads long requests over its replicas, so one replica alone
    /// understates them.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub replicas: u32,
    /// Fit the profile to a load test's results instead: a CSV file, one row a step
    /// (README, "Capacity that follows the mix").
    #[arg(long, value_name = "FILE", conflicts_with_all = ["model", "replicas", "config"])]
    pub load_test: Option<PathBuf>,
    /// Fit the profile to the fleet's own Prometheus history instead: the scaler's config
    /// file (its `prometheus` section and `--profile`).
    #[arg(long, value_name = "FILE", requires = "profile", conflicts_with_all = ["model", "replicas"])]
    pub config: Option<PathBuf>,
    /// The config's profile whose fleet is read.
    #[arg(long, requires = "config")]
    pub profile: Option<String>,
    /// The fleet's namespace, as its ScaledObject's: required with
    /// `tenancy.scope_by_namespace`, and checked against the profile's
    /// `allowed_namespaces`.
    #[arg(long, requires = "config")]
    pub namespace: Option<String>,
    /// How far back the history is read.
    #[arg(long, default_value = "1d", requires = "config")]
    pub range: ConfigDuration,
    /// The time between two moments read.
    #[arg(long, default_value = "5m", requires = "config")]
    pub step: ConfigDuration,
    /// Held moments a point needs: its rate is the N-th highest one the fleet held its
    /// SLOs at, so that one lucky moment does not set it.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000), requires = "config")]
    pub min_moments: u32,
}

/// The profile as the YAML `capacity.profile` takes, with where it came from.
pub async fn calibrate(args: &CalibrateArgs) -> Result<String, String> {
    if let Some(path) = &args.load_test {
        return from_load_test(args, path);
    }
    if let (Some(config), Some(profile)) = (&args.config, &args.profile) {
        return from_history(args, config, profile).await;
    }
    let grid = ModelGrid {
        model: args.model.clone(),
        inputs: args
            .inputs
            .clone()
            .unwrap_or_else(|| DEFAULT_INPUTS.to_vec()),
        outputs: args
            .outputs
            .clone()
            .unwrap_or_else(|| DEFAULT_OUTPUTS.to_vec()),
        ttft: args.ttft,
        tpot: args.tpot,
        target: args.target,
        replicas: args.replicas,
    };
    crate::sim::calibrate::calibrate(&grid).map_err(|e| e.to_string())
}

/// `--load-test`.
fn from_load_test(args: &CalibrateArgs, path: &std::path::Path) -> Result<String, String> {
    check_thresholds(args.ttft, args.tpot)?;
    let judged = load_test::Judged {
        ttft: args.ttft,
        tpot: args.tpot,
        target: args.target,
    };
    let (grid, steps) = load_test::read(path, judged)?;
    let fitted = fit::fit(
        &grid,
        &steps,
        1,
        "Load-test every input_tokens with every output_tokens (a full grid), at rates from below the SLOs' limit to above it.",
    )?;
    let header = format!(
        "# Per replica, fitted to the load test {} ({} steps): at each mix the highest\n\
         # output tokens/s at which p{p} TTFT <= {ttft} s and p{p} TPOT <= {tpot} s, and the\n\
         # highest input tokens/s at which p{p} TTFT held (keda-llm-scaler calibrate\n\
         # --load-test). Paste under a profile's `capacity:`.\n",
        path.display(),
        steps.len(),
        p = args.target * 100.0,
        ttft = args.ttft,
        tpot = args.tpot,
    );
    Ok(render(&header, &fitted, "steps"))
}

/// `--config` and `--profile`.
async fn from_history(
    args: &CalibrateArgs,
    config: &std::path::Path,
    profile: &str,
) -> Result<String, String> {
    let read = history::HistoryRead {
        config: config.to_path_buf(),
        profile: profile.to_owned(),
        namespace: args.namespace.clone(),
        range: args.range.0,
        step: args.step.0,
        end: history::end_now(args.step.0),
    };
    let mut moments = history::read(&read).await?;
    if args.shares.is_some() {
        // A moment without a share cannot be filed under one.
        let before = moments.measurements.len();
        moments
            .measurements
            .retain(|m| m.short_output_share.is_some());
        let dropped = before - moments.measurements.len();
        if dropped > 0 {
            *moments
                .skipped
                .entry("no output-length histogram to read a share from")
                .or_default() += dropped;
        }
    }
    if moments.measurements.is_empty() {
        return Err(format!(
            "no moment of the last {} measured the fleet ({}): check the profile's selector, or read a range in which it served requests",
            args.range,
            skipped(&moments)
        ));
    }
    let grid = history_grid(args, &moments.measurements);
    let fitted = fit::fit(
        &grid,
        &moments.measurements,
        args.min_moments as usize,
        "Lengthen --range, lower --min-moments, or give --inputs and --outputs only the mixes the fleet served.",
    )?;
    let header = format!(
        "# Per replica, fitted to profile `{profile}`'s history over the last {range} ({n} moments\n\
         # {step} apart; {skipped}): at each mix the {rank} highest output tokens/s at which\n\
         # every SLO held over its short window, and the {rank} highest input tokens/s at\n\
         # which the TTFT SLOs held (keda-llm-scaler calibrate --config). A fleet that never\n\
         # ran near its limit shows what it served, not what it sustains: the points that\n\
         # never missed above their rate say so. Paste under the profile's `capacity:`.\n",
        range = args.range,
        n = moments.measurements.len(),
        step = args.step,
        skipped = skipped(&moments),
        rank = ordinal(args.min_moments),
    );
    Ok(render(&header, &fitted, "moments"))
}

/// The grid given, or one point at the median of the fleet's mix (2 significant digits).
fn history_grid(args: &CalibrateArgs, measured: &[fit::Measurement]) -> Grid {
    let axis = |given: &Option<Vec<u32>>, pick: fn(&fit::Measurement) -> f64| match given {
        Some(values) => values.iter().map(|&v| f64::from(v)).collect(),
        None => {
            let mut values: Vec<f64> = measured.iter().map(pick).collect();
            values.sort_by(f64::total_cmp);
            vec![two_digits(values[values.len() / 2])]
        }
    };
    Grid::new(
        axis(&args.inputs, |m| m.input_tokens),
        axis(&args.outputs, |m| m.output_tokens),
    )
    .with_shares(args.shares.clone().unwrap_or_default())
}

/// A share of short answers, from 0 to 1, as `--shares` takes it.
fn parse_share(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .and_then(crate::config::Share::new)
        .map(|share| share.0)
        .ok_or_else(|| {
            format!(
                "`{text}` is not allowed: expected {}",
                crate::config::Share::ALLOWED
            )
        })
}

/// 1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// `value` rounded to two significant digits.
fn two_digits(value: f64) -> f64 {
    let scale = 10f64.powf(value.log10().floor() - 1.0);
    ((value / scale).round() * scale).max(1.0)
}

/// "3 skipped: no request finished in the mix window (3)".
fn skipped(moments: &history::Moments) -> String {
    let total: usize = moments.skipped.values().sum();
    if total == 0 {
        return "none skipped".to_owned();
    }
    let why: Vec<String> = moments
        .skipped
        .iter()
        .map(|(why, n)| format!("{why} ({n})"))
        .collect();
    format!("{total} skipped: {}", why.join(", "))
}

/// The `profile:` block, each point with what it rests on.
fn render(header: &str, fitted: &[Fitted], what: &str) -> String {
    let mut out = format!("{header}profile:\n");
    for p in fitted {
        let _ = writeln!(
            out,
            "  - {{input_tokens: {}, output_tokens: {}, {}output_tokens_per_second: {:.0}, input_tokens_per_second: {:.0}}}  # held in {} / {} {what}; {}",
            p.input_tokens,
            p.output_tokens,
            p.short_output_share
                .map_or_else(String::new, |s| format!("short_output_share: {s}, ")),
            p.output.tokens_per_second,
            p.input.tokens_per_second,
            p.output.held,
            p.input.held,
            misses(p),
        );
    }
    out
}

/// Where the fitted rates met a miss above them, or that they are lower bounds.
fn misses(p: &Fitted) -> String {
    let part = |rate: &fit::Rate, what: &str| match rate.missed_at {
        Some(at) => format!("{what} missed at {at:.0}"),
        None => format!("{what} never missed above: a lower bound"),
    };
    format!("{}; {}", part(&p.output, "output"), part(&p.input, "input"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_read_as_english() {
        let read: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .map(ordinal)
            .to_vec();
        assert_eq!(
            read,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }

    #[test]
    fn without_a_grid_history_gets_one_point_at_its_median_mix() {
        let args = CalibrateArgs {
            model: ModelProfile::preset("70b").unwrap(),
            inputs: None,
            outputs: Some(vec![200, 1500]),
            ttft: 2.0,
            tpot: 0.05,
            target: 0.99,
            replicas: 4,
            load_test: None,
            config: None,
            profile: None,
            namespace: None,
            range: "1d".parse().unwrap(),
            step: "5m".parse().unwrap(),
            min_moments: 10,
            shares: None,
        };
        let at = |input: f64| fit::Measurement {
            input_tokens: input,
            output_tokens: 250.0,
            output_tokens_per_second: 1.0,
            input_tokens_per_second: 1.0,
            short_output_share: None,
            ttft_held: true,
            all_held: true,
        };
        let measured = [at(900.0), at(1234.0), at(5000.0)];
        let grid = history_grid(&args, &measured);
        assert_eq!(grid.inputs, vec![1200.0]);
        assert_eq!(grid.outputs, vec![200.0, 1500.0]);
        assert_eq!(two_digits(987_654.0), 990_000.0);
        assert_eq!(two_digits(0.3), 1.0);
    }
}
