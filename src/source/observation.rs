//! One run of a plan against a source: each query's answer, or why there is none.

use std::{
    collections::HashMap,
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use super::{
    api::{MetricsSource, Sample},
    error::ReadError,
};
use crate::query::{LatencyKind, QueryPlan, Signal};

/// One query an evaluation ran, for Explain and /metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRecord {
    /// What the query read.
    pub signal: Signal,
    /// The query as sent.
    pub promql: String,
    /// How long Prometheus took to answer.
    pub duration: Duration,
    /// The series in the answer (0 when it failed).
    pub series: usize,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The error's kind label, when it failed.
    pub error_kind: Option<&'static str>,
}

/// One run of a plan: each query's answer (or why there is none) and what was asked.
/// A plan may be shared by several models; [`Observation::readings`] picks one's series.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Each planned query's answer, in the plan's order.
    pub answers: Vec<(Signal, Result<Vec<Sample>, ReadError>)>,
    /// From the plan: the label telling replicas apart.
    pub replica_label: String,
    /// From the plan: the label models are grouped by, when the plan is shared.
    pub model_label: Option<String>,
    /// From the plan: how each SLO's latency is exported.
    pub latency_kinds: Vec<LatencyKind>,
    /// From the plan: the recent levels' window and level windows per lead.
    pub recent_shape: Option<(Duration, u32)>,
    /// Each query as it ran, for Explain and /metrics.
    pub queries: Vec<QueryRecord>,
    /// Wall-clock start, for Explain and for schedules.
    pub started_at: SystemTime,
    /// Monotonic start, for cache ages.
    pub started: Instant,
    /// How long the whole plan took.
    pub duration: Duration,
    /// Each model's series of each answer, built on the first read: a plan shared by a
    /// thousand models is read a thousand times, and each read then finds its own
    /// series at once instead of scanning every model's.
    pub(super) by_model: OnceLock<ByModel>,
}

/// The answers' series by model, then by signal.
pub(super) type ByModel = HashMap<String, HashMap<Signal, Vec<Sample>>>;

impl Observation {
    /// An observation that produced nothing, with the reason.
    pub fn failed(reason: String) -> Self {
        let reason = ReadError::Evaluation(reason);
        Self {
            answers: [Signal::Queue, Signal::OutputTokens, Signal::InputTokens]
                .into_iter()
                .map(|signal| (signal, Err(reason.clone())))
                .collect(),
            replica_label: String::new(),
            model_label: None,
            latency_kinds: Vec::new(),
            recent_shape: None,
            queries: Vec::new(),
            started_at: SystemTime::now(),
            started: Instant::now(),
            duration: Duration::ZERO,
            by_model: OnceLock::new(),
        }
    }

    /// An observation of `plan` made of these answers.
    pub fn of_plan(
        plan: &QueryPlan,
        answers: Vec<(Signal, Result<Vec<Sample>, ReadError>)>,
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
            recent_shape: plan.recent_shape(),
            queries,
            started_at,
            started,
            duration,
            by_model: OnceLock::new(),
        }
    }

    /// True when every query was answered.
    pub fn is_complete(&self) -> bool {
        self.answers.iter().all(|(_, answer)| answer.is_ok())
    }

    /// What went wrong with the queries, on one line; `None` when all were answered.
    pub fn error_summary(&self) -> Option<String> {
        let errors: Vec<(Signal, &ReadError)> = self
            .answers
            .iter()
            .filter_map(|(signal, answer)| answer.as_ref().err().map(|e| (*signal, e)))
            .collect();
        (!errors.is_empty()).then(|| summarize(&errors))
    }

    /// The answer to one signal's query; `None` when the plan did not ask.
    pub fn answer(&self, signal: Signal) -> Option<&Result<Vec<Sample>, ReadError>> {
        self.answers
            .iter()
            .find(|(s, _)| *s == signal)
            .map(|(_, answer)| answer)
    }
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
            (signal, answer.map_err(ReadError::from))
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
pub(super) fn summarize(errors: &[(Signal, &ReadError)]) -> String {
    let mut causes: Vec<(&ReadError, Vec<&str>)> = Vec::new();
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
