//! The fleet simulator: a trace replayed through simulated LLM replicas, scaled by KEDA
//! and the HPA on a policy's metrics. The `scaler` policy runs the service's own query
//! plan, readings and demand code on what a simulated Prometheus would answer, so a
//! backtest shows what the deployed scaler would do.

pub mod backtest;
pub mod calibrate;
pub mod demo;
mod error;
pub mod feasible;
pub mod fleet;
pub mod forecast_eval;
pub mod hpa;
pub mod model;
pub mod plot;
pub mod rates;
pub mod run;
pub mod scorecard;
pub mod search;
pub mod stats;
pub mod trace;
pub mod tsdb;

pub use error::SimError;
