//! `wasmon checks run NAME`: `POST /api/v1/checks/NAME/run`.

use anyhow::Context;
use serde_json::Value;

use super::{path_segment, Agent};

/// Runs the check now and prints its result; true when it passed.
pub async fn run(url: &str, name: &str, json_out: bool) -> anyhow::Result<bool> {
    let agent = Agent::new(url);
    let path = format!("/api/v1/checks/{}/run", path_segment(name));
    let text = agent.post(&path, None).await?;
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("POST {}: not JSON", agent.url(&path)))?;
    let d = &v["data"];
    if json_out {
        println!("{}", serde_json::to_string_pretty(d)?);
    } else {
        let last = &d["last"];
        println!(
            "{} ({} {}): {} in {:.3}s: {}{}",
            d["name"].as_str().unwrap_or(name),
            d["kind"].as_str().unwrap_or("?"),
            d["target"].as_str().unwrap_or(""),
            d["health"].as_str().unwrap_or("?"),
            last["durationSeconds"].as_f64().unwrap_or(0.0),
            last["message"].as_str().unwrap_or(""),
            last["value"]
                .as_f64()
                .map(|v| format!(" (value {v})"))
                .unwrap_or_default(),
        );
    }
    Ok(d["health"] == "up")
}
