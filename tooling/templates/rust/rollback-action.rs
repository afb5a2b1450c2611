//! {{name}}: a wasmon rollback action (world `rollback-action` of wit/plugin.wit).
//! Build: `wasmon plugin build`; check: `wasmon plugin inspect {{name}}.wasm`.

// The world's types (Notification, Failure, ...) are generated at the
// crate root; the imported interfaces under `wasmon::plugin`.
wit_bindgen::generate!({ world: "rollback-action", path: "wit" });

use wasmon::plugin::log::{log, Level};

struct Plugin;

impl Guest for Plugin {
    fn rollback(request: RollbackRequest) -> Result<RollbackOutcome, Failure> {
        log(Level::Warn, &format!("rolling back {}", request.target), &[]);
        if request.stable_version.is_empty() {
            return Err(Failure::Permanent("no stable version to return to".into()));
        }
        Ok(RollbackOutcome {
            message: format!("{} back to {}", request.target, request.stable_version),
            current_version: Some(request.stable_version),
        })
    }
}

export!(Plugin);
