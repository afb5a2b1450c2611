//! Sending a batch: one remote-write request (protobuf + snappy), retried
//! with exponential backoff (or the receiver's Retry-After) on network
//! errors, 5xx and, if configured, 429; any other 4xx drops the batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::proto;
use super::queue::RemoteMetricsRef;
use super::shard::SeriesInfo;
use super::QueueLabels;

/// What a shard needs to send.
pub(super) struct Sender {
    pub(super) client: reqwest::Client,
    pub(super) url: String,
    pub(super) headers: reqwest::header::HeaderMap,
    pub(super) cfg: crate::config::remote::QueueConfig,
    pub(super) labels: QueueLabels,
    pub(super) metrics: Arc<RemoteMetricsRef>,
}

/// How one attempt ended.
enum Outcome {
    Ok,
    Retry(Option<Duration>),
    Drop,
}

impl Sender {
    /// Sends until the receiver accepts or rejects for good; false when
    /// stopped first.
    pub(super) async fn send_with_retries(
        &self,
        batch: &[(Arc<SeriesInfo>, i64, f64)],
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let body = match proto::encode(&build_request(batch)) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(remote_name = %self.labels.remote_name, error = %e, "snappy compression failed; batch dropped");
                self.metrics.failed.inc_by(batch.len() as u64);
                return true;
            }
        };
        let n = batch.len() as u64;
        let mut backoff = self.cfg.min_backoff;
        loop {
            let started = Instant::now();
            self.metrics.sent_bytes.inc_by(body.len() as u64);
            // A stop abandons the request in flight: the batch is not
            // recorded as sent, so the next run sends it again.
            let outcome = tokio::select! {
                o = self.attempt(body.clone()) => o,
                _ = stop.changed() => return false,
            };
            match outcome {
                Outcome::Ok => {
                    self.metrics.samples.inc_by(n);
                    let max_t = batch.iter().map(|b| b.1).max().unwrap_or(0);
                    let secs = max_t as f64 / 1000.0;
                    if secs > self.metrics.highest_sent.get() {
                        self.metrics.highest_sent.set(secs);
                    }
                    tracing::trace!(samples = n, took = ?started.elapsed(), "remote write batch sent");
                    return true;
                }
                Outcome::Drop => {
                    self.metrics.failed.inc_by(n);
                    return true;
                }
                Outcome::Retry(after) => {
                    self.metrics.retried.inc_by(n);
                    let wait = after
                        .unwrap_or(backoff)
                        .min(self.cfg.max_backoff.max(backoff));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return false,
                    }
                    backoff = (backoff * 2).min(self.cfg.max_backoff);
                }
            }
        }
    }

    async fn attempt(&self, body: Vec<u8>) -> Outcome {
        let name = &self.labels.remote_name;
        let resp = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(remote_name = %name, error = %e, "remote write request failed; retrying");
                return Outcome::Retry(None);
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Outcome::Ok;
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(256).collect();
        let retry = status.is_server_error()
            || (status == reqwest::StatusCode::TOO_MANY_REQUESTS && self.cfg.retry_on_http_429);
        if retry {
            tracing::warn!(remote_name = %name, %status, body = %text.trim(), "remote write got a recoverable error; retrying");
            Outcome::Retry(retry_after)
        } else {
            tracing::error!(remote_name = %name, %status, body = %text.trim(), "remote write rejected a batch; dropping it");
            Outcome::Drop
        }
    }
}

/// Groups a batch by series (samples of a series stay in WAL order).
fn build_request(batch: &[(Arc<SeriesInfo>, i64, f64)]) -> proto::WriteRequest {
    let mut index: HashMap<*const SeriesInfo, usize> = HashMap::new();
    let mut ts: Vec<proto::TimeSeries> = Vec::new();
    for (s, t, v) in batch {
        let i = *index.entry(Arc::as_ptr(s)).or_insert_with(|| {
            ts.push(proto::TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|l| proto::Label {
                        name: l.name.clone(),
                        value: l.value.clone(),
                    })
                    .collect(),
                samples: Vec::new(),
            });
            ts.len() - 1
        });
        ts[i].samples.push(proto::Sample {
            value: *v,
            timestamp: *t,
        });
    }
    proto::WriteRequest { timeseries: ts }
}
