//! `wasmon plugins list --url`: `GET /api/v1/plugins` (the table is
//! `plugins::list::render`, shared with the local listing).

use serde_json::Value;

use super::Agent;

/// The plugins' rows of the agent at `url`.
pub async fn list(url: &str) -> anyhow::Result<Vec<Value>> {
    let v = Agent::new(url).get_json("/api/v1/plugins").await?;
    Ok(v["data"].as_array().cloned().unwrap_or_default())
}
