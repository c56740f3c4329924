//! Where signals come from: a [`MetricsSource`] answers PromQL (Prometheus, or the
//! simulator), and [`observe`] runs a [`QueryPlan`] against it and turns the answers
//! into the demand model's [`Signals`].

pub mod prometheus;
pub mod promql;

use std::{
    collections::HashMap,
    future::Future,
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use crate::demand::{ReplicaValue, Signals};
pub use promql::QueryPlan;

/// One series of an instant-vector answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: HashMap<String, String>,
    pub value: f64,
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
}

impl SourceError {
    /// A short, fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Unreachable(_) => "unreachable",
            SourceError::Timeout(_) => "timeout",
            SourceError::Query { .. } => "query",
            SourceError::BadResponse(_) => "bad_response",
        }
    }
}

/// The signals a plan asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Queue,
    OutputTokens,
    InputTokens,
    KvCache,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Queue => "queue",
            Signal::OutputTokens => "output_tokens",
            Signal::InputTokens => "input_tokens",
            Signal::KvCache => "kv_cache",
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

/// One run of a plan: the signals (or why there are none) and what was asked.
#[derive(Debug, Clone)]
pub struct Observation {
    pub signals: Result<Signals, String>,
    pub queries: Vec<QueryRecord>,
    /// Wall-clock start, for Explain.
    pub started_at: SystemTime,
    /// Monotonic start, for cache ages.
    pub started: Instant,
    pub duration: Duration,
}

impl Observation {
    /// An observation that produced nothing, with the reason.
    pub fn failed(reason: String) -> Self {
        Self {
            signals: Err(reason),
            queries: Vec::new(),
            started_at: SystemTime::now(),
            started: Instant::now(),
            duration: Duration::ZERO,
        }
    }
}

/// Runs every query of the plan concurrently and builds the signals. Any query that
/// fails fails the observation: a missing signal is never read as 0.
pub async fn observe<S: MetricsSource>(source: &S, plan: &QueryPlan) -> Observation {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let timed = |signal: Signal, promql: &str| {
        let promql = promql.to_owned();
        async move {
            let begin = Instant::now();
            let answer = source.query(&promql).await;
            (signal, promql, begin.elapsed(), answer)
        }
    };
    let kv = async {
        match &plan.kv_cache {
            Some(q) => Some(timed(Signal::KvCache, q).await),
            None => None,
        }
    };
    let (queue, output, input, kv) = futures::join!(
        timed(Signal::Queue, &plan.queue),
        timed(Signal::OutputTokens, &plan.output_tokens),
        timed(Signal::InputTokens, &plan.input_tokens),
        kv,
    );

    let mut queries = Vec::with_capacity(4);
    let mut errors: Vec<(Signal, String)> = Vec::new();
    let mut take = |(signal, promql, duration, answer): (
        Signal,
        String,
        Duration,
        Result<Vec<Sample>, SourceError>,
    )| {
        let (series, error, error_kind, samples) = match answer {
            Ok(samples) => (samples.len(), None, None, Some(samples)),
            Err(e) => {
                errors.push((signal, e.to_string()));
                (0, Some(e.to_string()), Some(e.kind()), None)
            }
        };
        queries.push(QueryRecord {
            signal,
            promql,
            duration,
            series,
            error,
            error_kind,
        });
        samples
    };
    let queue = take(queue);
    let output = take(output);
    let input = take(input);
    let kv = kv.map(&mut take);

    let signals = if errors.is_empty() {
        build_signals(
            &plan.replica_label,
            queue.unwrap_or_default(),
            output.unwrap_or_default(),
            input.unwrap_or_default(),
            kv.map(Option::unwrap_or_default),
        )
    } else {
        Err(summarize(&errors))
    };
    Observation {
        signals,
        queries,
        started_at,
        started,
        duration: started.elapsed(),
    }
}

/// "queue, kv_cache queries failed: X": one line however many queries share a cause.
fn summarize(errors: &[(Signal, String)]) -> String {
    let mut causes: Vec<(&str, Vec<&str>)> = Vec::new();
    for (signal, cause) in errors {
        match causes.iter_mut().find(|(c, _)| c == cause) {
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

fn build_signals(
    replica_label: &str,
    queue: Vec<Sample>,
    output: Vec<Sample>,
    input: Vec<Sample>,
    kv: Option<Vec<Sample>>,
) -> Result<Signals, String> {
    Ok(Signals {
        queue_by_replica: by_replica(Signal::Queue, replica_label, queue)?,
        output_tokens_per_second: fleet_value(Signal::OutputTokens, output)?,
        input_tokens_per_second: fleet_value(Signal::InputTokens, input)?,
        kv_by_replica: kv
            .map(|kv| by_replica(Signal::KvCache, replica_label, kv))
            .transpose()?,
    })
}

fn by_replica(
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
fn fleet_value(signal: Signal, samples: Vec<Sample>) -> Result<f64, String> {
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
