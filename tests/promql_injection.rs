//! Property: whatever a profile's selector value or a ScaledObject's namespace holds,
//! every query (signals, SLO windows, history) keeps its shape: each value stays one string literal that reads back as
//! exactly that value. A trigger's `model` never enters PromQL at all: the plan groups
//! by the model label and the scaler picks the model's series from the answer.

use std::collections::HashMap;

use keda_llm_scaler::{
    config::{Config, metadata},
    query::{Planned, QueryPlan, Signal, plan},
};
use proptest::prelude::*;

const CONFIG: &str = r#"
prometheus:
  url: http://127.0.0.1:9090
profiles:
  seed:
    engine: seed
    selector: {team: SELECTOR}
    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000}
    slos:
      - {name: ttft, signal: ttft, threshold: 2s, objective: 0.99}
      - {name: tpot, signal: tpot, threshold: 50ms, objective: 0.99}
    predictive: {lead: 5m, history: {periods: 2}}
  vllm:
    engine: vllm
    selector: {team: SELECTOR}
    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000}
    slos:
      - {name: ttft, signal: ttft, threshold: 2s, objective: 0.99}
      - {name: tpot, signal: tpot, threshold: 50ms, objective: 0.99}
    predictive: {lead: 5m, history: {periods: 2}}
  custom:
    engine: custom
    selector: {team: SELECTOR}
    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000}
    queries:
      queue_depth: q{$selector}
      output_tokens_per_second: rate(o{$selector}[$rate_window])
      input_tokens_per_second: rate(i{$selector}[$rate_window])
      kv_cache_usage: k{$selector}
      ttft_buckets: t_bucket{$selector}
      tpot_buckets: p_bucket{$selector}
    slos:
      - {name: ttft, signal: ttft, threshold: 2s, objective: 0.99}
      - {name: tpot, signal: tpot, threshold: 50ms, objective: 0.99}
    predictive: {lead: 5m, history: {periods: 2}}
"#;

/// Splits a query into its shape (literals replaced by `"_"`) and the literals' values,
/// reading escapes as Prometheus (Go's strconv.Unquote) does.
fn dissect(query: &str) -> (String, Vec<String>) {
    let mut shape = String::new();
    let mut literals = Vec::new();
    let mut chars = query.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            shape.push(c);
            continue;
        }
        let mut value = String::new();
        loop {
            match chars.next().expect("unterminated literal") {
                '"' => break,
                '\\' => match chars.next().expect("dangling escape") {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    'r' => value.push('\r'),
                    't' => value.push('\t'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        value.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
                    }
                    other => panic!("escape \\{other} that Prometheus would read differently"),
                },
                c => {
                    assert!(!c.is_control(), "raw control character in a literal");
                    value.push(c);
                }
            }
        }
        shape.push_str("\"_\"");
        literals.push(value);
    }
    (shape, literals)
}

fn plan_for(profile: &str, selector: &str, model: Option<&str>, namespace: &str) -> Planned {
    // The selector value enters the YAML as a double-quoted, escaped scalar.
    let yaml_value = serde_json::to_string(selector).unwrap();
    let config = Config::parse(&CONFIG.replace("SELECTOR", &yaml_value).replace(
        "profiles:",
        "tenancy:\n  scope_by_namespace: true\nprofiles:",
    ))
    .unwrap();
    let mut metadata = HashMap::from([("profile".to_owned(), profile.to_owned())]);
    if let Some(model) = model {
        metadata.insert("model".to_owned(), model.to_owned());
    }
    let target = metadata::resolve_scaled_object(&config, namespace, &metadata).unwrap();
    plan(config.profile(profile).unwrap(), &target)
}

/// Every query of the plan: the four signals, both windows of each SLO, and the history.
fn queries(plan: &QueryPlan) -> Vec<&str> {
    assert!(plan.query(Signal::SloLong { slo: 1 }).is_some());
    assert!(plan.query(Signal::HistoryPeak).is_some());
    plan.queries.iter().map(|(_, q)| q.as_str()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn hostile_values_never_change_a_querys_shape(
        profile in prop::sample::select(vec!["seed", "vllm", "custom"]),
        selector in any::<String>(),
        model in "\\PC{1,40}|[\"\\\\{}()\\n\\t =~!,]{1,20}",
        namespace in "[a-z]{1,8}|\\PC{1,20}|[\"\\\\}]{1,10}",
    ) {
        let model = (profile != "custom").then_some(model.as_str());
        let hostile = plan_for(profile, &selector, model, &namespace);
        let benign = plan_for(profile, "a", model.map(|_| "m"), "n");
        for (hostile_query, benign_query) in queries(&hostile.plan).into_iter().zip(queries(&benign.plan)) {
            let (hostile_shape, values) = dissect(hostile_query);
            let (benign_shape, _) = dissect(benign_query);
            prop_assert_eq!(&hostile_shape, &benign_shape);
            prop_assert!(values.contains(&selector));
            prop_assert!(values.contains(&namespace));
        }
        if let Some(model) = model {
            prop_assert_eq!(&hostile.plan, &plan_for(profile, &selector, Some("m"), &namespace).plan);
            prop_assert_eq!(hostile.model.as_deref(), Some(model));
        }
    }
}
