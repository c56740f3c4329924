//! Why an offline tool (backtest, scorecard, calibrate, forecast-eval) stopped, and why a
//! trace cannot be read.

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

/// Why a trace cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file cannot be read.
    #[error("cannot read trace {path}: {source}")]
    Read {
        /// The trace's path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line that is not a request.
    #[error("{path} line {line}: {problem}")]
    Parse {
        /// The trace's path.
        path: String,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// None of the formats read.
    #[error(
        "{path}: unknown trace format: expected Azure's CSV (header `TIMESTAMP,ContextTokens,GeneratedTokens`), BurstGPT's CSV (columns `Timestamp`, `Request tokens`, `Response tokens`), Mooncake's JSONL (`timestamp`, `input_length`, `output_length`) or a rate file (header `window_start_s,<rate>`)"
    )]
    UnknownFormat {
        /// The trace's path.
        path: String,
    },
    /// A rate file that does not hold.
    #[error("{path}: {problem}")]
    Rates {
        /// The trace's path.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// No request at all.
    #[error("{path}: the trace holds no requests")]
    Empty {
        /// The trace's path.
        path: String,
    },
    /// A rate file given where lengths are needed.
    #[error(
        "{path} is a rate file: it carries no token lengths, so give a request trace to draw them from (--lengths)"
    )]
    NeedsLengths {
        /// The trace's path.
        path: String,
    },
}
