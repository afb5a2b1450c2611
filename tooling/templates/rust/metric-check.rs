//! {{name}}: a wasmon metric check (world `metric-check` of wit/plugin.wit).
//! Build: `wasmon plugin build`; check: `wasmon plugin inspect {{name}}.wasm`.

// The world's types (Notification, Failure, ...) are generated at the
// crate root; the imported interfaces under `wasmon::plugin`.
wit_bindgen::generate!({ world: "metric-check", path: "wit" });

use wasmon::plugin::query;

struct Plugin;

impl Guest for Plugin {
    fn evaluate(request: MetricCheckRequest) -> Result<CheckResult, Failure> {
        let samples = query::instant("sum(up)", request.time_ms).map_err(Failure::Retryable)?;
        let up = samples.first().map(|s| s.value).unwrap_or(0.0);
        Ok(CheckResult {
            ok: up > 0.0,
            message: format!("{up} targets up"),
            value: Some(up),
            samples: Vec::new(),
        })
    }
}

export!(Plugin);
