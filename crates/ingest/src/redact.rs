//! Keeps secrets out of logs: the only URL that carries a key is Finnhub's WebSocket (`?token=`), and URLs are
//! only ever logged through `redact_url`.

const SECRET_PARAMS: [&str; 4] = ["token", "apikey", "api_key", "key"];

/// The URL with the value of every secret-looking query parameter replaced by `***`.
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

/// Scrub a known secret from free text (an error message that may echo a URL).
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_token_values_and_keeps_the_rest() {
        assert_eq!(
            redact_url("wss://ws.finnhub.io?token=abc123"),
            "wss://ws.finnhub.io?token=***"
        );
        assert_eq!(
            redact_url("https://x.io/q?symbol=AAPL&apikey=s3cr3t&interval=1min"),
            "https://x.io/q?symbol=AAPL&apikey=***&interval=1min"
        );
        assert_eq!(
            redact_url("wss://stream.binance.com:9443/stream"),
            "wss://stream.binance.com:9443/stream"
        );
    }

    #[test]
    fn scrub_removes_a_secret_anywhere() {
        assert_eq!(
            scrub("failed GET /x?token=abc: 401", "abc"),
            "failed GET /x?token=***: 401"
        );
        assert_eq!(scrub("nothing", ""), "nothing");
    }
}
