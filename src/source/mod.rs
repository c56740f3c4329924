//! Where signals come from: a [`MetricsSource`] answers PromQL (Prometheus, or the
//! simulator), and [`observe`] runs a [`QueryPlan`] against it and turns the answers
//! into the demand model's [`Signals`].

pub mod prometheus;

use std::{
    collections::HashMap,
    future::Future,
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use crate::config::{OnTermError, metadata::Target};
use crate::demand::{
    self, Demand, ReplicaValue, Signals, SloWindows,
    forecast::{HistoryWindow, PastPeriod},
    slo::{Bucket, LatencyWindow},
};
pub use crate::query::{
    LEVEL_LABEL, LONG_LEVEL, LatencyKind, MIX_WINDOW, PERIOD_LABEL, QueryPlan, Signal,
};

/// One series of an instant-vector answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: HashMap<String, String>,
    pub value: f64,
}

/// How much of a text from outside (an answer, a label) errors and logs echo.
pub const ECHO_LIMIT: usize = 200;

/// `text` cut to [`ECHO_LIMIT`] bytes (on a character boundary) and escaped, so that a
/// hostile answer cannot flood a log line or an error.
pub fn truncated(text: &str) -> String {
    let mut end = text.len().min(ECHO_LIMIT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = text[..end].escape_debug().to_string();
    if end < text.len() {
        out.push_str("...");
    }
    out
}

/// Anything that answers instant PromQL queries.
pub trait MetricsSource: Send + Sync + 'static {
    fn query(&self, promql: &str) -> impl Future<Output = Result<Vec<Sample>, SourceError>> + Send;
}

/// A shared source is a source: the simulator and tests keep a handle on theirs.
impl<T: MetricsSource> MetricsSource for std::sync::Arc<T> {
    fn query(&self, promql: &str) -> impl Future<Output = Result<Vec<Sample>, SourceError>> + Send {
        T::query(self, promql)
    }
}

/// A query that could not be answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    #[error("Prometheus is unreachable: {0}")]
    Unreachable(String),
    #[error("Prometheus did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Prometheus refused the query ({kind}): {message}")]
    Query { kind: String, message: String },
    #[error("Prometheus answered something that is not an instant vector: {0}")]
    BadResponse(String),
    #[error("no credentials for Prometheus: {0}")]
    Auth(String),
}

impl SourceError {
    /// A short, fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Unreachable(_) => "unreachable",
            SourceError::Timeout(_) => "timeout",
            SourceError::Query { .. } => "query",
            SourceError::BadResponse(_) => "bad_response",
            SourceError::Auth(_) => "auth",
        }
    }
}

/// One query an evaluation ran, for Explain and /metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRecord {
    pub signal: Signal,
    pub promql: String,
    pub duration: Duration,
    pub series: usize,
    pub error: Option<String>,
    /// The error's kind label, when it failed.
    pub error_kind: Option<&'static str>,
}

/// One run of a plan: each query's answer (or why there is none) and what was asked.
/// A plan may be shared by several models; [`Observation::readings`] picks one's series.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Each planned query's answer, in the plan's order.
    pub answers: Vec<(Signal, Result<Vec<Sample>, String>)>,
    /// From the plan: the label telling replicas apart, the label models are grouped
    /// by, and how each SLO's latency is exported.
    pub replica_label: String,
    pub model_label: Option<String>,
    pub latency_kinds: Vec<LatencyKind>,
    pub queries: Vec<QueryRecord>,
    /// Wall-clock start, for Explain and for schedules.
    pub started_at: SystemTime,
    /// Monotonic start, for cache ages.
    pub started: Instant,
    pub duration: Duration,
}

/// One trigger's signals, read from an observation: each a value or why it has none.
#[derive(Debug, Clone, PartialEq)]
pub struct Readings {
    pub queue: Result<Vec<ReplicaValue>, String>,
    pub output_tokens: Result<f64, String>,
    pub input_tokens: Result<f64, String>,
    /// `None` when the plan did not ask.
    pub kv_cache: Option<Result<Vec<ReplicaValue>, String>>,
    /// Per SLO of the plan: its short and long window.
    pub slos: Vec<Result<SloWindows, String>>,
    /// `None` when the plan has no forecast.
    pub history: Option<Result<HistoryWindow, String>>,
    /// The mean prompt and output tokens per finished request (`capacity.profile`);
    /// `None` when the plan did not ask, `Ok(None)` when no request finished.
    pub mean_lengths: Option<Result<Option<(f64, f64)>, String>>,
    /// When the observation started, for schedules.
    pub observed_at: SystemTime,
    errors: Vec<(Signal, String)>,
}

impl Observation {
    /// An observation that produced nothing, with the reason.
    pub fn failed(reason: String) -> Self {
        Self {
            answers: [Signal::Queue, Signal::OutputTokens, Signal::InputTokens]
                .into_iter()
                .map(|signal| (signal, Err(reason.clone())))
                .collect(),
            replica_label: String::new(),
            model_label: None,
            latency_kinds: Vec::new(),
            queries: Vec::new(),
            started_at: SystemTime::now(),
            started: Instant::now(),
            duration: Duration::ZERO,
        }
    }

    /// An observation of `plan` made of these answers.
    pub fn of_plan(
        plan: &QueryPlan,
        answers: Vec<(Signal, Result<Vec<Sample>, String>)>,
        queries: Vec<QueryRecord>,
        started_at: SystemTime,
        started: Instant,
        duration: Duration,
    ) -> Self {
        Self {
            answers,
            replica_label: plan.replica_label.clone(),
            model_label: plan.model_label.clone(),
            latency_kinds: plan.latency_kinds.clone(),
            queries,
            started_at,
            started,
            duration,
        }
    }

    /// True when every query was answered.
    pub fn is_complete(&self) -> bool {
        self.answers.iter().all(|(_, answer)| answer.is_ok())
    }

    /// What went wrong with the queries, on one line; `None` when all were answered.
    pub fn error_summary(&self) -> Option<String> {
        let errors: Vec<(Signal, &str)> = self
            .answers
            .iter()
            .filter_map(|(signal, answer)| answer.as_ref().err().map(|e| (*signal, e.as_str())))
            .collect();
        (!errors.is_empty()).then(|| summarize(&errors))
    }

    /// The answer to one signal's query; `None` when the plan did not ask.
    pub fn answer(&self, signal: Signal) -> Option<&Result<Vec<Sample>, String>> {
        self.answers
            .iter()
            .find(|(s, _)| *s == signal)
            .map(|(_, answer)| answer)
    }

    /// The signals of one model (`None`: the plan is the trigger's own).
    pub fn readings(&self, model: Option<&str>) -> Readings {
        let mut errors = Vec::new();
        let mut own = |signal: Signal| -> Option<Result<Vec<Sample>, String>> {
            let answer = self.answer(signal)?;
            Some(match answer {
                Err(e) => {
                    errors.push((signal, e.clone()));
                    Err(e.clone())
                }
                Ok(samples) => Ok(match (&self.model_label, model) {
                    (Some(label), Some(model)) => samples
                        .iter()
                        .filter(|s| s.labels.get(label).map(String::as_str) == Some(model))
                        .cloned()
                        .collect(),
                    _ => samples.clone(),
                }),
            })
        };
        let missing = || Err("the plan has no query for it".to_owned());
        let label = self.replica_label.as_str();
        let queue = own(Signal::Queue)
            .unwrap_or_else(missing)
            .and_then(|s| by_replica(Signal::Queue, label, s));
        let output_tokens = own(Signal::OutputTokens)
            .unwrap_or_else(missing)
            .and_then(|s| fleet_value(Signal::OutputTokens, s));
        let input_tokens = own(Signal::InputTokens)
            .unwrap_or_else(missing)
            .and_then(|s| fleet_value(Signal::InputTokens, s));
        let kv_cache =
            own(Signal::KvCache).map(|a| a.and_then(|s| by_replica(Signal::KvCache, label, s)));
        let slos = self
            .latency_kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let slo = u16::try_from(i).unwrap_or(u16::MAX);
                let short = own(Signal::SloShort { slo }).unwrap_or_else(missing);
                let long = own(Signal::SloLong { slo }).unwrap_or_else(missing);
                let prefill = match (
                    own(Signal::SloPrefillShort { slo }),
                    own(Signal::SloPrefillLong { slo }),
                ) {
                    (Some(short), Some(long)) => Some((
                        latency_window(*kind, short?)?,
                        latency_window(*kind, long?)?,
                    )),
                    _ => None,
                };
                Ok(SloWindows {
                    short: latency_window(*kind, short?)?,
                    long: latency_window(*kind, long?)?,
                    prefill,
                })
            })
            .collect();
        let history = match (own(Signal::HistoryPeak), own(Signal::HistoryLevel)) {
            (Some(peaks), Some(levels)) => Some(peaks.and_then(|p| history_window(p, levels?))),
            _ => None,
        };
        let mean_lengths = match (own(Signal::MeanInputTokens), own(Signal::MeanOutputTokens)) {
            (Some(input), Some(output)) => Some(input.and_then(|i| {
                let output = output?;
                match (
                    mean(Signal::MeanInputTokens, i)?,
                    mean(Signal::MeanOutputTokens, output)?,
                ) {
                    (Some(i), Some(o)) => Ok(Some((i, o))),
                    _ => Ok(None),
                }
            })),
            _ => None,
        };
        // Conversions can fail too (a series without its label): those count as errors.
        let mut readings = Readings {
            mean_lengths,
            queue,
            output_tokens,
            input_tokens,
            kv_cache,
            slos,
            history,
            observed_at: self.started_at,
            errors: Vec::new(),
        };
        readings.errors = readings.collect_errors(errors);
        readings
    }
}

impl Readings {
    /// The demand from these readings under the term-error policy, with the failures
    /// that removed terms.
    pub fn demand(
        &self,
        target: &Target,
        policy: OnTermError,
    ) -> Result<(Demand, Vec<String>), String> {
        let errors = self.error_summary();
        if policy == OnTermError::Fail
            && let Some(errors) = errors
        {
            return Err(errors);
        }
        let demand =
            demand::compute(&self.signals(), &target.into()).map_err(|e| match &errors {
                Some(errors) => format!("{e} ({errors})"),
                None => e.to_string(),
            })?;
        let skipped = self
            .errors()
            .into_iter()
            .map(|(signal, cause)| format!("{} query failed: {cause}", signal.as_str()))
            .collect::<Vec<_>>();
        let skipped = if demand.skipped.is_empty() {
            Vec::new()
        } else {
            let terms: Vec<&str> = demand.skipped.iter().map(|t| t.as_str()).collect();
            skipped
                .into_iter()
                .map(|cause| format!("{} left out: {cause}", terms.join(", ")))
                .collect()
        };
        Ok((demand, skipped))
    }

    fn collect_errors(&self, from_queries: Vec<(Signal, String)>) -> Vec<(Signal, String)> {
        let mut errors = from_queries.clone();
        let mut add = |signal: Signal, result: Result<(), &String>| {
            if let Err(e) = result
                && !errors.iter().any(|(s, _)| *s == signal)
            {
                errors.push((signal, e.clone()));
            }
        };
        add(Signal::Queue, self.queue.as_ref().map(|_| ()));
        add(
            Signal::OutputTokens,
            self.output_tokens.as_ref().map(|_| ()),
        );
        add(Signal::InputTokens, self.input_tokens.as_ref().map(|_| ()));
        if let Some(kv) = &self.kv_cache {
            add(Signal::KvCache, kv.as_ref().map(|_| ()));
        }
        for (i, slo) in self.slos.iter().enumerate() {
            let slo_index = u16::try_from(i).unwrap_or(u16::MAX);
            if from_queries.iter().any(|(s, _)| {
                matches!(s, Signal::SloShort { slo } | Signal::SloLong { slo }
                    | Signal::SloPrefillShort { slo } | Signal::SloPrefillLong { slo } if *slo == slo_index)
            }) {
                continue;
            }
            add(
                Signal::SloShort { slo: slo_index },
                slo.as_ref().map(|_| ()),
            );
        }
        if let Some(lengths) = &self.mean_lengths
            && !from_queries
                .iter()
                .any(|(s, _)| matches!(s, Signal::MeanInputTokens | Signal::MeanOutputTokens))
        {
            add(Signal::MeanInputTokens, lengths.as_ref().map(|_| ()));
        }
        if let Some(history) = &self.history
            && !from_queries
                .iter()
                .any(|(s, _)| matches!(s, Signal::HistoryPeak | Signal::HistoryLevel))
        {
            add(Signal::HistoryPeak, history.as_ref().map(|_| ()));
        }
        errors
    }

    /// Every signal that could not be read, with its cause.
    pub fn errors(&self) -> Vec<(Signal, &str)> {
        self.errors.iter().map(|(s, e)| (*s, e.as_str())).collect()
    }

    /// What went wrong, on one line; `None` when every signal was read.
    pub fn error_summary(&self) -> Option<String> {
        let errors = self.errors();
        (!errors.is_empty()).then(|| summarize(&errors))
    }

    /// The signals that were read; the others are `None`.
    pub fn signals(&self) -> Signals {
        Signals {
            queue_by_replica: self.queue.as_ref().ok().cloned(),
            output_tokens_per_second: self.output_tokens.as_ref().ok().copied(),
            input_tokens_per_second: self.input_tokens.as_ref().ok().copied(),
            kv_by_replica: self
                .kv_cache
                .as_ref()
                .and_then(|kv| kv.as_ref().ok().cloned()),
            slos: self.slos.iter().map(|s| s.as_ref().ok().cloned()).collect(),
            history: self.history.as_ref().and_then(|h| h.as_ref().ok().cloned()),
            mean_lengths: self
                .mean_lengths
                .as_ref()
                .and_then(|m| m.as_ref().ok().copied().flatten()),
            now: Some(chrono::DateTime::<chrono::Utc>::from(self.observed_at)),
        }
    }
}

fn latency_window(kind: LatencyKind, samples: Vec<Sample>) -> Result<LatencyWindow, String> {
    match kind {
        LatencyKind::Gauge => match samples.as_slice() {
            [] => Ok(LatencyWindow::SlowShare(None)),
            [only] => Ok(LatencyWindow::SlowShare(Some(only.value))),
            many => Err(format!(
                "latency query returned {} series where one share was expected",
                many.len()
            )),
        },
        LatencyKind::Histogram { le_scale_millis } => samples
            .into_iter()
            .map(|sample| {
                let text = sample.labels.get("le").ok_or_else(|| {
                    "latency histogram series have no `le` label: expected the `_bucket` series"
                        .to_owned()
                })?;
                let le = parse_le(text).ok_or_else(|| {
                    format!(
                        "latency histogram bucket bound `le=\"{}\"` is not a number",
                        text.escape_debug()
                    )
                })?;
                Ok(Bucket {
                    le: if le_scale_millis { le / 1000.0 } else { le },
                    rate: sample.value,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map(LatencyWindow::Buckets),
    }
}

/// A bucket bound as Prometheus writes it: `0.5`, `1`, `1e+00`, `+Inf`.
fn parse_le(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        _ => text.parse::<f64>().ok().filter(|v| !v.is_nan()),
    }
}

fn by_period(samples: &[Sample], what: &str) -> Result<Vec<(u32, f64)>, String> {
    samples
        .iter()
        .map(|sample| {
            sample
                .labels
                .get(PERIOD_LABEL)
                .and_then(|k| k.parse::<u32>().ok())
                .map(|k| (k, sample.value))
                .ok_or_else(|| format!("{what} series have no `{PERIOD_LABEL}` label"))
        })
        .collect()
}

fn history_window(peaks: Vec<Sample>, levels: Vec<Sample>) -> Result<HistoryWindow, String> {
    let peaks = by_period(&peaks, "history peak")?;
    let (long_levels, levels): (Vec<Sample>, Vec<Sample>) = levels
        .into_iter()
        .partition(|s| s.labels.get(LEVEL_LABEL).is_some_and(|l| l == LONG_LEVEL));
    let levels = by_period(&levels, "history level")?;
    let long_levels = by_period(&long_levels, "history long level")?;
    let at = |series: &[(u32, f64)], k: u32| series.iter().find(|(l, _)| *l == k).map(|l| l.1);
    let mut past: Vec<PastPeriod> = peaks
        .iter()
        .filter(|(k, _)| *k > 0)
        .filter_map(|&(k, peak)| {
            Some(PastPeriod {
                periods_back: k,
                peak,
                level: at(&levels, k)?,
                long_level: at(&long_levels, k),
            })
        })
        .collect();
    past.sort_by_key(|p| p.periods_back);
    // A fleet with no traffic now has no series now: its level is 0.
    Ok(HistoryWindow {
        past,
        level_now: at(&levels, 0).unwrap_or(0.0),
        long_level_now: at(&long_levels, 0).unwrap_or(0.0),
    })
}

/// Runs every query of the plan concurrently. A query that fails leaves its signal
/// unread (an error), never 0.
pub async fn observe<S: MetricsSource>(source: &S, plan: &QueryPlan) -> Observation {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let answers =
        futures::future::join_all(plan.queries.iter().map(|(signal, promql)| async move {
            let begin = Instant::now();
            let answer = source.query(promql).await;
            (*signal, promql.clone(), begin.elapsed(), answer)
        }))
        .await;
    let mut queries = Vec::with_capacity(answers.len());
    let answers = answers
        .into_iter()
        .map(|(signal, promql, duration, answer)| {
            let (series, error, error_kind) = match &answer {
                Ok(samples) => (samples.len(), None, None),
                Err(e) => (0, Some(e.to_string()), Some(e.kind())),
            };
            queries.push(QueryRecord {
                signal,
                promql,
                duration,
                series,
                error,
                error_kind,
            });
            (signal, answer.map_err(|e| e.to_string()))
        })
        .collect();
    Observation::of_plan(
        plan,
        answers,
        queries,
        started_at,
        started,
        started.elapsed(),
    )
}

/// "queue, kv_cache queries failed: X": one line however many queries share a cause.
fn summarize(errors: &[(Signal, &str)]) -> String {
    let mut causes: Vec<(&str, Vec<&str>)> = Vec::new();
    for &(signal, cause) in errors {
        match causes.iter_mut().find(|(c, _)| *c == cause) {
            Some((_, signals)) => signals.push(signal.as_str()),
            None => causes.push((cause, vec![signal.as_str()])),
        }
    }
    causes
        .iter()
        .map(|(cause, signals)| {
            let plural = if signals.len() == 1 {
                "query"
            } else {
                "queries"
            };
            format!("{} {plural} failed: {cause}", signals.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One value per replica from a per-replica answer.
pub fn by_replica(
    signal: Signal,
    label: &str,
    samples: Vec<Sample>,
) -> Result<Vec<ReplicaValue>, String> {
    samples
        .into_iter()
        .map(|sample| match sample.labels.get(label) {
            Some(replica) if !replica.is_empty() => Ok(ReplicaValue {
                replica: replica.clone(),
                value: sample.value,
            }),
            _ => Err(format!(
                "{} series have no `{label}` label, so replicas cannot be told apart: set the profile's replica_label to a label the engine's series carry",
                signal.as_str()
            )),
        })
        .collect()
}

/// A fleet-wide sum: no series means a fleet at zero.
/// A mean over finished requests: no series (none finished) is no mean, not 0.
fn mean(signal: Signal, samples: Vec<Sample>) -> Result<Option<f64>, String> {
    if samples.is_empty() {
        return Ok(None);
    }
    let value = fleet_value(signal, samples)?;
    if value.is_finite() && value > 0.0 {
        Ok(Some(value))
    } else {
        Err(format!(
            "{} is {value}: expected a finite number of tokens above 0",
            signal.as_str()
        ))
    }
}

pub fn fleet_value(signal: Signal, samples: Vec<Sample>) -> Result<f64, String> {
    match samples.as_slice() {
        [] => Ok(0.0),
        [only] => Ok(only.value),
        many => Err(format!(
            "{} query returned {} series where one sum was expected",
            signal.as_str(),
            many.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(period: &str, value: f64) -> Sample {
        Sample {
            labels: HashMap::from([(PERIOD_LABEL.to_owned(), period.to_owned())]),
            value,
        }
    }

    #[test]
    fn a_period_prometheus_has_no_samples_for_is_left_out() {
        // Period 2 fell in a scrape outage: neither its peak nor its level came back.
        let peaks = vec![tagged("1", 900.0), tagged("3", 1100.0)];
        let levels = vec![tagged("0", 500.0), tagged("1", 450.0), tagged("3", 550.0)];
        let history = history_window(peaks, levels).unwrap();
        let back: Vec<u32> = history.past.iter().map(|p| p.periods_back).collect();
        assert_eq!(back, [1, 3]);
        assert_eq!(history.past[1].peak, 1100.0);
        assert_eq!(history.past[1].level, 550.0);
        assert_eq!(history.level_now, 500.0);
        // A peak without its level is no period either.
        let history = history_window(vec![tagged("2", 700.0)], vec![tagged("0", 1.0)]).unwrap();
        assert!(history.past.is_empty());
    }

    #[test]
    fn no_series_now_is_a_level_of_zero_and_an_untagged_series_is_an_error() {
        let history = history_window(vec![tagged("1", 10.0)], vec![tagged("1", 5.0)]).unwrap();
        assert_eq!(history.level_now, 0.0);
        let untagged = Sample {
            labels: HashMap::new(),
            value: 1.0,
        };
        let error = history_window(vec![untagged], Vec::new()).unwrap_err();
        assert!(error.contains(PERIOD_LABEL), "{error}");
    }
}
