//! The plugin runtime: WebAssembly components, sandboxed and hot-reloaded.
//!
//! - [`bindings`]: host bindings generated from `wit/plugin.wit`.
//! - [`engine`]: the wasmtime engine, epoch ticker and compile cache.
//! - [`host`]: per-call store state and the host imports (log, config, clock, query).
//! - [`policy`]: the per-instance outbound HTTP allow-list (entries are
//!   [`HostPattern`](crate::config::hosts::HostPattern)s, parsed by config).
//! - [`outbound`]: an instance's requests sent as its `http_config` says
//!   (TLS, auth, proxy, redirects checked against `allow_hosts`).
//! - [`circuit`]: the per-instance failure policy (circuit breaker, permanent failures).
//! - [`file`](mod@file): a plugin file's stamp, and reading it header first under a size cap.
//! - [`loader`]: compile + type-check one file against its world.
//! - [`runtime`]: the set of loaded plugins and calls under limits.
//! - [`watch`]: hot reload from the plugins directory.
//!   (`wasmon plugin call`, one call without an agent, is in `author/call.rs`.)
//! - [`list`]: `wasmon plugins list`'s table.
//! - [`templates`]: the `templates` files, handed to receiver instances.

pub mod bindings;
pub mod circuit;
pub mod engine;
pub mod file;
pub mod host;
pub mod list;
pub mod loader;
pub mod notifier;
pub mod outbound;
pub mod policy;
pub mod runtime;
mod seed;
pub mod templates;
pub mod watch;

pub use circuit::Policy;
pub use loader::PluginKind;
pub use runtime::{CallError, CallInfo, Instance, PluginRuntime, PluginStatus, ReloadOutcome};
pub use seed::seed_dir;
