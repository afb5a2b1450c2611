//! {{name}}: a wasmon metric check (world `metric-check` of wit/plugin.wit)
//! that queries the agent's own store. Build: `wasmon plugin build`; check:
//! `wasmon plugin inspect {{name}}.wasm`.

use wasmon_sdk::metric_check::{CheckResult, Failure, Guest, MetricCheckRequest};
use wasmon_sdk::query;

struct Plugin;

impl Guest for Plugin {
    fn evaluate(request: MetricCheckRequest) -> Result<CheckResult, Failure> {
        let up = query::scalar("sum(up)", request.time_ms)?.unwrap_or(0.0);
        Ok(CheckResult {
            ok: up > 0.0,
            message: format!("{up} targets up"),
            value: Some(up),
            samples: Vec::new(),
        })
    }
}

wasmon_sdk::export_metric_check!(Plugin);
