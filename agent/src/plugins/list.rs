//! `wasmon plugins list`: the table of plugins, from a directory loaded
//! here or from a running agent (`--url`, fetched by
//! [`crate::client::plugins`], which adds each instance's circuit: see
//! [`circuit`](super::circuit)).

use std::fmt::Write as _;

use serde_json::Value;

/// The table: one row per plugin, then one line per instance whose
/// circuit is known.
pub fn render(list: &[Value]) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<16} {:<14} {:>10}  STATUS",
        "NAME", "WORLD", "VERSION", "SIZE"
    );
    for p in list {
        let version = p["hash"].as_str().map(|h| &h[..h.len().min(12)]);
        let mut status = match p["error"].as_str() {
            Some(e) => format!("ERROR: {e}"),
            None if p["hash"].is_null() => "not loaded".to_string(),
            None => "ok".to_string(),
        };
        if let Some(v) = p["loading"]["version"].as_str() {
            let _ = write!(
                status,
                " (compiling {} since {})",
                &v[..v.len().min(12)],
                s(&p["loading"]["since"])
            );
        }
        let _ = writeln!(
            out,
            "{:<20} {:<16} {:<14} {:>10}  {status}",
            s(&p["name"]),
            s(&p["kind"]),
            version.unwrap_or("-"),
            p["size"]
                .as_u64()
                .map(|n| n.to_string())
                .unwrap_or("-".into()),
        );
        for i in p["instances"].as_array().into_iter().flatten() {
            let mut line = format!(
                "  instance {}: circuit {}",
                s(&i["instance"]),
                s(&i["state"])
            );
            if let Some(until) = i["open_until"].as_str() {
                let _ = write!(line, " until {until}");
            }
            let failures = i["failures"].as_u64().unwrap_or(0);
            if failures > 0 {
                let _ = write!(line, ", {failures} failure(s) in a row");
            }
            let refused = i["short_circuited"].as_u64().unwrap_or(0);
            if refused > 0 {
                let _ = write!(line, ", {refused} call(s) refused");
            }
            let remembered = i["failed_permanently"].as_u64().unwrap_or(0);
            if remembered > 0 {
                let _ = write!(line, ", {remembered} notification(s) failed permanently");
            }
            if let (Some(e), true) = (i["last_error"].as_str(), i["state"] != "closed") {
                let _ = write!(line, "; last error: {e}");
            }
            let _ = writeln!(out, "{line}");
        }
    }
    out
}
