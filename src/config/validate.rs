//! The checks across fields that serde cannot make one value at a time. Each problem
//! names its key, the value and what is allowed; every problem is reported, not the
//! first.

use std::time::Duration;

use super::{
    ConfigFile, Engine, LatencySignal, PROMETHEUS_LIMITS, Profile, ProfileName, PrometheusConfig,
    anticipation, capacity,
    values::{Problem, check_duration},
};

/// A problem without a line: a check across fields, or a default.
fn problem(key: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        line: 0,
        key: key.into(),
        message: message.into(),
    }
}

impl ConfigFile {
    /// Checks across fields that serde cannot see one at a time.
    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        self.timing_problems(&mut problems);
        prometheus_problems(&mut problems, &self.prometheus);
        check_duration(
            &mut problems,
            "evaluation.max_staleness".into(),
            &self.evaluation.max_staleness,
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        for (name, profile) in &self.profiles {
            profile_problems(&mut problems, name, profile);
        }
        if self.profiles.is_empty() {
            problems.push(problem(
                "profiles",
                "is empty: expected at least one profile",
            ));
        }
        problems
    }

    /// The listener's and the evaluation's durations and limits.
    fn timing_problems(&self, problems: &mut Vec<Problem>) {
        let durations = [
            ("prometheus.timeout", &self.prometheus.timeout, 100, 30_000),
            (
                "evaluation.cache_ttl",
                &self.evaluation.cache_ttl,
                0,
                300_000,
            ),
            (
                "evaluation.push_interval",
                &self.evaluation.push_interval,
                100,
                3_600_000,
            ),
            (
                "server.handshake_timeout",
                &self.server.handshake_timeout,
                100,
                300_000,
            ),
        ];
        for (key, value, least_ms, most_ms) in durations {
            let (least, most) = (
                Duration::from_millis(least_ms),
                Duration::from_millis(most_ms),
            );
            check_duration(problems, key.into(), value, least, most);
        }
        let counts = [
            ("server.max_connections", self.server.max_connections),
            (
                "server.max_concurrent_streams",
                self.server.max_concurrent_streams,
            ),
        ];
        for (key, value) in counts {
            if !(1..=1_000_000).contains(&value) {
                let message = format!("{value} is out of range: expected from 1 to 1000000");
                problems.push(problem(key, message));
            }
        }
    }

    /// A profile by name.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles
            .iter()
            .find(|(key, _)| key.as_str() == name)
            .map(|(_, profile)| profile)
    }

    /// Every profile's name, in order.
    pub fn profile_names(&self) -> Vec<&str> {
        self.profiles.keys().map(ProfileName::as_str).collect()
    }
}

/// Limits, credentials and headers of the Prometheus section.
fn prometheus_problems(problems: &mut Vec<Problem>, prometheus: &PrometheusConfig) {
    for (key, least, most) in PROMETHEUS_LIMITS {
        let value = match key {
            "max_response_bytes" => prometheus.max_response_bytes,
            "max_series" => prometheus.max_series,
            _ => prometheus.max_connections,
        };
        if !(least..=most).contains(&value) {
            let message = format!("{value} is out of range: expected from {least} to {most}");
            problems.push(problem(format!("prometheus.{key}"), message));
        }
    }
    if prometheus.bearer_token_file.is_some() && prometheus.basic_auth.is_some() {
        problems.push(problem(
            "prometheus.bearer_token_file",
            "and prometheus.basic_auth are both set: expected at most one",
        ));
    }
    for (name, value) in &prometheus.headers {
        let message = if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            "is not a valid HTTP header name".to_owned()
        } else if name.eq_ignore_ascii_case("authorization") {
            "is not allowed here: use bearer_token_file or basic_auth".to_owned()
        } else if http::HeaderValue::from_str(value).is_err() {
            format!(
                "value `{}` is not a valid HTTP header value",
                value.escape_debug()
            )
        } else {
            continue;
        };
        problems.push(problem(format!("prometheus.headers.{name}"), message));
    }
}

/// One profile: its window and demand bounds, its queries, capacity, SLOs and forecast.
fn profile_problems(problems: &mut Vec<Problem>, name: &ProfileName, profile: &Profile) {
    check_duration(
        problems,
        format!("profiles.{name}.rate_window"),
        &profile.rate_window,
        Duration::from_secs(1),
        Duration::from_secs(86_400),
    );
    if profile.rate_window.value.0.subsec_millis() != 0 {
        problems.push(Problem {
            line: profile.rate_window.referenced.line(),
            key: format!("profiles.{name}.rate_window"),
            message: format!(
                "{} is not allowed: expected whole seconds",
                profile.rate_window.value
            ),
        });
    }
    if profile.min_demand.value.0 > profile.max_demand.value.0 {
        problems.push(Problem {
            line: profile.min_demand.referenced.line(),
            key: format!("profiles.{name}.min_demand"),
            message: format!(
                "{} is above max_demand {}: expected min_demand <= max_demand",
                profile.min_demand.value.0, profile.max_demand.value.0
            ),
        });
    }
    query_problems(problems, name, profile);
    capacity_problems(problems, name, profile);
    anticipation::check_slos(problems, name.as_str(), &profile.slos);
    for (i, slo) in profile.slos.iter().enumerate() {
        if let Err(message) = latency_support(profile, slo.signal) {
            problems.push(problem(
                format!("profiles.{name}.slos[{i}].signal"),
                message,
            ));
        }
        if let (LatencySignal::Tpot, Some(floor)) = (slo.signal, &slo.floor_context_tokens)
            && let Err(message) = prompt_length_support(profile)
        {
            problems.push(Problem {
                line: floor.referenced.line(),
                key: format!("profiles.{name}.slos[{i}].floor_context_tokens"),
                message,
            });
        }
    }
    if let Some(predictive) = &profile.predictive {
        anticipation::check_predictive(problems, name.as_str(), predictive);
    }
    let capacity = &profile.capacity;
    let needed = if profile.pool.reads_input_tokens() {
        let missing = capacity.input_tokens_per_second.is_none();
        missing.then_some("input_tokens_per_second")
    } else {
        let missing = capacity.output_tokens_per_second.is_none();
        missing.then_some("output_tokens_per_second")
    };
    if let Some(key) = needed {
        let message = format!("is required for a {} pool", profile.pool.as_str());
        problems.push(problem(format!("profiles.{name}.capacity.{key}"), message));
    }
}

/// `queries` is required with engine custom and refused with every preset.
fn query_problems(problems: &mut Vec<Problem>, name: &ProfileName, profile: &Profile) {
    match (&profile.queries, profile.engine) {
        (None, Engine::Custom) => problems.push(problem(
            format!("profiles.{name}.queries"),
            "is required with engine: custom (queue_depth, output_tokens_per_second, input_tokens_per_second, kv_cache_usage)",
        )),
        (Some(queries), engine) if engine != Engine::Custom => problems.push(Problem {
            line: queries.referenced.line(),
            key: format!("profiles.{name}.queries"),
            message: format!(
                "is only allowed with engine: custom; engine {} has built-in queries",
                engine.as_str()
            ),
        }),
        _ => {}
    }
}

/// The input term's capacity, and a capacity profile's grid and engine.
fn capacity_problems(problems: &mut Vec<Problem>, name: &ProfileName, profile: &Profile) {
    let capacity = &profile.capacity;
    if capacity.input_term && capacity.input_tokens_per_second.is_none() {
        problems.push(problem(
            format!("profiles.{name}.capacity.input_term"),
            "is true but capacity.input_tokens_per_second is not set: the input term divides the input token rate by it",
        ));
    }
    let (min, max) = (
        capacity.short_output_min_tokens.0,
        capacity.short_output_tokens.0,
    );
    if min < 1.0 || min > max {
        problems.push(problem(
            format!("profiles.{name}.capacity.short_output_min_tokens"),
            format!(
                "is {min}: expected a number of output tokens from 1 to capacity.short_output_tokens ({max})"
            ),
        ));
    }
    if let Some(points) = &capacity.profile {
        let key = format!("profiles.{name}.capacity.profile");
        if let Err(message) = capacity::CapacityProfile::from_points(points) {
            problems.push(problem(key.clone(), message));
        }
        if let Err(unsupported) = crate::engine::length_support(profile.engine) {
            problems.push(problem(key, unsupported.to_string()));
        }
    }
}

/// Whether a TPOT SLO's misses can be split at `floor_context_tokens`: the engine must
/// export TPOT and each request's prompt length as histograms (or, for `custom`, the
/// config gives `queries.prompt_tokens_buckets`).
fn prompt_length_support(profile: &Profile) -> Result<(), String> {
    match crate::engine::preset(profile.engine) {
        Some(preset)
            if !preset.prompt_lengths.is_empty()
                && matches!(preset.tpot, crate::engine::Latency::Histogram { .. }) =>
        {
            Ok(())
        }
        Some(_) => Err(format!(
            "engine {} exports no per-request prompt-length histogram next to a TPOT histogram, so the misses cannot be split: expected engine vllm (vllm:request_prompt_tokens), or custom with queries.prompt_tokens_buckets, or no floor_context_tokens",
            profile.engine.as_str()
        )),
        None => {
            let given = profile
                .queries
                .as_ref()
                .is_some_and(|q| q.value.prompt_tokens_buckets.is_some());
            given.then_some(()).ok_or_else(|| {
                "needs queries.prompt_tokens_buckets with engine custom: the `_bucket` series of each request's prompt-length histogram in tokens, such as my_prompt_tokens_bucket{$selector}".to_owned()
            })
        }
    }
}

/// Whether a profile's engine exports the latency an SLO is set on: the preset says, or
/// for `custom`, whether the config gives its bucket query.
fn latency_support(profile: &Profile, signal: LatencySignal) -> Result<(), String> {
    if let Some(support) = crate::engine::latency_support(profile.engine, signal) {
        return support.map_err(|e| e.to_string());
    }
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
