//! The CLI's clients of a running agent's HTTP API: `wasmon checks run`,
//! `rollouts`, `ack`/`unack`/`incidents` and `plugins list --url`. Each
//! submodule requests and prints; what they share (the base URL, how a
//! request fails, reading the API's error message) is here. Server code
//! lives with the servers (`web/`, `*/api.rs`); nothing here serves.

pub mod checks;
pub mod incidents;
pub mod plugins;
pub mod rollouts;

use anyhow::Context;
use serde_json::Value;

/// A running agent's API at a base URL.
pub struct Agent {
    base: String,
    http: reqwest::Client,
}

impl Agent {
    pub fn new(url: &str) -> Agent {
        Agent {
            base: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`: the body of a successful answer.
    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        let u = self.url(path);
        self.send(self.http.get(&u), "GET", &u).await
    }

    /// `POST path` with a JSON body, if any.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> anyhow::Result<String> {
        let u = self.url(path);
        let mut req = self.http.post(&u);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(req, "POST", &u).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<String> {
        let u = self.url(path);
        self.send(self.http.delete(&u), "DELETE", &u).await
    }

    /// [`get`](Self::get) parsed as JSON.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let text = self.get(path).await?;
        serde_json::from_str(&text).with_context(|| format!("GET {}: not JSON", self.url(path)))
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        method: &str,
        url: &str,
    ) -> anyhow::Result<String> {
        let what = format!("{method} {url}");
        let resp = req.send().await.with_context(|| what.clone())?;
        check(resp, &what).await
    }
}

/// The body of a successful answer, or an error with the API's message
/// (the `error` field of its error envelope, else the body).
pub async fn check(resp: reqwest::Response, what: &str) -> anyhow::Result<String> {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        anyhow::bail!("{what}: {status}: {msg}");
    }
    Ok(text)
}

/// A name as one URL path segment.
pub fn path_segment(name: &str) -> String {
    form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
