//! What the CLI's clients of a running agent's API share (`wasmon ack`,
//! `incidents`, `checks run`, `plugins list --url`).

use serde_json::Value;

/// The body of a successful answer, or an error with the API's message.
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

/// The agent's base URL without a trailing slash.
pub fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}
