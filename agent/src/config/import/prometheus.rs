//! prometheus.yml -> wasmon TOML: `global`, `scrape_configs` (every service
//! discovery wasmon has, relabel and metric_relabel, auth, TLS, limits),
//! `rule_files`, `alerting.alertmanagers`, `remote_write`.

use super::{yaml, Ctx, ImportError};

/// Converts a prometheus.yml document into `out`.
pub fn convert(doc: &yaml::Node, ctx: &mut Ctx, out: &mut toml::Table) -> Result<(), ImportError> {
    // Not written yet (#21): every top-level key is reported.
    let _ = out;
    for e in doc.map_entries() {
        ctx.unsupported(
            &e.key,
            e.key.as_str().unwrap_or("?"),
            "the Prometheus converter is not written yet",
        );
    }
    Ok(())
}
