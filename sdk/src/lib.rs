//! The Rust guest SDK for wasmon plugins.
//!
//! A wasmon plugin is a WebAssembly component that targets one world of the
//! WIT package `wasmon:plugin@0.1.0` (`wit/plugin.wit` at the root of the
//! repository). This crate turns that contract into Rust:
//!
//! - one module per world, behind a cargo feature of the same name:
//!   [`receiver`], [`health_check`], [`rollback_action`], [`metric_check`].
//!   Each holds the world's `Guest` trait, its types, and an export macro
//!   (`export_receiver!`, `export_health_check!`, `export_rollback_action!`,
//!   `export_metric_check!`) that turns a type implementing `Guest` into the
//!   component's export;
//! - helpers that every world can use: [`config`] (typed instance config),
//!   [`log`] (the host's structured log), [`http`] (outbound HTTP through
//!   `wasi:http`, the only network a plugin has), [`alertmanager`] (the
//!   Alertmanager webhook v4 payload) and [`now_ms`] (the host's clock);
//! - for receivers: [`template`] (a small template language for titles and
//!   bodies), [`mail`] (RFC 5322 messages) and [`sha256`].
//!
//! A receiver in full:
//!
//! ```ignore
//! use wasmon_sdk::receiver::{Failure, Guest, Notification};
//!
//! struct Hello;
//!
//! impl Guest for Hello {
//!     fn notify(n: Notification) -> Result<(), Failure> {
//!         wasmon_sdk::log::info(format!("{} alerts for {}", n.alerts.len(), n.receiver));
//!         Ok(())
//!     }
//! }
//!
//! wasmon_sdk::export_receiver!(Hello);
//! ```
//!
//! with, in the plugin's `Cargo.toml`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! wasmon-sdk = { path = "../../sdk", features = ["receiver"] }
//! ```
//!
//! `cargo xtask plugins` builds it into a component.
//!
//! # Why exactly one world feature
//!
//! `wit_bindgen::generate!` embeds a `component-type` custom section that
//! describes its world, and wit-component merges every such section of a
//! module into the component's world. A module that embeds the `health-check`
//! world but exports no `check` function cannot be made into a component. So
//! a plugin enables one feature, and `cargo xtask plugins` builds every plugin
//! in its own cargo invocation so that feature unification never hands a
//! plugin a second world. (Enabling several features still compiles, which
//! keeps `cargo check --workspace` and the docs working; it just does not make
//! a valid plugin.)
//!
//! # Why the types are shared between worlds
//!
//! The host imports (`log`, `config`, `clock`, `query`) and the shared
//! `types` interface are generated once, in a private module, from a small
//! world that only imports them; every world module maps those interfaces to
//! it with wit-bindgen's `with` option. So [`types::Failure`] is the same
//! type as `receiver::Failure`, and the helpers compile whichever world is
//! enabled (or none). Imports that a plugin never calls do not appear in its
//! component: wit-component only keeps what the core module imports.

#![warn(missing_docs)]

pub mod alertmanager;
pub mod http;
pub mod k8s;
pub mod log;
pub mod mail;
#[cfg(feature = "metric-check")]
pub mod query;
pub mod sha256;
pub mod template;

/// The host interfaces and shared types, generated once for every world.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        inline: r#"
            package wasmon:sdk@0.1.0;

            world host {
                import wasmon:plugin/types@0.1.0;
                import wasmon:plugin/log@0.1.0;
                import wasmon:plugin/config@0.1.0;
                import wasmon:plugin/clock@0.1.0;
                import wasmon:plugin/query@0.1.0;
            }
        "#,
        path: "../wit",
        world: "wasmon:sdk/host",
        generate_all,
        generate_unused_types: true,
        additional_derives: [PartialEq],
    });
}

pub mod types {
    //! The types shared by every world (`wasmon:plugin/types`).
    //!
    //! The world modules re-export the ones their functions use; this module
    //! holds them all, so helpers and tests can name them without a world.
    pub use crate::bindings::wasmon::plugin::types::*;
}

use types::Failure;

impl Failure {
    /// A failure the host retries with backoff (a timeout, a 5xx, a 429).
    pub fn retryable(message: impl Into<String>) -> Self {
        Failure::Retryable(message.into())
    }

    /// A failure the host gives up on at once (a bad config, a 4xx).
    pub fn permanent(message: impl Into<String>) -> Self {
        Failure::Permanent(message.into())
    }

    /// Whether the host will retry this failure.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Failure::Retryable(_))
    }

    /// The failure's message, whatever its kind.
    pub fn message(&self) -> &str {
        match self {
            Failure::Retryable(m) | Failure::Permanent(m) => m,
        }
    }
}

/// Defines one world module. Every world maps the interfaces it imports to
/// the shared bindings above (wit-bindgen rejects a `with` entry the world
/// does not use, hence the extra entries for `query`).
#[allow(unused_macros)] // without a world feature
macro_rules! world {
    ($world:tt, $macro_name:tt, $module:tt $(, $($extra_with:tt)*)?) => {
        wit_bindgen::generate!({
            world: $world,
            path: "../wit",
            with: {
                "wasmon:plugin/types@0.1.0": crate::bindings::wasmon::plugin::types,
                "wasmon:plugin/log@0.1.0": crate::bindings::wasmon::plugin::log,
                "wasmon:plugin/config@0.1.0": crate::bindings::wasmon::plugin::config,
                "wasmon:plugin/clock@0.1.0": crate::bindings::wasmon::plugin::clock,
                $($($extra_with)*)?
            },
            pub_export_macro: true,
            export_macro_name: $macro_name,
            default_bindings_module: $module,
        });
    };
}

#[cfg(feature = "receiver")]
pub mod receiver {
    //! The `receiver` world: an alert receiver (Slack, PagerDuty, a webhook...).
    //!
    //! Implement [`Guest`] and export it with
    //! [`export_receiver!`](crate::export_receiver). The host calls `notify`
    //! once per aggregation group flush; return [`Failure::Retryable`] to have
    //! it retried with backoff, [`Failure::Permanent`] to drop it.
    // Generated code: some WIT items have no doc comment, and the export glue
    // takes the flattened canonical-ABI arguments.
    #![allow(missing_docs, clippy::too_many_arguments)]

    world!(
        "wasmon:plugin/receiver",
        "export_receiver",
        "wasmon_sdk::receiver"
    );
    pub use crate::types::{Alert, AlertStatus, Label};
}

#[cfg(feature = "health-check")]
pub mod health_check {
    //! The `health-check` world: is this target healthy?
    //!
    //! Implement [`Guest`] and export it with
    //! [`export_health_check!`](crate::export_health_check). The host stores
    //! each result as samples that rules can alert on.
    // Generated code: some WIT items have no doc comment, and the export glue
    // takes the flattened canonical-ABI arguments.
    #![allow(missing_docs, clippy::too_many_arguments)]

    world!(
        "wasmon:plugin/health-check",
        "export_health_check",
        "wasmon_sdk::health_check"
    );
    pub use crate::types::{Label, Sample};
}

#[cfg(feature = "rollback-action")]
pub mod rollback_action {
    //! The `rollback-action` world: undo a bad rollout.
    //!
    //! Implement [`Guest`] and export it with
    //! [`export_rollback_action!`](crate::export_rollback_action).
    // Generated code: some WIT items have no doc comment, and the export glue
    // takes the flattened canonical-ABI arguments.
    #![allow(missing_docs, clippy::too_many_arguments)]

    world!(
        "wasmon:plugin/rollback-action",
        "export_rollback_action",
        "wasmon_sdk::rollback_action"
    );
}

#[cfg(feature = "metric-check")]
pub mod metric_check {
    //! The `metric-check` world: a business-metric check that queries the
    //! agent's own store (see [`crate::query`]).
    //!
    //! Implement [`Guest`] and export it with
    //! [`export_metric_check!`](crate::export_metric_check).
    // Generated code: some WIT items have no doc comment, and the export glue
    // takes the flattened canonical-ABI arguments.
    #![allow(missing_docs, clippy::too_many_arguments)]

    world!(
        "wasmon:plugin/metric-check",
        "export_metric_check",
        "wasmon_sdk::metric_check",
        "wasmon:plugin/query@0.1.0": crate::bindings::wasmon::plugin::query,
    );
    pub use crate::types::{Label, Sample};
}

// The export macros at the crate root, where plugins expect them
// (`wasmon_sdk::export_receiver!`); wit-bindgen defines them in the world
// modules.
#[cfg(feature = "health-check")]
pub use health_check::export_health_check;
#[cfg(feature = "metric-check")]
pub use metric_check::export_metric_check;
#[cfg(feature = "receiver")]
pub use receiver::export_receiver;
#[cfg(feature = "rollback-action")]
pub use rollback_action::export_rollback_action;

/// The plugin instance's config, parsed from the JSON the host hands out.
///
/// The host passes the instance's `config` table from the agent config as
/// JSON, with `${ENV}` references already expanded (that is how secrets reach
/// a plugin). An empty config reads as `{}`, so a struct whose fields all
/// have defaults needs no config at all. A config that does not fit `T` is a
/// [`Failure::Permanent`] naming the instance, because retrying cannot fix
/// it; use `#[serde(deny_unknown_fields)]` to catch misspelled keys.
///
/// Parsing is cheap next to a network call, so plugins parse per call rather
/// than cache: the host may hand a new config to the same instance on reload.
///
/// The agent's notification templates (the key [`template::CONFIG_KEY`],
/// read by [`template::Set::configured`]) are not part of `T`.
pub fn config<T: serde::de::DeserializeOwned>() -> Result<T, Failure> {
    parse_config(&raw_config()).map_err(|e| {
        Failure::Permanent(format!(
            "plugin instance {:?}: invalid config: {e}",
            instance_name()
        ))
    })
}

/// [`config`] of a JSON text.
fn parse_config<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, serde_json::Error> {
    let text = if raw.trim().is_empty() { "{}" } else { raw };
    // Only a config that carries templates is read twice: the others keep
    // serde's line and column in their errors.
    if text.contains(template::CONFIG_KEY) {
        if let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str(text) {
            map.remove(template::CONFIG_KEY);
            return serde_json::from_value(serde_json::Value::Object(map));
        }
    }
    serde_json::from_str(text)
}

/// The instance's config as the host passed it: JSON text.
pub fn raw_config() -> String {
    bindings::wasmon::plugin::config::get()
}

/// The plugin instance's name in the agent config (one component may serve
/// several instances, each with its own config).
pub fn instance_name() -> String {
    bindings::wasmon::plugin::config::instance_name()
}

/// Milliseconds since the Unix epoch, as the host sees it.
///
/// Use this rather than `std::time`: tests drive the host's clock, and a
/// plugin must not assume it moves with real time.
pub fn now_ms() -> i64 {
    bindings::wasmon::plugin::clock::now_ms()
}

#[cfg(test)]
mod tests {
    /// A plugin's own config never sees the agent's templates, even with
    /// `deny_unknown_fields`.
    #[test]
    fn config_leaves_out_the_templates() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        #[serde(deny_unknown_fields)]
        struct C {
            url: String,
        }
        let raw = r#"{"url": "http://x", "__templates": [{"name": "a.tmpl", "text": ""}]}"#;
        assert_eq!(
            super::parse_config::<C>(raw).unwrap(),
            C {
                url: "http://x".into()
            }
        );
        let e = super::parse_config::<C>(r#"{"url": "u", "nope": 1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `nope`"), "{e}");
        assert!(super::parse_config::<C>("").is_err());
    }
}
