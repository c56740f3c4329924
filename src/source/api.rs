//! What a metrics source is: the trait, its answers and its errors.

use std::{collections::HashMap, future::Future, time::Duration};

/// One series of an instant-vector answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels (the metric name is not among them).
    pub labels: HashMap<String, String>,
    /// Its value at the query's time.
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
    /// The instant vector `promql` evaluates to now.
    fn query(&self, promql: &str) -> impl Future<Output = Result<Vec<Sample>, SourceError>> + Send;
}

/// A shared source is a source: the simulator and tests keep a handle on theirs.
impl<T: MetricsSource> MetricsSource for std::sync::Arc<T> {
    fn query(&self, promql: &str) -> impl Future<Output = Result<Vec<Sample>, SourceError>> + Send {
        T::query(self, promql)
    }
}

/// A query that could not be answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum SourceError {
    /// No connection, or it broke (label `unreachable`).
    #[error("Prometheus is unreachable: {0}")]
    Unreachable(String),
    /// No answer within the query timeout (label `timeout`).
    #[error("Prometheus did not answer within {0:?}")]
    Timeout(Duration),
    /// Prometheus answered with an error (label `query`).
    #[error("Prometheus refused the query ({kind}): {message}")]
    Query {
        /// Prometheus' `errorType`.
        kind: String,
        /// Its `error`.
        message: String,
    },
    /// An answer that is not an instant vector, too large, or not Prometheus' at all
    /// (label `bad_response`).
    #[error("Prometheus answered something that is not an instant vector: {0}")]
    BadResponse(String),
    /// The credential files cannot be read (label `auth`).
    #[error("no credentials for Prometheus: {0}")]
    Auth(String),
}

impl SourceError {
    /// A short, fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        self.into()
    }
}
