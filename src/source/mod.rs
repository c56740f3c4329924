//! Where signals come from: a [`MetricsSource`] answers PromQL (Prometheus, or the
//! simulator), [`observe`] runs a [`QueryPlan`] against it, and
//! [`Observation::readings`] turns the answers into the demand model's [`Signals`].

mod answers;
mod api;
mod error;
mod observation;
pub mod prometheus;
mod readings;

pub use crate::query::{
    LEVEL_LABEL, LONG_LEVEL, LatencyKind, MIX_WINDOW, PERIOD_LABEL, QueryPlan, Signal,
};
pub use answers::{by_replica, fleet_value};
pub use api::{ECHO_LIMIT, MetricsSource, Sample, SourceError, truncated};
pub use error::{DemandError, ReadError};
pub use observation::{Observation, QueryRecord, observe};
pub use readings::Readings;
