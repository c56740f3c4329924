//! Why a demand cannot be computed.

/// A signal whose value cannot be trusted: the demand is not computed from it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignalError {
    #[error("{signal} is {value} for replica `{replica}`: expected a finite number at or above 0")]
    BadReplicaValue {
        signal: &'static str,
        replica: String,
        value: f64,
    },
    #[error("{signal} is {value}: expected a finite number at or above 0")]
    BadFleetValue { signal: &'static str, value: f64 },
    #[error("KV-cache usage is {value} for replica `{replica}`: expected a ratio from 0 to 1")]
    KvOutOfRange { replica: String, value: f64 },
    #[error("no term could be computed: every signal they need is missing")]
    NoTerms,
    /// Finite inputs whose arithmetic is not: a sum that overflows, or a term that does.
    #[error("{what} is {value}: finite inputs gave a number that is not finite")]
    Overflow { what: &'static str, value: f64 },
    #[error("a latency histogram has no `+Inf` bucket, so its request count is unknown")]
    NoInfBucket,
}
