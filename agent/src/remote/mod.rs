//! Remote write: every `[[remote_write]]` queue tails the WAL and sends its
//! samples to a Prometheus remote-write 1.0 receiver (protobuf + snappy).
//!
//! ```text
//! WAL segments ──reader thread──► series refs → labels (external labels, write relabel)
//!                     │ samples by series hash        ▲ progress file (per shard position)
//!                     ▼                               │ written after every acknowledged batch
//!               shard 0..n (bounded channels) ──batch by count/deadline──► HTTP POST, retry 5xx/429
//! ```
//!
//! Progress is a WAL position (segment, byte offset just past a record) per
//! shard, persisted in `DATA/remote_write/<name>.json` after every batch the
//! receiver accepted (or rejected for good). A restart, kill -9 included,
//! resumes each shard after its own position, so nothing is lost and only a
//! batch sent but not yet recorded is sent twice. Samples of one series
//! always go to the same shard (a stable hash), which keeps them in order.

pub mod config;
mod progress;
pub mod proto;
mod queue;
mod send;
mod shard;
mod wal_reader;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::validate_all;

use crate::config::remote::RemoteWriteConfig;
use crate::model::Labels;
// The queues' metric families are selfmetrics'; `queue` names them from here.
use crate::selfmetrics::{QueueLabels, RemoteMetrics};

/// Everything a queue is started from; a reload restarts a queue only when
/// this changes.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    pub config: RemoteWriteConfig,
    pub external_labels: Labels,
    /// Where `basic_auth.password_file` resolves.
    pub base_dir: PathBuf,
}

/// The running queues.
pub struct RemoteWrite {
    wal_dir: PathBuf,
    state_dir: PathBuf,
    metrics: Arc<crate::selfmetrics::Metrics>,
    queues: tokio::sync::Mutex<Vec<(QueueSpec, queue::Queue)>>,
}

impl RemoteWrite {
    /// `data_dir` is the store's directory: the WAL is `data_dir/wal`, the
    /// progress files go to `data_dir/remote_write/`.
    pub fn new(data_dir: &Path, metrics: Arc<crate::selfmetrics::Metrics>) -> RemoteWrite {
        RemoteWrite {
            wal_dir: data_dir.join("wal"),
            state_dir: data_dir.join("remote_write"),
            metrics,
            queues: tokio::sync::Mutex::new(Vec::new()),
        }
    }

    /// Runs the queues of `config`: unchanged ones keep running, changed and
    /// removed ones stop (their progress stays on disk), new ones start.
    pub async fn apply(&self, config: &crate::config::Config) -> anyhow::Result<()> {
        let external = Labels::from_pairs(config.global.external_labels.clone());
        let base_dir = config.resolve(Path::new(""));
        let specs: Vec<QueueSpec> = config
            .remote_write
            .iter()
            .map(|c| QueueSpec {
                config: c.clone(),
                external_labels: external.clone(),
                base_dir: base_dir.clone(),
            })
            .collect();
        let mut queues = self.queues.lock().await;
        let mut keep = Vec::new();
        for (spec, q) in queues.drain(..) {
            if specs.contains(&spec) {
                keep.push((spec, q));
            } else {
                q.stop().await;
            }
        }
        for spec in specs {
            if keep.iter().any(|(s, _)| *s == spec) {
                continue;
            }
            std::fs::create_dir_all(&self.state_dir)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", self.state_dir.display()))?;
            let q = queue::Queue::start(
                spec.clone(),
                self.wal_dir.clone(),
                &self.state_dir,
                &self.metrics.remote,
            )?;
            keep.push((spec, q));
        }
        *queues = keep;
        Ok(())
    }

    /// Stops every queue. Unsent samples stay in the WAL for the next start.
    pub async fn stop(&self) {
        let mut queues = self.queues.lock().await;
        for (_, q) in queues.drain(..) {
            q.stop().await;
        }
    }
}
