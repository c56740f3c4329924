//! The signals a plan reads, how a latency is exported, and the labels the history
//! queries tag their answers with.

/// The signals a plan asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Signal {
    /// Waiting requests, per replica.
    Queue,
    /// The fleet's output tokens per second.
    OutputTokens,
    /// The fleet's input (prompt) tokens per second.
    InputTokens,
    /// KV-cache usage, per replica.
    KvCache,
    /// The latency of SLO number `slo` (in the profile's list) over its short window.
    SloShort {
        /// The SLO's index in the trigger's list.
        slo: u16,
    },
    /// The same over the long window.
    SloLong {
        /// The SLO's index in the trigger's list.
        slo: u16,
    },
    /// For a TTFT SLO: the per-request prefill-time histogram over its short window.
    SloPrefillShort {
        /// The SLO's index in the trigger's list.
        slo: u16,
    },
    /// The same over the long window.
    SloPrefillLong {
        /// The SLO's index in the trigger's list.
        slo: u16,
    },
    /// For a TPOT SLO with `floor_context_tokens`: the per-request prompt-length
    /// histogram over its short window.
    SloContextShort {
        /// The SLO's index in the trigger's list.
        slo: u16,
    },
    /// The same over the long window.
    SloContextLong {
        /// The SLO's index in the trigger's list.
        slo: u16,
    },
    /// Mean prompt tokens per request finished over the mix window (`capacity.profile`).
    MeanInputTokens,
    /// Mean output tokens per request finished over the mix window.
    MeanOutputTokens,
    /// The output-length histogram of the requests finished over the mix window, whose
    /// share of short answers a `capacity.profile` with `short_output_share` reads.
    OutputLengths,
    /// The token rate's peak over the lead, one series per past period.
    HistoryPeak,
    /// The token rate's level now and at the same time in past periods.
    HistoryLevel,
    /// The token rate's level at each of the last level windows, now and at the same
    /// time in past periods (a range vector).
    HistoryRecent,
}

impl Signal {
    /// A fixed name, for Explain and metric labels.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The SLO a signal belongs to: its latency or the histogram splitting its misses.
    pub fn slo_index(self) -> Option<u16> {
        match self {
            Signal::SloShort { slo }
            | Signal::SloLong { slo }
            | Signal::SloPrefillShort { slo }
            | Signal::SloPrefillLong { slo }
            | Signal::SloContextShort { slo }
            | Signal::SloContextLong { slo } => Some(slo),
            _ => None,
        }
    }
}

/// The window the fleet's mean request lengths are read over (`capacity.profile`): long
/// enough that a few long requests finishing together do not swing the capacity, short
/// enough to follow a shift in the traffic within minutes.
pub const MIX_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// How an engine exports a latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LatencyKind {
    /// A histogram: the answer is one bucket rate per `le`, in seconds after `le_scale`
    /// (thousandths: 1e-3 for a histogram in milliseconds).
    Histogram {
        /// The buckets are in milliseconds.
        le_scale_millis: bool,
    },
    /// A last-value gauge: the answer is the share of samples over the threshold.
    Gauge,
}

/// The label the history queries tag each past period with (0 = now).
pub const PERIOD_LABEL: &str = "llm_scaler_period";

/// The label the level query tags the long level window's series with, as
/// `llm_scaler_level="long"`; the level window's series have none.
pub const LEVEL_LABEL: &str = "llm_scaler_level";
/// The value of [`LEVEL_LABEL`] on the long level window's series.
pub const LONG_LEVEL: &str = "long";

/// The label a range vector's samples carry once read: how many whole seconds before
/// the query they were taken.
pub const AGO_LABEL: &str = "llm_scaler_ago";
