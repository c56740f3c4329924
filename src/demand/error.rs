//! Why a demand cannot be computed.

/// A signal whose value cannot be trusted: the demand is not computed from it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignalError {
    /// A replica's gauge is negative or not finite.
    #[error("{signal} is {value} for replica `{replica}`: expected a finite number at or above 0")]
    BadReplicaValue {
        /// The signal's name.
        signal: &'static str,
        /// The replica.
        replica: String,
        /// What it reported.
        value: f64,
    },
    /// A fleet value is negative or not finite.
    #[error("{signal} is {value}: expected a finite number at or above 0")]
    BadFleetValue {
        /// The signal's name.
        signal: &'static str,
        /// What the fleet reported.
        value: f64,
    },
    /// A replica's KV-cache usage is outside 0..1.
    #[error("KV-cache usage is {value} for replica `{replica}`: expected a ratio from 0 to 1")]
    KvOutOfRange {
        /// The replica.
        replica: String,
        /// What it reported.
        value: f64,
    },
    /// Every signal a term needs is missing.
    #[error("no term could be computed: every signal they need is missing")]
    NoTerms,
    /// Finite inputs whose arithmetic is not: a sum that overflows, or a term that does.
    #[error("{what} is {value}: finite inputs gave a number that is not finite")]
    Overflow {
        /// The sum or term.
        what: &'static str,
        /// What it came to.
        value: f64,
    },
    /// A histogram (latency or length) without its `+Inf` bucket.
    #[error("the histogram has no `+Inf` bucket, so its request count is unknown")]
    NoInfBucket,
}
