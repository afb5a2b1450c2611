//! {{name}}: a wasmon health check (world `health-check` of wit/plugin.wit).
//! Build: `wasmon plugin build`; check: `wasmon plugin inspect {{name}}.wasm`.

// The world's types (Notification, Failure, ...) are generated at the
// crate root; the imported interfaces under `wasmon::plugin`.
wit_bindgen::generate!({ world: "health-check", path: "wit" });

use wasmon::plugin::log::{log, Level};

struct Plugin;

impl Guest for Plugin {
    fn check(request: CheckRequest) -> Result<CheckResult, Failure> {
        log(Level::Debug, &format!("checking {}", request.target), &[]);
        Ok(CheckResult {
            ok: !request.target.is_empty(),
            message: format!("{} has a target", request.check),
            value: None,
            samples: Vec::new(),
        })
    }
}

export!(Plugin);
