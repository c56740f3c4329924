//! The Prometheus HTTP API as a [`MetricsSource`].

use std::{
    error::Error as _,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use http::{HeaderMap, HeaderName, HeaderValue};

use prometheus_http_query::{
    Client, Error,
    response::{Data, PromqlResult},
};

use super::{MetricsSource, Sample, SourceError};
use crate::config::PrometheusConfig;

/// Queries one Prometheus-compatible endpoint. A config reload that changes the
/// `prometheus` section swaps the client in place ([`Prometheus::reconfigure`]).
pub struct Prometheus {
    endpoint: RwLock<Arc<Endpoint>>,
}

/// One configuration of the endpoint.
struct Endpoint {
    client: Client,
    /// The base URL, named in errors instead of each query's full URL.
    url: String,
    /// Upper bound on a whole query, connection included.
    timeout: Duration,
    auth: Auth,
    /// The section this endpoint was built from, to skip rebuilding when it is unchanged.
    config: PrometheusConfig,
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
        let mut builder = prometheus_http_query::reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .default_headers(headers)
            .user_agent(concat!("keda-llm-scaler/", env!("CARGO_PKG_VERSION")));
        if let Some(ca_file) = &config.ca_file {
            let pem = std::fs::read(ca_file)
                .map_err(|e| format!("prometheus.ca_file {}: {e}", ca_file.display()))?;
            let certificates =
                prometheus_http_query::reqwest::Certificate::from_pem_bundle(&pem)
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
        let client = Client::from(http, config.url.as_str())
            .map_err(|e| format!("prometheus.url `{}`: {e}", config.url.as_str()))?;
        let auth = match (&config.bearer_token_file, &config.basic_auth) {
            (Some(file), _) => Auth::Bearer(file.clone()),
            (None, Some(basic)) => Auth::Basic {
                username: basic.username.clone(),
                password_file: basic.password_file.clone(),
            },
            (None, None) => Auth::None,
        };
        Ok(Self {
            client,
            url: config.url.as_str().to_owned(),
            timeout,
            auth,
            config: config.clone(),
        })
    }

    /// The Authorization header for this query, from the current credential files.
    fn authorization(&self) -> Result<Option<HeaderValue>, SourceError> {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read_to_string(path)
                .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| {
                    SourceError::Auth(format!(
                        "cannot read the {what} file {}: {e}",
                        path.display()
                    ))
                })
        };
        let value = match &self.auth {
            Auth::None => return Ok(None),
            Auth::Bearer(file) => format!("Bearer {}", read(file, "bearer token")?),
            Auth::Basic {
                username,
                password_file,
            } => {
                use base64::Engine as _;
                let password = read(password_file, "password")?;
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

impl MetricsSource for Prometheus {
    async fn query(&self, promql: &str) -> Result<Vec<Sample>, SourceError> {
        let endpoint = self.current();
        let mut request = endpoint.client.query(promql);
        if let Some(authorization) = endpoint.authorization()? {
            request = request.header(http::header::AUTHORIZATION, authorization);
        }
        // The HTTP client's timeout covers the transfer; this one also covers a slow body.
        let answer = tokio::time::timeout(endpoint.timeout, request.get())
            .await
            .map_err(|_| SourceError::Timeout(endpoint.timeout))?;
        let result = answer.map_err(|e| classify(e, &endpoint.url, endpoint.timeout))?;
        samples_from(result)
    }
}

/// The samples of an instant query's answer; a range vector is not one.
pub fn samples_from(result: PromqlResult) -> Result<Vec<Sample>, SourceError> {
    match result.into_inner().0 {
        Data::Vector(vector) => Ok(vector
            .into_iter()
            .map(|series| {
                let (labels, sample) = series.into_inner();
                Sample {
                    labels,
                    value: sample.value(),
                }
            })
            .collect()),
        Data::Scalar(sample) => Ok(vec![Sample {
            labels: Default::default(),
            value: sample.value(),
        }]),
        Data::Matrix(_) => Err(SourceError::BadResponse("a range vector".into())),
    }
}

fn classify(error: Error, url: &str, timeout: Duration) -> SourceError {
    match &error {
        Error::Prometheus(e) => SourceError::Query {
            kind: e.error_type().to_string(),
            message: e.message().to_owned(),
        },
        Error::Client(e) => match e.inner() {
            Some(inner) if inner.is_timeout() => SourceError::Timeout(timeout),
            Some(inner) if inner.is_connect() || inner.is_request() => {
                SourceError::Unreachable(format!("{url}: {}", causes(inner)))
            }
            // A body that is not Prometheus JSON: a proxy's HTML page, a wrong URL.
            Some(inner) => SourceError::BadResponse(format!("{url}: {e}: {}", causes(inner))),
            None => SourceError::BadResponse(format!("{url}: {e}")),
        },
        _ => SourceError::BadResponse(format!("{url}: {error}")),
    }
}

/// What went wrong under a reqwest error, on one line, without the query's URL
/// (it repeats the PromQL, which Explain already shows).
fn causes(error: &prometheus_http_query::reqwest::Error) -> String {
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
