//! `wasmon rollouts`: `GET /api/v1/rollouts`.

use serde_json::Value;

use super::Agent;

/// Prints the rollouts of a running agent.
pub async fn status(url: &str, json_out: bool) -> anyhow::Result<()> {
    let v = Agent::new(url).get_json("/api/v1/rollouts").await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v["data"])?);
        return Ok(());
    }
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    println!(
        "{:<20} {:<13} {:<14} {:<14} {:>8}  LAST DECISION",
        "NAME", "PHASE", "VERSION", "STABLE", "FAILURES"
    );
    let list = v["data"].as_array().cloned().unwrap_or_default();
    for r in &list {
        let last = r["history"]
            .as_array()
            .and_then(|h| h.last())
            .map(|d| format!("{} {}: {}", s(&d["at"]), s(&d["event"]), s(&d["message"])))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<13} {:<14} {:<14} {:>8}  {}",
            s(&r["name"]),
            s(&r["phase"]),
            s(&r["version"]),
            s(&r["stableVersion"]),
            format!("{}/{}", r["failures"], r["threshold"]),
            last
        );
    }
    if list.is_empty() {
        println!("(no rollouts configured)");
    }
    Ok(())
}
