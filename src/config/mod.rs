//! The ConfigMap: one YAML file that names the Prometheus to ask and the profiles
//! ScaledObjects refer to. Parsing rejects unknown keys and out-of-range values with
//! the line, the key and what is allowed; a config that loads is safe to serve.

pub mod anticipation;
pub mod capacity;
pub mod duration;
pub mod metadata;
pub mod reload;
pub mod scaledobject;

use std::{collections::BTreeMap, fmt, path::Path, time::Duration};

use serde::Deserialize;
use serde_saphyr::Spanned;

pub use crate::engine::{Engine, LatencySignal, Pool};
pub use anticipation::{PredictiveConfig, SloConfig};
pub use duration::{ConfigDuration, DURATION_FORMS};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The gRPC listener's TLS and limits (read at start; certificate files are re-read
    /// when rotated).
    #[serde(default)]
    pub server: ServerSection,
    /// Where the fleet's metrics are read from.
    pub prometheus: PrometheusConfig,
    /// How often and how long evaluations are reused.
    #[serde(default)]
    pub evaluation: EvaluationConfig,
    /// Who may read which metrics.
    #[serde(default)]
    pub tenancy: TenancyConfig,
    /// Named profiles, one per kind of fleet; a ScaledObject picks one with `profile`.
    pub profiles: BTreeMap<ProfileName, Profile>,
}

/// The gRPC listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// TLS on the gRPC listener; plaintext when absent.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// Concurrent HTTP/2 streams per connection (KEDA uses one connection for all calls
    /// and keeps a stream open per `external-push` trigger).
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// A connection that has not sent its opening (TLS handshake, HTTP/2 preface, or an
    /// HTTP request's headers) within this is closed.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: Spanned<ConfigDuration>,
    /// Connections open at once, per listener; one more is closed when accepted.
    #[serde(default = "default_max_connections_per_listener")]
    pub max_connections: u32,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            tls: None,
            max_concurrent_streams: default_max_concurrent_streams(),
            handshake_timeout: default_handshake_timeout(),
            max_connections: default_max_connections_per_listener(),
        }
    }
}

fn default_handshake_timeout() -> Spanned<ConfigDuration> {
    unspanned(ConfigDuration(Duration::from_secs(10)))
}

/// Far above what KEDA needs (one connection per operator replica and scaler address).
fn default_max_connections_per_listener() -> u32 {
    4096
}

/// PEM files for the gRPC listener, matching KEDA's trigger settings `enableTLS`,
/// `caCert`, `tlsClientCert` and `tlsClientKey`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    /// When set, clients must present a certificate signed by this CA (mTLS).
    #[serde(default)]
    pub client_ca_file: Option<std::path::PathBuf>,
}

fn default_max_concurrent_streams() -> u32 {
    10_000
}

/// Keeps one team's ScaledObjects to their own metrics.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenancyConfig {
    /// Adds `namespace="<the ScaledObject's namespace>"` to every query.
    #[serde(default)]
    pub scope_by_namespace: bool,
}

/// The Prometheus (or Thanos, Mimir, Cortex) HTTP API the scaler queries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://prometheus.monitoring:9090`.
    pub url: HttpUrl,
    /// Upper bound on one query, kept below KEDA's 3 s deadline for the HPA path.
    #[serde(default = "default_prometheus_timeout")]
    pub timeout: Spanned<ConfigDuration>,
    /// A file holding a bearer token, read for every query (so rotation needs no restart).
    #[serde(default)]
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// HTTP basic auth; the password file is read for every query.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// PEM file of the CA that signed Prometheus' certificate (added to the system roots).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Extra headers on every query, e.g. `X-Scope-OrgID` for Mimir, Cortex or Thanos.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The largest answer read, in bytes: a larger one is refused while it is read.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// The most series one answer may hold.
    #[serde(default = "default_max_series")]
    pub max_series: u64,
    /// The most queries (and so connections) open to this Prometheus at once; more wait
    /// for one to finish, within `timeout`.
    #[serde(default = "default_max_connections")]
    pub max_connections: u64,
}

/// The ranges `prometheus.max_*` accept: (key, least, most).
pub const PROMETHEUS_LIMITS: [(&str, u64, u64); 3] = [
    ("max_response_bytes", 1024, 1 << 30),
    ("max_series", 1, 10_000_000),
    ("max_connections", 1, 10_000),
];

/// HTTP basic auth for Prometheus.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password_file: std::path::PathBuf,
}

/// Evaluation timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationConfig {
    /// IsActive, GetMetrics and Explain calls inside this window share one evaluation.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: Spanned<ConfigDuration>,
    /// How often a StreamIsActive stream re-evaluates.
    #[serde(default = "default_push_interval")]
    pub push_interval: Spanned<ConfigDuration>,
    /// While an evaluation fails, answer from the last complete one if it is at most
    /// this old (and say so); past it, UNAVAILABLE.
    #[serde(default = "default_max_staleness")]
    pub max_staleness: Spanned<ConfigDuration>,
    /// What a failed query does to the demand: `fail` (UNAVAILABLE) or `skip` (leave out
    /// the terms that need it, if any term is left).
    #[serde(default)]
    pub on_term_error: OnTermError,
}

/// The policy for a term whose query failed while others succeeded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTermError {
    #[default]
    Fail,
    Skip,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        Self {
            cache_ttl: default_cache_ttl(),
            push_interval: default_push_interval(),
            max_staleness: default_max_staleness(),
            on_term_error: OnTermError::default(),
        }
    }
}

/// One kind of fleet: which engine's series to read, which pods belong to it,
/// and what one replica sustains.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Which engine's series the queries read.
    pub engine: Engine,
    /// Label matchers added to every query (values are escaped).
    #[serde(default)]
    pub selector: BTreeMap<LabelName, String>,
    /// Which terms apply: prefill pools scale on input tokens, decode pools on output tokens and KV cache.
    #[serde(default)]
    pub pool: Pool,
    /// The label that tells replicas apart (counted for R, grouped by for per-replica gauges).
    #[serde(default = "default_replica_label")]
    pub replica_label: LabelName,
    /// The range of `rate()` over token counters.
    #[serde(default = "default_rate_window")]
    pub rate_window: Spanned<ConfigDuration>,
    /// What ONE replica sustains within its SLOs.
    pub capacity: Capacity,
    /// KV-cache headroom target.
    #[serde(default)]
    pub kv_cache: KvCacheConfig,
    /// The demand never goes below this (replicas).
    #[serde(default = "default_min_demand")]
    pub min_demand: Spanned<NonNegative>,
    /// The demand never goes above this (replicas).
    #[serde(default = "default_max_demand")]
    pub max_demand: Spanned<NonNegative>,
    /// PromQL for each signal; required with `engine: custom`, refused otherwise.
    #[serde(default)]
    pub queries: Option<Spanned<CustomQueries>>,
    /// The namespaces whose ScaledObjects may use this profile; any when absent.
    #[serde(default)]
    pub allowed_namespaces: Option<Vec<String>>,
    /// Latency objectives whose burn rates add replicas while they are being missed.
    #[serde(default)]
    pub slos: Vec<SloConfig>,
    /// Replicas asked for ahead of load: schedules and a seasonal forecast.
    #[serde(default)]
    pub predictive: Option<PredictiveConfig>,
}

/// Per-replica capacity, measured by a load test or a backtest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Waiting requests one replica works off within the TTFT SLO.
    pub queue_per_replica: Positive,
    /// Output tokens per second one replica generates within the TPOT SLO (decode, unified).
    #[serde(default)]
    pub output_tokens_per_second: Option<Positive>,
    /// Input (prompt) tokens per second one replica prefills within the TTFT SLO (prefill).
    #[serde(default)]
    pub input_tokens_per_second: Option<Positive>,
    /// Unified pools: also scale on prompt load, T_in / input_tokens_per_second. For
    /// prompt-heavy workloads, where chunked prefill slows decoding (TPOT) long before
    /// requests queue, and the output rate stops growing with the load.
    #[serde(default)]
    pub input_term: bool,
    /// What one replica sustains by mix of mean prompt and output lengths (a grid, as
    /// `keda-llm-scaler calibrate` prints it). When set, the throughput, input and
    /// forecast terms divide by the profile's rates at the fleet's current mix; the
    /// fixed numbers above stay in force while the mix cannot be read (no request
    /// finished in the rate window).
    #[serde(default)]
    pub profile: Option<Vec<capacity::ProfilePoint>>,
}

/// KV-cache headroom.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvCacheConfig {
    /// The usage ratio the fleet is sized for.
    #[serde(default = "default_kv_target")]
    pub target_ratio: KvTarget,
    /// How per-replica usage combines into K.
    #[serde(default)]
    pub aggregate: KvAggregate,
}

impl Default for KvCacheConfig {
    fn default() -> Self {
        Self {
            target_ratio: default_kv_target(),
            aggregate: KvAggregate::default(),
        }
    }
}

/// The user's own PromQL for `engine: custom`. `$selector` is replaced by the profile's
/// (escaped) label matchers and `$rate_window` by its rate window.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomQueries {
    /// Waiting requests, one series per replica (carrying `replica_label`).
    pub queue_depth: String,
    /// Output tokens per second (summed by the scaler).
    pub output_tokens_per_second: String,
    /// Input tokens per second (summed by the scaler).
    pub input_tokens_per_second: String,
    /// KV-cache usage ratio 0..1, one series per replica.
    pub kv_cache_usage: String,
    /// The `_bucket` series of a TTFT histogram in seconds (for `ttft` SLOs), such as
    /// `my_ttft_seconds_bucket{$selector}`; the scaler takes its rate over each SLO window.
    #[serde(default)]
    pub ttft_buckets: Option<String>,
    /// The same for TPOT (for `tpot` SLOs).
    #[serde(default)]
    pub tpot_buckets: Option<String>,
    /// Optional: the `_bucket` series of each request's prefill-time histogram in seconds
    /// (vLLM's `request_prefill_time_seconds`). With it, a `ttft` SLO acts only on the
    /// misses queueing caused, not on prompts whose prefill alone exceeds the threshold.
    #[serde(default)]
    pub prefill_time_buckets: Option<String>,
}

/// How per-replica KV usage becomes one K.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvAggregate {
    #[default]
    Mean,
    Max,
}

macro_rules! checked_number {
    ($(#[$doc:meta])* $name:ident, $allowed:expr, |$v:ident| $ok:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
        #[serde(try_from = "f64")]
        pub struct $name(pub f64);

        impl $name {
            /// What the value may be, for error messages.
            pub const ALLOWED: &'static str = $allowed;

            pub fn new($v: f64) -> Option<Self> {
                ($v.is_finite() && $ok).then_some(Self($v))
            }
        }

        impl TryFrom<f64> for $name {
            type Error = String;
            fn try_from(value: f64) -> Result<Self, String> {
                Self::new(value).ok_or_else(|| format!("{value} is not allowed here: expected {}", $allowed))
            }
        }
    };
}
pub(crate) use checked_number;

checked_number!(
    /// A finite number above zero.
    Positive, "a number greater than 0", |v| v > 0.0
);
checked_number!(
    /// A finite number at or above zero.
    NonNegative, "a number at or above 0", |v| v >= 0.0
);
checked_number!(
    /// A KV-cache target ratio.
    KvTarget, "a ratio greater than 0 and at most 1, such as 0.75", |v| v > 0.0 && v <= 1.0
);

/// A Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`): it enters PromQL unquoted, so it is checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct LabelName(String);

impl LabelName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LabelName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let mut chars = name.chars();
        let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            Ok(Self(name))
        } else {
            Err(format!(
                "`{name}` is not a Prometheus label name: expected letters, digits and underscores, not starting with a digit"
            ))
        }
    }
}

impl fmt::Display for LabelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A profile's name: it ends up in metric names and URLs, so it is kept to a safe alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct ProfileName(String);

impl ProfileName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProfileName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
            });
        if valid {
            Ok(Self(name))
        } else {
            Err(format!(
                "profile name `{name}` is not allowed: expected 1 to 63 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"
            ))
        }
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HttpUrl(String);

impl HttpUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HttpUrl {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        match rest {
            Some(host)
                if !host.is_empty()
                    && !host.starts_with('/')
                    && !url.contains(char::is_whitespace) =>
            {
                Ok(Self(url))
            }
            _ => Err(format!(
                "`{url}` is not allowed: expected an http:// or https:// URL such as http://prometheus.monitoring:9090"
            )),
        }
    }
}

/// 16 MiB: far above any answer a fleet's plan gets (a few series per replica).
fn default_max_response_bytes() -> u64 {
    16 << 20
}
fn default_max_series() -> u64 {
    100_000
}
/// Prometheus' own `--web.max-connections` default is 512: leave room for others.
fn default_max_connections() -> u64 {
    64
}
fn default_prometheus_timeout() -> Spanned<ConfigDuration> {
    unspanned(ConfigDuration(Duration::from_secs(2)))
}
fn default_cache_ttl() -> Spanned<ConfigDuration> {
    unspanned(ConfigDuration(Duration::from_secs(5)))
}
fn default_push_interval() -> Spanned<ConfigDuration> {
    unspanned(ConfigDuration(Duration::from_secs(5)))
}
fn default_max_staleness() -> Spanned<ConfigDuration> {
    unspanned(ConfigDuration(Duration::from_secs(60)))
}
fn default_rate_window() -> Spanned<ConfigDuration> {
    unspanned(ConfigDuration(Duration::from_secs(60)))
}
fn default_replica_label() -> LabelName {
    LabelName("pod".to_owned())
}
fn default_kv_target() -> KvTarget {
    KvTarget(0.75)
}
fn default_min_demand() -> Spanned<NonNegative> {
    unspanned(NonNegative(0.0))
}
fn default_max_demand() -> Spanned<NonNegative> {
    unspanned(NonNegative(100.0))
}

fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

/// A config file that could not be loaded; the message carries every problem found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config:\n{0}")]
    Invalid(String),
    /// Not readable as a config: too large, not text, or too slow to read.
    #[error("cannot read the config: {0}")]
    Unreadable(reload::ReadError),
}

impl From<reload::ReadError> for ConfigError {
    fn from(error: reload::ReadError) -> Self {
        match error {
            reload::ReadError::Io { path, source } => ConfigError::Read { path, source },
            reload::ReadError::NotFound(path) => ConfigError::Read {
                path,
                source: std::io::ErrorKind::NotFound.into(),
            },
            other => ConfigError::Unreadable(other),
        }
    }
}

/// One problem with a value that parsed, pointing at its line.
struct Problem {
    line: u64,
    key: String,
    message: String,
}

/// The dotted key path of the block-style YAML entry on a line (1-based), found by
/// walking up to each less-indented key. With `parent`, the path of the mapping that
/// holds the line (for "missing field" errors, which point at the mapping).
fn key_path_at(text: &str, line: u64, parent: bool) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let index = usize::try_from(line).ok()?.checked_sub(1)?;
    let key_of = |l: &str| -> Option<(usize, String)> {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return None;
        }
        let indent = l.len() - trimmed.len();
        let entry = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let (key, _) = entry.split_once(':')?;
        let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
        (!key.is_empty() && !key.contains(' ')).then(|| (indent, key.to_owned()))
    };
    let (mut indent, first) = key_of(lines.get(index)?)?;
    let mut path = if parent { Vec::new() } else { vec![first] };
    for l in lines[..index].iter().rev() {
        if let Some((i, key)) = key_of(l)
            && i < indent
        {
            path.push(key);
            indent = i;
        }
    }
    path.reverse();
    (!path.is_empty()).then(|| path.join("."))
}

fn check_duration(
    problems: &mut Vec<Problem>,
    key: String,
    value: &Spanned<ConfigDuration>,
    min: Duration,
    max: Duration,
) {
    if value.value.0 < min || value.value.0 > max {
        problems.push(Problem {
            line: value.referenced.line(),
            key,
            message: format!(
                "{} is out of range: expected from {} to {}",
                value.value,
                ConfigDuration(min),
                ConfigDuration(max)
            ),
        });
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = reload::read_bounded(path).map_err(ConfigError::from)?;
        Self::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = serde_saphyr::from_str(text).map_err(|e| {
            let key = e.location().and_then(|at| {
                key_path_at(text, at.line(), e.to_string().contains("missing field"))
            });
            ConfigError::Invalid(match key {
                Some(key) => format!("key `{key}`: {e}"),
                None => e.to_string(),
            })
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            let lines: Vec<String> = problems
                .into_iter()
                .map(|p| {
                    let at = if p.line > 0 {
                        format!("line {}: ", p.line)
                    } else {
                        String::new()
                    };
                    format!("  {at}{}: {}", p.key, p.message)
                })
                .collect();
            Err(ConfigError::Invalid(lines.join("\n")))
        }
    }

    /// Checks across fields that serde cannot see one at a time.
    fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        check_duration(
            &mut problems,
            "prometheus.timeout".into(),
            &self.prometheus.timeout,
            Duration::from_millis(100),
            Duration::from_secs(30),
        );
        check_duration(
            &mut problems,
            "evaluation.cache_ttl".into(),
            &self.evaluation.cache_ttl,
            Duration::ZERO,
            Duration::from_secs(300),
        );
        check_duration(
            &mut problems,
            "evaluation.push_interval".into(),
            &self.evaluation.push_interval,
            Duration::from_millis(100),
            Duration::from_secs(3600),
        );
        check_duration(
            &mut problems,
            "server.handshake_timeout".into(),
            &self.server.handshake_timeout,
            Duration::from_millis(100),
            Duration::from_secs(300),
        );
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            problems.push(Problem {
                line: 0,
                key: "server.max_connections".into(),
                message: format!(
                    "{} is out of range: expected from 1 to 1000000",
                    self.server.max_connections
                ),
            });
        }
        if !(1..=1_000_000).contains(&self.server.max_concurrent_streams) {
            problems.push(Problem {
                line: 0,
                key: "server.max_concurrent_streams".into(),
                message: format!(
                    "{} is out of range: expected from 1 to 1000000",
                    self.server.max_concurrent_streams
                ),
            });
        }
        let prometheus = &self.prometheus;
        for (key, least, most) in PROMETHEUS_LIMITS {
            let value = match key {
                "max_response_bytes" => prometheus.max_response_bytes,
                "max_series" => prometheus.max_series,
                _ => prometheus.max_connections,
            };
            if !(least..=most).contains(&value) {
                problems.push(Problem {
                    line: 0,
                    key: format!("prometheus.{key}"),
                    message: format!("{value} is out of range: expected from {least} to {most}"),
                });
            }
        }
        if prometheus.bearer_token_file.is_some() && prometheus.basic_auth.is_some() {
            problems.push(Problem {
                line: 0,
                key: "prometheus.bearer_token_file".into(),
                message: "and prometheus.basic_auth are both set: expected at most one".into(),
            });
        }
        for (name, value) in &prometheus.headers {
            let problem = if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                Some("is not a valid HTTP header name".to_owned())
            } else if name.eq_ignore_ascii_case("authorization") {
                Some("is not allowed here: use bearer_token_file or basic_auth".to_owned())
            } else if http::HeaderValue::from_str(value).is_err() {
                Some(format!(
                    "value `{}` is not a valid HTTP header value",
                    value.escape_debug()
                ))
            } else {
                None
            };
            if let Some(message) = problem {
                problems.push(Problem {
                    line: 0,
                    key: format!("prometheus.headers.{name}"),
                    message,
                });
            }
        }
        check_duration(
            &mut problems,
            "evaluation.max_staleness".into(),
            &self.evaluation.max_staleness,
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        for (name, profile) in &self.profiles {
            check_duration(
                &mut problems,
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
            match (&profile.queries, profile.engine) {
                (None, Engine::Custom) => problems.push(Problem {
                    line: 0,
                    key: format!("profiles.{name}.queries"),
                    message: "is required with engine: custom (queue_depth, output_tokens_per_second, input_tokens_per_second, kv_cache_usage)".into(),
                }),
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
            let capacity = &profile.capacity;
            let needed = match profile.pool.reads_input_tokens() {
                true => capacity
                    .input_tokens_per_second
                    .is_none()
                    .then_some("input_tokens_per_second"),
                false => capacity
                    .output_tokens_per_second
                    .is_none()
                    .then_some("output_tokens_per_second"),
            };
            if capacity.input_term && capacity.input_tokens_per_second.is_none() {
                problems.push(Problem {
                    line: 0,
                    key: format!("profiles.{name}.capacity.input_term"),
                    message: "is true but capacity.input_tokens_per_second is not set: the input term divides the input token rate by it".into(),
                });
            }
            if let Some(points) = &capacity.profile {
                if let Err(message) = capacity::CapacityProfile::from_points(points) {
                    problems.push(Problem {
                        line: 0,
                        key: format!("profiles.{name}.capacity.profile"),
                        message,
                    });
                }
                if let Err(message) = crate::engine::length_support(profile.engine) {
                    problems.push(Problem {
                        line: 0,
                        key: format!("profiles.{name}.capacity.profile"),
                        message,
                    });
                }
            }
            anticipation::check_slos(&mut problems, name.as_str(), &profile.slos);
            for (i, slo) in profile.slos.iter().enumerate() {
                if let Err(message) = latency_support(profile, slo.signal) {
                    problems.push(Problem {
                        line: 0,
                        key: format!("profiles.{name}.slos[{i}].signal"),
                        message,
                    });
                }
            }
            if let Some(predictive) = &profile.predictive {
                anticipation::check_predictive(&mut problems, name.as_str(), predictive);
            }
            if let Some(key) = needed {
                problems.push(Problem {
                    line: 0,
                    key: format!("profiles.{name}.capacity.{key}"),
                    message: format!("is required for a {} pool", profile.pool.as_str()),
                });
            }
        }
        if self.profiles.is_empty() {
            problems.push(Problem {
                line: 0,
                key: "profiles".into(),
                message: "is empty: expected at least one profile".into(),
            });
        }
        problems
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles
            .iter()
            .find(|(key, _)| key.as_str() == name)
            .map(|(_, profile)| profile)
    }

    pub fn profile_names(&self) -> Vec<&str> {
        self.profiles.keys().map(ProfileName::as_str).collect()
    }
}

/// Whether a profile's engine exports the latency an SLO is set on: the preset says, or
/// for `custom`, whether the config gives its bucket query.
fn latency_support(profile: &Profile, signal: LatencySignal) -> Result<(), String> {
    if let Some(support) = crate::engine::latency_support(profile.engine, signal) {
        return support;
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

#[cfg(test)]
mod tests;
