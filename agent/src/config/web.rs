//! `[web]`: where the API listens, its TLS files, and who may call it
//! (basic-auth users with bcrypt hashes, bearer tokens). `web::auth` and
//! `web::tls` act on these settings; this module owns their syntax.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::Secret;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// host:port the HTTP API listens on.
    #[serde(default = "default_listen")]
    pub listen_address: String,
    /// PEM certificate chain: with `tls_key_file`, the API is served over
    /// HTTPS only (see `crate::web::tls`). Read at startup.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// User name -> bcrypt hash, as Prometheus' web config `basic_auth_users`.
    /// With any user or token set, every path but /-/healthy and /-/ready
    /// needs credentials (see `crate::web::auth`).
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, Secret>,
    /// Accepted `Authorization: Bearer` tokens.
    #[serde(default)]
    pub bearer_tokens: Vec<Secret>,
    /// A file of accepted bearer tokens, one a line, read on every request
    /// so tokens rotate without a reload.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen_address: default_listen(),
            tls_cert_file: None,
            tls_key_file: None,
            basic_auth_users: BTreeMap::new(),
            bearer_tokens: Vec::new(),
            bearer_token_file: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9930".to_string()
}

impl WebConfig {
    /// Checks what serde cannot: paired TLS files, parseable hashes, user names.
    /// Errors never include a hash or a token.
    pub fn validate(&self) -> Result<()> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => bail!("tls_cert_file is set but tls_key_file is not"),
            (None, Some(_)) => bail!("tls_key_file is set but tls_cert_file is not"),
            _ => {}
        }
        for (user, hash) in &self.basic_auth_users {
            if user.is_empty() || user.contains(':') {
                bail!("basic_auth_users: user name {user:?} must be non-empty and without ':'");
            }
            if hash.expose().parse::<bcrypt::HashParts>().is_err() {
                bail!("basic_auth_users: the password of {user:?} is not a bcrypt hash ($2b$...)");
            }
        }
        if self
            .bearer_tokens
            .iter()
            .any(|t| t.expose().trim().is_empty())
        {
            bail!("bearer_tokens: a token must not be empty");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_problem_without_the_secret() {
        let mut web = super::super::Config::builtin().web;
        web.basic_auth_users
            .insert("admin".into(), Secret::new("plaintextpw"));
        let msg = format!("{:#}", web.validate().unwrap_err());
        assert!(msg.contains("\"admin\"") && msg.contains("bcrypt"), "{msg}");
        assert!(!msg.contains("plaintextpw"), "{msg}");
        web.basic_auth_users
            .insert("admin".into(), Secret::new(bcrypt::hash("pw", 4).unwrap()));
        web.validate().unwrap();
        web.tls_cert_file = Some("c.pem".into());
        let msg = web.validate().unwrap_err().to_string();
        assert!(msg.contains("tls_key_file"), "{msg}");
    }
}
