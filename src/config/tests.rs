use super::*;

const EXAMPLE: &str = include_str!("../../deploy/base/config.yaml");

fn error(text: &str) -> String {
    match Config::parse(text) {
        Ok(_) => panic!("config should be refused:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const MINIMAL: &str = "prometheus:\n  url: http://127.0.0.1:9090\nprofiles:\n  p:\n    engine: seed\n    capacity:\n      queue_per_replica: 15\n      output_tokens_per_second: 5000\n";

#[test]
fn the_shipped_example_loads_with_its_values() {
    let config = Config::parse(EXAMPLE).unwrap();
    assert_eq!(
        config.prometheus.url.as_str(),
        "http://prometheus.monitoring:9090"
    );
    assert_eq!(config.prometheus.timeout.value.0, Duration::from_secs(2));
    assert_eq!(config.evaluation.cache_ttl.value.0, Duration::from_secs(5));
    assert_eq!(
        config.evaluation.push_interval.value.0,
        Duration::from_secs(5)
    );
    let p = config.profile("llama-70b").unwrap();
    assert_eq!(p.engine, Engine::Vllm);
    assert_eq!(p.pool, Pool::Unified);
    assert_eq!(p.replica_label.as_str(), "pod");
    assert_eq!(p.rate_window.value.0, Duration::from_secs(60));
    assert_eq!(p.capacity.queue_per_replica.0, 15.0);
    assert_eq!(p.capacity.output_tokens_per_second.unwrap().0, 5000.0);
    assert_eq!(p.capacity.input_tokens_per_second.unwrap().0, 40000.0);
    assert_eq!(p.kv_cache.target_ratio.0, 0.75);
    assert_eq!(p.kv_cache.aggregate, KvAggregate::Mean);
    assert_eq!((p.min_demand.value.0, p.max_demand.value.0), (0.0, 100.0));
    assert_eq!(
        p.selector
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [("model_name", "meta-llama/Llama-3.1-70B-Instruct")]
    );
}

#[test]
fn defaults_fill_what_is_left_out() {
    let config = Config::parse(MINIMAL).unwrap();
    assert_eq!(config.prometheus.timeout.value.0, Duration::from_secs(2));
    let p = config.profile("p").unwrap();
    assert_eq!(p.pool, Pool::Unified);
    assert_eq!(p.replica_label.as_str(), "pod");
    assert_eq!(p.kv_cache.target_ratio.0, 0.75);
    assert_eq!((p.min_demand.value.0, p.max_demand.value.0), (0.0, 100.0));
}

#[test]
fn unknown_keys_are_errors_with_line_and_allowed_keys() {
    let e = error("prometheus:\n  url: http://x:9090\n  timeot: 2s\nprofiles: {}\n");
    assert!(e.contains("line 3"), "{e}");
    assert!(e.contains("timeot") && e.contains("timeout"), "{e}");
    let e = error(&MINIMAL.replace("    engine: seed\n", "    engine: seed\n    colour: blue\n"));
    assert!(
        e.contains("line 6") && e.contains("colour") && e.contains("profiles.p.colour"),
        "{e}"
    );
}

#[test]
fn bad_values_name_line_key_and_what_is_allowed() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("engine: seed", "engine: vlm", "line 5", "seed"),
        (
            "queue_per_replica: 15",
            "queue_per_replica: 0",
            "profiles.p.capacity.queue_per_replica",
            "greater than 0",
        ),
        (
            "queue_per_replica: 15",
            "queue_per_replica: abc",
            "line 7",
            "queue_per_replica",
        ),
        (
            "output_tokens_per_second: 5000",
            "output_tokens_per_second: -1",
            "line 8",
            "greater than 0",
        ),
        (
            "url: http://127.0.0.1:9090",
            "url: 127.0.0.1:9090",
            "prometheus.url",
            "http://",
        ),
    ];
    for (from, to, place, allowed) in cases {
        let e = error(&MINIMAL.replace(from, to));
        assert!(e.contains(place) && e.contains(allowed), "{to}: {e}");
    }
}

#[test]
fn ranges_checked_after_parsing_carry_lines() {
    let with =
        |extra: &str| MINIMAL.replace("    engine: seed\n", &format!("    engine: seed\n{extra}"));
    let e = error(&with("    min_demand: 5\n    max_demand: 2\n"));
    assert!(
        e.contains("line 6") && e.contains("min_demand") && e.contains("max_demand"),
        "{e}"
    );
    let e = error(&with("    kv_cache:\n      target_ratio: 1.5\n"));
    assert!(e.contains("line 7") && e.contains("at most 1"), "{e}");
    let e = error(&with("    kv_cache:\n      aggregate: median\n"));
    assert!(e.contains("mean") && e.contains("max"), "{e}");
    let e = error(&with("    rate_window: 500ms\n"));
    assert!(e.contains("line 6") && e.contains("rate_window"), "{e}");
    let e = error(&with("    rate_window: soon\n"));
    assert!(
        e.contains("line 6") && e.contains("a duration such as"),
        "{e}"
    );
    let e = error(&with("    pool: both\n"));
    assert!(e.contains("prefill"), "{e}");
    let e = error(&with("    replica_label: 9pod\n"));
    assert!(e.contains("line 6") && e.contains("label name"), "{e}");
    let e = error(&MINIMAL.replace(
        "  url: http://127.0.0.1:9090\n",
        "  url: http://127.0.0.1:9090\n  timeout: 1h\n",
    ));
    assert!(
        e.contains("line 3") && e.contains("prometheus.timeout"),
        "{e}"
    );
}

#[test]
fn several_problems_are_reported_together() {
    let text = MINIMAL.replace(
        "    engine: seed\n",
        "    engine: seed\n    min_demand: 5\n    max_demand: 1\n    rate_window: 2d\n",
    );
    let e = error(&text);
    assert!(e.contains("min_demand") && e.contains("rate_window"), "{e}");
}

#[test]
fn custom_engine_needs_queries_and_others_refuse_them() {
    let e = error(&MINIMAL.replace("engine: seed", "engine: custom"));
    assert!(
        e.contains("profiles.p.queries") && e.contains("required"),
        "{e}"
    );
    let queries = "    queries:\n      queue_depth: q{$selector}\n      output_tokens_per_second: rate(o[$rate_window])\n      input_tokens_per_second: rate(i[$rate_window])\n      kv_cache_usage: k\n";
    let custom = MINIMAL.replace(
        "    engine: seed\n",
        &format!("    engine: custom\n{queries}"),
    );
    assert!(Config::parse(&custom).is_ok());
    let e = error(&MINIMAL.replace(
        "    engine: seed\n",
        &format!("    engine: seed\n{queries}"),
    ));
    assert!(
        e.contains("line 7") && e.contains("only allowed with engine: custom"),
        "{e}"
    );
}

#[test]
fn a_pool_needs_its_token_capacity() {
    let e = error(&MINIMAL.replace(
        "    engine: seed\n",
        "    engine: seed\n    pool: prefill\n",
    ));
    assert!(
        e.contains("capacity.input_tokens_per_second") && e.contains("prefill"),
        "{e}"
    );
}

#[test]
fn profile_names_are_checked() {
    let e = error(&MINIMAL.replace("  p:\n", "  Bad Name:\n"));
    assert!(e.contains("line 4") && e.contains("Bad Name"), "{e}");
    let e = error("prometheus:\n  url: http://x:9090\nprofiles: {}\n");
    assert!(e.contains("at least one profile"), "{e}");
}

#[test]
fn not_yaml_at_all() {
    let e = error("prometheus: [unclosed\n");
    assert!(e.contains("line 1") || e.contains("line 2"), "{e}");
}

const ANTICIPATING: &str = r#"
prometheus: {url: "http://127.0.0.1:9090"}
profiles:
  p:
    engine: vllm
    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000, input_tokens_per_second: 40000}
    slos:
      - name: ttft-2s
        signal: ttft
        threshold: 2s
        objective: 0.99
        windows: [5m, 1h]
        burn_threshold: 1.0
        gain: 0.25
        max_boost: 2.0
        trim_half_life: 20m
      - {name: tpot-50ms, signal: tpot, threshold: 50ms, objective: 0.995}
    predictive:
      lead: 5m
      schedules:
        - cron: "0 8 * * 1-5"
          duration: 10h
          timezone: Europe/Berlin
          min_replicas: 6
      history:
        period: 1d
        periods: 3
        headroom: 1.1
"#;

#[test]
fn slos_and_predictive_load_with_defaults() {
    let config = Config::parse(ANTICIPATING).unwrap();
    let p = config.profile("p").unwrap();
    assert_eq!(p.slos.len(), 2);
    let tpot = &p.slos[1];
    assert_eq!(tpot.threshold.value.0, Duration::from_millis(50));
    assert_eq!(tpot.short_window().0, Duration::from_secs(300));
    assert_eq!(tpot.long_window().0, Duration::from_secs(3600));
    assert_eq!((tpot.gain.0, tpot.max_boost.0), (0.25, 2.0));
    assert_eq!(tpot.trim_half_life.value.0, Duration::from_secs(1800));
    assert_eq!(p.slos[0].trim_half_life.value.0, Duration::from_secs(1200));
    let predictive = p.predictive.as_ref().unwrap();
    assert_eq!(
        predictive.schedules[0].timezone.0,
        chrono_tz::Tz::Europe__Berlin
    );
    let history = predictive.history.as_ref().unwrap();
    assert_eq!(history.periods.value, 3);
    assert_eq!(history.level_window.value.0, Duration::from_secs(600));
}

#[test]
fn slo_and_predictive_mistakes_name_the_key_and_what_is_allowed() {
    let cases = [
        (
            "objective: 0.99",
            "objective: 1.5",
            "greater than 0 and less than 1",
        ),
        ("windows: [5m, 1h]", "windows: [1h, 5m]", "slos[0].windows"),
        ("windows: [5m, 1h]", "windows: [5m]", "exactly two"),
        ("signal: ttft", "signal: itl", "ttft"),
        ("max_boost: 2.0", "max_boost: 0.5", "at or above 1"),
        (
            "trim_half_life: 20m",
            "trim_half_life: 2d",
            "slos[0].trim_half_life: 2d is out of range: expected from 0s to 1d",
        ),
        (
            "trim_half_life: 20m",
            "trim_half_life: 1500ms",
            "slos[0].trim_half_life: 1s500ms is not allowed: expected whole seconds",
        ),
        ("name: ttft-2s", "name: tpot-50ms", "used twice"),
        ("\"0 8 * * 1-5\"", "\"0 8 * *\"", "5 fields"),
        ("Europe/Berlin", "Europe/Atlantis", "IANA time zone"),
        ("period: 1d", "period: 2d", "expected 1d or 1w"),
        ("periods: 3", "periods: 0", "history.periods"),
        ("lead: 5m", "lead: 2d", "predictive.lead"),
    ];
    for (from, to, expected) in cases {
        let e = error(&ANTICIPATING.replacen(from, to, 1));
        assert!(e.contains(expected), "{to}: {e}");
    }
}

#[test]
fn an_slo_on_a_latency_the_engine_does_not_export_is_refused() {
    let e = error(&ANTICIPATING.replace("engine: vllm", "engine: tgi"));
    assert!(
        e.contains("profiles.p.slos[0].signal") && e.contains("TGI exports no time-to-first-token"),
        "{e}"
    );
}

#[test]
fn a_floor_context_loads_on_tpot_and_is_refused_where_it_cannot_split() {
    let with = |text: &str| {
        text.replace(
            "objective: 0.995}",
            "objective: 0.995, floor_context_tokens: 120000}",
        )
    };
    let config = Config::parse(&with(ANTICIPATING)).unwrap();
    let tpot = &config.profile("p").unwrap().slos[1];
    assert_eq!(
        tpot.floor_context_tokens.as_ref().unwrap().value.0,
        120_000.0
    );
    // Not a whole token count, out of range.
    for bad in ["0", "1.5", "-3", "1e12"] {
        let e = error(&with(ANTICIPATING).replace("120000", bad));
        assert!(
            e.contains("floor_context_tokens") && e.contains("from 1 to 100000000"),
            "{bad}: {e}"
        );
    }
    // On a TTFT SLO: the prefill times split it.
    let e = error(&ANTICIPATING.replace(
        "        max_boost: 2.0\n",
        "        max_boost: 2.0\n        floor_context_tokens: 5000\n",
    ));
    assert!(
        e.contains("profiles.p.slos[0].floor_context_tokens") && e.contains("only on tpot"),
        "{e}"
    );
    // An engine without a prompt-length histogram cannot split.
    let e = error(&with(ANTICIPATING).replace("engine: vllm", "engine: sglang"));
    assert!(
        e.contains("profiles.p.slos[1].floor_context_tokens")
            && e.contains("engine sglang exports no per-request prompt-length histogram"),
        "{e}"
    );
    // A custom engine must say where its prompt lengths are.
    let custom = with(ANTICIPATING).replace(
        "    engine: vllm\n",
        "    engine: custom\n    queries: {queue_depth: q, output_tokens_per_second: o, input_tokens_per_second: i, kv_cache_usage: k, ttft_buckets: t, tpot_buckets: p}\n",
    );
    let e = error(&custom);
    assert!(
        e.contains("profiles.p.slos[1].floor_context_tokens")
            && e.contains("needs queries.prompt_tokens_buckets"),
        "{e}"
    );
    assert!(
        Config::parse(&custom.replace(
            "tpot_buckets: p}",
            "tpot_buckets: p, prompt_tokens_buckets: l}"
        ))
        .is_ok()
    );
}

#[test]
fn input_term_needs_an_input_capacity() {
    let text = "prometheus:\n  url: http://p:9090\nprofiles:\n  chat:\n    engine: vllm\n    capacity:\n      queue_per_replica: 2\n      output_tokens_per_second: 700\n      input_term: true\n";
    let error = Config::parse(text).unwrap_err().to_string();
    assert!(
        error.contains("profiles.chat.capacity.input_term")
            && error.contains("input_tokens_per_second is not set"),
        "{error}"
    );
    let fixed = text.replace(
        "input_term: true",
        "input_term: true\n      input_tokens_per_second: 4000",
    );
    let config = Config::parse(&fixed).unwrap();
    assert!(config.profile("chat").unwrap().capacity.input_term);
}

const PROFILED: &str = "prometheus:\n  url: http://127.0.0.1:9090\nprofiles:\n  p:\n    engine: vllm\n    capacity:\n      queue_per_replica: 15\n      output_tokens_per_second: 5000\n      profile:\n        - {input_tokens: 100, output_tokens: 100, output_tokens_per_second: 1000, input_tokens_per_second: 1000}\n        - {input_tokens: 100, output_tokens: 1000, output_tokens_per_second: 4000, input_tokens_per_second: 400}\n        - {input_tokens: 1000, output_tokens: 100, output_tokens_per_second: 250, input_tokens_per_second: 2500}\n        - {input_tokens: 1000, output_tokens: 1000, output_tokens_per_second: 1000, input_tokens_per_second: 1000}\n";

#[test]
fn a_capacity_profile_loads_and_reaches_the_target() {
    let config = Config::parse(PROFILED).unwrap();
    let meta = [("profile".to_owned(), "p".to_owned())].into();
    let target = metadata::resolve(&config, &meta).unwrap();
    let profile = target
        .capacity_profile
        .expect("the profile reaches the target");
    assert_eq!(
        profile.at(1000.0, 100.0, None).output_tokens_per_second,
        250.0
    );
}

#[test]
fn a_capacity_profile_that_is_no_grid_or_on_an_engine_without_lengths_is_refused() {
    let incomplete = PROFILED.replace(
        "        - {input_tokens: 1000, output_tokens: 1000, output_tokens_per_second: 1000, input_tokens_per_second: 1000}\n",
        "",
    );
    let e = error(&incomplete);
    assert!(e.contains("profiles.p.capacity.profile"), "{e}");
    assert!(
        e.contains("input_tokens 1000 and output_tokens 1000"),
        "{e}"
    );
    let seed = PROFILED.replace("engine: vllm", "engine: seed");
    let e = error(&seed);
    assert!(e.contains("profiles.p.capacity.profile"), "{e}");
    assert!(
        e.contains("engine seed exports no request-length histograms"),
        "{e}"
    );
    let negative = PROFILED.replace(
        "output_tokens_per_second: 250,",
        "output_tokens_per_second: -250,",
    );
    let e = error(&negative);
    assert!(e.contains("-250"), "{e}");
    let unknown = PROFILED.replace(
        "input_tokens_per_second: 2500}",
        "input_tokens_per_second: 2500, tokens: 3}",
    );
    let e = error(&unknown);
    assert!(e.contains("tokens"), "{e}");
    let share = PROFILED.replace(
        "output_tokens: 100, output_tokens_per_second: 250,",
        "output_tokens: 100, short_output_share: 1.5, output_tokens_per_second: 250,",
    );
    let e = error(&share);
    assert!(
        e.contains("1.5") && e.contains("a share from 0 to 1"),
        "{e}"
    );
    let bound = PROFILED.replace(
        "      profile:\n",
        "      short_output_tokens: 0\n      profile:\n",
    );
    let e = error(&bound);
    assert!(
        e.contains("short_output_tokens") && e.contains("greater than 0"),
        "{e}"
    );
    for min in ["0.5", "30"] {
        let from = PROFILED.replace(
            "      profile:\n",
            &format!("      short_output_min_tokens: {min}\n      profile:\n"),
        );
        let e = error(&from);
        assert!(
            e.contains("capacity.short_output_min_tokens")
                && e.contains(&format!("is {min}"))
                && e.contains("from 1 to capacity.short_output_tokens (20)"),
            "{e}"
        );
    }
}
