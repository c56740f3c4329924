//! Why a signal has no value: its query failed, or its answer is not what the query asks
//! for. Each variant names the `kind` label `keda_llm_scaler_signal_read_errors_total`
//! counts it under.

use super::api::SourceError;
use crate::{demand::SignalError, query::PERIOD_LABEL};

/// Why one signal could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ReadError {
    /// The query failed (labelled with the [`SourceError`]'s own kind: `timeout`,
    /// `unreachable`, `query`, `bad_response`, `auth`).
    #[error(transparent)]
    Query(#[from] SourceError),
    /// The evaluation ended before any answer (label `evaluation`).
    #[error("{0}")]
    Evaluation(String),
    /// The plan has no query for a signal the demand needs (label `not_planned`).
    #[error("the plan has no query for it")]
    NotPlanned,
    /// Several series where the query sums to one (label `series_count`).
    #[error("{signal} query returned {count} series where one {expected} was expected")]
    SeriesCount {
        /// The signal's name.
        signal: &'static str,
        /// How many came back.
        count: usize,
        /// What the one series is (`sum`, `share`).
        expected: &'static str,
    },
    /// Per-replica series without the replica label (label `no_replica_label`).
    #[error(
        "{signal} series have no `{label}` label, so replicas cannot be told apart: set the profile's replica_label to a label the engine's series carry"
    )]
    NoReplicaLabel {
        /// The signal's name.
        signal: &'static str,
        /// The label the profile names.
        label: String,
    },
    /// Latency series without `le` (label `no_bucket_label`).
    #[error("latency histogram series have no `le` label: expected the `_bucket` series")]
    NoBucketLabel,
    /// A bucket bound that is no number (label `bad_bucket_bound`).
    #[error("latency histogram bucket bound `le=\"{0}\"` is not a number")]
    BadBucketBound(String),
    /// History series without the period label (label `no_period_label`).
    #[error("{0} series have no `{PERIOD_LABEL}` label")]
    NoPeriodLabel(&'static str),
    /// A mean request length that is not a positive number (label `bad_mean`).
    #[error("{signal} is {value}: expected a finite number of tokens above 0")]
    BadMean {
        /// The signal's name.
        signal: &'static str,
        /// What the query came to.
        value: f64,
    },
    /// A histogram whose buckets do not add up to a distribution: a negative or
    /// non-finite rate, or no `+Inf` bucket (label `bad_histogram`).
    #[error("{signal} histogram cannot be read: {cause}")]
    BadHistogram {
        /// The signal's name.
        signal: &'static str,
        /// What is wrong with its buckets.
        cause: SignalError,
    },
}

impl ReadError {
    /// The fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ReadError::Query(e) => e.kind(),
            other => other.into(),
        }
    }
}

/// Why a reading gave no demand.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DemandError {
    /// `on_term_error: fail`, and these signals could not be read.
    #[error("{0}")]
    Unread(String),
    /// The demand model refused what was read; `unread` names what could not be read
    /// besides.
    #[error("{error}{}", .unread.as_ref().map(|u| format!(" ({u})")).unwrap_or_default())]
    Model {
        /// What the model refused.
        error: SignalError,
        /// The signals that could not be read, on one line.
        unread: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_failed_query_keeps_its_own_kind_and_a_bad_answer_names_what_is_wrong() {
        let timeout = ReadError::from(SourceError::Timeout(Duration::from_secs(2)));
        assert_eq!(timeout.label(), "timeout");
        let unlabelled = ReadError::NoReplicaLabel {
            signal: "queue",
            label: "pod".into(),
        };
        assert_eq!(unlabelled.label(), "no_replica_label");
        assert!(
            unlabelled.to_string().contains("`pod` label"),
            "{unlabelled}"
        );
        assert_eq!(ReadError::NoBucketLabel.label(), "no_bucket_label");
        assert_eq!(ReadError::NotPlanned.label(), "not_planned");
        let bad = ReadError::BadHistogram {
            signal: "output_lengths",
            cause: SignalError::NoInfBucket,
        };
        assert_eq!(bad.label(), "bad_histogram");
        assert!(
            bad.to_string().starts_with("output_lengths histogram"),
            "{bad}"
        );
    }
}
