//! Why an offline tool (backtest, scorecard, calibrate, forecast-eval) stopped.

use super::trace::TraceError;

/// Why a simulation or an evaluation could not run; the message names the flag, key or
/// file to change.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A flag, a manifest entry or a config that does not fit the run.
    #[error("{0}")]
    Setting(String),
    /// A trace that cannot be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// A file the run writes cannot be written.
    #[error("cannot write the {what} to {path}: {source}")]
    Write {
        /// What was written (`plot`, `timeline`).
        what: &'static str,
        /// Where.
        path: String,
        /// Why not.
        source: std::io::Error,
    },
    /// The plot could not be drawn.
    #[error("cannot draw the plot: {0}")]
    Plot(String),
}

impl From<String> for SimError {
    fn from(message: String) -> Self {
        SimError::Setting(message)
    }
}
