//! Any trigger metadata either resolves against the example config or is refused; what
//! resolves has a metric name KEDA and Kubernetes accept and queries that plan.
#![no_main]

use std::collections::HashMap;

use keda_llm_scaler::{
    config::{Config, metadata},
    query as promql,
};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = include_str!("../../deploy/base/config.yaml");

fuzz_target!(|input: (String, HashMap<String, String>)| {
    let (namespace, metadata) = input;
    let config = Config::parse(CONFIG).expect("the example config loads");
    match metadata::resolve_scaled_object(&config, &namespace, &metadata) {
        Ok(target) => {
            assert!(
                target
                    .metric_name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{}",
                target.metric_name
            );
            let profile = config.profile(&target.profile_name).unwrap();
            let planned = promql::plan(profile, &target);
            assert!(!planned.plan.queries.is_empty());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
