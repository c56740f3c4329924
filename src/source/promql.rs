//! PromQL for each engine: which series carry each signal, and how a profile's
//! selector and a trigger's `model` enter the query, escaped so that no value can
//! widen or break it.

use std::fmt::Write;

use crate::config::{CustomQueries, Engine, Profile, metadata::Target};

/// The queries one evaluation runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryPlan {
    /// The label that tells replicas apart in the per-replica answers.
    pub replica_label: String,
    /// When set, the queries cover every model of the profile, grouped by this label, and
    /// each trigger reads its own model's series from the shared answers: a thousand
    /// ScaledObjects that differ only by `model` cost Prometheus one round of queries.
    pub model_label: Option<String>,
    /// Waiting requests, one series per replica.
    pub queue: String,
    /// Output tokens per second, one series (or none for a fleet at zero).
    pub output_tokens: String,
    /// Input tokens per second, one series (or none).
    pub input_tokens: String,
    /// KV-cache usage ratio, one series per replica; `None` for pools that don't scale on it.
    pub kv_cache: Option<String>,
}

/// One series an engine exports, with the fixed matchers that pick the right one.
#[derive(Debug, Clone, Copy)]
struct Series {
    name: &'static str,
    matchers: &'static str,
}

const fn series(name: &'static str) -> Series {
    Series { name, matchers: "" }
}

const fn series_where(name: &'static str, matchers: &'static str) -> Series {
    Series { name, matchers }
}

/// How an engine exports KV-cache usage.
#[derive(Debug, Clone, Copy)]
enum KvSeries {
    /// A 0..1 gauge, under any of these names.
    Ratio(&'static [Series]),
    /// No ratio: used over total, per replica (TGI's batch tokens).
    Quotient { used: Series, total: Series },
}

/// Each signal's series for one engine. Where an engine renamed a series, both names
/// are listed (newest first): fleets upgrade one pod at a time.
#[derive(Debug, Clone, Copy)]
struct Preset {
    model_label: Option<&'static str>,
    queue: &'static [Series],
    output_tokens: &'static [Series],
    input_tokens: &'static [Series],
    kv_cache: KvSeries,
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
};

const VLLM: Preset = Preset {
    model_label: Some("model_name"),
    queue: &[series("vllm:num_requests_waiting")],
    output_tokens: &[series("vllm:generation_tokens_total")],
    input_tokens: &[series("vllm:prompt_tokens_total")],
    kv_cache: KvSeries::Ratio(&[
        series("vllm:kv_cache_usage_perc"),
        series("vllm:gpu_cache_usage_perc"),
    ]),
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
};

const DYNAMO: Preset = Preset {
    model_label: Some("model"),
    queue: &[series("dynamo_frontend_queued_requests")],
    output_tokens: &[series("dynamo_frontend_output_tokens_total")],
    input_tokens: &[series("dynamo_frontend_input_sequence_tokens_sum")],
    kv_cache: KvSeries::Ratio(&[series("dynamo_component_kvstats_gpu_cache_usage_percent")]),
};

fn preset(engine: Engine) -> Option<Preset> {
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

/// Quotes a value as a PromQL string literal. Everything that could end the string or
/// start an escape is escaped, so the value is always one literal.
pub fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '\\' => quoted.push_str(r"\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str(r"\n"),
            '\r' => quoted.push_str(r"\r"),
            '\t' => quoted.push_str(r"\t"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04x}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A plan and the model whose series a trigger reads from its answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub plan: QueryPlan,
    /// The value of `plan.model_label` this trigger reads; `None` when the plan is its own.
    pub model: Option<String>,
}

/// The profile's matchers, as `a="x",b="y"`. A trigger's `model` is applied by grouping
/// (see [`QueryPlan::model_label`]), so the profile's own model matcher is dropped.
fn matchers(profile: &Profile, target: &Target, model_label: Option<&str>) -> Vec<String> {
    let mut pairs: Vec<(String, &str)> = profile
        .selector
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_str()))
        .collect();
    if let (Some(_), Some(label)) = (target.model.as_deref(), model_label) {
        pairs.retain(|(name, _)| name != label);
    }
    if let Some(namespace) = target.namespace_scope.as_deref() {
        pairs.retain(|(name, _)| name != "namespace");
        pairs.push(("namespace".to_owned(), namespace));
    }
    pairs.sort();
    pairs
        .into_iter()
        .map(|(name, value)| format!("{name}={}", quote(value)))
        .collect()
}

fn selector(series: &Series, matchers: &[String]) -> String {
    let mut all: Vec<&str> = Vec::with_capacity(matchers.len() + 1);
    if !series.matchers.is_empty() {
        all.push(series.matchers);
    }
    all.extend(matchers.iter().map(String::as_str));
    if all.is_empty() {
        series.name.to_owned()
    } else {
        format!("{}{{{}}}", series.name, all.join(","))
    }
}

/// `agg by (label) (A) or agg by (label) (B)`: a replica exporting both names counts once.
fn per_replica(
    agg: &str,
    label: &str,
    alternatives: &[Series],
    matchers: &[String],
    wrap: impl Fn(String) -> String,
) -> String {
    alternatives
        .iter()
        .map(|s| format!("{agg} by ({label}) ({})", wrap(selector(s, matchers))))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The queries for a resolved trigger.
pub fn plan(profile: &Profile, target: &Target) -> Planned {
    let label = profile.replica_label.as_str();
    let window = profile.rate_window.value.to_string();
    let want_kv = target.pool.uses_kv_cache();
    let Some(preset) = preset(profile.engine) else {
        let queries = &profile
            .queries
            .as_ref()
            .expect("config validation requires queries for engine custom")
            .value;
        let plan = custom_plan(
            queries,
            &matchers(profile, target, None).join(","),
            label,
            &window,
            want_kv,
        );
        return Planned { plan, model: None };
    };
    let model_label = target.model.as_ref().and(preset.model_label);
    let m = matchers(profile, target, preset.model_label);
    // Per replica, and per model when the plan is shared by models.
    let by = match model_label {
        Some(model_label) => format!("{model_label}, {label}"),
        None => label.to_owned(),
    };
    let fleet = |inner: String| match model_label {
        Some(model_label) => format!("sum by ({model_label}) ({inner})"),
        None => format!("sum({inner})"),
    };
    let rate = |s: String| format!("rate({s}[{window}])");
    let tokens = |alternatives: &[Series]| match alternatives {
        [only] => fleet(rate(selector(only, &m))),
        _ => fleet(per_replica("sum", &by, alternatives, &m, rate)),
    };
    let kv_cache = want_kv.then(|| match preset.kv_cache {
        KvSeries::Ratio(alternatives) => per_replica("avg", &by, alternatives, &m, |s| s),
        KvSeries::Quotient { used, total } => format!(
            "sum by ({by}) ({}) / sum by ({by}) ({})",
            selector(&used, &m),
            selector(&total, &m)
        ),
    });
    Planned {
        plan: QueryPlan {
            replica_label: label.to_owned(),
            model_label: model_label.map(str::to_owned),
            queue: per_replica("sum", &by, preset.queue, &m, |s| s),
            output_tokens: tokens(preset.output_tokens),
            input_tokens: tokens(preset.input_tokens),
            kv_cache,
        },
        model: model_label.and(target.model.clone()),
    }
}

fn custom_plan(
    queries: &CustomQueries,
    matchers: &str,
    label: &str,
    window: &str,
    want_kv: bool,
) -> QueryPlan {
    let fill = |q: &str| {
        q.replace("$selector", matchers)
            .replace("$rate_window", window)
    };
    QueryPlan {
        replica_label: label.to_owned(),
        model_label: None,
        queue: format!("sum by ({label}) ({})", fill(&queries.queue_depth)),
        output_tokens: format!("sum({})", fill(&queries.output_tokens_per_second)),
        input_tokens: format!("sum({})", fill(&queries.input_tokens_per_second)),
        kv_cache: want_kv.then(|| format!("avg by ({label}) ({})", fill(&queries.kv_cache_usage))),
    }
}

#[cfg(test)]
mod tests;
