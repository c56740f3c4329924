//! The Prometheus HTTP API as a [`MetricsSource`].
//!
//! Every answer is bounded before it is trusted: read at most `max_response_bytes`
//! (refused while it streams in, never buffered past the limit), at most `max_series`
//! series, only a 2xx status carries data, two series with one label set are a malformed
//! answer, and redirects are followed only within the configured origin (so headers and
//! credentials never leave it). At most `max_connections` queries are in flight at once.

use std::{
    collections::HashMap,
    error::Error as _,
    fmt,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, IgnoredAny, SeqAccess, Visitor},
};
use tokio::sync::Semaphore;

use super::api::{MetricsSource, Sample, SourceError, truncated};
use crate::{config::PrometheusConfig, query::AGO_LABEL};

/// Queries one Prometheus-compatible endpoint. A config reload that changes the
/// `prometheus` section swaps the client in place ([`Prometheus::reconfigure`]).
pub struct Prometheus {
    endpoint: RwLock<Arc<Endpoint>>,
}

/// One configuration of the endpoint.
struct Endpoint {
    http: reqwest::Client,
    /// `<url>/api/v1/query`.
    query_url: reqwest::Url,
    /// The base URL, named in errors instead of each query's full URL.
    url: String,
    /// Upper bound on a whole query, waiting for a connection and the body included.
    timeout: Duration,
    auth: Auth,
    limits: Limits,
    /// One permit per query in flight: at most `max_connections`.
    connections: Semaphore,
    /// The section this endpoint was built from, to skip rebuilding when it is unchanged.
    config: PrometheusConfig,
    /// The warnings last logged, and when.
    warned: std::sync::Mutex<Option<(String, std::time::Instant)>>,
}

/// What one answer may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of body.
    pub max_bytes: u64,
    /// Series in the result.
    pub max_series: u64,
}

impl Limits {
    /// The limits a config sets.
    pub fn of(config: &PrometheusConfig) -> Self {
        Self {
            max_bytes: config.max_response_bytes,
            max_series: config.max_series,
        }
    }
}

/// Credentials, read from their files on every query so rotation needs no restart.
enum Auth {
    None,
    Bearer(PathBuf),
    Basic {
        username: String,
        password_file: PathBuf,
    },
}

impl Prometheus {
    /// A client of the section's Prometheus; refuses an unreadable CA file.
    pub fn new(config: &PrometheusConfig) -> Result<Self, String> {
        Ok(Self {
            endpoint: RwLock::new(Arc::new(Endpoint::new(config)?)),
        })
    }

    /// Applies a changed `prometheus` section; an unchanged one is a no-op.
    pub fn reconfigure(&self, config: &PrometheusConfig) -> Result<(), String> {
        if self.current().config == *config {
            return Ok(());
        }
        let endpoint = Endpoint::new(config)?;
        *self.endpoint.write().expect("endpoint lock") = Arc::new(endpoint);
        Ok(())
    }

    fn current(&self) -> Arc<Endpoint> {
        self.endpoint.read().expect("endpoint lock").clone()
    }
}

impl Endpoint {
    fn new(config: &PrometheusConfig) -> Result<Self, String> {
        let timeout = config.timeout.value.0;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("prometheus.headers `{name}`: {e}"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| format!("prometheus.headers `{name}`: {e}"))?;
            headers.insert(name, value);
        }
        let base = reqwest::Url::parse(config.url.as_str())
            .map_err(|e| format!("prometheus.url `{}`: {e}", config.url.as_str()))?;
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .default_headers(headers)
            .redirect(same_origin_redirects(&base))
            .pool_max_idle_per_host(config.max_connections as usize)
            .user_agent(concat!("keda-llm-scaler/", env!("CARGO_PKG_VERSION")));
        if let Some(ca_file) = &config.ca_file {
            let pem = std::fs::read(ca_file)
                .map_err(|e| format!("prometheus.ca_file {}: {e}", ca_file.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("prometheus.ca_file {}: {e}", ca_file.display()))?;
            if certificates.is_empty() {
                return Err(format!(
                    "prometheus.ca_file {}: no PEM certificate in it",
                    ca_file.display()
                ));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let auth = match (&config.bearer_token_file, &config.basic_auth) {
            (Some(file), _) => Auth::Bearer(file.clone()),
            (None, Some(basic)) => Auth::Basic {
                username: basic.username.clone(),
                password_file: basic.password_file.clone(),
            },
            (None, None) => Auth::None,
        };
        Ok(Self {
            http,
            query_url: query_url(&base),
            url: config.url.as_str().to_owned(),
            timeout,
            auth,
            limits: Limits::of(config),
            connections: Semaphore::new(config.max_connections.max(1) as usize),
            config: config.clone(),
            warned: std::sync::Mutex::new(None),
        })
    }

    /// The Authorization header for this query, from the current credential files (read
    /// without blocking the runtime).
    async fn authorization(&self) -> Result<Option<HeaderValue>, SourceError> {
        async fn read(path: &PathBuf, what: &str) -> Result<String, SourceError> {
            tokio::fs::read_to_string(path)
                .await
                .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| {
                    SourceError::Auth(format!(
                        "cannot read the {what} file {}: {e}",
                        path.display()
                    ))
                })
        }
        let value = match &self.auth {
            Auth::None => return Ok(None),
            Auth::Bearer(file) => format!("Bearer {}", read(file, "bearer token").await?),
            Auth::Basic {
                username,
                password_file,
            } => {
                use base64::Engine as _;
                let password = read(password_file, "password").await?;
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                format!("Basic {encoded}")
            }
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            SourceError::Auth("the credential file holds characters not allowed in a header".into())
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

/// `<base>/api/v1/query`, keeping a path prefix the base URL has (a proxy's, Mimir's).
fn query_url(base: &reqwest::Url) -> reqwest::Url {
    let mut url = base.clone();
    let path = format!("{}/api/v1/query", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

/// Follows a redirect only to the configured origin (scheme, host and port), at most
/// five times: a redirect elsewhere is answered as the 3xx it is, which is not data.
fn same_origin_redirects(base: &reqwest::Url) -> reqwest::redirect::Policy {
    let origin = base.origin();
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 || attempt.url().origin() != origin {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

impl MetricsSource for Prometheus {
    async fn query(&self, promql: &str) -> Result<Vec<Sample>, SourceError> {
        self.query_at_time(promql, None).await
    }
}

impl Prometheus {
    /// The instant vector `promql` evaluated to at `at` (Unix seconds) in the past, as
    /// the service would have read it then (`calibrate` reads a fleet's history so).
    /// Its samples must be stamped within [`MAX_SAMPLE_SKEW_S`] of `at`.
    pub async fn query_at(&self, promql: &str, at: f64) -> Result<Vec<Sample>, SourceError> {
        self.query_at_time(promql, Some(at)).await
    }

    async fn query_at_time(
        &self,
        promql: &str,
        at: Option<f64>,
    ) -> Result<Vec<Sample>, SourceError> {
        let endpoint = self.current();
        // The client's timeout covers the transfer; this one also covers waiting for a
        // connection and a body that trickles in.
        tokio::time::timeout(endpoint.timeout, endpoint.query(promql, at))
            .await
            .map_err(|_| SourceError::Timeout(endpoint.timeout))?
    }
}

impl Endpoint {
    async fn query(&self, promql: &str, at: Option<f64>) -> Result<Vec<Sample>, SourceError> {
        let _permit = self
            .connections
            .acquire()
            .await
            .map_err(|_| SourceError::Unreachable("the client is closing".into()))?;
        let mut request = self
            .http
            .get(self.query_url.clone())
            .query(&[("query", promql)]);
        if let Some(at) = at {
            request = request.query(&[("time", format!("{at:.3}"))]);
        }
        if let Some(authorization) = self.authorization().await? {
            request = request.header(http::header::AUTHORIZATION, authorization);
        }
        let response = request
            .send()
            .await
            .map_err(|e| classify(&e, &self.url, self.timeout))?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(response, self.limits.max_bytes, &self.url, self.timeout).await?;
        let now = at.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        });
        let answered =
            parse_answer(status, &body, self.limits.max_series, now).map_err(|e| {
                match (e, location) {
                    (SourceError::BadResponse(message), Some(location))
                        if (300..400).contains(&status) =>
                    {
                        SourceError::BadResponse(format!(
                            "{message}; the redirect to {} is not followed: it leaves {}",
                            truncated(&location),
                            self.url
                        ))
                    }
                    (e, _) => e,
                }
            })?;
        if !answered.warnings.is_empty() {
            self.warn(&answered.warnings.join("; "));
        }
        Ok(answered.samples)
    }

    /// Logs Prometheus' warnings about an answer it gave (the same text at most once a
    /// minute): the answer is used, but whoever reads the log should know.
    fn warn(&self, warnings: &str) {
        let mut last = self.warned.lock().expect("warned lock");
        let repeat = last
            .as_ref()
            .is_some_and(|(text, at)| text == warnings && at.elapsed() < Duration::from_secs(60));
        if !repeat {
            tracing::warn!(url = %self.url, %warnings, "Prometheus answered with warnings");
            *last = Some((warnings.to_owned(), std::time::Instant::now()));
        }
    }
}

/// The body, refused as soon as it passes `max_bytes` (announced or streamed).
async fn read_limited(
    mut response: reqwest::Response,
    max_bytes: u64,
    url: &str,
    timeout: Duration,
) -> Result<Vec<u8>, SourceError> {
    let too_large = |size: String| {
        SourceError::BadResponse(format!(
            "{url}: the answer is {size} bytes, over prometheus.max_response_bytes ({max_bytes})"
        ))
    };
    let mut body = LimitedBody::new(max_bytes, response.content_length())
        .map_err(|length| too_large(length.to_string()))?;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| classify(&e, url, timeout))?
    {
        body.push(&chunk)
            .map_err(|OverLimit(limit)| too_large(format!("more than {limit}")))?;
    }
    Ok(body.into_bytes())
}

/// A body passed its limit (the limit, in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the answer is more than {0} bytes")]
pub struct OverLimit(pub u64);

/// A body read chunk by chunk that never holds more than its limit.
#[derive(Debug)]
pub struct LimitedBody {
    max_bytes: u64,
    bytes: Vec<u8>,
}

impl LimitedBody {
    /// A body of at most `max_bytes`; one announced as larger (`Content-Length`) is
    /// refused before a byte is read, with its announced length.
    pub fn new(max_bytes: u64, announced: Option<u64>) -> Result<Self, u64> {
        match announced {
            Some(length) if length > max_bytes => Err(length),
            // Trust an announcement only as far as the limit.
            Some(length) => Ok(Self {
                max_bytes,
                bytes: Vec::with_capacity(length as usize),
            }),
            None => Ok(Self {
                max_bytes,
                bytes: Vec::new(),
            }),
        }
    }

    /// Appends a chunk, or refuses it (keeping nothing of it) when it would pass the
    /// limit.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), OverLimit> {
        if self.bytes.len() as u64 + chunk.len() as u64 > self.max_bytes {
            return Err(OverLimit(self.max_bytes));
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// The body read so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// An answer of the query API, as Prometheus writes it.
#[derive(Deserialize)]
struct Answer<'a> {
    status: String,
    #[serde(default, borrow)]
    data: Option<RawData<'a>>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    /// What Prometheus says about an answer it gave anyway (a partial result from a
    /// store that timed out, say).
    #[serde(default)]
    warnings: Vec<String>,
}

/// How far a sample's timestamp may be from now. An instant query's samples carry the
/// time Prometheus evaluated it at: far from now is a cached or replayed answer, or two
/// clocks that disagree, and either way not the fleet as it is.
pub const MAX_SAMPLE_SKEW_S: f64 = 300.0;

/// A successful answer: its samples, and the warnings Prometheus gave with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    /// The instant vector.
    pub samples: Vec<Sample>,
    /// Prometheus' warnings, passed on to the log.
    pub warnings: Vec<String>,
}

/// `data` before its result is read: the result's shape depends on `resultType`. The
/// result stays a slice of the body, not a copy.
#[derive(Deserialize)]
struct RawData<'a> {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(borrow)]
    result: &'a serde_json::value::RawValue,
}

/// One series of an instant vector.
#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: HashMap<String, String>,
    value: (f64, String),
}

/// One series of a range vector (a subquery's answer).
#[derive(Deserialize)]
struct RangeSeries {
    #[serde(default)]
    metric: HashMap<String, String>,
    values: Vec<(f64, String)>,
}

/// The most samples one series of a range vector may hold: Prometheus' own limit on the
/// points of a range query's series.
pub const MAX_RANGE_POINTS: usize = 11_000;

/// Reads a vector's (or a range vector's) series, failing at the first one past the
/// limit.
struct BoundedSeries<T>(u64, std::marker::PhantomData<T>);

impl<T> BoundedSeries<T> {
    fn new(max_series: u64) -> Self {
        Self(max_series, std::marker::PhantomData)
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for BoundedSeries<T> {
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedSeries<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list of at most {} series", self.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut series = Vec::new();
        while let Some(one) = seq.next_element::<T>()? {
            if series.len() as u64 >= self.0 {
                return Err(serde::de::Error::custom(format!(
                    "more than prometheus.max_series ({}) series",
                    self.0
                )));
            }
            series.push(one);
        }
        Ok(series)
    }
}

/// The samples of an answer with HTTP status `status` read at `now` (Unix seconds): only
/// a 2xx `success` with an instant vector (or a scalar) stamped within
/// [`MAX_SAMPLE_SKEW_S`] of `now` is data.
pub fn parse_answer(
    status: u16,
    body: &[u8],
    max_series: u64,
    now: f64,
) -> Result<Answered, SourceError> {
    let answer: Answer = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(_) if !(200..300).contains(&status) => {
            return Err(SourceError::BadResponse(format!(
                "HTTP {status}, and the body is not Prometheus' JSON"
            )));
        }
        Err(e) => {
            return Err(SourceError::BadResponse(format!(
                "not Prometheus' JSON: {e}"
            )));
        }
    };
    if answer.status == "error" {
        return Err(SourceError::Query {
            kind: answer.error_type.unwrap_or_else(|| "unknown".into()),
            message: truncated(&answer.error.unwrap_or_default()),
        });
    }
    if !(200..300).contains(&status) {
        return Err(SourceError::BadResponse(format!(
            "HTTP {status}: an answer with a non-2xx status is not data, whatever its body says"
        )));
    }
    let data = match (answer.status.as_str(), answer.data) {
        ("success", Some(data)) => data,
        (other, _) => {
            return Err(SourceError::BadResponse(format!(
                "status `{}` without data",
                truncated(other)
            )));
        }
    };
    let samples = match data.result_type.as_str() {
        "vector" => {
            let mut deserializer = serde_json::Deserializer::from_str(data.result.get());
            let series: Vec<Series> = BoundedSeries::new(max_series)
                .deserialize(&mut deserializer)
                .map_err(|e| SourceError::BadResponse(format!("a malformed vector: {e}")))?;
            if let Some(one) = series
                .iter()
                .find(|s| (s.value.0 - now).abs() > MAX_SAMPLE_SKEW_S)
            {
                return Err(skewed(one.value.0, now));
            }
            vector_samples(series)?
        }
        "matrix" => {
            let mut deserializer = serde_json::Deserializer::from_str(data.result.get());
            let series: Vec<RangeSeries> = BoundedSeries::new(max_series)
                .deserialize(&mut deserializer)
                .map_err(|e| SourceError::BadResponse(format!("a malformed matrix: {e}")))?;
            range_samples(series, now)?
        }
        "scalar" => {
            let (at, value): (f64, String) = serde_json::from_str(data.result.get())
                .map_err(|e| SourceError::BadResponse(format!("a malformed scalar: {e}")))?;
            if (at - now).abs() > MAX_SAMPLE_SKEW_S {
                return Err(skewed(at, now));
            }
            vec![Sample {
                labels: HashMap::new(),
                value: parse_value(&value)?,
            }]
        }
        other => {
            let _: Result<IgnoredAny, _> = serde_json::from_str(data.result.get());
            return Err(SourceError::BadResponse(format!(
                "a {}, not an instant vector",
                truncated(other)
            )));
        }
    };
    Ok(Answered {
        samples,
        warnings: answer.warnings.iter().map(|w| truncated(w)).collect(),
    })
}

fn skewed(at: f64, now: f64) -> SourceError {
    SourceError::BadResponse(format!(
        "a sample is stamped {:.0} s from now: a cached or replayed answer, or Prometheus' clock and the scaler's disagree (they must agree within {MAX_SAMPLE_SKEW_S} s)",
        at - now
    ))
}

/// A range vector's samples, each series' points as samples of their own that carry
/// [`AGO_LABEL`]: how many whole seconds before `now` they were taken. No point may be
/// stamped after now (beyond the allowed skew), and a series holds at most
/// [`MAX_RANGE_POINTS`].
fn range_samples(series: Vec<RangeSeries>, now: f64) -> Result<Vec<Sample>, SourceError> {
    let mut samples = Vec::new();
    for one in series {
        if one.values.len() > MAX_RANGE_POINTS {
            return Err(SourceError::BadResponse(format!(
                "a series of {} points: at most {MAX_RANGE_POINTS} are read",
                one.values.len()
            )));
        }
        for (at, value) in one.values {
            if at - now > MAX_SAMPLE_SKEW_S {
                return Err(skewed(at, now));
            }
            let mut labels = one.metric.clone();
            labels.insert(
                AGO_LABEL.to_owned(),
                format!("{:.0}", (now - at).max(0.0).floor()),
            );
            samples.push(Series {
                metric: labels,
                value: (at, value),
            });
        }
    }
    vector_samples(samples)
}

/// The samples of a vector; two series with the same labels make it malformed
/// (Prometheus never answers that; a proxy merging answers can). Label sets are told
/// apart by a hash (no copy of them is kept), compared in full on a collision.
fn vector_samples(series: Vec<Series>) -> Result<Vec<Sample>, SourceError> {
    use std::hash::BuildHasher;
    let hasher = std::collections::hash_map::RandomState::new();
    let fingerprint = |labels: &HashMap<String, String>| {
        let mut pairs: Vec<(&String, &String)> = labels.iter().collect();
        pairs.sort();
        hasher.hash_one(&pairs)
    };
    let mut seen: HashMap<u64, Vec<usize>> = HashMap::with_capacity(series.len());
    let mut samples: Vec<Sample> = Vec::with_capacity(series.len());
    for one in series {
        let same = seen.entry(fingerprint(&one.metric)).or_default();
        if same.iter().any(|&i| samples[i].labels == one.metric) {
            return Err(SourceError::BadResponse(format!(
                "two series with the same labels {}",
                truncated(&format!("{:?}", one.metric))
            )));
        }
        same.push(samples.len());
        samples.push(Sample {
            labels: one.metric,
            value: parse_value(&one.value.1)?,
        });
    }
    Ok(samples)
}

/// A sample value as Prometheus writes it: `"1.5"`, `"NaN"`, `"+Inf"`, `"-Inf"`. A
/// non-finite value is passed on: the demand model refuses it with the signal's name.
fn parse_value(text: &str) -> Result<f64, SourceError> {
    text.parse::<f64>().map_err(|_| {
        SourceError::BadResponse(format!(
            "sample value `{}` is not a number",
            truncated(text)
        ))
    })
}

fn classify(error: &reqwest::Error, url: &str, timeout: Duration) -> SourceError {
    if error.is_timeout() {
        SourceError::Timeout(timeout)
    } else if error.is_connect() || error.is_request() {
        SourceError::Unreachable(format!("{url}: {}", causes(error)))
    } else {
        SourceError::BadResponse(format!("{url}: {}", causes(error)))
    }
}

/// What went wrong under a reqwest error, on one line, without the query's URL
/// (it repeats the PromQL, which Explain already shows).
fn causes(error: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    if parts.is_empty() {
        error.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_never_holds_more_than_its_limit() {
        assert_eq!(LimitedBody::new(10, Some(11)).unwrap_err(), 11);
        let mut body = LimitedBody::new(10, None).unwrap();
        body.push(b"01234").unwrap();
        body.push(b"5678").unwrap();
        assert_eq!(body.push(b"9a"), Err(OverLimit(10)));
        body.push(b"9").unwrap();
        assert_eq!(body.into_bytes(), b"0123456789");
    }

    #[test]
    fn only_a_2xx_success_stamped_now_is_data() {
        let now = 1_800_000_000.0;
        let answer = |at: f64| {
            format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"pod":"a"}},"value":[{at},"1.5"]}}]}}}}"#
            )
        };
        let good = parse_answer(200, answer(now - 10.0).as_bytes(), 10, now).unwrap();
        assert_eq!(good.samples[0].value, 1.5);
        assert!(parse_answer(503, answer(now).as_bytes(), 10, now).is_err());
        assert!(parse_answer(200, answer(now - 301.0).as_bytes(), 10, now).is_err());
        assert!(parse_answer(200, answer(now).as_bytes(), 0, now).is_err());
        let scalar = format!(
            r#"{{"status":"success","data":{{"resultType":"scalar","result":[{now},"NaN"]}}}}"#
        );
        assert!(
            parse_answer(200, scalar.as_bytes(), 10, now)
                .unwrap()
                .samples[0]
                .value
                .is_nan()
        );
        let string = r#"{"status":"success","data":{"resultType":"string","result":[1,"a"]}}"#;
        assert!(parse_answer(200, string.as_bytes(), 10, now).is_err());
    }

    #[test]
    fn a_range_vector_is_read_as_samples_that_say_how_old_they_are() {
        let now = 1_800_000_042.5;
        let matrix = |points: &str| {
            format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"llm_scaler_period":"1"}},"values":[{points}]}}]}}}}"#
            )
        };
        let answered = parse_answer(
            200,
            matrix(r#"[1799999400,"2"],[1800000000,"3"]"#).as_bytes(),
            10,
            now,
        )
        .unwrap();
        let ages: Vec<(&str, f64)> = answered
            .samples
            .iter()
            .map(|s| (s.labels[AGO_LABEL].as_str(), s.value))
            .collect();
        assert_eq!(ages, [("642", 2.0), ("42", 3.0)]);
        assert!(
            answered
                .samples
                .iter()
                .all(|s| s.labels["llm_scaler_period"] == "1")
        );
        // A point from the future is not the fleet as it was.
        assert!(parse_answer(200, matrix(r#"[1800001000,"1"]"#).as_bytes(), 10, now).is_err());
        // The series limit holds for range vectors too, and so does one on points.
        assert!(parse_answer(200, matrix(r#"[1800000000,"1"]"#).as_bytes(), 0, now).is_err());
        let many = vec![r#"[1800000000,"1"]"#; MAX_RANGE_POINTS + 1].join(",");
        assert!(parse_answer(200, matrix(&many).as_bytes(), 10, now).is_err());
    }
}
