//! The webhook POST and what Slack's answer means for the outbox row.
//!
//! Slack incoming webhooks answer `200 ok`, `400 invalid_payload`, `403 action_prohibited`, `404 no_service`,
//! `410 channel_is_archived` (text bodies), `429` with `Retry-After`, or a 5xx. Only a 2xx is a delivery.
//! The URL is a secret: errors are stripped of it (`without_url`) and scrubbed again before anyone sees them.

use std::error::Error as _;
use std::time::Duration;

use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;

use sparktrends_service::retry_after::parse_retry_after;
use sparktrends_service::secret::Secret;

/// Longest slice of Slack's reply body kept in `last_error`.
const MAX_REASON_CHARS: usize = 300;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// 429: come back after `wait`; no other message should be posted before then either.
    RateLimited {
        wait: Duration,
        reason: String,
    },
    /// 5xx, 408, timeout, connection error: retry with backoff.
    Retryable {
        reason: String,
    },
    /// Any other answer: retrying would get the same one.
    Permanent {
        reason: String,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct RateLimitPolicy {
    /// Used when a 429 has no readable Retry-After.
    pub default_wait: Duration,
    /// A ceiling, so a bogus header cannot park the alerter for a day.
    pub max_wait: Duration,
}

/// Meaning of an HTTP answer, as a pure function of status, Retry-After and body.
pub fn classify(
    status: u16,
    retry_after: Option<&str>,
    body: &str,
    policy: RateLimitPolicy,
) -> Outcome {
    let reason = || {
        let body = body.trim();
        let body: String = body.chars().take(MAX_REASON_CHARS).collect();
        if body.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {body}")
        }
    };
    match status {
        200..=299 => Outcome::Delivered,
        429 => {
            let wait = parse_retry_after(retry_after, Utc::now())
                .unwrap_or(policy.default_wait)
                .min(policy.max_wait);
            Outcome::RateLimited {
                wait,
                reason: format!("{} (retry after {:.1}s)", reason(), wait.as_secs_f64()),
            }
        }
        408 | 500..=599 => Outcome::Retryable { reason: reason() },
        _ => Outcome::Permanent { reason: reason() },
    }
}

pub struct Webhook {
    client: reqwest::Client,
    url: Secret,
    timeout: Duration,
    rate_limit: RateLimitPolicy,
}

impl Webhook {
    pub fn new(
        url: Secret,
        timeout: Duration,
        rate_limit: RateLimitPolicy,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            // A redirect would carry the payload (and our trust) to another host; Slack never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sparktrends-alerter/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot build the HTTP client: {}",
                    url.scrub(&describe(&e.without_url()))
                )
            })?;
        Ok(Self {
            client,
            url,
            timeout,
            rate_limit,
        })
    }

    pub async fn post(&self, payload: &Value) -> Outcome {
        let body = serde_json::to_vec(payload).expect("a serde_json::Value always serialises");
        let sent = self
            .client
            .post(self.url.expose())
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Outcome::Retryable {
                    reason: self.url.scrub(&self.transport_reason(error)),
                }
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The status alone decides a 2xx; a body that fails to arrive must not turn a delivery into a retry.
        let text = response.text().await.unwrap_or_default();
        match classify(status, retry_after.as_deref(), &text, self.rate_limit) {
            Outcome::RateLimited { wait, reason } => Outcome::RateLimited {
                wait,
                reason: self.url.scrub(&reason),
            },
            Outcome::Retryable { reason } => Outcome::Retryable {
                reason: self.url.scrub(&reason),
            },
            Outcome::Permanent { reason } => Outcome::Permanent {
                reason: self.url.scrub(&reason),
            },
            Outcome::Delivered => Outcome::Delivered,
        }
    }

    fn transport_reason(&self, error: reqwest::Error) -> String {
        if error.is_timeout() {
            format!(
                "timeout: no answer within {:.1}s",
                self.timeout.as_secs_f64()
            )
        } else if error.is_connect() {
            format!("connection error: {}", describe(&error.without_url()))
        } else {
            format!("request error: {}", describe(&error.without_url()))
        }
    }
}

/// The error and its causes on one line ("error sending request: tcp connect error: Connection refused").
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RateLimitPolicy = RateLimitPolicy {
        default_wait: Duration::from_secs(30),
        max_wait: Duration::from_secs(600),
    };

    #[test]
    fn success_is_any_2xx() {
        assert_eq!(classify(200, None, "ok", POLICY), Outcome::Delivered);
        assert_eq!(classify(204, None, "", POLICY), Outcome::Delivered);
    }

    #[test]
    fn slack_4xx_are_permanent_and_keep_slacks_reason() {
        for (status, body) in [
            (400, "invalid_payload"),
            (403, "action_prohibited"),
            (404, "no_service"),
            (410, "channel_is_archived"),
        ] {
            assert_eq!(
                classify(status, None, &format!("{body}\n"), POLICY),
                Outcome::Permanent {
                    reason: format!("HTTP {status}: {body}")
                }
            );
        }
    }

    #[test]
    fn server_errors_and_request_timeout_are_retryable() {
        assert_eq!(
            classify(500, None, "", POLICY),
            Outcome::Retryable {
                reason: "HTTP 500".into()
            }
        );
        assert!(matches!(
            classify(503, None, "busy", POLICY),
            Outcome::Retryable { .. }
        ));
        assert!(matches!(
            classify(408, None, "", POLICY),
            Outcome::Retryable { .. }
        ));
    }

    #[test]
    fn rate_limit_uses_retry_after_then_default_then_cap() {
        let wait = |header| match classify(429, header, "rate_limited", POLICY) {
            Outcome::RateLimited { wait, .. } => wait,
            other => panic!("{other:?}"),
        };
        assert_eq!(wait(Some("7")), Duration::from_secs(7));
        assert_eq!(wait(None), POLICY.default_wait);
        assert_eq!(wait(Some("garbage")), POLICY.default_wait);
        assert_eq!(wait(Some("86400")), POLICY.max_wait);
    }

    #[test]
    fn long_bodies_are_cut() {
        let Outcome::Permanent { reason } = classify(400, None, &"x".repeat(5000), POLICY) else {
            panic!()
        };
        assert_eq!(reason.len(), "HTTP 400: ".len() + MAX_REASON_CHARS);
    }
}
