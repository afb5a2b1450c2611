//! The post-incident report: Markdown with the milestones, the durations
//! and the timeline, ready to paste into a postmortem document.

use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::Incident;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `1h2m3s` (whole seconds; sub-second parts only under a second).
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    humantime::format_duration(Duration::from_secs(d.as_secs()))
        .to_string()
        .replace(' ', "")
}

fn opt_dur(d: Option<Duration>) -> String {
    d.map(human).unwrap_or_else(|| "n/a".to_string())
}

fn opt_ts(t: Option<DateTime<Utc>>) -> String {
    t.map(ts).unwrap_or_else(|| "n/a".to_string())
}

/// Markdown table cells must not break the table.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn markdown(i: &Incident) -> String {
    let d = i.durations();
    let mut out = String::new();
    let labels: Vec<String> = i
        .group_labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    let _ = writeln!(out, "# Incident {}: {{{}}}\n", i.id, labels.join(", "));
    let _ = writeln!(out, "- Group: `{}`", i.group_key);
    let _ = writeln!(
        out,
        "- Status: {}",
        if i.is_open() { "open" } else { "resolved" }
    );
    let _ = writeln!(out, "- Opened: {}", ts(i.opened_at));
    let _ = writeln!(out, "- Resolved: {}\n", opt_ts(i.resolved_at));
    out.push_str("## Summary\n\n| Milestone | Time | Duration |\n|---|---|---|\n");
    let rows = [
        ("Started (deploy or first alert)", d.started, None),
        (
            "Detected (first firing alert)",
            d.detected,
            Some(("time to detect", d.time_to_detect)),
        ),
        (
            "Acknowledged",
            d.acknowledged,
            Some(("time to acknowledge", d.time_to_acknowledge)),
        ),
        (
            "Mitigated (rollback)",
            d.mitigated,
            Some(("time to mitigate", d.time_to_mitigate)),
        ),
        (
            "Resolved",
            d.resolved,
            Some(("time to resolve", d.time_to_resolve)),
        ),
    ];
    for (name, t, dur) in rows {
        let dur = dur
            .map(|(what, v)| format!("{what}: {}", opt_dur(v)))
            .unwrap_or_default();
        let _ = writeln!(out, "| {name} | {} | {dur} |", opt_ts(t));
    }
    let _ = writeln!(out, "| **Total duration** | | {} |\n", opt_dur(d.total));
    out.push_str("## Timeline\n\n| Time | Event | Details |\n|---|---|---|\n");
    for e in &i.events {
        let mut details = e.message.clone();
        if let (Some(r), Some(outcome)) = (&e.receiver, e.outcome()) {
            let _ = write!(details, " (receiver {r}: {outcome})");
        }
        if e.kind == "rollback" || e.kind == "rollout_check_failed" {
            if let Some(checks) = e.data.get("checks").and_then(|c| c.as_array()) {
                let failed: Vec<String> = checks
                    .iter()
                    .filter(|c| c["ok"] == false)
                    .map(|c| match c["value"].as_f64() {
                        Some(v) => format!("{}={v}", c["check"].as_str().unwrap_or("?")),
                        None => c["check"].as_str().unwrap_or("?").to_string(),
                    })
                    .collect();
                if !failed.is_empty() {
                    let _ = write!(details, "; metrics: {}", failed.join(", "));
                }
            }
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            ts(e.at),
            cell(&e.kind),
            cell(&details)
        );
    }
    if i.dropped_events > 0 {
        let _ = writeln!(
            out,
            "\n{} later events were not kept (limit {}).",
            i.dropped_events,
            super::MAX_EVENTS
        );
    }
    out
}
