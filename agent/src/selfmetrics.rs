//! The agent's own metrics, served at `/metrics` in the Prometheus text
//! format (via the official `prometheus-client` crate).

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub plugin: String,
    pub instance: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub plugin: String,
    pub instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub wasmtime: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub remote_name: String,
    pub url: String,
}

/// `wasmon_remote_storage_*`, after Prometheus' `prometheus_remote_storage_*`.
#[derive(Default)]
pub struct RemoteMetrics {
    pub samples: Family<QueueLabels, Counter>,
    pub failed: Family<QueueLabels, Counter>,
    pub retried: Family<QueueLabels, Counter>,
    pub dropped: Family<QueueLabels, Counter>,
    pub pending: Family<QueueLabels, Gauge>,
    pub highest_sent: Family<QueueLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub shards: Family<QueueLabels, Gauge>,
    pub sent_bytes: Family<QueueLabels, Counter>,
    pub wal_gaps: Family<QueueLabels, Counter>,
}

impl RemoteMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "remote_storage_samples",
            "Samples successfully sent to the remote storage",
            self.samples.clone(),
        );
        r.register(
            "remote_storage_samples_failed",
            "Samples that failed to send and were dropped (non-recoverable errors such as HTTP 4xx)",
            self.failed.clone(),
        );
        r.register(
            "remote_storage_samples_retried",
            "Samples that failed to send and were retried (HTTP 5xx, 429 when enabled, network errors)",
            self.retried.clone(),
        );
        r.register(
            "remote_storage_samples_dropped",
            "Samples not sent because write_relabel_configs dropped their series",
            self.dropped.clone(),
        );
        r.register(
            "remote_storage_samples_pending",
            "Samples read from the WAL and waiting in a shard",
            self.pending.clone(),
        );
        r.register(
            "remote_storage_queue_highest_sent_timestamp_seconds",
            "Newest sample timestamp the remote storage accepted",
            self.highest_sent.clone(),
        );
        r.register(
            "remote_storage_shards",
            "Shards the queue runs",
            self.shards.clone(),
        );
        r.register(
            "remote_storage_sent_bytes",
            "Compressed request bytes sent, retries included",
            self.sent_bytes.clone(),
        );
        r.register(
            "remote_storage_wal_gaps",
            "Times the queue fell behind a WAL checkpoint and skipped deleted segments",
            self.wal_gaps.clone(),
        );
    }
}

/// Every metric the agent exports about itself.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub plugin_calls: Family<CallLabels, Counter>,
    pub plugin_call_duration: Family<InstanceLabels, Histogram>,
    pub plugin_http_denied: Family<InstanceLabels, Counter>,
    pub plugin_circuit_state: Family<InstanceLabels, Gauge>,
    pub plugin_short_circuited: Family<CallLabels, Counter>,
    pub plugin_loads: Family<ResultLabels, Counter>,
    pub plugin_last_load_successful: Family<PluginLabels, Gauge>,
    pub plugins_loaded: Gauge,
    pub plugin_loads_in_progress: Gauge,
    pub plugin_file_reads: Counter,
    pub plugins_dir_rescans: Counter,
    pub plugins_dir_present: Gauge,
    pub plugins_dir_disappearances: Counter,
    pub config_last_reload_successful: Gauge,
    pub config_last_reload_success_timestamp: Gauge,
    /// `wasmon_remote_storage_*` (remote write queues).
    pub remote: RemoteMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("wasmon");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            plugin_calls: Family::default(),
            plugin_call_duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0,
                ])
            }),
            plugin_http_denied: Family::default(),
            plugin_circuit_state: Family::default(),
            plugin_short_circuited: Family::default(),
            plugin_loads: Family::default(),
            plugin_last_load_successful: Family::default(),
            plugins_loaded: Gauge::default(),
            plugin_loads_in_progress: Gauge::default(),
            plugin_file_reads: Counter::default(),
            plugins_dir_rescans: Counter::default(),
            plugins_dir_present: Gauge::default(),
            plugins_dir_disappearances: Counter::default(),
            config_last_reload_successful: Gauge::default(),
            config_last_reload_success_timestamp: Gauge::default(),
            remote: Default::default(),
        };
        m.remote.register(&mut registry);
        registry.register(
            "plugin_calls",
            "Plugin calls by plugin, instance and result (ok, retryable, permanent, timeout, memory, trap, error)",
            m.plugin_calls.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Duration of plugin calls, instantiation included",
            m.plugin_call_duration.clone(),
        );
        registry.register(
            "plugin_http_requests_denied",
            "Outbound HTTP requests denied because the host is not in the instance's allow_hosts",
            m.plugin_http_denied.clone(),
        );
        registry.register(
            "plugin_circuit_state",
            "The circuit breaker of a plugin instance: 0 closed (calls go through), 1 open (calls are refused without running the plugin), 2 half-open (one probe call is let through)",
            m.plugin_circuit_state.clone(),
        );
        registry.register(
            "plugin_short_circuited_calls",
            "Calls refused without running the plugin, by result: circuit_open (timeouts or repeated failures tripped the instance's breaker), failed_before (a receiver's same notification already failed permanently)",
            m.plugin_short_circuited.clone(),
        );
        registry.register(
            "plugin_loads",
            "Attempts to load a plugin file, by result (success, failure, superseded: a newer version arrived while it compiled)",
            m.plugin_loads.clone(),
        );
        registry.register(
            "plugin_last_load_successful",
            "Whether the last load of the plugin file succeeded (0 means an older version, if any, still serves)",
            m.plugin_last_load_successful.clone(),
        );
        registry.register(
            "plugins_loaded",
            "Plugins currently serving",
            m.plugins_loaded.clone(),
        );
        registry.register(
            "plugin_loads_in_progress",
            "Plugin files being compiled (several at once; a small one never waits behind large ones)",
            m.plugin_loads_in_progress.clone(),
        );
        registry.register(
            "plugin_file_reads",
            "Plugin files read and hashed because their size, times or inode changed (a steady rise without deploys means something keeps rewriting the plugins directory)",
            m.plugin_file_reads.clone(),
        );
        registry.register(
            "plugins_dir_rescans",
            "Rescans of the plugins directory after a change (a stat per file; only changed files are read)",
            m.plugins_dir_rescans.clone(),
        );
        registry.register(
            "plugins_dir_present",
            "Whether the plugins directory could be read at the last look (0: missing; loaded plugins keep serving)",
            m.plugins_dir_present.clone(),
        );
        registry.register(
            "plugins_dir_disappearances",
            "Times the plugins directory was found missing or unreadable",
            m.plugins_dir_disappearances.clone(),
        );
        registry.register(
            "config_last_reload_successful",
            "Whether the last configuration reload attempt was successful",
            m.config_last_reload_successful.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload",
            m.config_last_reload_success_timestamp.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                wasmtime: "48.0.8".to_string(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Build information; the value is always 1",
            build,
        );
        *m.registry.lock().unwrap() = registry;
        m
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// A metric owned elsewhere (the store, the scrape manager), rendered at
/// scrape time from its current value.
pub struct Extra {
    name: &'static str,
    help: &'static str,
    counter: bool,
    /// Labels (name, value), for families such as `..._total{reason="..."}`
    /// or `{job="...",config="..."}`; consecutive `Extra`s of one name
    /// share their HELP and TYPE lines.
    labels: Vec<(&'static str, String)>,
    value: f64,
}

impl Extra {
    pub fn gauge(name: &'static str, help: &'static str, value: f64) -> Extra {
        Extra {
            name,
            help,
            counter: false,
            labels: Vec::new(),
            value,
        }
    }

    pub fn counter(name: &'static str, help: &'static str, value: f64) -> Extra {
        Extra {
            name,
            help,
            counter: true,
            labels: Vec::new(),
            value,
        }
    }

    /// This metric with one more label; the value is escaped when
    /// rendered, so it may come from config (a job name).
    pub fn with_label(mut self, name: &'static str, value: impl Into<String>) -> Extra {
        self.labels.push((name, value.into()));
        self
    }
}

impl Metrics {
    /// The exposition text with `extra` metrics added before `# EOF`.
    pub fn encode_with(&self, extra: &[Extra]) -> String {
        use std::fmt::Write;
        let mut out = self.encode();
        let eof = out.rfind("# EOF").unwrap_or(out.len());
        out.truncate(eof);
        let mut family = "";
        for e in extra {
            let kind = if e.counter { "counter" } else { "gauge" };
            let suffix = if e.counter { "_total" } else { "" };
            if e.name != family {
                let _ = writeln!(out, "# HELP {} {}.", e.name, e.help);
                let _ = writeln!(out, "# TYPE {} {kind}", e.name);
                family = e.name;
            }
            let labels = if e.labels.is_empty() {
                String::new()
            } else {
                let pairs: Vec<String> = e
                    .labels
                    .iter()
                    .map(|(n, v)| format!("{n}=\"{}\"", escape_label_value(v)))
                    .collect();
                format!("{{{}}}", pairs.join(","))
            };
            let _ = writeln!(out, "{}{suffix}{labels} {}", e.name, e.value);
        }
        out.push_str("# EOF\n");
        out
    }
}

/// A label value as the text format writes it: `\`, `"` and newlines
/// escaped.
fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// VmRSS of this process, from /proc (Linux only).
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What the allocator (jemalloc, the agent's global allocator) holds, in
/// bytes: `allocated` by live objects, `active` in pages with live
/// objects (the difference is fragmentation within size classes),
/// `resident` in physically resident allocator pages (including freed
/// pages not yet returned), `retained` as address space kept without
/// physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorStats {
    pub allocated: u64,
    pub active: u64,
    pub resident: u64,
    pub retained: u64,
}

/// jemalloc's statistics, refreshed now; None where jemalloc is not the
/// global allocator (library tests), whose arenas then hold nothing.
pub fn allocator_stats() -> Option<AllocatorStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    let s = AllocatorStats {
        allocated: stats::allocated::read().ok()? as u64,
        active: stats::active::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
        retained: stats::retained::read().ok()? as u64,
    };
    (s.allocated > 0).then_some(s)
}

/// jemalloc's full statistics report (per size class: live objects,
/// slabs, utilization), for `/debug/allocator`. None where jemalloc is not
/// the global allocator.
pub fn allocator_report() -> Option<String> {
    allocator_stats()?;
    let mut buf = Vec::new();
    let mut opts = tikv_jemalloc_ctl::stats_print::Options::default();
    // Per-arena detail repeats the merged figures once per arena.
    opts.skip_per_arena = true;
    tikv_jemalloc_ctl::stats_print::stats_print(&mut buf, opts).ok()?;
    String::from_utf8(buf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Label values from config (a job name) are escaped, so a quote in a
    /// job name cannot break the exposition text.
    #[test]
    fn extra_label_values_are_escaped() {
        let page = Metrics::new().encode_with(&[
            Extra::counter("wasmon_x", "X", 1.0)
                .with_label("job", "a\"b\\c\nd")
                .with_label("config", "dns_sd_configs[0]"),
            Extra::counter("wasmon_x", "X", 2.0).with_label("job", "e"),
        ]);
        assert!(
            page.contains(
                "wasmon_x_total{job=\"a\\\"b\\\\c\\nd\",config=\"dns_sd_configs[0]\"} 1\n"
            ),
            "{page}"
        );
        assert!(page.contains("wasmon_x_total{job=\"e\"} 2\n"), "{page}");
        assert_eq!(page.matches("# TYPE wasmon_x counter").count(), 1, "{page}");
        assert!(page.ends_with("# EOF\n"));
    }
}
