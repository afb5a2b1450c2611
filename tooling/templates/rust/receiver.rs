//! {{name}}: a wasmon receiver (world `receiver` of wit/plugin.wit).
//! Build: `wasmon plugin build`; check: `wasmon plugin inspect {{name}}.wasm`.

// The world's types (Notification, Failure, ...) are generated at the
// crate root; the imported interfaces under `wasmon::plugin`.
wit_bindgen::generate!({ world: "receiver", path: "wit" });

use wasmon::plugin::config;
use wasmon::plugin::log::{log, Level};

struct Plugin;

impl Guest for Plugin {
    /// Called once per aggregation group flush. Return
    /// `Failure::Retryable` for errors worth retrying (the host backs off),
    /// `Failure::Permanent` for the others.
    fn notify(notification: Notification) -> Result<(), Failure> {
        // The instance's `config` table from the agent config, as JSON.
        let config = config::get();
        log(
            Level::Info,
            "notification",
            &[
                ("receiver".into(), notification.receiver.clone()),
                ("alerts".into(), notification.alerts.len().to_string()),
                ("config".into(), config),
            ],
        );
        Ok(())
    }
}

export!(Plugin);
