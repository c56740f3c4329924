//! The serving engines, the roles a fleet's replicas play, and the latencies an SLO can
//! be set on: the names every layer shares.

use serde::Deserialize;
use strum::{EnumString, IntoStaticStr};

/// The serving engines with built-in series presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Engine {
    /// The seed fleet's own exporter (`llm_queue_depth`, `llm_tokens_processed_total`, ...).
    Seed,
    /// vLLM (`vllm:` series).
    Vllm,
    /// SGLang (`sglang:` series, and the older `sglang_` spelling).
    Sglang,
    /// Hugging Face Text Generation Inference (`tgi_` series).
    Tgi,
    /// TensorRT-LLM behind Triton (`nv_` series) or its own server (`trtllm_`).
    Trtllm,
    /// NVIDIA Dynamo's frontend and components (`dynamo_` series).
    Dynamo,
    /// No preset: the profile's `queries` give every expression.
    Custom,
}

impl Engine {
    /// The name the config uses.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Which role a fleet's replicas play.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, IntoStaticStr, EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Pool {
    /// Replicas that prefill and decode (the usual deployment).
    #[default]
    Unified,
    /// The prefill replicas of a disaggregated fleet.
    Prefill,
    /// The decode replicas of a disaggregated fleet.
    Decode,
}

impl Pool {
    /// What `pool` may be, for error messages.
    pub const ALLOWED: &'static str = "unified, prefill or decode";

    /// The name the config and the metadata use.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The pool of that name, if there is one.
    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }

    /// Prefill replicas hold no decode KV cache worth scaling on.
    pub fn uses_kv_cache(self) -> bool {
        self != Pool::Prefill
    }

    /// A prefill pool is sized on the input tokens it reads, every other on the output
    /// tokens it writes: the one place this rule is decided.
    pub fn reads_input_tokens(self) -> bool {
        self == Pool::Prefill
    }
}

/// The latencies an objective can be set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum LatencySignal {
    /// Time to first token: what prefill capacity decides.
    Ttft,
    /// Time per output token: what decode capacity decides.
    Tpot,
}

impl LatencySignal {
    /// The name the config uses.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// TTFT counts for pools that prefill, TPOT for pools that decode.
    pub fn applies_to(self, pool: Pool) -> bool {
        match self {
            LatencySignal::Ttft => pool != Pool::Decode,
            LatencySignal::Tpot => pool != Pool::Prefill,
        }
    }
}
