//! The syntax of a plugin instance's `allow_hosts` entry (`host`,
//! `host:port`, `*.domain`, `*`): the config checks it at load, the plugin
//! runtime's outbound policy (`plugins::policy`) enforces it per request.

use anyhow::{bail, Result};

/// One allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: any host (an explicit opt-out of the sandbox's network policy).
    Any,
    /// `*.example.com`: any subdomain of example.com (not example.com itself).
    Suffix(String),
    /// `host` (any port) or `host:port`.
    Exact { host: String, port: Option<u16> },
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<HostPattern> {
        let s = s.trim();
        if s.is_empty() {
            bail!("empty host pattern");
        }
        if s.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') || s.contains("://") {
            bail!("{s:?} is not a host pattern: write `host`, `host:port`, `*.domain` or `*` (no scheme or path)");
        }
        if s == "*" {
            return Ok(HostPattern::Any);
        }
        if let Some(domain) = s.strip_prefix("*.") {
            if domain.is_empty() || domain.contains('*') {
                bail!("{s:?}: a wildcard is only allowed as a leading `*.`");
            }
            return Ok(HostPattern::Suffix(format!(
                ".{}",
                domain.to_ascii_lowercase()
            )));
        }
        if s.contains('*') {
            bail!("{s:?}: a wildcard is only allowed as a leading `*.`");
        }
        // `[v6]:port`, `[v6]`, `host:port`, `host`.
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let Some((h, after)) = rest.split_once(']') else {
                bail!("{s:?}: unterminated `[`");
            };
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => bail!("{s:?}: unexpected text after `]`"),
            };
            (h.to_string(), port)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
                Some(_) => bail!("{s:?}: write IPv6 addresses in brackets, like [::1]:8080"),
                None => (s.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| anyhow::anyhow!("{s:?}: bad port {p:?}"))?,
            ),
            None => None,
        };
        Ok(HostPattern::Exact {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Does a request to `host` (lowercase, IPv6 without brackets) on `port` match?
    pub fn matches(&self, host: &str, port: u16) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Exact { host: h, port: p } => h == host && p.is_none_or(|p| p == port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_patterns_are_rejected() {
        for bad in [
            "", "http://x", "a b", "x/y", "a*.b", "*.", "h:port", "::1", "[::1",
        ] {
            assert!(
                HostPattern::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
