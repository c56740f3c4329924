//! Each engine's series: which metric names carry each signal, with the old and new
//! spellings of renamed series. The query plans render them; config validation asks
//! what an engine exports.

use super::roles::{Engine, LatencySignal};

/// One series an engine exports, with the fixed matchers that pick the right one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Series {
    /// The metric name.
    pub name: &'static str,
    /// Matchers that pick the right series of that name, as `a="x"`; empty: none.
    pub matchers: &'static str,
}

pub const fn series(name: &'static str) -> Series {
    Series { name, matchers: "" }
}

pub const fn series_where(name: &'static str, matchers: &'static str) -> Series {
    Series { name, matchers }
}

/// How an engine exports KV-cache usage.
#[derive(Debug, Clone, Copy)]
pub enum KvSeries {
    /// A 0..1 gauge, under any of these names.
    Ratio(&'static [Series]),
    /// No ratio: used over total, per replica (TGI's batch tokens).
    Quotient {
        /// The tokens in use.
        used: Series,
        /// The tokens the replica can hold.
        total: Series,
    },
}

/// Each signal's series for one engine. Where an engine renamed a series, both names
/// are listed (newest first): fleets upgrade one pod at a time.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// The label the model's name is in; `None`: the engine has none.
    pub model_label: Option<&'static str>,
    /// Waiting requests, a gauge per replica.
    pub queue: &'static [Series],
    /// Output tokens generated, a counter per replica.
    pub output_tokens: &'static [Series],
    /// Prompt tokens processed, a counter per replica.
    pub input_tokens: &'static [Series],
    /// KV-cache usage per replica.
    pub kv_cache: KvSeries,
    /// How time to first token is exported.
    pub ttft: Latency,
    /// How time per output token is exported.
    pub tpot: Latency,
    /// Each request's prefill time (histograms in the TTFT's unit), which splits a TTFT
    /// SLO's misses into those replicas fix and those they don't; empty: no split.
    pub prefill_time: &'static [Series],
    /// Histograms of each request's prompt and output length (base names): their
    /// `_sum / _count` over the rate window is the fleet's mix, for `capacity.profile`.
    pub request_lengths: Option<(Series, Series)>,
    /// Each request's prompt length (histogram base names), which splits a TPOT SLO's
    /// misses at its `floor_context_tokens`; empty: no split.
    pub prompt_lengths: &'static [Series],
    /// Each request's output length (histogram base names), whose share of short
    /// answers a `capacity.profile` with `short_output_share` points is read at; empty:
    /// the share is unknown.
    pub output_lengths: &'static [Series],
}

/// How an engine exports a latency.
#[derive(Debug, Clone, Copy)]
pub enum Latency {
    /// Not exported: SLOs on it are refused when the config loads.
    None(&'static str),
    /// A last-value gauge in seconds.
    Gauge(Series),
    /// Histograms (base names, without `_bucket`), in seconds or in milliseconds.
    Histogram {
        /// The histogram's names, newest first.
        alternatives: &'static [Series],
        /// Its buckets are in milliseconds.
        millis: bool,
    },
}

const fn seconds(alternatives: &'static [Series]) -> Latency {
    Latency::Histogram {
        alternatives,
        millis: false,
    }
}

const SEED: Preset = Preset {
    model_label: Some("model_id"),
    queue: &[series("llm_queue_depth")],
    output_tokens: &[series_where(
        "llm_tokens_processed_total",
        r#"token_type="output""#,
    )],
    input_tokens: &[series_where(
        "llm_tokens_processed_total",
        r#"token_type="input""#,
    )],
    kv_cache: KvSeries::Ratio(&[series("llm_kv_cache_usage_ratio")]),
    ttft: Latency::Gauge(series("llm_ttft_seconds")),
    tpot: Latency::Gauge(series("llm_tpot_seconds")),
    prefill_time: &[],
    request_lengths: None,
    prompt_lengths: &[],
    output_lengths: &[],
};

/// vLLM's histogram of each request's prompt length.
const VLLM_PROMPT_TOKENS: &[Series] = &[series("vllm:request_prompt_tokens")];
/// vLLM's histogram of each request's output length.
const VLLM_GENERATION_TOKENS: &[Series] = &[series("vllm:request_generation_tokens")];

const VLLM: Preset = Preset {
    model_label: Some("model_name"),
    queue: &[series("vllm:num_requests_waiting")],
    output_tokens: &[series("vllm:generation_tokens_total")],
    input_tokens: &[series("vllm:prompt_tokens_total")],
    kv_cache: KvSeries::Ratio(&[
        series("vllm:kv_cache_usage_perc"),
        series("vllm:gpu_cache_usage_perc"),
    ]),
    ttft: seconds(&[series("vllm:time_to_first_token_seconds")]),
    // The SLO counts requests, so each request's mean time per output token is read
    // first; a replica without that histogram (vLLM before it) falls back to the
    // inter-token latency, which counts tokens and so underweights short answers.
    tpot: seconds(&[
        series("vllm:request_time_per_output_token_seconds"),
        series("vllm:inter_token_latency_seconds"),
        series("vllm:time_per_output_token_seconds"),
    ]),
    prefill_time: &[series("vllm:request_prefill_time_seconds")],
    request_lengths: Some((VLLM_PROMPT_TOKENS[0], VLLM_GENERATION_TOKENS[0])),
    prompt_lengths: VLLM_PROMPT_TOKENS,
    output_lengths: VLLM_GENERATION_TOKENS,
};

const SGLANG: Preset = Preset {
    model_label: Some("model_name"),
    queue: &[
        series("sglang:num_queue_reqs"),
        series("sglang_num_queue_reqs"),
    ],
    output_tokens: &[
        series("sglang:generation_tokens_total"),
        series("sglang_generation_tokens_total"),
    ],
    input_tokens: &[
        series("sglang:prompt_tokens_total"),
        series("sglang_prompt_tokens_total"),
    ],
    kv_cache: KvSeries::Ratio(&[series("sglang:token_usage"), series("sglang_token_usage")]),
    ttft: seconds(&[
        series("sglang:time_to_first_token_seconds"),
        series("sglang_time_to_first_token_seconds"),
    ]),
    tpot: seconds(&[
        series("sglang:inter_token_latency_seconds"),
        series("sglang_inter_token_latency_seconds"),
    ]),
    prefill_time: &[],
    request_lengths: None,
    prompt_lengths: &[],
    output_lengths: &[],
};

const TGI: Preset = Preset {
    model_label: None,
    queue: &[series("tgi_queue_size")],
    output_tokens: &[series("tgi_request_generated_tokens_sum")],
    input_tokens: &[series("tgi_request_input_length_sum")],
    kv_cache: KvSeries::Quotient {
        used: series("tgi_batch_current_max_tokens"),
        total: series("tgi_batch_max_total_tokens"),
    },
    ttft: Latency::None("TGI exports no time-to-first-token histogram"),
    tpot: seconds(&[series("tgi_request_mean_time_per_token_duration")]),
    prefill_time: &[],
    request_lengths: None,
    prompt_lengths: &[],
    output_lengths: &[],
};

const TRTLLM: Preset = Preset {
    model_label: Some("model"),
    queue: &[
        series_where("nv_trt_llm_request_metrics", r#"request_type="waiting""#),
        series("trtllm_num_requests_waiting"),
    ],
    output_tokens: &[
        series_where(
            "nv_llm_output_token_len_sum",
            r#"response_metric_type="total_output_tokens""#,
        ),
        series("trtllm_generation_tokens_total"),
    ],
    input_tokens: &[
        series_where(
            "nv_llm_input_token_len_sum",
            r#"response_metric_type="total_input_tokens""#,
        ),
        series("trtllm_prompt_tokens_total"),
    ],
    kv_cache: KvSeries::Ratio(&[
        series_where(
            "nv_trt_llm_kv_cache_block_metrics",
            r#"kv_cache_block_type="fraction""#,
        ),
        series("trtllm_kv_cache_utilization"),
    ]),
    ttft: Latency::Histogram {
        alternatives: &[series("nv_inference_first_response_histogram_ms")],
        millis: true,
    },
    tpot: Latency::None("TensorRT-LLM behind Triton exports no time-per-output-token histogram"),
    prefill_time: &[],
    request_lengths: None,
    prompt_lengths: &[],
    output_lengths: &[],
};

const DYNAMO: Preset = Preset {
    model_label: Some("model"),
    queue: &[series("dynamo_frontend_queued_requests")],
    output_tokens: &[series("dynamo_frontend_output_tokens_total")],
    input_tokens: &[series("dynamo_frontend_input_sequence_tokens_sum")],
    kv_cache: KvSeries::Ratio(&[series("dynamo_component_kvstats_gpu_cache_usage_percent")]),
    ttft: seconds(&[series("dynamo_frontend_time_to_first_token_seconds")]),
    tpot: seconds(&[series("dynamo_frontend_inter_token_latency_seconds")]),
    prefill_time: &[],
    request_lengths: None,
    prompt_lengths: &[],
    output_lengths: &[],
};

/// The series presets of an engine; `None` for `custom`, whose queries the config gives.
pub fn preset(engine: Engine) -> Option<Preset> {
    match engine {
        Engine::Seed => Some(SEED),
        Engine::Vllm => Some(VLLM),
        Engine::Sglang => Some(SGLANG),
        Engine::Tgi => Some(TGI),
        Engine::Trtllm => Some(TRTLLM),
        Engine::Dynamo => Some(DYNAMO),
        Engine::Custom => None,
    }
}

/// The label an engine puts the model name in, if it has one.
pub fn model_label(engine: Engine) -> Option<&'static str> {
    preset(engine).and_then(|p| p.model_label)
}

/// What an engine does not export that a setting needs: the config check turns it into
/// a problem at the setting's key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    /// `capacity.profile` needs request-length histograms.
    #[error(
        "needs the fleet's mean prompt and output lengths, and engine {} exports no request-length histograms (vllm does: vllm:request_prompt_tokens, vllm:request_generation_tokens)",
        .0.as_str()
    )]
    RequestLengths(Engine),
    /// An SLO on a latency the engine does not export.
    #[error("{} is not allowed with engine {}: {why}", .signal.as_str(), .engine.as_str())]
    Latency {
        /// The engine.
        engine: Engine,
        /// The latency.
        signal: LatencySignal,
        /// Why not.
        why: &'static str,
    },
}

/// Whether an engine exports request lengths, which `capacity.profile` reads.
pub fn length_support(engine: Engine) -> Result<(), Unsupported> {
    match preset(engine) {
        Some(Preset {
            request_lengths: Some(_),
            ..
        }) => Ok(()),
        _ => Err(Unsupported::RequestLengths(engine)),
    }
}

/// Whether a preset engine exports the latency an SLO is set on; the error says why not.
/// `None` for `custom`, where the config's queries decide.
pub fn latency_support(engine: Engine, signal: LatencySignal) -> Option<Result<(), Unsupported>> {
    let preset = preset(engine)?;
    Some(match preset.latency(signal) {
        Latency::None(why) => Err(Unsupported::Latency {
            engine,
            signal,
            why,
        }),
        _ => Ok(()),
    })
}

impl Preset {
    /// How this engine exports a latency.
    pub fn latency(&self, signal: LatencySignal) -> Latency {
        match signal {
            LatencySignal::Ttft => self.ttft,
            LatencySignal::Tpot => self.tpot,
        }
    }
}

/// The latency a histogram of some preset measures, by its base name.
pub fn latency_named(name: &str) -> Option<LatencySignal> {
    const ALL: [Preset; 6] = [SEED, VLLM, SGLANG, TGI, TRTLLM, DYNAMO];
    let named = |latency: Latency| match latency {
        Latency::Histogram { alternatives, .. } => alternatives.iter().any(|s| s.name == name),
        Latency::Gauge(_) | Latency::None(_) => false,
    };
    ALL.iter().find_map(|preset| {
        [LatencySignal::Ttft, LatencySignal::Tpot]
            .into_iter()
            .find(|&signal| named(preset.latency(signal)))
    })
}
