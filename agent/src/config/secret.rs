//! Secrets in the config: passwords, tokens, password hashes. They must never
//! leave the process by accident, so every way of printing one (Debug,
//! Display, Serialize) prints `<secret>`; only [`Secret::expose`] gives the
//! value, at the one place that needs it. A secret read from the config has
//! its `${VAR}` references expanded (see [`super::env`]): a reference that
//! cannot be expanded fails the load at the value's line instead of becoming
//! a credential spelled `${VAR}`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a redacted secret prints as.
pub const REDACTED: &str = "<secret>";

/// A string from the config that must not be logged or shown.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        let raw = String::deserialize(d)?;
        super::env::expand(&raw)
            .map(Secret)
            .map_err(serde::de::Error::custom)
    }
}

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself: use it, never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // An empty secret is shown as empty so a dump tells "unset" from "set".
        if self.0.is_empty() {
            s.serialize_str("")
        } else {
            s.serialize_str(REDACTED)
        }
    }
}

/// Whether a free-form key (a plugin config key, an HTTP header) names a
/// secret. Plugin configs have no schema the host knows, so this goes by the
/// names secrets are usually given.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    const WORDS: [&str; 10] = [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
        "credential",
        "private_key",
        "routing_key",
    ];
    WORDS.iter().any(|w| k.contains(w)) || k == "key" || k.ends_with("_key")
}

/// Serializes a free-form TOML table with the values of secret-looking keys
/// (at any depth) replaced by `<secret>`.
pub fn serialize_redacted_table<S: Serializer>(t: &toml::Table, s: S) -> Result<S::Ok, S::Error> {
    redacted_table(t).serialize(s)
}

pub fn redacted_table(t: &toml::Table) -> toml::Table {
    t.iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) && !matches!(v, toml::Value::Table(_)) {
                toml::Value::String(REDACTED.into())
            } else {
                redacted_value(v)
            };
            (k.clone(), v)
        })
        .collect()
}

fn redacted_value(v: &toml::Value) -> toml::Value {
    match v {
        toml::Value::Table(t) => toml::Value::Table(redacted_table(t)),
        toml::Value::Array(a) => toml::Value::Array(a.iter().map(redacted_value).collect()),
        other => other.clone(),
    }
}

/// A TOML error as `origin: line L, column C: message`, without the source
/// excerpt toml's own Display adds: that excerpt is the offending line, which
/// may hold a password, and config errors end up in logs and API answers.
pub fn parse_error(text: &str, origin: &str, e: &toml::de::Error) -> anyhow::Error {
    let msg = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            // The key on that line (never its value) still says where.
            let key = text
                .lines()
                .nth(line - 1)
                .and_then(|l| l.split_once('='))
                .map(|(k, _)| k.trim())
                .filter(|k| !k.is_empty() && !k.starts_with('#'))
                .map(|k| format!(" (key {k})"))
                .unwrap_or_default();
            anyhow::anyhow!(
                "{origin}: TOML parse error at line {line}, column {column}{key}: {msg}"
            )
        }
        None => anyhow::anyhow!("{origin}: TOML parse error: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_printing_path_redacts() {
        let s: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?} {s} {s:#?}"), "<secret> <secret> <secret>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<secret>\"");
    }

    #[test]
    fn plugin_tables_redact_secret_keys_at_any_depth() {
        let t: toml::Table = toml::from_str(
            "url = \"https://x\"\ntoken = \"t0p\"\n[auth]\nbot_token = \"b0t\"\nuser = \"me\"\n[[hdr]]\nApi-Key = \"k3y\"\n",
        )
        .unwrap();
        let out = serde_json::to_string(&redacted_table(&t)).unwrap();
        for leaked in ["t0p", "b0t", "k3y"] {
            assert!(!out.contains(leaked), "{leaked} leaked: {out}");
        }
        assert!(out.contains("https://x") && out.contains("\"me\""), "{out}");
    }
}
