//! Structured logging into the agent's log.
//!
//! A plugin has no stdout or stderr worth reading (a `wasm32-unknown-unknown`
//! build has none at all), so everything worth saying goes through the host's
//! `log` import. The host tags each record with the plugin instance, so
//! messages need not repeat it.
//!
//! ```ignore
//! wasmon_sdk::log::info("sent");
//! wasmon_sdk::log::log(Level::Warn, "slow answer", &[("status", "429"), ("url", &url)]);
//! ```

use crate::bindings::wasmon::plugin::log as host;

pub use host::Level;

/// Logs `message` at `level` with structured `fields` (key, value).
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    host::log(level, message, &fields);
}

/// Logs at trace level, without fields.
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message.as_ref(), &[]);
}

/// Logs at debug level, without fields.
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message.as_ref(), &[]);
}

/// Logs at info level, without fields.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message.as_ref(), &[]);
}

/// Logs at warn level, without fields.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message.as_ref(), &[]);
}

/// Logs at error level, without fields.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message.as_ref(), &[]);
}
