//! A fleet's own Prometheus history as measurements: at each step of the range, the
//! signals the service would have read then (the same plan, asked at that time), turned
//! into the mix, the token rates per replica and whether each SLO held over its short
//! window.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::StreamExt as _;

use super::fit::Measurement;
use crate::{
    config::{Config, LatencySignal, capacity::ShortAnswers, metadata},
    demand::{Params, SloParams, slo},
    query::{QueryPlan, calibration_plan},
    source::{MetricsSource, Readings, Sample, SourceError, observe, prometheus::Prometheus},
};

/// The most moments one run reads (a week at one a minute).
pub const MAX_MOMENTS: u64 = 10_080;

/// The shortest step: a scrape interval or two.
pub const MIN_STEP: Duration = Duration::from_secs(15);

/// Moments read at once: each asks its plan's queries together.
const CONCURRENT_MOMENTS: usize = 4;

/// Which fleet's past to read, and over which stretch.
#[derive(Debug, Clone)]
pub struct HistoryRead {
    /// The scaler's config file: its `prometheus` section and the profile.
    pub config: PathBuf,
    /// The profile whose queries, capacity and SLOs are read.
    pub profile: String,
    /// The namespace of the fleet, as a ScaledObject's (`tenancy.scope_by_namespace`
    /// limits every query to it; `allowed_namespaces` must allow it).
    pub namespace: Option<String>,
    /// How far back from `end`.
    pub range: Duration,
    /// The time between two moments.
    pub step: Duration,
    /// The last moment, Unix seconds.
    pub end: f64,
}

/// What the history held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Moments {
    /// One per moment the fleet served requests at.
    pub measurements: Vec<Measurement>,
    /// Moments without a measurement, by why.
    pub skipped: BTreeMap<&'static str, usize>,
}

/// Reads the fleet's past as `read` says.
pub async fn read(read: &HistoryRead) -> Result<Moments, String> {
    let moments = moment_count(read)?;
    let config =
        Config::load(&read.config).map_err(|e| format!("{}: {e}", read.config.display()))?;
    let profile = config.profile(&read.profile).ok_or_else(|| {
        format!(
            "--profile `{}`: the config has no such profile (it has {})",
            crate::source::truncated(&read.profile),
            config.profile_names().join(", ")
        )
    })?;
    let meta = HashMap::from([("profile".to_owned(), read.profile.clone())]);
    let target = match &read.namespace {
        Some(namespace) => metadata::resolve_scaled_object(&config, namespace, &meta)
            .map_err(|e| format!("--namespace {namespace}: {e}"))?,
        None if config.tenancy.scope_by_namespace => {
            return Err(
                "--namespace is required: tenancy.scope_by_namespace is on, so a fleet is read in its namespace"
                    .to_owned(),
            );
        }
        None => metadata::resolve(&config, &meta).map_err(|e| e.to_string())?,
    };
    if target.slos.is_empty() {
        return Err(format!(
            "profile `{}` has no slos: calibrating from history tells the rates a fleet held its SLOs at from those it did not, so the profile needs its TTFT and TPOT objectives",
            read.profile
        ));
    }
    let plan = calibration_plan(profile, &target)
        .map_err(|e| format!("profile `{}`: calibrating from history {e}", read.profile))?;
    let slos = Params::from(&target).slos;
    let short = profile.capacity.short_answers();
    let prometheus = Arc::new(Prometheus::new(&config.prometheus)?);
    let times = (0..moments)
        .rev()
        .map(|k| read.end - k as f64 * read.step.as_secs_f64());
    let read_all = futures::stream::iter(times)
        .map(|at| {
            let source = PastInstant {
                prometheus: prometheus.clone(),
                at,
            };
            let (plan, slos) = (&plan, &slos);
            async move { measure(&source, plan, slos, short).await }
        })
        .buffered(CONCURRENT_MOMENTS);
    futures::pin_mut!(read_all);
    let mut found = Moments::default();
    while let Some(moment) = read_all.next().await {
        match moment? {
            Ok(measurement) => found.measurements.push(measurement),
            Err(why) => *found.skipped.entry(why).or_default() += 1,
        }
    }
    Ok(found)
}

/// The number of moments `read` asks for; refused past [`MAX_MOMENTS`].
fn moment_count(read: &HistoryRead) -> Result<u64, String> {
    if read.step < MIN_STEP {
        return Err(format!(
            "--step {}: expected at least {}",
            crate::config::ConfigDuration(read.step),
            crate::config::ConfigDuration(MIN_STEP)
        ));
    }
    let moments = (read.range.as_secs_f64() / read.step.as_secs_f64()).floor() as u64;
    if moments == 0 || moments > MAX_MOMENTS {
        return Err(format!(
            "--range {} at --step {} is {moments} moments: expected 1 to {MAX_MOMENTS} (lengthen the step or shorten the range)",
            crate::config::ConfigDuration(read.range),
            crate::config::ConfigDuration(read.step)
        ));
    }
    Ok(moments)
}

/// Prometheus asked at one past instant.
struct PastInstant {
    prometheus: Arc<Prometheus>,
    at: f64,
}

impl MetricsSource for PastInstant {
    async fn query(&self, promql: &str) -> Result<Vec<Sample>, SourceError> {
        self.prometheus.query_at(promql, self.at).await
    }
}

/// One moment: its measurement, or why it has none (`Ok(Err)`); a query that failed or
/// an answer that is not what it should be fails the run (`Err`).
async fn measure(
    source: &PastInstant,
    plan: &QueryPlan,
    slos: &[SloParams],
    short: ShortAnswers,
) -> Result<Result<Measurement, &'static str>, String> {
    let readings = observe(source, plan).await.readings(None);
    if let Some(errors) = readings.error_summary() {
        return Err(format!("at {}: {errors}", timestamp(source.at)));
    }
    measurement(&readings, slos, short).map_err(|e| format!("at {}: {e}", timestamp(source.at)))
}

/// What one moment's readings measure, when the fleet served requests then; the share of
/// `short` answers, where the output-length histogram was read.
fn measurement(
    readings: &Readings,
    slos: &[SloParams],
    short: ShortAnswers,
) -> Result<Result<Measurement, &'static str>, String> {
    let signals = readings.signals();
    let replicas = signals.queue_by_replica.as_ref().map_or(0, Vec::len) as f64;
    if replicas == 0.0 {
        return Ok(Err("no replica exported its queue"));
    }
    let Some((input_tokens, output_tokens)) = signals.mean_lengths else {
        return Ok(Err("no request finished in the mix window"));
    };
    let (mut ttft_held, mut all_held) = (true, true);
    for (slo, windows) in slos.iter().zip(&signals.slos) {
        let Some(windows) = windows else {
            return Ok(Err("an SLO could not be read"));
        };
        let reading = slo::read_windows(windows, slo.threshold, slo.objective, slo.split_bound())
            .map_err(|e| format!("SLO `{}`: {e}", slo.name))?;
        let Some(burn) = reading.short.fixable_burn else {
            return Ok(Err("no request in an SLO's short window"));
        };
        let held = burn <= 1.0;
        all_held &= held;
        if slo.signal == LatencySignal::Ttft {
            ttft_held &= held;
        }
    }
    Ok(Ok(Measurement {
        input_tokens,
        output_tokens,
        output_tokens_per_second: signals.output_tokens_per_second.unwrap_or(0.0) / replicas,
        input_tokens_per_second: signals.input_tokens_per_second.unwrap_or(0.0) / replicas,
        short_output_share: crate::demand::short_share(signals.output_lengths.as_ref(), short),
        ttft_held,
        all_held,
    }))
}

/// Unix seconds as RFC 3339, for errors.
fn timestamp(at: f64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs_f64(at.max(0.0));
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Now, in Unix seconds, floored to the step (so two runs a moment apart read the same
/// moments).
pub fn end_now(step: Duration) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let step = step.as_secs_f64().max(1.0);
    (now / step).floor() * step
}
