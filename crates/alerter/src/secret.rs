//! Secrets (the webhook URL, the database password) are read from the environment only (never from a flag,
//! which `ps` shows), and kept in a type whose Debug/Display cannot print them.

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
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "***")
        }
    }
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
    }
}
