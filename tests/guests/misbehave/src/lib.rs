//! Test guest: a receiver that misbehaves on purpose, so the host's tests can
//! check that a bad plugin fails its own call and nothing else.
//!
//! Config: `{"mode": "...", "url": "..."}`, where `mode` is one of
//! - `ok`: returns `Ok(())`;
//! - `loop`: spins forever (the host's deadline must interrupt it);
//! - `alloc`: allocates and touches 1 MiB chunks forever (the host's memory
//!   cap must stop it: the failed allocation aborts, which traps);
//! - `trap`: panics; with `panic = "abort"` that is a wasm trap;
//! - `http`: POSTs a small JSON document to `url` and returns what
//!   [`http::Response::classify`] makes of the answer, or the transport
//!   failure (a host that denies the URL gives a retryable failure whose
//!   message holds `HTTP-request-denied`);
//! - `fail-retryable` / `fail-permanent`: returns that failure;
//! - `busy`: computes for `ms` milliseconds of host clock, then returns
//!   `Ok(())` (a slow but well-behaved call, for in-flight reload tests).

use std::hint::black_box;

use serde::Deserialize;
use wasmon_sdk::http;
use wasmon_sdk::receiver::{Failure, Guest, Notification};

#[derive(Deserialize)]
struct Config {
    mode: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    ms: i64,
}

const MIB: usize = 1 << 20;

struct Misbehave;

impl Guest for Misbehave {
    fn notify(notification: Notification) -> Result<(), Failure> {
        let config: Config = wasmon_sdk::config()?;
        wasmon_sdk::log::debug(format!("misbehave: mode {:?}", config.mode));
        match config.mode.as_str() {
            "ok" => Ok(()),
            "loop" => spin(),
            "alloc" => hoard(),
            "trap" => panic!("boom"),
            "http" => {
                let body = serde_json::json!({
                    "receiver": notification.receiver,
                    "alerts": notification.alerts.len(),
                });
                let response = http::post_json(&config.url, &body, &[])?;
                wasmon_sdk::log::info(format!("misbehave: HTTP {}", response.status));
                response.classify()
            }
            "busy" => {
                let until = wasmon_sdk::now_ms() + config.ms;
                while wasmon_sdk::now_ms() < until {
                    black_box(0u64);
                }
                Ok(())
            }
            "fail-retryable" => Err(Failure::retryable("misbehave: asked to fail (retryable)")),
            "fail-permanent" => Err(Failure::permanent("misbehave: asked to fail (permanent)")),
            other => Err(Failure::permanent(format!(
                "misbehave: unknown mode {other:?}"
            ))),
        }
    }
}

/// Loops forever; `black_box` keeps the optimizer from proving the loop
/// useless and the counter from being folded away.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB at a time, writes every page of it (so the memory is
/// really used, not just reserved) and keeps it, until allocation fails.
fn hoard() -> ! {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; MIB];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        kept.push(black_box(chunk));
        black_box(&kept);
    }
}

wasmon_sdk::export_receiver!(Misbehave);
