//! The caller's deadline, from the `grpc-timeout` header: an answer that arrives after
//! it is worth nothing to KEDA, so a slow evaluation becomes UNAVAILABLE just before it.

use std::{future::Future, time::Duration};

use tonic::{Status, metadata::MetadataMap};

/// Kept back from the caller's deadline for the answer's trip back.
const MARGIN: Duration = Duration::from_millis(100);

/// The `grpc-timeout` value: 1 to 8 digits and a unit (H, M, S, m, u, n).
pub fn caller_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// Runs `work` within the caller's deadline (less a margin), or answers UNAVAILABLE.
pub async fn within<T>(
    timeout: Option<Duration>,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let Some(timeout) = timeout else {
        return work.await;
    };
    let budget = timeout.saturating_sub(MARGIN.min(timeout / 10));
    match tokio::time::timeout(budget, work).await {
        Ok(result) => result,
        Err(_) => Err(Status::unavailable(format!(
            "no evaluation finished within the caller's deadline of {timeout:?}: Prometheus is slow"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", value.parse().unwrap());
        metadata
    }

    #[test]
    fn parses_every_unit() {
        for (text, expected) in [
            ("3S", Duration::from_secs(3)),
            ("2999m", Duration::from_millis(2999)),
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("500u", Duration::from_micros(500)),
            ("7n", Duration::from_nanos(7)),
        ] {
            assert_eq!(caller_timeout(&with_header(text)), Some(expected), "{text}");
        }
    }

    #[test]
    fn ignores_what_is_not_a_timeout() {
        for text in ["", "S", "3", "3s", "123456789S", "-1S", "1.5S"] {
            assert_eq!(caller_timeout(&with_header(text)), None, "{text}");
        }
        assert_eq!(caller_timeout(&MetadataMap::new()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_work_is_unavailable_before_the_deadline() {
        let started = tokio::time::Instant::now();
        let slow = async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, Status>(1)
        };
        let status = within(Some(Duration::from_secs(3)), slow)
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(started.elapsed(), Duration::from_millis(2900));
        let fast = async { Ok::<_, Status>(2) };
        assert_eq!(within(Some(Duration::from_secs(3)), fast).await.unwrap(), 2);
        let unbounded = async { Ok::<_, Status>(3) };
        assert_eq!(within(None, unbounded).await.unwrap(), 3);
    }
}
