//! Forwarding alerts to external Alertmanagers (`POST /api/v2/alerts`), as
//! Prometheus' notifier does: a bounded queue, batches, and a log line (and
//! a dropped count) when a peer is down. Scale-out without a home-made
//! cluster: point this at an Alertmanager cluster.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::types::PostableAlert;

/// Most alerts waiting to be sent; older ones are dropped beyond it.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Most alerts in one POST.
pub const MAX_BATCH: usize = 64;

pub struct Forwarder {
    tx: tokio::sync::mpsc::Sender<PostableAlert>,
    pub dropped: Arc<AtomicU64>,
    pub sent: Arc<AtomicU64>,
    pub errors: Arc<AtomicU64>,
}

impl Forwarder {
    /// Starts the sender task for these Alertmanager base URLs.
    pub fn start(urls: Vec<String>, timeout: Duration) -> Forwarder {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<PostableAlert>(QUEUE_CAPACITY);
        let (dropped, sent, errors) = (
            Arc::default(),
            Arc::<AtomicU64>::default(),
            Arc::<AtomicU64>::default(),
        );
        let (s2, e2) = (sent.clone(), errors.clone());
        let client = reqwest::Client::builder()
            .user_agent(concat!("wasmon/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .build()
            .expect("a client with default TLS settings builds");
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                for url in &urls {
                    let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
                    match client.post(&endpoint).json(&batch).send().await {
                        Ok(r) if r.status().is_success() => {
                            s2.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            e2.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(alertmanager = %endpoint, status = %r.status(), count = batch.len(), "alertmanager refused alerts");
                        }
                        Err(e) => {
                            e2.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(alertmanager = %endpoint, error = %e, count = batch.len(), "error sending alerts");
                        }
                    }
                }
                batch.clear();
            }
        });
        Forwarder {
            tx,
            dropped,
            sent,
            errors,
        }
    }

    /// Queues alerts; never blocks (rule evaluation calls it).
    pub fn send(&self, alerts: Vec<PostableAlert>) {
        for a in alerts {
            if self.tx.try_send(a).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
