//! A ScaledObject trigger's `scalerMetadata`, resolved against the config into a
//! [`Target`]: the profile with its overrides applied, the metric name, and the queries.

use std::collections::HashMap;

use super::{
    Config, Engine, KvAggregate, KvTarget, Pool, Positive, PredictiveConfig, Profile, SloConfig,
};

/// The keys this scaler reads.
pub const KEYS: &[&str] = &[
    "profile",
    "model",
    "pool",
    "queuePerReplica",
    "outputTokensPerSecond",
    "inputTokensPerSecond",
    "kvCacheTarget",
];

/// Keys KEDA itself reads from the same trigger metadata and passes on to us.
pub const KEDA_KEYS: &[&str] = &["scalerAddress", "enableTLS", "unsafeSsl"];

/// Longest `model` value accepted: label values this long are a mistake, not a model name.
const MAX_MODEL_LEN: usize = 512;

/// Invalid trigger metadata: the key, the value and what is allowed. KEDA shows it on
/// the ScaledObject, so it must stand on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scalerMetadata key `{key}`: {problem}")]
pub struct MetadataError {
    /// The scalerMetadata key.
    pub key: String,
    /// What is wrong with its value and what is allowed.
    pub problem: String,
}

impl MetadataError {
    fn new(key: &str, problem: impl Into<String>) -> Self {
        Self {
            // A key comes from the caller: echo a bounded, escaped form of it.
            key: printable(key),
            problem: problem.into(),
        }
    }
}

/// The longest ScaledObject name Kubernetes allows (a DNS subdomain, RFC 1123).
pub const MAX_NAME_LEN: usize = 253;
/// The longest namespace Kubernetes allows (a DNS label, RFC 1123).
pub const MAX_NAMESPACE_LEN: usize = 63;

/// Checks a ScaledObject's name and namespace as Kubernetes would: a name of at most
/// 253 characters of lowercase letters, digits, `-` and `.`, a namespace of at most 63
/// of lowercase letters, digits and `-`, each starting and ending with a letter or
/// digit. An empty namespace passes (callers outside Kubernetes may send none). Names
/// become metric labels and cache keys: without this a caller could grow both without
/// bound.
pub fn check_scaled_object_name(name: &str, namespace: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let shape = |text: &str, extra: &[char]| {
        text.chars().all(|c| alnum(c) || extra.contains(&c))
            && text.starts_with(alnum)
            && text.ends_with(alnum)
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN || !shape(name, &['-', '.']) {
        return Err(format!(
            "ScaledObject name `{}` ({} bytes) is not a Kubernetes name: expected 1 to {MAX_NAME_LEN} lowercase letters, digits, `-` or `.`, starting and ending with a letter or digit",
            printable(name),
            name.len()
        ));
    }
    if !namespace.is_empty() && (namespace.len() > MAX_NAMESPACE_LEN || !shape(namespace, &['-'])) {
        return Err(format!(
            "namespace `{}` ({} bytes) is not a Kubernetes namespace: expected 1 to {MAX_NAMESPACE_LEN} lowercase letters, digits or `-`, starting and ending with a letter or digit",
            printable(namespace),
            namespace.len()
        ));
    }
    Ok(())
}

/// Everything needed to evaluate one trigger, derived from metadata and config alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The profile the trigger names.
    pub profile_name: String,
    /// The profile's engine.
    pub engine: Engine,
    /// The value of the engine's model label, when the trigger overrides it.
    pub model: Option<String>,
    /// The pool's role.
    pub pool: Pool,
    /// Waiting requests one replica may hold.
    pub queue_per_replica: f64,
    /// Output tokens per second one replica sustains.
    pub output_tokens_per_second: Option<f64>,
    /// Input tokens per second one replica sustains.
    pub input_tokens_per_second: Option<f64>,
    /// A unified pool that also scales on input tokens (`capacity.input_term`).
    pub input_term: bool,
    /// Rates by request mix (`capacity.profile`), validated with the config.
    pub capacity_profile: Option<super::capacity::CapacityProfile>,
    /// The KV-cache usage a replica should run at.
    pub kv_target: f64,
    /// How per-replica KV usage becomes one K.
    pub kv_aggregate: KvAggregate,
    /// The lowest demand answered.
    pub min_demand: f64,
    /// The highest demand answered.
    pub max_demand: f64,
    /// The name GetMetricSpec announces and GetMetrics expects.
    pub metric_name: String,
    /// The namespace every query is limited to (`tenancy.scope_by_namespace`).
    pub namespace_scope: Option<String>,
    /// The profile's SLOs that count for this pool (TTFT: prefill and unified; TPOT:
    /// decode and unified).
    pub slos: Vec<SloConfig>,
    /// The profile's schedules and forecast settings.
    pub predictive: Option<PredictiveConfig>,
}

/// Why a ScaledObject's trigger cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A key or value is wrong (INVALID_ARGUMENT).
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The profile is not for this ScaledObject's namespace.
    #[error("{0}")]
    Forbidden(String),
}

/// Resolves a ScaledObject's trigger as the service does: metadata, then tenancy.
pub fn resolve_scaled_object(
    config: &Config,
    namespace: &str,
    metadata: &HashMap<String, String>,
) -> Result<Target, ResolveError> {
    let mut target = resolve(config, metadata)?;
    let profile = config
        .profile(&target.profile_name)
        .expect("resolve only returns profiles of this config");
    if let Some(allowed) = &profile.allowed_namespaces
        && !allowed.iter().any(|a| a == namespace)
    {
        return Err(ResolveError::Forbidden(format!(
            "profile `{}` is not allowed for namespace `{}`: allowed_namespaces are {}",
            target.profile_name,
            printable(namespace),
            allowed.join(", ")
        )));
    }
    if config.tenancy.scope_by_namespace {
        if namespace.is_empty() {
            return Err(ResolveError::Forbidden(
                "tenancy.scope_by_namespace is on and the ScaledObject has no namespace".into(),
            ));
        }
        target.namespace_scope = Some(namespace.to_owned());
    }
    Ok(target)
}

/// Reads trigger metadata against the config.
pub fn resolve(
    config: &Config,
    metadata: &HashMap<String, String>,
) -> Result<Target, MetadataError> {
    check_keys(metadata)?;
    let (profile_name, profile) = profile_of(config, metadata)?;
    let model = match metadata.get("model") {
        None => None,
        Some(model) => Some(parse_model(profile, model)?),
    };
    let pool = pool_of(metadata, profile)?;
    let Capacities {
        queue_per_replica,
        output_tokens_per_second,
        input_tokens_per_second,
        kv_target,
    } = capacities(metadata, profile)?;
    require_capacity(
        pool,
        profile_name,
        output_tokens_per_second,
        input_tokens_per_second,
    )?;
    let metric_name = metric_name(profile_name, model.as_deref(), pool);
    Ok(Target {
        profile_name: profile_name.clone(),
        engine: profile.engine,
        model,
        pool,
        queue_per_replica,
        output_tokens_per_second,
        input_tokens_per_second,
        input_term: profile.capacity.input_term && pool == Pool::Unified,
        capacity_profile: profile.capacity.profile.as_deref().map(|points| {
            super::capacity::CapacityProfile::from_points(points)
                .expect("config validation refuses an incomplete capacity.profile")
                .with_short_answers(profile.capacity.short_answers())
        }),
        kv_target,
        kv_aggregate: profile.kv_cache.aggregate,
        min_demand: profile.min_demand.value.0,
        max_demand: profile.max_demand.value.0,
        metric_name,
        namespace_scope: None,
        slos: profile
            .slos
            .iter()
            .filter(|slo| slo.signal.applies_to(pool))
            .cloned()
            .collect(),
        predictive: profile.predictive.clone(),
    })
}

/// Every key is one this scaler reads, or one KEDA itself sets.
fn check_keys(metadata: &HashMap<String, String>) -> Result<(), MetadataError> {
    for key in metadata.keys() {
        if !KEYS.contains(&key.as_str()) && !KEDA_KEYS.contains(&key.as_str()) {
            return Err(MetadataError::new(
                key,
                format!(
                    "is not a key this scaler reads: allowed keys are {}",
                    KEYS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The profile the trigger names, which must be the config's.
fn profile_of<'c>(
    config: &'c Config,
    metadata: &'c HashMap<String, String>,
) -> Result<(&'c String, &'c Profile), MetadataError> {
    let profile_name = match metadata.get("profile") {
        None => {
            return Err(MetadataError::new(
                "profile",
                format!("is required: one of {}", config.profile_names().join(", ")),
            ));
        }
        Some(name) => name,
    };
    let profile = config.profile(profile_name).ok_or_else(|| {
        MetadataError::new(
            "profile",
            format!(
                "value `{}` is not a profile in the config: allowed are {}",
                printable(profile_name),
                config.profile_names().join(", ")
            ),
        )
    })?;
    Ok((profile_name, profile))
}

/// The trigger's pool, or the profile's.
fn pool_of(metadata: &HashMap<String, String>, profile: &Profile) -> Result<Pool, MetadataError> {
    Ok(pool_named(metadata)?.unwrap_or(profile.pool))
}

/// The pool the trigger names, if it names one: checked whatever the profile.
pub(super) fn pool_named(
    metadata: &HashMap<String, String>,
) -> Result<Option<Pool>, MetadataError> {
    Ok(match metadata.get("pool") {
        None => None,
        Some(text) => Some(Pool::parse(text).ok_or_else(|| {
            MetadataError::new(
                "pool",
                format!(
                    "value `{}` is not allowed: expected {}",
                    printable(text),
                    Pool::ALLOWED
                ),
            )
        })?),
    })
}

/// The capacities a trigger may override, each checked, else the profile's.
struct Capacities {
    queue_per_replica: f64,
    output_tokens_per_second: Option<f64>,
    input_tokens_per_second: Option<f64>,
    kv_target: f64,
}

fn capacities(
    metadata: &HashMap<String, String>,
    profile: &Profile,
) -> Result<Capacities, MetadataError> {
    let capacity = &profile.capacity;
    let queue_per_replica = number(
        metadata,
        "queuePerReplica",
        Positive::new,
        Positive::ALLOWED,
    )?
    .map_or(capacity.queue_per_replica.0, |p| p.0);
    let output_tokens_per_second = number(
        metadata,
        "outputTokensPerSecond",
        Positive::new,
        Positive::ALLOWED,
    )?
    .or(capacity.output_tokens_per_second)
    .map(|p| p.0);
    let input_tokens_per_second = number(
        metadata,
        "inputTokensPerSecond",
        Positive::new,
        Positive::ALLOWED,
    )?
    .or(capacity.input_tokens_per_second)
    .map(|p| p.0);
    let kv_target = number(metadata, "kvCacheTarget", KvTarget::new, KvTarget::ALLOWED)?
        .map_or(profile.kv_cache.target_ratio.0, |t| t.0);

    Ok(Capacities {
        queue_per_replica,
        output_tokens_per_second,
        input_tokens_per_second,
        kv_target,
    })
}

/// A pool is sized on one token rate, so that capacity must be known.
fn require_capacity(
    pool: Pool,
    profile_name: &str,
    output_tokens_per_second: Option<f64>,
    input_tokens_per_second: Option<f64>,
) -> Result<(), MetadataError> {
    let (key, needed) = if pool.reads_input_tokens() {
        ("inputTokensPerSecond", input_tokens_per_second)
    } else {
        ("outputTokensPerSecond", output_tokens_per_second)
    };
    if needed.is_none() {
        let setting = if pool.reads_input_tokens() {
            "input_tokens_per_second"
        } else {
            "output_tokens_per_second"
        };
        return Err(MetadataError::new(
            key,
            format!(
                "is required for pool {}: profile `{profile_name}` sets no capacity.{setting}",
                pool.as_str()
            ),
        ));
    }

    Ok(())
}

fn parse_model(profile: &Profile, model: &str) -> Result<String, MetadataError> {
    if crate::engine::model_label(profile.engine).is_none() {
        return Err(MetadataError::new(
            "model",
            format!(
                "is not allowed with engine {}: it has no model label; select the fleet with the profile's selector",
                profile.engine.as_str()
            ),
        ));
    }
    if model.is_empty() || model.len() > MAX_MODEL_LEN {
        return Err(MetadataError::new(
            "model",
            format!(
                "value must be 1 to {MAX_MODEL_LEN} bytes long, got {} bytes",
                model.len()
            ),
        ));
    }
    Ok(model.to_owned())
}

fn number<T>(
    metadata: &HashMap<String, String>,
    key: &str,
    check: fn(f64) -> Option<T>,
    allowed: &str,
) -> Result<Option<T>, MetadataError> {
    let Some(text) = metadata.get(key) else {
        return Ok(None);
    };
    let parsed = text.trim().parse::<f64>().ok().and_then(check);
    parsed.map(Some).ok_or_else(|| {
        MetadataError::new(
            key,
            format!(
                "value `{}` is not allowed: expected {allowed}",
                printable(text)
            ),
        )
    })
}

/// Metadata values are echoed in errors; keep them short and on one line.
pub(crate) fn printable(value: &str) -> String {
    let mut shown: String = value
        .chars()
        .take(80)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if value.chars().count() > 80 {
        shown.push('…');
    }
    shown
}

/// The metric name for a profile, model and pool: deterministic, lowercase, and a valid
/// URL path segment (`[a-z0-9-]`). A model name loses characters on the way, so a short
/// hash of the exact value keeps two models apart.
pub fn metric_name(profile: &str, model: Option<&str>, pool: Pool) -> String {
    let mut name = format!("llm-demand-{}-{}", slug(profile, 63), pool.as_str());
    if let Some(model) = model {
        name.push('-');
        name.push_str(&slug(model, 60));
        name.push_str(&format!("-{:08x}", fnv1a32(model.as_bytes())));
    }
    name
}

fn slug(text: &str, max_len: usize) -> String {
    let mut slug = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.chars().take(max_len).collect();
    let slug = slug.trim_matches('-');
    if slug.is_empty() {
        "x".to_owned()
    } else {
        slug.to_owned()
    }
}

/// FNV-1a: stable across versions and platforms, unlike std's hasher.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
prometheus:
  url: http://127.0.0.1:9090
profiles:
  llama-70b:
    engine: vllm
    selector:
      model_name: meta-llama/Llama-3.1-70B-Instruct
    capacity:
      queue_per_replica: 15
      output_tokens_per_second: 5000
      input_tokens_per_second: 40000
  prefill-only:
    engine: seed
    pool: prefill
    capacity:
      queue_per_replica: 10
      input_tokens_per_second: 30000
  tgi:
    engine: tgi
    capacity:
      queue_per_replica: 4
      output_tokens_per_second: 800
"#;

    fn config() -> Config {
        Config::parse(CONFIG).unwrap()
    }

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn profile_alone_takes_the_profile_values() {
        let target = resolve(&config(), &meta(&[("profile", "llama-70b")])).unwrap();
        assert_eq!(target.pool, Pool::Unified);
        assert_eq!(target.queue_per_replica, 15.0);
        assert_eq!(target.output_tokens_per_second, Some(5000.0));
        assert_eq!(target.input_tokens_per_second, Some(40000.0));
        assert_eq!(target.kv_target, 0.75);
        assert_eq!((target.min_demand, target.max_demand), (0.0, 100.0));
        assert_eq!(target.metric_name, "llm-demand-llama-70b-unified");
        assert_eq!(target.model, None);
    }

    #[test]
    fn overrides_replace_profile_values() {
        let target = resolve(
            &config(),
            &meta(&[
                ("profile", "llama-70b"),
                ("pool", "decode"),
                ("queuePerReplica", "7.5"),
                ("outputTokensPerSecond", "1200"),
                ("inputTokensPerSecond", "9000"),
                ("kvCacheTarget", "0.8"),
                ("model", "meta-llama/Llama-3.1-8B"),
                ("scalerAddress", "scaler:6000"),
                ("enableTLS", "false"),
                ("unsafeSsl", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(target.pool, Pool::Decode);
        assert_eq!(target.queue_per_replica, 7.5);
        assert_eq!(target.output_tokens_per_second, Some(1200.0));
        assert_eq!(target.input_tokens_per_second, Some(9000.0));
        assert_eq!(target.kv_target, 0.8);
        assert_eq!(target.model.as_deref(), Some("meta-llama/Llama-3.1-8B"));
        assert!(
            target
                .metric_name
                .starts_with("llm-demand-llama-70b-decode-meta-llama-llama-3-1-8b-"),
            "{}",
            target.metric_name
        );
    }

    #[test]
    fn metric_names_are_deterministic_path_segments_and_tell_models_apart() {
        let a = metric_name("p", Some("Model/A"), Pool::Unified);
        let b = metric_name("p", Some("model-a"), Pool::Unified);
        assert_ne!(a, b);
        assert_eq!(a, metric_name("p", Some("Model/A"), Pool::Unified));
        let hostile = metric_name("p", Some("../../x?y=1#z%2F\"} or vector(1)"), Pool::Prefill);
        assert!(
            hostile
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{hostile}"
        );
        assert!(metric_name("p", Some(&"m".repeat(500)), Pool::Decode).len() < 150);
    }

    fn error(pairs: &[(&str, &str)]) -> MetadataError {
        resolve(&config(), &meta(pairs)).unwrap_err()
    }

    #[test]
    fn missing_or_unknown_profile_names_the_allowed_ones() {
        let e = error(&[]);
        assert_eq!(e.key, "profile");
        assert!(e.problem.contains("llama-70b"), "{e}");
        let e = error(&[("profile", "nope")]);
        assert!(
            e.to_string().contains("`nope`") && e.to_string().contains("prefill-only"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = error(&[("profile", "llama-70b"), ("queuePerReplika", "3")]);
        assert_eq!(e.key, "queuePerReplika");
        assert!(e.problem.contains("queuePerReplica"), "{e}");
    }

    #[test]
    fn bad_numbers_name_key_value_and_range() {
        for (key, value) in [
            ("queuePerReplica", "abc"),
            ("queuePerReplica", "0"),
            ("queuePerReplica", "-1"),
            ("queuePerReplica", "NaN"),
            ("queuePerReplica", "inf"),
            ("outputTokensPerSecond", ""),
            ("inputTokensPerSecond", "1e400"),
            ("kvCacheTarget", "1.5"),
            ("kvCacheTarget", "0"),
        ] {
            let e = error(&[("profile", "llama-70b"), (key, value)]);
            assert_eq!(e.key, key);
            assert!(e.problem.contains(&format!("`{value}`")), "{e}");
            assert!(e.problem.contains("expected"), "{e}");
        }
    }

    #[test]
    fn bad_pool_and_model() {
        let e = error(&[("profile", "llama-70b"), ("pool", "Decode")]);
        assert!(e.to_string().contains("unified, prefill or decode"), "{e}");
        let e = error(&[("profile", "llama-70b"), ("model", "")]);
        assert_eq!(e.key, "model");
        let e = error(&[("profile", "tgi"), ("model", "x")]);
        assert!(e.problem.contains("no model label"), "{e}");
    }

    #[test]
    fn a_pool_needs_its_token_capacity() {
        let e = error(&[("profile", "prefill-only"), ("pool", "decode")]);
        assert_eq!(e.key, "outputTokensPerSecond");
        let ok = resolve(
            &config(),
            &meta(&[
                ("profile", "prefill-only"),
                ("pool", "decode"),
                ("outputTokensPerSecond", "100"),
            ]),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn errors_show_hostile_values_on_one_line() {
        let e = error(&[("profile", "llama-70b"), ("pool", "a\nb\u{0}")]);
        assert!(!e.to_string().contains('\n'), "{e}");
    }
}

#[cfg(test)]
mod tenancy_tests {
    use super::*;

    const CONFIG: &str = "prometheus:\n  url: http://x:9090\ntenancy:\n  scope_by_namespace: true\nprofiles:\n  team-a:\n    engine: seed\n    allowed_namespaces: [inference, staging]\n    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000}\n  shared:\n    engine: seed\n    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000}\n";

    fn meta(profile: &str) -> HashMap<String, String> {
        HashMap::from([("profile".to_owned(), profile.to_owned())])
    }

    #[test]
    fn allowed_namespaces_keep_other_teams_out() {
        let config = Config::parse(CONFIG).unwrap();
        let target = resolve_scaled_object(&config, "staging", &meta("team-a")).unwrap();
        assert_eq!(target.namespace_scope.as_deref(), Some("staging"));
        let e = resolve_scaled_object(&config, "team-b", &meta("team-a")).unwrap_err();
        assert!(
            matches!(&e, ResolveError::Forbidden(m) if m.contains("team-b") && m.contains("inference, staging")),
            "{e}"
        );
        assert!(resolve_scaled_object(&config, "team-b", &meta("shared")).is_ok());
        assert!(resolve_scaled_object(&config, "", &meta("shared")).is_err());
    }

    #[test]
    fn without_tenancy_nothing_is_scoped() {
        let config =
            Config::parse(&CONFIG.replace("scope_by_namespace: true", "scope_by_namespace: false"))
                .unwrap();
        let target = resolve_scaled_object(&config, "anywhere", &meta("shared")).unwrap();
        assert_eq!(target.namespace_scope, None);
    }
}
