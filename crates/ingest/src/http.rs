//! REST plumbing shared by the polling sources: GET with provider headers, 429 + Retry-After, a request pacer
//! for per-minute plan limits. Keys travel in headers only, and errors are stripped of URLs before logging.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use sparktrends_service::retry_after::parse_retry_after;
use tokio::time::Instant;

use crate::shutdown::Shutdown;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpOutcome {
    Body(String),
    /// HTTP 429: wait this long before the next request to this provider.
    RateLimited(Duration),
    Status(u16, String),
}

pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .user_agent("sparktrends-ingest")
        .build()?)
}

pub async fn get(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&'static str, &str)],
    default_retry: Duration,
) -> anyhow::Result<HttpOutcome> {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    // `without_url`: the URL holds no key by construction, but an error message has no business carrying it.
    let response = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("request failed: {}", e.without_url()))?;
    let status = response.status().as_u16();
    if status == 429 {
        return Ok(HttpOutcome::RateLimited(retry_after(
            response.headers(),
            default_retry,
        )));
    }
    let body = response
        .text()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read body: {}", e.without_url()))?;
    if (200..300).contains(&status) {
        Ok(HttpOutcome::Body(body))
    } else {
        Ok(HttpOutcome::Status(status, body))
    }
}

/// `Retry-After` as delta-seconds or an HTTP date; `default` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap, default: Duration) -> Duration {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| parse_retry_after(v.to_str().ok(), chrono::Utc::now()))
        .unwrap_or(default)
}

/// Spaces requests evenly: `per_minute` requests a minute at most, and an explicit pause (after a 429) holds
/// every later request back.
pub struct Pacer {
    spacing: Duration,
    next: Instant,
}

impl Pacer {
    pub fn per_minute(per_minute: f64) -> Self {
        let spacing = Duration::from_secs_f64(60.0 / per_minute.max(1e-3));
        Self {
            spacing,
            next: Instant::now(),
        }
    }

    /// Waits for the next slot; false if shutdown came first.
    pub async fn acquire(&mut self, shutdown: &Shutdown) -> bool {
        let now = Instant::now();
        if self.next > now && !shutdown.sleep(self.next - now).await {
            return false;
        }
        self.next = Instant::now().max(self.next) + self.spacing;
        !shutdown.is_triggered()
    }

    pub fn pause(&mut self, wait: Duration) {
        self.next = self.next.max(Instant::now() + wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_header_or_default() {
        // The parsing itself is sparktrends_service::retry_after's (tested there); this is the header plumbing.
        let mut headers = HeaderMap::new();
        assert_eq!(
            retry_after(&headers, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(
            retry_after(&headers, Duration::from_secs(60)),
            Duration::from_secs(2)
        );
    }

    #[tokio::test]
    async fn pacer_spaces_requests_and_honours_pauses() {
        let (_trigger, shutdown) = crate::shutdown::channel();
        let mut pacer = Pacer::per_minute(600.0); // one request per 100 ms
        let start = Instant::now();
        assert!(pacer.acquire(&shutdown).await);
        assert!(pacer.acquire(&shutdown).await);
        assert!(pacer.acquire(&shutdown).await);
        let spaced = Instant::now() - start;
        assert!(
            spaced >= Duration::from_millis(200) && spaced < Duration::from_millis(400),
            "{spaced:?}"
        );
        pacer.pause(Duration::from_millis(500));
        assert!(pacer.acquire(&shutdown).await);
        assert!(Instant::now() - start >= spaced + Duration::from_millis(500));
    }

    #[tokio::test]
    async fn pacer_gives_up_on_shutdown() {
        let (trigger, shutdown) = crate::shutdown::channel();
        let mut pacer = Pacer::per_minute(1.0);
        assert!(pacer.acquire(&shutdown).await);
        trigger.trigger();
        let start = Instant::now();
        assert!(!pacer.acquire(&shutdown).await);
        assert!(Instant::now() - start < Duration::from_secs(1));
    }
}
