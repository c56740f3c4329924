use super::*;
use crate::config::{Config, metadata};

const CONFIG: &str = r#"
prometheus:
  url: http://127.0.0.1:9090
profiles:
  seed:
    engine: seed
    selector:
      model_id: llama-3-70b
    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000, input_tokens_per_second: 40000}
  vllm:
    engine: vllm
    selector:
      model_name: meta-llama/Llama-3.1-70B-Instruct
      namespace: inference
    rate_window: 2m
    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000, input_tokens_per_second: 40000}
  sglang:
    engine: sglang
    replica_label: instance
    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000}
  tgi:
    engine: tgi
    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000}
  trtllm:
    engine: trtllm
    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000}
  dynamo:
    engine: dynamo
    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000}
  custom:
    engine: custom
    selector: {team: a}
    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000}
    queries:
      queue_depth: my_waiting{$selector}
      output_tokens_per_second: rate(my_out_total{$selector}[$rate_window])
      input_tokens_per_second: rate(my_in_total{$selector}[$rate_window])
      kv_cache_usage: my_kv{$selector}
"#;

fn planned_for(pairs: &[(&str, &str)]) -> Planned {
    let config = Config::parse(CONFIG).unwrap();
    let metadata = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let target = metadata::resolve(&config, &metadata).unwrap();
    plan(config.profile(&target.profile_name).unwrap(), &target)
}

fn plan_for(pairs: &[(&str, &str)]) -> QueryPlan {
    planned_for(pairs).plan
}

#[test]
fn seed_queries_match_the_seeds_own_series() {
    let plan = plan_for(&[("profile", "seed")]);
    assert_eq!(
        plan.query(Signal::Queue).unwrap(),
        r#"sum by (pod) (llm_queue_depth{model_id="llama-3-70b"})"#
    );
    assert_eq!(
        plan.query(Signal::OutputTokens).unwrap(),
        r#"sum(rate(llm_tokens_processed_total{token_type="output",model_id="llama-3-70b"}[1m]))"#
    );
    assert_eq!(
        plan.query(Signal::InputTokens).unwrap(),
        r#"sum(rate(llm_tokens_processed_total{token_type="input",model_id="llama-3-70b"}[1m]))"#
    );
    assert_eq!(
        plan.query(Signal::KvCache),
        Some(r#"avg by (pod) (llm_kv_cache_usage_ratio{model_id="llama-3-70b"})"#)
    );
}

#[test]
fn vllm_accepts_the_old_and_new_kv_names() {
    let plan = plan_for(&[("profile", "vllm")]);
    let m = r#"{model_name="meta-llama/Llama-3.1-70B-Instruct",namespace="inference"}"#;
    assert_eq!(
        plan.query(Signal::Queue).unwrap(),
        format!("sum by (pod) (vllm:num_requests_waiting{m})")
    );
    assert_eq!(
        plan.query(Signal::OutputTokens).unwrap(),
        format!("sum(rate(vllm:generation_tokens_total{m}[2m]))")
    );
    assert_eq!(
        plan.query(Signal::KvCache).unwrap(),
        format!(
            "avg by (pod) (vllm:kv_cache_usage_perc{m}) or avg by (pod) (vllm:gpu_cache_usage_perc{m})"
        )
    );
}

#[test]
fn a_model_override_shares_one_plan_grouped_by_the_model_label() {
    let planned = planned_for(&[("profile", "vllm"), ("model", "meta-llama/Llama-3.1-8B")]);
    assert_eq!(planned.model.as_deref(), Some("meta-llama/Llama-3.1-8B"));
    let plan = planned.plan;
    assert_eq!(plan.model_label.as_deref(), Some("model_name"));
    assert_eq!(
        plan.query(Signal::Queue).unwrap(),
        r#"sum by (model_name, pod) (vllm:num_requests_waiting{namespace="inference"})"#,
        "the profile's own model matcher gives way to grouping"
    );
    assert_eq!(
        plan.query(Signal::OutputTokens).unwrap(),
        r#"sum by (model_name) (rate(vllm:generation_tokens_total{namespace="inference"}[2m]))"#
    );
    assert_eq!(
        plan.query(Signal::KvCache),
        Some(
            r#"avg by (model_name, pod) (vllm:kv_cache_usage_perc{namespace="inference"}) or avg by (model_name, pod) (vllm:gpu_cache_usage_perc{namespace="inference"})"#
        )
    );
    let other = planned_for(&[("profile", "vllm"), ("model", "qwen")]);
    assert_eq!(other.plan, plan, "two models, one plan");
    let sglang = plan_for(&[("profile", "sglang"), ("model", "qwen")]);
    assert_eq!(
        sglang.query(Signal::OutputTokens).unwrap(),
        "sum by (model_name) (sum by (model_name, instance) (rate(sglang:generation_tokens_total[1m])) or sum by (model_name, instance) (rate(sglang_generation_tokens_total[1m])))"
    );
    // Without an override the plan is the profile's own.
    assert_eq!(planned_for(&[("profile", "vllm")]).model, None);
    assert_eq!(plan_for(&[("profile", "vllm")]).model_label, None);
}

#[test]
fn renamed_counters_are_summed_once_per_replica() {
    let plan = plan_for(&[("profile", "sglang")]);
    assert_eq!(
        plan.query(Signal::OutputTokens).unwrap(),
        "sum(sum by (instance) (rate(sglang:generation_tokens_total[1m])) or sum by (instance) (rate(sglang_generation_tokens_total[1m])))"
    );
    assert_eq!(plan.replica_label, "instance");
}

#[test]
fn every_engine_has_all_four_signals() {
    for profile in [
        "seed", "vllm", "sglang", "tgi", "trtllm", "dynamo", "custom",
    ] {
        let plan = plan_for(&[("profile", profile)]);
        assert!(
            plan.query(Signal::Queue)
                .unwrap()
                .starts_with(&format!("sum by ({})", plan.replica_label)),
            "{profile}: {}",
            plan.query(Signal::Queue).unwrap()
        );
        assert!(
            plan.query(Signal::OutputTokens)
                .unwrap()
                .starts_with("sum("),
            "{profile}"
        );
        assert!(
            plan.query(Signal::InputTokens).unwrap().starts_with("sum("),
            "{profile}"
        );
        assert!(plan.query(Signal::KvCache).is_some(), "{profile}");
    }
    let tgi = plan_for(&[("profile", "tgi")]);
    assert_eq!(
        tgi.query(Signal::KvCache).unwrap(),
        "sum by (pod) (tgi_batch_current_max_tokens) / sum by (pod) (tgi_batch_max_total_tokens)"
    );
    let trt = plan_for(&[("profile", "trtllm")]);
    assert!(
        trt.query(Signal::Queue)
            .unwrap()
            .contains(r#"nv_trt_llm_request_metrics{request_type="waiting"}"#)
    );
    assert!(
        trt.query(Signal::Queue)
            .unwrap()
            .contains("or sum by (pod) (trtllm_num_requests_waiting)")
    );
}

#[test]
fn prefill_pools_skip_the_kv_query() {
    let plan = plan_for(&[("profile", "vllm"), ("pool", "prefill")]);
    assert_eq!(plan.query(Signal::KvCache), None);
}

#[test]
fn custom_queries_get_selector_and_window() {
    let plan = plan_for(&[("profile", "custom")]);
    assert_eq!(
        plan.query(Signal::Queue).unwrap(),
        r#"sum by (pod) (my_waiting{team="a"})"#
    );
    assert_eq!(
        plan.query(Signal::OutputTokens).unwrap(),
        r#"sum(rate(my_out_total{team="a"}[1m]))"#
    );
    assert_eq!(
        plan.query(Signal::KvCache).unwrap(),
        r#"avg by (pod) (my_kv{team="a"})"#
    );
}

/// Go's strconv.Unquote for the escapes `quote` writes: what Prometheus reads back.
fn unquote(literal: &str) -> String {
    let inner = literal
        .strip_prefix('"')
        .unwrap()
        .strip_suffix('"')
        .unwrap();
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        assert_ne!(
            c, '"',
            "an unescaped quote ends the literal early: {literal}"
        );
        assert!(!c.is_control(), "a raw control character in {literal:?}");
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next().unwrap() {
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            other => panic!("unknown escape \\{other} in {literal}"),
        }
    }
    out
}

#[test]
fn quoting_round_trips_hostile_values() {
    for value in [
        "",
        "plain",
        r#"x"} or vector(1) or {a=""#,
        r#"\"#,
        r#"\\""#,
        "line\nbreak\r\t",
        "nul\u{0}bell\u{7}esc\u{1b}del\u{7f}",
        "ünïcödé ✓ 模型",
        r#"a\"} or up{b="\"#,
    ] {
        assert_eq!(unquote(&quote(value)), value);
    }
}

#[test]
fn a_hostile_model_never_enters_promql() {
    let hostile = r#"x"} or vector(1000) or llm_queue_depth{model_id=~".*"#;
    let planned = planned_for(&[("profile", "seed"), ("model", hostile)]);
    assert_eq!(
        planned.plan,
        plan_for(&[("profile", "seed"), ("model", "benign")])
    );
    assert_eq!(planned.model.as_deref(), Some(hostile));
}

#[test]
fn namespace_scope_is_added_to_every_query_and_overrides_the_selector() {
    let config = Config::parse(CONFIG).unwrap();
    let metadata = [("profile".to_owned(), "vllm".to_owned())]
        .into_iter()
        .collect();
    let mut target = metadata::resolve(&config, &metadata).unwrap();
    target.namespace_scope = Some(r#"team-b"} or vector(1) or {a=""#.to_owned());
    let plan = plan(config.profile("vllm").unwrap(), &target).plan;
    let scoped = format!("namespace={}", quote(r#"team-b"} or vector(1) or {a=""#));
    for query in [
        plan.query(Signal::Queue).unwrap(),
        plan.query(Signal::OutputTokens).unwrap(),
        plan.query(Signal::InputTokens).unwrap(),
        plan.query(Signal::KvCache).unwrap(),
    ] {
        assert!(query.contains(&scoped), "{query}");
        assert!(!query.contains(r#"namespace="inference""#), "{query}");
    }
}

const ANTICIPATING: &str = r#"
prometheus: {url: "http://127.0.0.1:9090"}
profiles:
  vllm:
    engine: vllm
    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000, input_tokens_per_second: 40000}
    slos:
      - {name: ttft-2s, signal: ttft, threshold: 2s, objective: 0.99, windows: [5m, 1h]}
      - {name: tpot-50ms, signal: tpot, threshold: 50ms, objective: 0.99}
    predictive:
      lead: 5m
      history: {period: 1d, periods: 2}
  seed:
    engine: seed
    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000, input_tokens_per_second: 40000}
    slos:
      - {name: ttft-2s, signal: ttft, threshold: 2s, objective: 0.99, windows: [5m, 1h]}
"#;

fn anticipating(profile: &str, pool: &str, model: Option<&str>) -> QueryPlan {
    let config = Config::parse(ANTICIPATING).unwrap();
    let mut meta: std::collections::HashMap<String, String> = [
        ("profile".to_owned(), profile.to_owned()),
        ("pool".to_owned(), pool.to_owned()),
    ]
    .into();
    if let Some(model) = model {
        meta.insert("model".to_owned(), model.to_owned());
    }
    let target = metadata::resolve(&config, &meta).unwrap();
    plan(config.profile(profile).unwrap(), &target).plan
}

#[test]
fn histogram_slos_read_bucket_rates_by_le_over_each_window() {
    let plan = anticipating("vllm", "unified", None);
    assert_eq!(
        plan.query(Signal::SloShort { slo: 0 }).unwrap(),
        "sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[5m]))"
    );
    assert_eq!(
        plan.query(Signal::SloLong { slo: 0 }).unwrap(),
        "sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1h]))"
    );
    // Each request's TPOT first, then the inter-token latency under its new and old
    // names, joined per replica so a mixed fleet counts once.
    assert_eq!(
        plan.query(Signal::SloShort { slo: 1 }).unwrap(),
        "sum by (le) (sum by (pod, le) (rate(vllm:request_time_per_output_token_seconds_bucket[5m])) or sum by (pod, le) (rate(vllm:inter_token_latency_seconds_bucket[5m])) or sum by (pod, le) (rate(vllm:time_per_output_token_seconds_bucket[5m])))"
    );
    assert_eq!(plan.latency_kinds.len(), 2);
}

#[test]
fn a_vllm_ttft_slo_also_reads_prefill_times_to_split_its_misses() {
    let plan = anticipating("vllm", "unified", None);
    assert_eq!(
        plan.query(Signal::SloPrefillShort { slo: 0 }).unwrap(),
        "sum by (le) (rate(vllm:request_prefill_time_seconds_bucket[5m]))"
    );
    assert_eq!(
        plan.query(Signal::SloPrefillLong { slo: 0 }).unwrap(),
        "sum by (le) (rate(vllm:request_prefill_time_seconds_bucket[1h]))"
    );
    // TPOT has no such split; nor have engines without a per-request prefill histogram.
    assert!(plan.query(Signal::SloPrefillShort { slo: 1 }).is_none());
    let seed = anticipating("seed", "unified", None);
    assert!(seed.queries.iter().all(|(s, _)| !matches!(
        s,
        Signal::SloPrefillShort { .. } | Signal::SloPrefillLong { .. }
    )));
}

#[test]
fn a_vllm_tpot_slo_with_a_floor_context_reads_prompt_lengths_to_split_its_misses() {
    let config = Config::parse(&ANTICIPATING.replace(
        "threshold: 50ms, objective: 0.99}",
        "threshold: 50ms, objective: 0.99, floor_context_tokens: 120000}",
    ))
    .unwrap();
    let meta = [("profile".to_owned(), "vllm".to_owned())].into();
    let target = metadata::resolve(&config, &meta).unwrap();
    let plan = plan(config.profile("vllm").unwrap(), &target).plan;
    assert_eq!(
        plan.query(Signal::SloContextShort { slo: 1 }).unwrap(),
        "sum by (le) (rate(vllm:request_prompt_tokens_bucket[5m]))"
    );
    assert_eq!(
        plan.query(Signal::SloContextLong { slo: 1 }).unwrap(),
        "sum by (le) (rate(vllm:request_prompt_tokens_bucket[1h]))"
    );
    assert!(plan.query(Signal::SloContextShort { slo: 0 }).is_none());
    // Without the key, TPOT reads no split.
    let plain = anticipating("vllm", "unified", None);
    assert!(plain.query(Signal::SloContextShort { slo: 1 }).is_none());
}

#[test]
fn a_custom_engine_splits_both_slos_with_its_own_histograms() {
    let text = CONFIG.replace(
        "      kv_cache_usage: my_kv{$selector}\n",
        "      kv_cache_usage: my_kv{$selector}\n      ttft_buckets: my_ttft_bucket{$selector}\n      tpot_buckets: my_tpot_bucket{$selector}\n      prefill_time_buckets: my_prefill_bucket{$selector}\n      prompt_tokens_buckets: my_prompt_bucket{$selector}\n    slos:\n      - {name: ttft, signal: ttft, threshold: 2s, objective: 0.99}\n      - {name: tpot, signal: tpot, threshold: 50ms, objective: 0.99, floor_context_tokens: 120000}\n",
    );
    let config = Config::parse(&text).unwrap();
    let meta = [("profile".to_owned(), "custom".to_owned())].into();
    let target = metadata::resolve(&config, &meta).unwrap();
    let plan = plan(config.profile("custom").unwrap(), &target).plan;
    let query = |signal| plan.query(signal).unwrap_or_default();
    assert!(
        query(Signal::SloPrefillShort { slo: 0 }).contains(r#"my_prefill_bucket{team="a"}[5m]"#),
        "{}",
        query(Signal::SloPrefillShort { slo: 0 })
    );
    assert!(
        query(Signal::SloContextLong { slo: 1 }).contains(r#"my_prompt_bucket{team="a"}[1h]"#),
        "{}",
        query(Signal::SloContextLong { slo: 1 })
    );
    // Each histogram splits only its own SLO.
    assert!(plan.query(Signal::SloContextShort { slo: 0 }).is_none());
    assert!(plan.query(Signal::SloPrefillShort { slo: 1 }).is_none());
}

#[test]
fn slos_follow_the_pool_and_the_model_grouping() {
    // Prefill pools count TTFT only, decode pools TPOT only.
    let prefill = anticipating("vllm", "prefill", None);
    assert_eq!(prefill.latency_kinds.len(), 1);
    assert!(
        prefill
            .query(Signal::SloShort { slo: 0 })
            .unwrap()
            .contains("time_to_first_token")
    );
    let decode = anticipating("vllm", "decode", None);
    assert_eq!(decode.latency_kinds.len(), 1);
    assert!(
        decode
            .query(Signal::SloShort { slo: 0 })
            .unwrap()
            .contains("request_time_per_output_token")
    );
    let shared = anticipating("vllm", "unified", Some("llama"));
    assert_eq!(
        shared.query(Signal::SloShort { slo: 0 }).unwrap(),
        "sum by (model_name, le) (rate(vllm:time_to_first_token_seconds_bucket[5m]))"
    );
}

#[test]
fn gauge_slos_take_the_share_of_slow_samples() {
    let plan = anticipating("seed", "unified", None);
    assert_eq!(
        plan.query(Signal::SloShort { slo: 0 }).unwrap(),
        "avg(avg_over_time((max by (pod) (llm_ttft_seconds) > bool 2)[5m:15s]))"
    );
    assert_eq!(
        plan.query(Signal::SloLong { slo: 0 }).unwrap(),
        "avg(avg_over_time((max by (pod) (llm_ttft_seconds) > bool 2)[1h:15s]))"
    );
}

#[test]
fn history_reads_each_past_periods_peak_over_the_lead_and_the_levels() {
    let plan = anticipating("vllm", "unified", None);
    let rate = "sum(rate(vllm:generation_tokens_total[1m]))";
    assert_eq!(
        plan.query(Signal::HistoryPeak).unwrap(),
        format!(
            r#"label_replace(max_over_time(({rate})[5m:15s] offset 23h55m), "llm_scaler_period", "1", "", "") or label_replace(max_over_time(({rate})[5m:15s] offset 1d23h55m), "llm_scaler_period", "2", "", "")"#
        )
    );
    assert_eq!(
        plan.query(Signal::HistoryLevel).unwrap(),
        format!(
            r#"label_replace(avg_over_time(({rate})[10m:15s]), "llm_scaler_period", "0", "", "") or label_replace(avg_over_time(({rate})[10m:15s] offset 1d), "llm_scaler_period", "1", "", "") or label_replace(avg_over_time(({rate})[10m:15s] offset 2d), "llm_scaler_period", "2", "", "") or label_replace(label_replace(avg_over_time(({rate})[30m:15s]), "llm_scaler_period", "0", "", ""), "llm_scaler_level", "long", "", "") or label_replace(label_replace(avg_over_time(({rate})[30m:15s] offset 1d), "llm_scaler_period", "1", "", ""), "llm_scaler_level", "long", "", "") or label_replace(label_replace(avg_over_time(({rate})[30m:15s] offset 2d), "llm_scaler_period", "2", "", ""), "llm_scaler_level", "long", "", "")"#
        )
    );
    // A prefill pool forecasts its input tokens.
    let prefill = anticipating("vllm", "prefill", None);
    assert!(
        prefill
            .query(Signal::HistoryPeak)
            .unwrap()
            .contains("vllm:prompt_tokens_total")
    );
}

/// The plan of a vLLM profile (selector `model_name: m`) with these profile points.
fn profiled_plan(points: &[&str]) -> QueryPlan {
    let points: String = points.iter().map(|p| format!("        - {p}\n")).collect();
    let config = Config::parse(&format!(
        "prometheus:\n  url: http://127.0.0.1:9090\nprofiles:\n  vllm:\n    engine: vllm\n    selector: {{model_name: m}}\n    capacity:\n      queue_per_replica: 15\n      output_tokens_per_second: 5000\n      profile:\n{points}"
    ))
    .unwrap();
    let meta = [("profile".to_owned(), "vllm".to_owned())].into();
    let target = metadata::resolve(&config, &meta).unwrap();
    plan(config.profile("vllm").unwrap(), &target).plan
}

#[test]
fn a_capacity_profile_reads_the_mix_from_vllms_length_histograms() {
    let plan = profiled_plan(&[
        "{input_tokens: 100, output_tokens: 100, output_tokens_per_second: 1000, input_tokens_per_second: 1000}",
    ]);
    assert_eq!(
        plan.query(Signal::MeanInputTokens).unwrap(),
        r#"sum(rate(vllm:request_prompt_tokens_sum{model_name="m"}[10m])) / (sum(rate(vllm:request_prompt_tokens_count{model_name="m"}[10m])) > 0)"#
    );
    assert_eq!(
        plan.query(Signal::MeanOutputTokens).unwrap(),
        r#"sum(rate(vllm:request_generation_tokens_sum{model_name="m"}[10m])) / (sum(rate(vllm:request_generation_tokens_count{model_name="m"}[10m])) > 0)"#
    );
    // Without points at a share of short answers, the output lengths are not read.
    assert!(plan.query(Signal::OutputLengths).is_none());
    // Without a profile the plan does not ask.
    let plain = plan_for(&[("profile", "vllm")]);
    assert!(plain.query(Signal::MeanInputTokens).is_none());
}

#[test]
fn a_profile_with_shares_of_short_answers_reads_vllms_output_length_buckets() {
    let plan = profiled_plan(&[
        "{input_tokens: 100, output_tokens: 100, short_output_share: 0, output_tokens_per_second: 1000, input_tokens_per_second: 4000}",
        "{input_tokens: 100, output_tokens: 100, short_output_share: 0.3, output_tokens_per_second: 1000, input_tokens_per_second: 2000}",
    ]);
    assert_eq!(
        plan.query(Signal::OutputLengths).unwrap(),
        r#"sum by (le) (rate(vllm:request_generation_tokens_bucket{model_name="m"}[10m]))"#
    );
}
