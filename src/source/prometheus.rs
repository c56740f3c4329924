//! The Prometheus HTTP API as a [`MetricsSource`].

use std::{error::Error as _, time::Duration};

use prometheus_http_query::{Client, Error, response::Data};

use super::{MetricsSource, Sample, SourceError};
use crate::config::PrometheusConfig;

/// Queries one Prometheus-compatible endpoint.
#[derive(Clone)]
pub struct Prometheus {
    client: Client,
    /// The base URL, named in errors instead of each query's full URL.
    url: String,
    /// Upper bound on a whole query, connection included.
    timeout: Duration,
}

impl Prometheus {
    pub fn new(config: &PrometheusConfig) -> Result<Self, String> {
        let timeout = config.timeout.value.0;
        let http = prometheus_http_query::reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("keda-llm-scaler/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let client = Client::from(http, config.url.as_str())
            .map_err(|e| format!("prometheus.url `{}`: {e}", config.url.as_str()))?;
        Ok(Self {
            client,
            url: config.url.as_str().to_owned(),
            timeout,
        })
    }
}

impl MetricsSource for Prometheus {
    async fn query(&self, promql: &str) -> Result<Vec<Sample>, SourceError> {
        // The HTTP client's timeout covers the transfer; this one also covers a slow body.
        let answer = tokio::time::timeout(self.timeout, self.client.query(promql).get())
            .await
            .map_err(|_| SourceError::Timeout(self.timeout))?;
        let result = answer.map_err(|e| classify(e, &self.url, self.timeout))?;
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
