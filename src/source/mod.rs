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

/// One run of a plan: each signal (or why it could not be read) and what was asked.
#[derive(Debug, Clone)]
pub struct Observation {
    pub queue: Result<Vec<ReplicaValue>, String>,
    pub output_tokens: Result<f64, String>,
    pub input_tokens: Result<f64, String>,
    /// `None` when the plan did not ask (pools that don't scale on KV cache).
    pub kv_cache: Option<Result<Vec<ReplicaValue>, String>>,
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
            queue: Err(reason.clone()),
            output_tokens: Err(reason.clone()),
            input_tokens: Err(reason),
            kv_cache: None,
            queries: Vec::new(),
            started_at: SystemTime::now(),
            started: Instant::now(),
            duration: Duration::ZERO,
        }
    }

    /// Every signal that could not be read, with its cause.
    pub fn errors(&self) -> Vec<(Signal, &str)> {
        let mut errors = Vec::new();
        if let Err(e) = &self.queue {
            errors.push((Signal::Queue, e.as_str()));
        }
        if let Err(e) = &self.output_tokens {
            errors.push((Signal::OutputTokens, e.as_str()));
        }
        if let Err(e) = &self.input_tokens {
            errors.push((Signal::InputTokens, e.as_str()));
        }
        if let Some(Err(e)) = &self.kv_cache {
            errors.push((Signal::KvCache, e.as_str()));
        }
        errors
    }

    /// True when every signal was read.
    pub fn is_complete(&self) -> bool {
        self.errors().is_empty()
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
        }
    }
}

/// Runs every query of the plan concurrently and reads each signal from its answer. A
/// query that fails leaves its signal unread (an error), never 0.
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
    let mut take = |(signal, promql, duration, answer): (
        Signal,
        String,
        Duration,
        Result<Vec<Sample>, SourceError>,
    )| {
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
        answer.map_err(|e| e.to_string())
    };
    let label = plan.replica_label.as_str();
    let queue = take(queue).and_then(|s| by_replica(Signal::Queue, label, s));
    let output_tokens = take(output).and_then(|s| fleet_value(Signal::OutputTokens, s));
    let input_tokens = take(input).and_then(|s| fleet_value(Signal::InputTokens, s));
    let kv_cache = kv.map(|kv| take(kv).and_then(|s| by_replica(Signal::KvCache, label, s)));
    Observation {
        queue,
        output_tokens,
        input_tokens,
        kv_cache,
        queries,
        started_at,
        started,
        duration: started.elapsed(),
    }
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
