//! PromQL for each engine: which series carry each signal, and how a profile's
//! selector and a trigger's `model` enter the query, escaped so that no value can
//! widen or break it.

use std::fmt::Write;

use std::time::Duration;

use super::{LEVEL_LABEL, LONG_LEVEL, LatencyKind, PERIOD_LABEL, Signal};
use crate::config::{
    ConfigDuration, CustomQueries, Engine, LatencySignal, Profile, anticipation::HistoryConfig,
    metadata::Target,
};

/// The queries one evaluation runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryPlan {
    /// The label that tells replicas apart in the per-replica answers.
    pub replica_label: String,
    /// When set, the queries cover every model of the profile, grouped by this label, and
    /// each trigger reads its own model's series from the shared answers: a thousand
    /// ScaledObjects that differ only by `model` cost Prometheus one round of queries.
    pub model_label: Option<String>,
    /// The queries, each with the signal it reads: waiting requests (one series per
    /// replica), output and input tokens per second (one series, or none for a fleet at
    /// zero), KV-cache usage (one series per replica; not for prefill pools), each SLO's
    /// latency over its two windows, and the forecast's history.
    pub queries: Vec<(Signal, String)>,
    /// How each SLO's latency is exported, in the target's SLO order.
    pub latency_kinds: Vec<LatencyKind>,
}

impl QueryPlan {
    /// The PromQL of one signal, if the plan asks for it.
    pub fn query(&self, signal: Signal) -> Option<&str> {
        self.queries
            .iter()
            .find(|(s, _)| *s == signal)
            .map(|(_, q)| q.as_str())
    }
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
    ttft: Latency,
    tpot: Latency,
    /// Each request's prefill time (histograms in the TTFT's unit), which splits a TTFT
    /// SLO's misses into those replicas fix and those they don't; empty: no split.
    prefill_time: &'static [Series],
    /// Histograms of each request's prompt and output length (base names): their
    /// `_sum / _count` over the rate window is the fleet's mix, for `capacity.profile`.
    request_lengths: Option<(Series, Series)>,
}

/// How an engine exports a latency.
#[derive(Debug, Clone, Copy)]
enum Latency {
    /// Not exported: SLOs on it are refused when the config loads.
    None(&'static str),
    /// A last-value gauge in seconds.
    Gauge(Series),
    /// Histograms (base names, without `_bucket`), in seconds or in milliseconds.
    Histogram {
        alternatives: &'static [Series],
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
    ttft: seconds(&[series("vllm:time_to_first_token_seconds")]),
    tpot: seconds(&[
        series("vllm:inter_token_latency_seconds"),
        series("vllm:time_per_output_token_seconds"),
    ]),
    prefill_time: &[series("vllm:request_prefill_time_seconds")],
    request_lengths: Some((
        series("vllm:request_prompt_tokens"),
        series("vllm:request_generation_tokens"),
    )),
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
    selector_named(series.name, series.matchers, matchers)
}

fn selector_named(name: &str, fixed: &str, matchers: &[String]) -> String {
    let mut all: Vec<&str> = Vec::with_capacity(matchers.len() + 1);
    if !fixed.is_empty() {
        all.push(fixed);
    }
    all.extend(matchers.iter().map(String::as_str));
    if all.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", all.join(","))
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

/// Whether a profile's engine exports request lengths, which `capacity.profile` reads.
pub fn length_support(profile: &Profile) -> Result<(), String> {
    match preset(profile.engine) {
        Some(Preset {
            request_lengths: Some(_),
            ..
        }) => Ok(()),
        _ => Err(format!(
            "needs the fleet's mean prompt and output lengths, and engine {} exports no request-length histograms (vllm does: vllm:request_prompt_tokens, vllm:request_generation_tokens)",
            profile.engine.as_str()
        )),
    }
}

/// Whether a profile's engine exports the latency an SLO is set on; the error says why not.
pub fn latency_support(profile: &Profile, signal: LatencySignal) -> Result<(), String> {
    match preset(profile.engine) {
        Some(preset) => match latency_of(&preset, signal) {
            Latency::None(why) => Err(format!(
                "{} is not allowed with engine {}: {why}",
                signal.as_str(),
                profile.engine.as_str()
            )),
            _ => Ok(()),
        },
        None => {
            let queries = profile.queries.as_ref().map(|q| &q.value);
            let given = match signal {
                LatencySignal::Ttft => queries.and_then(|q| q.ttft_buckets.as_ref()),
                LatencySignal::Tpot => queries.and_then(|q| q.tpot_buckets.as_ref()),
            };
            given.map(|_| ()).ok_or_else(|| {
                format!(
                    "{0} needs queries.{0}_buckets with engine custom: the `_bucket` series of a {0} histogram in seconds",
                    signal.as_str()
                )
            })
        }
    }
}

fn latency_of(preset: &Preset, signal: LatencySignal) -> Latency {
    match signal {
        LatencySignal::Ttft => preset.ttft,
        LatencySignal::Tpot => preset.tpot,
    }
}

/// A subquery resolution: fine enough to see the range, at most a few hundred steps.
fn subquery_step(range: Duration) -> ConfigDuration {
    let seconds = (range.as_secs() / 300).max(15);
    ConfigDuration(Duration::from_secs(seconds))
}

/// A threshold in PromQL: seconds as a plain number.
fn seconds_literal(duration: Duration) -> String {
    format!("{}", duration.as_secs_f64())
}

/// The queries for a resolved trigger.
pub fn plan(profile: &Profile, target: &Target) -> Planned {
    let label = profile.replica_label.as_str();
    let window = profile.rate_window.value.to_string();
    let want_kv = target.pool.uses_kv_cache();
    let tokens_signal = match target.pool {
        crate::config::Pool::Prefill => Signal::InputTokens,
        _ => Signal::OutputTokens,
    };
    let Some(preset) = preset(profile.engine) else {
        let queries = &profile
            .queries
            .as_ref()
            .expect("config validation requires queries for engine custom")
            .value;
        let matchers = matchers(profile, target, None).join(",");
        let mut plan = custom_plan(queries, &matchers, label, &window, want_kv);
        for (i, slo) in target.slos.iter().enumerate() {
            let buckets = match slo.signal {
                LatencySignal::Ttft => queries.ttft_buckets.as_deref(),
                LatencySignal::Tpot => queries.tpot_buckets.as_deref(),
            }
            .expect("config validation requires the bucket query of every SLO signal");
            let index = u16::try_from(i).unwrap_or(u16::MAX);
            let mut windows = vec![
                (buckets, Signal::SloShort { slo: index }, slo.short_window()),
                (buckets, Signal::SloLong { slo: index }, slo.long_window()),
            ];
            if let (LatencySignal::Ttft, Some(prefill)) =
                (slo.signal, queries.prefill_time_buckets.as_deref())
            {
                windows.push((
                    prefill,
                    Signal::SloPrefillShort { slo: index },
                    slo.short_window(),
                ));
                windows.push((
                    prefill,
                    Signal::SloPrefillLong { slo: index },
                    slo.long_window(),
                ));
            }
            for (buckets, signal, range) in windows {
                let selector = buckets
                    .replace("$selector", &matchers)
                    .replace("$rate_window", &range.to_string());
                plan.queries
                    .push((signal, format!("sum by (le) (rate({selector}[{range}]))")));
            }
            plan.latency_kinds.push(LatencyKind::Histogram {
                le_scale_millis: false,
            });
        }
        add_history(&mut plan, target, tokens_signal);
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
    let mut queries = vec![
        (
            Signal::Queue,
            per_replica("sum", &by, preset.queue, &m, |s| s),
        ),
        (Signal::OutputTokens, tokens(preset.output_tokens)),
        (Signal::InputTokens, tokens(preset.input_tokens)),
    ];
    if want_kv {
        queries.push((
            Signal::KvCache,
            match preset.kv_cache {
                KvSeries::Ratio(alternatives) => per_replica("avg", &by, alternatives, &m, |s| s),
                KvSeries::Quotient { used, total } => format!(
                    "sum by ({by}) ({}) / sum by ({by}) ({})",
                    selector(&used, &m),
                    selector(&total, &m)
                ),
            },
        ));
    }
    let by_le = match model_label {
        Some(model_label) => format!("{model_label}, le"),
        None => "le".to_owned(),
    };
    // The bucket rates of a histogram over `range`, summed over its alternative names.
    let histogram = |alternatives: &[Series], range: ConfigDuration| {
        let rate = |s: &Series| {
            let bucket = format!("{}_bucket", s.name);
            format!("rate({}[{range}])", selector_named(&bucket, s.matchers, &m))
        };
        match alternatives {
            [only] => format!("sum by ({by_le}) ({})", rate(only)),
            _ => format!(
                "sum by ({by_le}) ({})",
                alternatives
                    .iter()
                    .map(|s| format!("sum by ({by}, le) ({})", rate(s)))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        }
    };
    if let (Some(_), Some((prompt, generation))) =
        (&target.capacity_profile, preset.request_lengths)
    {
        // Mean tokens per finished request; no series while none finished.
        let mix_window = ConfigDuration(super::MIX_WINDOW);
        let mean = |histogram: Series| {
            let part = |suffix: &str| {
                let name = format!("{}_{suffix}", histogram.name);
                let series = selector_named(&name, histogram.matchers, &m);
                fleet(format!("rate({series}[{mix_window}])"))
            };
            format!("{} / ({} > 0)", part("sum"), part("count"))
        };
        queries.push((Signal::MeanInputTokens, mean(prompt)));
        queries.push((Signal::MeanOutputTokens, mean(generation)));
    }
    let mut latency_kinds = Vec::new();
    for (i, slo) in target.slos.iter().enumerate() {
        let index = u16::try_from(i).unwrap_or(u16::MAX);
        let latency = latency_of(&preset, slo.signal);
        if slo.signal == LatencySignal::Ttft
            && !preset.prefill_time.is_empty()
            && matches!(latency, Latency::Histogram { .. })
        {
            queries.push((
                Signal::SloPrefillShort { slo: index },
                histogram(preset.prefill_time, slo.short_window()),
            ));
            queries.push((
                Signal::SloPrefillLong { slo: index },
                histogram(preset.prefill_time, slo.long_window()),
            ));
        }
        for (signal, range) in [
            (Signal::SloShort { slo: index }, slo.short_window()),
            (Signal::SloLong { slo: index }, slo.long_window()),
        ] {
            let query = match latency {
                Latency::None(_) => continue,
                Latency::Gauge(gauge) => {
                    let slow = format!(
                        "max by ({by}) ({}) > bool {}",
                        selector(&gauge, &m),
                        seconds_literal(slo.threshold.value.0)
                    );
                    let share = format!(
                        "avg_over_time(({slow})[{range}:{}])",
                        subquery_step(range.0)
                    );
                    match model_label {
                        Some(model_label) => format!("avg by ({model_label}) ({share})"),
                        None => format!("avg({share})"),
                    }
                }
                Latency::Histogram { alternatives, .. } => histogram(alternatives, range),
            };
            queries.push((signal, query));
        }
        latency_kinds.push(match latency {
            Latency::Gauge(_) | Latency::None(_) => LatencyKind::Gauge,
            Latency::Histogram { millis, .. } => LatencyKind::Histogram {
                le_scale_millis: millis,
            },
        });
    }
    let mut plan = QueryPlan {
        replica_label: label.to_owned(),
        model_label: model_label.map(str::to_owned),
        queries,
        latency_kinds,
    };
    add_history(&mut plan, target, tokens_signal);
    Planned {
        plan,
        model: model_label.and(target.model.clone()),
    }
}

/// The forecast's two queries, over the same token-rate expression the throughput term reads:
/// each past period's peak over the lead, and the level now and at the same time in each
/// past period, each series tagged with its period.
fn add_history(plan: &mut QueryPlan, target: &Target, tokens_signal: Signal) {
    let Some(predictive) = &target.predictive else {
        return;
    };
    let Some(history) = &predictive.history else {
        return;
    };
    let rate = plan
        .query(tokens_signal)
        .expect("every plan reads the token rates")
        .to_owned();
    let lead = predictive.lead.value.0;
    let (peaks, levels) = history_queries(&rate, history, lead);
    plan.queries.push((Signal::HistoryPeak, peaks));
    plan.queries.push((Signal::HistoryLevel, levels));
}

fn history_queries(rate: &str, history: &HistoryConfig, lead: Duration) -> (String, String) {
    let period = history.period.value.0;
    let tag = |k: u32, query: String| {
        format!(r#"label_replace({query}, "{PERIOD_LABEL}", "{k}", "", "")"#)
    };
    let peaks = (1..=history.periods.value)
        .map(|k| {
            let back = period * k;
            let query = if lead.is_zero() {
                format!("({rate}) offset {}", ConfigDuration(back))
            } else {
                format!(
                    "max_over_time(({rate})[{}:{}] offset {})",
                    ConfigDuration(lead),
                    subquery_step(lead),
                    ConfigDuration(back - lead)
                )
            };
            tag(k, query)
        })
        .collect::<Vec<_>>()
        .join(" or ");
    let level_window = history.level_window.value.0;
    let level = |k: u32, window: Duration| {
        let offset = if k == 0 {
            String::new()
        } else {
            format!(" offset {}", ConfigDuration(period * k))
        };
        tag(
            k,
            format!(
                "avg_over_time(({rate})[{}:{}]{offset})",
                ConfigDuration(window),
                subquery_step(window)
            ),
        )
    };
    let long_window = crate::demand::forecast::long_level_window(level_window);
    let levels = (0..=history.periods.value)
        .map(|k| level(k, level_window))
        .chain((0..=history.periods.value).map(|k| {
            format!(
                r#"label_replace({}, "{LEVEL_LABEL}", "{LONG_LEVEL}", "", "")"#,
                level(k, long_window)
            )
        }))
        .collect::<Vec<_>>()
        .join(" or ");
    (peaks, levels)
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
    let mut planned = vec![
        (
            Signal::Queue,
            format!("sum by ({label}) ({})", fill(&queries.queue_depth)),
        ),
        (
            Signal::OutputTokens,
            format!("sum({})", fill(&queries.output_tokens_per_second)),
        ),
        (
            Signal::InputTokens,
            format!("sum({})", fill(&queries.input_tokens_per_second)),
        ),
    ];
    if want_kv {
        planned.push((
            Signal::KvCache,
            format!("avg by ({label}) ({})", fill(&queries.kv_cache_usage)),
        ));
    }
    QueryPlan {
        replica_label: label.to_owned(),
        model_label: None,
        queries: planned,
        latency_kinds: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
