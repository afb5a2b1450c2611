//! Host bindings for the four plugin worlds in `wit/plugin.wit`.
//!
//! The first world generates the shared interfaces (types, log, config,
//! clock); the others reuse them through `with`, so one host implementation
//! and one set of Rust types serve every world.

pub mod receiver {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "receiver",
        exports: { default: async },
    });
}

pub mod health_check {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "health-check",
        exports: { default: async },
        with: {
            "wasmon:plugin/types": super::receiver::wasmon::plugin::types,
            "wasmon:plugin/log": super::receiver::wasmon::plugin::log,
            "wasmon:plugin/config": super::receiver::wasmon::plugin::config,
            "wasmon:plugin/clock": super::receiver::wasmon::plugin::clock,
        },
    });
}

pub mod rollback_action {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "rollback-action",
        exports: { default: async },
        with: {
            "wasmon:plugin/types": super::receiver::wasmon::plugin::types,
            "wasmon:plugin/log": super::receiver::wasmon::plugin::log,
            "wasmon:plugin/config": super::receiver::wasmon::plugin::config,
            "wasmon:plugin/clock": super::receiver::wasmon::plugin::clock,
        },
    });
}

pub mod metric_check {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "metric-check",
        imports: { "wasmon:plugin/query.instant": async },
        exports: { default: async },
        with: {
            "wasmon:plugin/types": super::receiver::wasmon::plugin::types,
            "wasmon:plugin/log": super::receiver::wasmon::plugin::log,
            "wasmon:plugin/config": super::receiver::wasmon::plugin::config,
            "wasmon:plugin/clock": super::receiver::wasmon::plugin::clock,
        },
    });
}

pub use receiver::wasmon::plugin::types;
