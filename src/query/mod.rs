//! The queries each trigger needs: one [`QuerySpec`] per signal, planned from the
//! profile and the trigger, rendered to PromQL for Prometheus and evaluated as it is by
//! the simulated Prometheus.

mod plan;
mod signal;
mod spec;

pub use plan::{Planned, QueryPlan, calibration_plan, history_specs, lead_steps, plan};
pub use signal::{
    AGO_LABEL, LEVEL_LABEL, LONG_LEVEL, LatencyKind, MIX_WINDOW, PERIOD_LABEL, Signal,
};
pub use spec::{Aggregation, CustomShape, QuerySpec, Read, quote, subquery_step};

#[cfg(test)]
mod tests;
