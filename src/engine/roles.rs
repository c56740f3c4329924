//! The serving engines, the roles a fleet's replicas play, and the latencies an SLO can
//! be set on: the names every layer shares.

use serde::Deserialize;

/// The serving engines with built-in series presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Seed,
    Vllm,
    Sglang,
    Tgi,
    Trtllm,
    Dynamo,
    Custom,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Seed => "seed",
            Engine::Vllm => "vllm",
            Engine::Sglang => "sglang",
            Engine::Tgi => "tgi",
            Engine::Trtllm => "trtllm",
            Engine::Dynamo => "dynamo",
            Engine::Custom => "custom",
        }
    }
}

/// Which role a fleet's replicas play.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    #[default]
    Unified,
    Prefill,
    Decode,
}

impl Pool {
    pub const ALLOWED: &'static str = "unified, prefill or decode";

    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Unified => "unified",
            Pool::Prefill => "prefill",
            Pool::Decode => "decode",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "unified" => Some(Pool::Unified),
            "prefill" => Some(Pool::Prefill),
            "decode" => Some(Pool::Decode),
            _ => None,
        }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencySignal {
    /// Time to first token: what prefill capacity decides.
    Ttft,
    /// Time per output token: what decode capacity decides.
    Tpot,
}

impl LatencySignal {
    pub fn as_str(self) -> &'static str {
        match self {
            LatencySignal::Ttft => "ttft",
            LatencySignal::Tpot => "tpot",
        }
    }

    /// TTFT counts for pools that prefill, TPOT for pools that decode.
    pub fn applies_to(self, pool: Pool) -> bool {
        match self {
            LatencySignal::Ttft => pool != Pool::Decode,
            LatencySignal::Tpot => pool != Pool::Prefill,
        }
    }
}
