//! The ConfigMap: one YAML file that names the Prometheus to ask and the profiles
//! ScaledObjects refer to. Parsing rejects unknown keys and out-of-range values with
//! the line, the key and what is allowed; a config that loads is safe to serve.

pub mod advanced;
pub mod anticipation;
pub mod capacity;
pub mod duration;
mod keypath;
pub mod metadata;
mod read;
pub mod reload;
pub mod scaledobject;
mod validate;
mod values;

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde::Deserialize;
use serde_saphyr::Spanned;

pub use crate::engine::{Engine, LatencySignal, Pool};
pub use anticipation::{PredictiveConfig, SloConfig};
pub use duration::{ConfigDuration, DURATION_FORMS};
use values::unspanned;
pub use values::{HttpUrl, KvTarget, LabelName, NonNegative, Positive, ProfileName, Share};

/// A configuration that parsed and passed every check. [`Config::parse`] and
/// [`Config::load`] are the only ways to build one, so code holding a `Config` may rely
/// on every validated value; its fields are read through [`ConfigFile`].
#[derive(Debug, Clone)]
pub struct Config(ConfigFile);

impl std::ops::Deref for Config {
    type Target = ConfigFile;

    fn deref(&self) -> &ConfigFile {
        &self.0
    }
}

/// The whole configuration file as written, before the checks across fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
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
    /// The server's certificate chain.
    pub cert_file: std::path::PathBuf,
    /// Its private key.
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
    /// The user name.
    pub username: String,
    /// A file holding the password, re-read on every query (rotated secrets apply).
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
    /// The call answers UNAVAILABLE, and KEDA's fallback takes over.
    #[default]
    Fail,
    /// The terms that need the failed query are left out and listed.
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
    /// What counts as a short answer for the profile's `short_output_share`: at most
    /// this many output tokens (a bucket bound of the engine's output-length histogram
    /// reads exactly; between bounds the share is interpolated).
    #[serde(default = "capacity::default_short_output_tokens")]
    pub short_output_tokens: Positive,
    /// And at least this many (default 1: every answer up to `short_output_tokens`).
    /// 2 leaves out one-token answers, which have no time per output token to miss.
    #[serde(default = "capacity::default_short_output_min_tokens")]
    pub short_output_min_tokens: Positive,
}

impl Capacity {
    /// Which answers count as short for the profile's `short_output_share`.
    pub fn short_answers(&self) -> capacity::ShortAnswers {
        capacity::ShortAnswers {
            min_tokens: self.short_output_min_tokens.0,
            max_tokens: self.short_output_tokens.0,
        }
    }
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
    /// Optional: the `_bucket` series of each request's prompt-length histogram in tokens
    /// (vLLM's `request_prompt_tokens`). With it, a `tpot` SLO that sets
    /// `floor_context_tokens` acts only on the misses sharing a replica caused.
    #[serde(default)]
    pub prompt_tokens_buckets: Option<String>,
}

/// How per-replica KV usage becomes one K.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvAggregate {
    /// The mean over replicas.
    #[default]
    Mean,
    /// The fullest replica.
    Max,
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
    LabelName::pod()
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

/// A config file that could not be loaded; the message carries every problem found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be opened or read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Every problem found, one per line, each with its line, key, value and what is
    /// allowed.
    #[error("invalid config:\n{0}")]
    Invalid(String),
    /// Not readable as a config: too large, not text, or too slow to read.
    #[error("cannot read the config: {0}")]
    Unreadable(read::ReadError),
}

impl From<read::ReadError> for ConfigError {
    fn from(error: read::ReadError) -> Self {
        match error {
            read::ReadError::Io { path, source } => ConfigError::Read { path, source },
            read::ReadError::NotFound(path) => ConfigError::Read {
                path,
                source: std::io::ErrorKind::NotFound.into(),
            },
            other => ConfigError::Unreadable(other),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read::read_bounded(path).map_err(ConfigError::from)?;
        Self::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: ConfigFile = serde_saphyr::from_str(text).map_err(|e| {
            let key = e.location().and_then(|at| {
                keypath::key_path_at(text, at.line(), e.to_string().contains("missing field"))
            });
            ConfigError::Invalid(match key {
                Some(key) => format!("key `{key}`: {e}"),
                None => e.to_string(),
            })
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(Config(config))
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
}

#[cfg(test)]
mod tests;
