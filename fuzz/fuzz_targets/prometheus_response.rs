//! Any body Prometheus (or something in its place) answers, with any status, read with
//! small limits and given to every query of a plan with SLOs and a forecast: the reader
//! never panics, never returns more series than allowed, and the demand is either an
//! error or a finite number within [min_demand, max_demand].
#![no_main]

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use keda_llm_scaler::{
    config::{Config, metadata},
    demand::{self, Params},
    source::{
        Observation,
        prometheus::{LimitedBody, parse_answer},
    },
    query as promql,
};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = include_str!("../../deploy/base/config.yaml");

/// The most series a fuzzed answer may hold.
const MAX_SERIES: u64 = 16;

fuzz_target!(|input: &[u8]| {
    // The first byte picks the status: mostly 200, sometimes an error or a redirect.
    let Some((&pick, body)) = input.split_first() else {
        return;
    };
    let status = [200, 200, 200, 204, 302, 400, 422, 503][usize::from(pick % 8)];
    // The body arrives in chunks the input's bytes cut, against a small byte limit: it
    // never holds more than the limit, and is refused exactly when it would.
    const MAX_BYTES: u64 = 4096;
    let mut limited = LimitedBody::new(MAX_BYTES, None).expect("no announced length");
    let mut total = 0u64;
    let mut refused = false;
    for chunk in body.chunks(usize::from(pick).max(1)) {
        total += chunk.len() as u64;
        if limited.push(chunk).is_err() {
            refused = true;
            break;
        }
    }
    assert_eq!(refused, total > MAX_BYTES);
    let read = limited.into_bytes();
    assert!(read.len() as u64 <= MAX_BYTES);
    assert!(LimitedBody::new(MAX_BYTES, Some(MAX_BYTES + 1)).is_err());
    // Any time: skewed samples are refused, the others read.
    let answer = parse_answer(status, body, MAX_SERIES, 1_800_000_000.0).map(|a| a.samples);
    if let Ok(samples) = &answer {
        assert!(samples.len() as u64 <= MAX_SERIES);
        assert!((200..300).contains(&status), "a {status} was read as data");
    }
    let config = Config::parse(CONFIG).expect("the example config loads");
    let metadata: HashMap<String, String> = [
        ("profile".to_owned(), "llama-70b".to_owned()),
        ("model".to_owned(), "m".to_owned()),
    ]
    .into();
    let target = metadata::resolve(&config, &metadata).expect("a valid trigger");
    let planned = promql::plan(config.profile("llama-70b").unwrap(), &target);
    let answer = answer.map_err(keda_llm_scaler::source::ReadError::from);
    let answers = planned
        .plan
        .queries
        .iter()
        .map(|(signal, _)| (*signal, answer.clone()))
        .collect();
    let observation = Observation::of_plan(
        &planned.plan,
        answers,
        Vec::new(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        tokio::time::Instant::now(),
        Duration::ZERO,
    );
    let readings = observation.readings(planned.model.as_deref());
    if let Ok(demand) = demand::compute(&readings.signals(), &Params::from(&target)) {
        assert!(demand.replicas.is_finite(), "{demand:?}");
        assert!(
            (target.min_demand..=target.max_demand).contains(&demand.replicas),
            "{demand:?}"
        );
        for term in &demand.terms {
            assert!(!term.replicas.is_nan(), "{term:?}");
        }
    }
});
