//! alertmanager.yml -> wasmon TOML: `global` defaults, `route`,
//! `inhibit_rules`, `time_intervals`/`mute_time_intervals`, `templates`,
//! and each receiver's integrations as instances of the first-party
//! receiver plugins.

use super::{yaml, Ctx, ImportError};

/// Converts an alertmanager.yml document into `out`.
pub fn convert(doc: &yaml::Node, ctx: &mut Ctx, out: &mut toml::Table) -> Result<(), ImportError> {
    // Not written yet (#21): every top-level key is reported.
    let _ = out;
    for e in doc.map_entries() {
        ctx.unsupported(
            &e.key,
            e.key.as_str().unwrap_or("?"),
            "the Alertmanager converter is not written yet",
        );
    }
    Ok(())
}
