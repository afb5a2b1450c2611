//! `[[remote_write]]`: Prometheus' `remote_write` section, same names.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Result};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

use crate::config::remote::RemoteWriteConfig;
use crate::model::relabel::{RelabelError, Relabeler};

impl RemoteWriteConfig {
    /// The queue's name: the configured one or `url-<8 hex of sha256(url)>`.
    pub fn queue_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => {
                use sha2::Digest;
                let h = sha2::Sha256::digest(self.url.get_ref().as_bytes());
                format!("url-{}", &hex::encode(h)[..8])
            }
        }
    }

    pub fn relabelers(&self) -> Result<Vec<Relabeler>, RelabelError> {
        self.write_relabel_configs
            .iter()
            .cloned()
            .map(Relabeler::new)
            .collect()
    }

    /// Every header of a write request: the protocol's, `headers` and the
    /// credentials (`password_file` read against `base_dir`).
    pub fn request_headers(&self, base_dir: &Path) -> Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        headers.insert("Content-Encoding", HeaderValue::from_static("snappy"));
        headers.insert(
            "Content-Type",
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(
            "X-Prometheus-Remote-Write-Version",
            HeaderValue::from_static("0.1.0"),
        );
        headers.insert(
            "User-Agent",
            HeaderValue::from_str(&format!("wasmon/{}", env!("CARGO_PKG_VERSION")))?,
        );
        headers.extend(self.user_headers()?);
        let authorization = match (&self.basic_auth, &self.bearer_token) {
            (Some(b), _) => Some(b.header_value(|f| base_dir.join(f))?),
            (None, Some(t)) => Some(format!("Bearer {}", t.expose())),
            (None, None) => None,
        };
        if let Some(a) = authorization {
            let mut v = HeaderValue::from_str(&a)
                .map_err(|_| anyhow::anyhow!("the credentials are not a valid header value"))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        Ok(headers)
    }

    /// `headers` as HTTP headers (values marked sensitive).
    fn user_headers(&self) -> Result<Vec<(Option<HeaderName>, HeaderValue)>> {
        self.headers
            .iter()
            .map(|(k, v)| {
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| anyhow::anyhow!("headers: {k:?} is not a valid header name"))?;
                let mut value = HeaderValue::from_str(v.expose()).map_err(|_| {
                    anyhow::anyhow!("headers: value of {k:?} is not a valid header value")
                })?;
                value.set_sensitive(true);
                Ok((Some(name), value))
            })
            .collect()
    }

    fn validate(&self) -> Result<()> {
        let url = self.url.get_ref();
        let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("url {url:?}: {e}"))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            bail!("url {url:?}: scheme must be http or https");
        }
        if let Some(n) = &self.name {
            let ok = !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
            if !ok || n.starts_with('.') {
                bail!("name {n:?} must be non-empty letters, digits, '-', '_' or '.' (it names a file)");
            }
        }
        if self.remote_timeout.is_zero() {
            bail!("remote_timeout must be greater than 0");
        }
        if self.basic_auth.is_some() && self.bearer_token.is_some() {
            bail!("at most one of basic_auth and bearer_token may be set");
        }
        for h in self.headers.keys() {
            let reserved = [
                "content-encoding",
                "content-type",
                "x-prometheus-remote-write-version",
                "user-agent",
                "authorization",
            ];
            if reserved.contains(&h.to_ascii_lowercase().as_str()) {
                bail!("headers: {h:?} is set by the protocol and may not be overridden");
            }
        }
        self.user_headers()?;
        for (i, r) in self.write_relabel_configs.iter().enumerate() {
            Relabeler::new(r.clone())
                .map_err(|e| anyhow::anyhow!("write_relabel_configs[{i}]: {e}"))?;
        }
        let q = &self.queue_config;
        if q.capacity == 0 || q.max_samples_per_send == 0 {
            bail!("queue_config: capacity and max_samples_per_send must be greater than 0");
        }
        if q.min_shards == 0 || q.max_shards < q.min_shards {
            bail!(
                "queue_config: need 1 <= min_shards ({}) <= max_shards ({})",
                q.min_shards,
                q.max_shards
            );
        }
        if q.batch_send_deadline.is_zero() || q.min_backoff.is_zero() {
            bail!("queue_config: batch_send_deadline and min_backoff must be greater than 0");
        }
        if q.max_backoff < q.min_backoff {
            bail!("queue_config: max_backoff must be at least min_backoff");
        }
        Ok(())
    }
}

/// Validates every `[[remote_write]]`, citing the line of its `url`.
pub fn validate_all(
    configs: &[RemoteWriteConfig],
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> Result<()> {
    let mut names = HashSet::new();
    for c in configs {
        let here = at(c.url.span());
        c.validate()
            .map_err(|e| anyhow::anyhow!("{here}: remote_write: {e}"))?;
        let name = c.queue_name();
        if !names.insert(name.clone()) {
            bail!("{here}: remote_write: duplicate queue name {name:?} (set distinct `name`s)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// The error `wasmon check config` reports for `text` (the config
    /// parses; `validate_all` refuses it).
    fn invalid(text: &str, origin: &str) -> anyhow::Error {
        let c = Config::parse(text, origin).unwrap();
        super::validate_all(&c.remote_write, &|s| c.at(s)).unwrap_err()
    }

    #[test]
    fn parses_with_defaults_and_errors_cite_lines() {
        let c = Config::parse(
            "[[remote_write]]\nurl = \"http://127.0.0.1:9090/api/v1/write\"\nbearer_token = \"s3cret\"\n[remote_write.queue_config]\nmax_shards = 4\n",
            "a.toml",
        )
        .unwrap();
        let r = &c.remote_write[0];
        assert_eq!(r.queue_config.max_shards, 4);
        assert_eq!(r.queue_config.max_samples_per_send, 500);
        assert!(r.queue_name().starts_with("url-"));
        assert!(!format!("{r:?}").contains("s3cret"));

        let err = invalid(
            "[global]\n\n[[remote_write]]\nurl = \"ftp://x\"\n",
            "b.toml",
        );
        let msg = format!("{err:#}");
        assert!(msg.contains("b.toml:4") && msg.contains("scheme"), "{msg}");

        let err = invalid(
            "[[remote_write]]\nurl = \"http://a/\"\n[[remote_write]]\nurl = \"http://a/\"\n",
            "c.toml",
        );
        assert!(format!("{err:#}").contains("c.toml:4"), "{err:#}");

        let err = invalid(
            "[[remote_write]]\nurl = \"http://a/\"\nwrite_relabel_configs = [{ action = \"replace\", regex = \"(\" }]\n",
            "d.toml",
        );
        assert!(
            format!("{err:#}").contains("d.toml:2")
                && format!("{err:#}").contains("write_relabel_configs[0]"),
            "{err:#}"
        );
        let err = invalid(
            "[[remote_write]]\nurl = \"http://a/\"\n[remote_write.queue_config]\nmin_shards = 3\nmax_shards = 2\n",
            "e.toml",
        );
        assert!(format!("{err:#}").contains("min_shards"), "{err:#}");
    }

    #[test]
    fn config_dumps_show_no_credentials() {
        let c = Config::parse(
            "[[remote_write]]\nurl = \"http://127.0.0.1:9090/api/v1/write\"\nheaders = { X-Api-Key = \"hdr-secret\" }\nbasic_auth = { username = \"u\", password = \"pw-secret\" }\n\n[[remote_write]]\nurl = \"http://127.0.0.1:9091/api/v1/write\"\nbearer_token = \"tok-secret\"\n",
            "a.toml",
        )
        .unwrap();
        let dump = serde_json::to_string(&c.remote_write).unwrap();
        for secret in ["hdr-secret", "pw-secret", "tok-secret"] {
            assert!(!dump.contains(secret), "{secret} in {dump}");
        }
        // What is not secret still shows.
        assert!(
            dump.contains("X-Api-Key") && dump.contains("127.0.0.1:9091"),
            "{dump}"
        );
    }
}
