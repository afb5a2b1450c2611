//! `wasmon ack`, `unack` and `incidents`: `/api/v1/acks` and
//! `/api/v1/incidents` (bare bodies: the ack, the list, the incident).

use anyhow::Context;
use serde_json::{json, Value};

use super::Agent;
use crate::incident::Event;

/// `wasmon ack`
pub async fn ack(
    url: &str,
    group_key: &str,
    by: &str,
    comment: &str,
    expires_in: Option<&str>,
) -> anyhow::Result<()> {
    let agent = Agent::new(url);
    let mut body = json!({"group_key": group_key, "by": by, "comment": comment});
    if let Some(e) = expires_in {
        body["expires_in"] = json!(e);
    }
    let text = agent.post("/api/v1/acks", Some(&body)).await?;
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("POST {}: not JSON", agent.url("/api/v1/acks")))?;
    println!(
        "acknowledged {} (ack id {}{})",
        group_key,
        v["id"].as_str().unwrap_or("?"),
        v["expires_at"]
            .as_str()
            .map(|e| format!(", expires {e}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// `wasmon unack`
pub async fn unack(url: &str, id: &str) -> anyhow::Result<()> {
    Agent::new(url)
        .delete(&format!("/api/v1/acks/{id}"))
        .await?;
    println!("ack {id} removed");
    Ok(())
}

/// `wasmon incidents [ID] [--report]`
pub async fn incidents(url: &str, id: Option<&str>, report: bool) -> anyhow::Result<()> {
    let path = match (id, report) {
        (Some(id), true) => format!("/api/v1/incidents/{id}/report"),
        (Some(id), false) => format!("/api/v1/incidents/{id}"),
        (None, true) => anyhow::bail!("--report needs an incident ID"),
        (None, false) => "/api/v1/incidents".to_string(),
    };
    let agent = Agent::new(url);
    let text = agent.get(&path).await?;
    if report {
        print!("{text}");
        return Ok(());
    }
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("GET {}: not JSON", agent.url(&path)))?;
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    if id.is_some() {
        println!(
            "incident {} [{}] {}",
            s(&v["id"]),
            s(&v["status"]),
            s(&v["group_key"])
        );
        for e in v["events"].as_array().into_iter().flatten() {
            println!("{}", timeline_line(e));
        }
        return Ok(());
    }
    println!(
        "{:<6} {:<9} {:<22} {:<22} GROUP",
        "ID", "STATUS", "OPENED", "RESOLVED"
    );
    let list = v.as_array().cloned().unwrap_or_default();
    for i in &list {
        println!(
            "{:<6} {:<9} {:<22} {:<22} {}",
            s(&i["id"]),
            s(&i["status"]),
            s(&i["opened_at"]),
            s(&i["resolved_at"]),
            s(&i["group_key"])
        );
    }
    if list.is_empty() {
        println!("(no incidents)");
    }
    Ok(())
}

/// One event of `wasmon incidents ID`: time, kind, message and, for a
/// send, its receiver and result (a failed page must not read like a
/// delivered one).
fn timeline_line(e: &Value) -> String {
    let Ok(e) = serde_json::from_value::<Event>(e.clone()) else {
        return format!("(unreadable event: {e})");
    };
    let mut line = format!(
        "{}  {:<20} {}",
        e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        e.kind,
        e.message
    );
    if let (Some(r), Some(outcome)) = (&e.receiver, e.outcome()) {
        line.push_str(&format!(" -> {r}: {outcome}"));
    }
    line
}
