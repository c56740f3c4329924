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

/// One run of a plan: each query's answer (or why there is none) and what was asked.
/// A plan may be shared by several models; [`Observation::readings`] picks one's series.
#[derive(Debug, Clone)]
pub struct Observation {
    pub queue: Result<Vec<Sample>, String>,
    pub output_tokens: Result<Vec<Sample>, String>,
    pub input_tokens: Result<Vec<Sample>, String>,
    /// `None` when the plan did not ask (pools that don't scale on KV cache).
    pub kv_cache: Option<Result<Vec<Sample>, String>>,
    /// From the plan: the label telling replicas apart, and the label models are grouped by.
    pub replica_label: String,
    pub model_label: Option<String>,
    pub queries: Vec<QueryRecord>,
    /// Wall-clock start, for Explain.
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
}

impl Observation {
    /// An observation that produced nothing, with the reason.
    pub fn failed(reason: String) -> Self {
        Self {
            queue: Err(reason.clone()),
            output_tokens: Err(reason.clone()),
            input_tokens: Err(reason),
            kv_cache: None,
            replica_label: String::new(),
            model_label: None,
            queries: Vec::new(),
            started_at: SystemTime::now(),
            started: Instant::now(),
            duration: Duration::ZERO,
        }
    }

    /// True when every query was answered.
    pub fn is_complete(&self) -> bool {
        self.queue.is_ok()
            && self.output_tokens.is_ok()
            && self.input_tokens.is_ok()
            && self.kv_cache.as_ref().is_none_or(Result::is_ok)
    }

    /// What went wrong with the queries, on one line; `None` when all were answered.
    pub fn error_summary(&self) -> Option<String> {
        let mut errors = Vec::new();
        for (signal, answer) in [
            (Signal::Queue, &self.queue),
            (Signal::OutputTokens, &self.output_tokens),
            (Signal::InputTokens, &self.input_tokens),
        ]
        .into_iter()
        .chain(self.kv_cache.as_ref().map(|kv| (Signal::KvCache, kv)))
        {
            if let Err(e) = answer {
                errors.push((signal, e.as_str()));
            }
        }
        (!errors.is_empty()).then(|| summarize(&errors))
    }

    /// The signals of one model (`None`: the plan is the trigger's own).
    pub fn readings(&self, model: Option<&str>) -> Readings {
        let own = |samples: &Vec<Sample>| -> Vec<Sample> {
            match (&self.model_label, model) {
                (Some(label), Some(model)) => samples
                    .iter()
                    .filter(|s| s.labels.get(label).map(String::as_str) == Some(model))
                    .cloned()
                    .collect(),
                _ => samples.clone(),
            }
        };
        let label = self.replica_label.as_str();
        let per_replica = |signal, answer: &Result<Vec<Sample>, String>| {
            answer
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|samples| by_replica(signal, label, own(samples)))
        };
        let fleet = |signal, answer: &Result<Vec<Sample>, String>| {
            answer
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|samples| fleet_value(signal, own(samples)))
        };
        Readings {
            queue: per_replica(Signal::Queue, &self.queue),
            output_tokens: fleet(Signal::OutputTokens, &self.output_tokens),
            input_tokens: fleet(Signal::InputTokens, &self.input_tokens),
            kv_cache: self
                .kv_cache
                .as_ref()
                .map(|kv| per_replica(Signal::KvCache, kv)),
        }
    }
}

impl Readings {
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

/// Runs every query of the plan concurrently. A query that fails leaves its signal
/// unread (an error), never 0.
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
    let queue = take(queue);
    let output_tokens = take(output);
    let input_tokens = take(input);
    let kv_cache = kv.map(&mut take);
    Observation {
        queue,
        output_tokens,
        input_tokens,
        kv_cache,
        replica_label: plan.replica_label.clone(),
        model_label: plan.model_label.clone(),
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
