//! Secrets (API keys, the webhook URL, the database password) are read from the environment only (never from a
//! flag, which `ps` shows), and kept in a type whose Debug/Display cannot print them. URLs that carry a key in
//! their query are only ever logged through [`redact_url`].

use std::fmt;

#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// None for an unset or blank variable.
    pub fn from_env(name: &str) -> Option<Self> {
        let value = std::env::var(name).ok()?;
        (!value.trim().is_empty()).then(|| Self(value.trim().to_string()))
    }

    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced: for messages from libraries (or a server's reply)
    /// that might echo it.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.0)
    }
}

/// `text` with every occurrence of `secret` replaced by `***` (an error message that may echo a URL).
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "***")
    }
}

const SECRET_PARAMS: [&str; 4] = ["token", "apikey", "api_key", "key"];

/// The URL with the value of every secret-looking query parameter (`token`, `apikey`, `api_key`, `key`) replaced
/// by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str()) => {
                format!("{name}=***")
            }
            _ => pair.to_string(),
        })
        .collect();
    let mut out = format!("{base}?{}", redacted.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_its_value() {
        let s = Secret::new("https://hooks.slack.com/services/T0/B0/XYZ");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }

    #[test]
    fn scrub_replaces_every_occurrence() {
        let s = Secret::new("https://h/services/T0/B0/XYZ");
        assert_eq!(
            s.scrub("POST https://h/services/T0/B0/XYZ failed; https://h/services/T0/B0/XYZ"),
            "POST *** failed; ***"
        );
        assert_eq!(Secret::new("").scrub("unchanged"), "unchanged");
        assert_eq!(
            scrub("failed GET /x?token=abc: 401", "abc"),
            "failed GET /x?token=***: 401"
        );
    }

    #[test]
    fn urls_lose_token_values_and_keep_the_rest() {
        assert_eq!(
            redact_url("wss://ws.finnhub.io?token=abc123"),
            "wss://ws.finnhub.io?token=***"
        );
        assert_eq!(
            redact_url("https://x.io/q?symbol=AAPL&apikey=s3cr3t&interval=1min#f"),
            "https://x.io/q?symbol=AAPL&apikey=***&interval=1min#f"
        );
        assert_eq!(
            redact_url("wss://stream.binance.com:9443/stream"),
            "wss://stream.binance.com:9443/stream"
        );
    }
}
