//! One remote-write queue: starts and stops its WAL reader thread
//! (`wal_reader.rs`), its shards (`shard.rs`, sending through `send.rs`)
//! and the progress file (`progress.rs`). See the module docs of
//! [`super`] for the design.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use super::progress::Tracker;
use super::send::Sender;
use super::shard::run_shard;
use super::wal_reader::Reader;
use super::{QueueLabels, QueueSpec, RemoteMetrics};
use crate::clock::now_ms;

pub struct Queue {
    name: String,
    stop_tx: watch::Sender<bool>,
    stop_flag: Arc<AtomicBool>,
    shards: Vec<tokio::task::JoinHandle<()>>,
    reader: Option<std::thread::JoinHandle<()>>,
    tracker: Arc<Mutex<Tracker>>,
}

/// The metric children of one queue, resolved once.
pub(super) struct RemoteMetricsRef {
    pub(super) samples: prometheus_client::metrics::counter::Counter,
    pub(super) failed: prometheus_client::metrics::counter::Counter,
    pub(super) retried: prometheus_client::metrics::counter::Counter,
    pub(super) dropped: prometheus_client::metrics::counter::Counter,
    pub(super) pending: prometheus_client::metrics::gauge::Gauge,
    pub(super) highest_sent:
        prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    pub(super) sent_bytes: prometheus_client::metrics::counter::Counter,
    pub(super) wal_gaps: prometheus_client::metrics::counter::Counter,
}

impl Queue {
    pub fn start(
        spec: QueueSpec,
        wal_dir: PathBuf,
        state_dir: &Path,
        metrics: &RemoteMetrics,
    ) -> Result<Queue> {
        let cfg = &spec.config;
        let name = cfg.queue_name();
        let url = cfg.url.get_ref().clone();
        let labels = QueueLabels {
            remote_name: name.clone(),
            url: url.clone(),
        };
        let m = Arc::new(RemoteMetricsRef {
            samples: metrics.samples.get_or_create(&labels).clone(),
            failed: metrics.failed.get_or_create(&labels).clone(),
            retried: metrics.retried.get_or_create(&labels).clone(),
            dropped: metrics.dropped.get_or_create(&labels).clone(),
            pending: metrics.pending.get_or_create(&labels).clone(),
            highest_sent: metrics.highest_sent.get_or_create(&labels).clone(),
            sent_bytes: metrics.sent_bytes.get_or_create(&labels).clone(),
            wal_gaps: metrics.wal_gaps.get_or_create(&labels).clone(),
        });
        // Dynamic resharding is not implemented: the queue runs min_shards.
        let n = cfg.queue_config.min_shards;
        metrics.shards.get_or_create(&labels).set(n as i64);
        m.pending.set(0);

        let headers = cfg
            .request_headers(&spec.base_dir)
            .with_context(|| format!("remote_write {name:?}"))?;
        let client = reqwest::Client::builder()
            .timeout(cfg.remote_timeout)
            .build()
            .context("building the remote-write HTTP client")?;

        let tracker = Tracker::load(state_dir.join(format!("{name}.json")), &url, n, now_ms());
        let tracker = Arc::new(Mutex::new(tracker));
        tracker.lock().persist();
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_flag = Arc::new(AtomicBool::new(false));
        let mut txs = Vec::new();
        let mut shards = Vec::new();
        let sender = Arc::new(Sender {
            client,
            url: url.clone(),
            headers,
            cfg: cfg.queue_config.clone(),
            labels,
            metrics: m.clone(),
        });
        for i in 0..n {
            let (tx, rx) = mpsc::channel(cfg.queue_config.capacity);
            txs.push(tx);
            shards.push(tokio::spawn(run_shard(
                i,
                rx,
                sender.clone(),
                tracker.clone(),
                stop_rx.clone(),
            )));
        }
        let relabelers = cfg.relabelers()?;
        let (start, min_t) = {
            let t = tracker.lock();
            (t.shards.clone(), t.min_t)
        };
        let reader = Reader {
            name: name.clone(),
            dir: wal_dir,
            txs,
            start,
            min_t,
            external: spec.external_labels.clone(),
            relabelers,
            refs: HashMap::new(),
            stop: stop_flag.clone(),
            metrics: m,
        };
        let reader = std::thread::Builder::new()
            .name(format!("remote-write-{name}"))
            .spawn(move || reader.run())
            .context("starting the remote-write reader thread")?;
        // Positions advanced by marks alone (no batch to wait for) are
        // written lazily, once a second.
        let t = tracker.clone();
        let mut stop2 = stop_rx.clone();
        shards.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => t.lock().persist(),
                    _ = stop2.changed() => return,
                }
            }
        }));
        tracing::info!(remote_name = %name, url = %url, shards = n, resume = ?tracker.lock().committed(), "remote write queue started");
        Ok(Queue {
            name,
            stop_tx,
            stop_flag,
            shards,
            reader: Some(reader),
            tracker,
        })
    }

    /// Stops the shards (a batch in flight is abandoned: it is sent again
    /// by the next run) and the reader, and writes the progress.
    pub async fn stop(mut self) {
        // The reader first: it finishes the record in hand (samples and
        // marks) unless a full shard makes it give up, so the shards can
        // then record every mark they were sent.
        self.stop_flag.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            let _ = tokio::task::spawn_blocking(move || r.join()).await;
        }
        let _ = self.stop_tx.send(true);
        for h in self.shards.drain(..) {
            let _ = h.await;
        }
        self.tracker.lock().persist();
        tracing::info!(remote_name = %self.name, "remote write queue stopped");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex as StdMutex;

    use axum::http::{HeaderMap, StatusCode};

    use super::*;
    use crate::config::Config;
    use crate::model::Labels;
    use crate::remote::proto;
    use crate::remote::RemoteWrite;
    use crate::selfmetrics::Metrics;
    use crate::tsdb::record;
    use crate::tsdb::{Db, Options};
    use std::time::Instant;

    /// A 127.0.0.1 receiver answering from a script of statuses (the last
    /// one repeats), decoding and recording what it accepted (2xx only).
    struct Rx {
        addr: std::net::SocketAddr,
        script: Arc<StdMutex<Vec<StatusCode>>>,
        attempts: Arc<StdMutex<Vec<(StatusCode, usize)>>>,
        accepted: Arc<StdMutex<Vec<(String, i64, f64)>>>,
        headers: Arc<StdMutex<Option<HeaderMap>>>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
    }

    impl Rx {
        async fn start(script: Vec<StatusCode>) -> Rx {
            let script = Arc::new(StdMutex::new(script));
            let attempts: Arc<StdMutex<Vec<(StatusCode, usize)>>> = Arc::default();
            let accepted: Arc<StdMutex<Vec<(String, i64, f64)>>> = Arc::default();
            let headers: Arc<StdMutex<Option<HeaderMap>>> = Arc::default();
            let (s, a, acc, h) = (
                script.clone(),
                attempts.clone(),
                accepted.clone(),
                headers.clone(),
            );
            let app = axum::Router::new().route(
                "/api/v1/write",
                axum::routing::post(move |hm: HeaderMap, body: axum::body::Bytes| {
                    let (s, a, acc, h) = (s.clone(), a.clone(), acc.clone(), h.clone());
                    async move {
                        let req = proto::decode(&body).expect("valid remote-write body");
                        let n: usize = req.timeseries.iter().map(|t| t.samples.len()).sum();
                        let status = {
                            let mut s = s.lock().unwrap();
                            if s.len() > 1 {
                                s.remove(0)
                            } else {
                                s[0]
                            }
                        };
                        a.lock().unwrap().push((status, n));
                        *h.lock().unwrap() = Some(hm);
                        if status.is_success() {
                            let mut acc = acc.lock().unwrap();
                            for ts in req.timeseries {
                                let id = ts
                                    .labels
                                    .iter()
                                    .map(|l| format!("{}={}", l.name, l.value))
                                    .collect::<Vec<_>>()
                                    .join(",");
                                for smp in ts.samples {
                                    acc.push((id.clone(), smp.timestamp, smp.value));
                                }
                            }
                        }
                        (status, "")
                    }
                }),
            );
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                axum::serve(l, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap()
            });
            Rx {
                addr,
                script,
                attempts,
                accepted,
                headers,
                stop: Some(tx),
            }
        }
    }

    impl Drop for Rx {
        fn drop(&mut self) {
            if let Some(tx) = self.stop.take() {
                let _ = tx.send(());
            }
        }
    }

    fn config(addr: std::net::SocketAddr, extra: &str) -> Config {
        Config::parse(
            &format!(
                r#"
[global]
external_labels = {{ site = "s1" }}

[[remote_write]]
url = "http://{addr}/api/v1/write"
name = "t"
{extra}
[remote_write.queue_config]
max_samples_per_send = 100
batch_send_deadline = "20ms"
min_backoff = "10ms"
max_backoff = "40ms"
min_shards = 2
max_shards = 2
"#
            ),
            "test.toml",
        )
        .unwrap()
    }

    fn open_db(dir: &Path) -> Db {
        Db::open(
            dir,
            Options {
                wal_sync_interval: Duration::ZERO,
                wal_segment_size: 64 * 1024,
                ..Options::default()
            },
        )
        .unwrap()
    }

    /// `series` series × one commit per step (at `t0 + step` seconds).
    fn write(db: &Db, series: usize, steps: std::ops::Range<i64>, t0: i64) {
        for step in steps {
            let mut app = db.appender();
            for s in 0..series {
                let l = Labels::from_pairs([("__name__", "m".to_string()), ("i", s.to_string())]);
                app.append(&l, t0 + step * 1000, (s as i64 * 1000 + step) as f64)
                    .unwrap();
            }
            app.commit().unwrap();
        }
    }

    async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn counter(m: &Metrics, name: &str) -> f64 {
        let text = m.encode();
        text.lines()
            .find(|l| l.starts_with(name) && l.contains("remote_name=\"t\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in\n{text}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retries_500_then_delivers_everything_once_and_resumes() {
        let tmp = tempfile::tempdir().unwrap();
        let rx = Rx::start(vec![
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::OK,
        ])
        .await;
        let db = open_db(tmp.path());
        let metrics = Arc::new(Metrics::new());
        let rw = RemoteWrite::new(tmp.path(), metrics.clone());
        rw.apply(&config(rx.addr, "bearer_token = \"tok\""))
            .await
            .unwrap();
        let t0 = now_ms() + 1000;
        // 300 series × 100 steps: 30k samples, several 64 KiB segments even
        // with the WAL's snappy compression.
        write(&db, 300, 0..100, t0);
        let want = 300 * 100;
        wait_for("all samples", || rx.accepted.lock().unwrap().len() >= want).await;
        let attempts = rx.attempts.lock().unwrap().clone();
        assert_eq!(attempts[0].0, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(attempts[1].0, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            crate::tsdb::wal::list(&tmp.path().join("wal"))
                .unwrap()
                .segments
                .len()
                > 2
        );
        let h = rx.headers.lock().unwrap().clone().unwrap();
        assert_eq!(h["content-encoding"], "snappy");
        assert_eq!(h["content-type"], "application/x-protobuf");
        assert_eq!(h["x-prometheus-remote-write-version"], "0.1.0");
        assert_eq!(h["authorization"], "Bearer tok");
        assert!(h["user-agent"].to_str().unwrap().starts_with("wasmon/"));

        // Each sample exactly once, in order per series, with external labels.
        let check = |acc: &[(String, i64, f64)], steps: i64| {
            let mut per: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
            for (id, t, v) in acc {
                per.entry(id).or_default().push((*t, *v));
            }
            assert_eq!(per.len(), 300);
            for (id, got) in per {
                assert!(id.contains("site=s1"), "{id}");
                let s: i64 = id
                    .split("i=")
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                let expect: Vec<(i64, f64)> = (0..steps)
                    .map(|k| (t0 + k * 1000, (s * 1000 + k) as f64))
                    .collect();
                assert_eq!(got, expect, "series {id}");
            }
        };
        check(&rx.accepted.lock().unwrap(), 100);
        // The sender counts a batch once it has read the answer, after the
        // receiver recorded it.
        wait_for("every sample counted as sent", || {
            counter(&metrics, "wasmon_remote_storage_samples_total") == want as f64
        })
        .await;
        assert_eq!(
            counter(&metrics, "wasmon_remote_storage_samples_failed_total"),
            0.0
        );
        assert!(counter(&metrics, "wasmon_remote_storage_samples_retried_total") >= 2.0);
        assert_eq!(counter(&metrics, "wasmon_remote_storage_shards"), 2.0);
        wait_for("nothing pending", || {
            counter(&metrics, "wasmon_remote_storage_samples_pending") == 0.0
        })
        .await;

        // Stop, write more while stopped, start again: only the new samples
        // arrive (the progress file says where each shard was).
        rw.stop().await;
        write(&db, 300, 100..110, t0);
        let rw = RemoteWrite::new(tmp.path(), metrics.clone());
        rw.apply(&config(rx.addr, "")).await.unwrap();
        // The 3,000 new samples; then a pause in which a resend of old
        // ones would arrive (and fail the exactly-once check).
        wait_for("resumed samples", || {
            rx.accepted.lock().unwrap().len() >= 300 * 110
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        check(&rx.accepted.lock().unwrap(), 110);
        rw.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_400_drops_the_batch_and_moves_on() {
        let tmp = tempfile::tempdir().unwrap();
        let rx = Rx::start(vec![StatusCode::BAD_REQUEST]).await;
        let db = open_db(tmp.path());
        let metrics = Arc::new(Metrics::new());
        let rw = RemoteWrite::new(tmp.path(), metrics.clone());
        rw.apply(&config(rx.addr, "")).await.unwrap();
        let t0 = now_ms() + 1000;
        write(&db, 10, 0..3, t0);
        wait_for("30 failed", || {
            counter(&metrics, "wasmon_remote_storage_samples_failed_total") == 30.0
        })
        .await;
        // Dropped, not retried: one attempt per batch, nothing accepted.
        assert_eq!(
            counter(&metrics, "wasmon_remote_storage_samples_retried_total"),
            0.0
        );
        let attempted: usize = rx.attempts.lock().unwrap().iter().map(|a| a.1).sum();
        assert_eq!(attempted, 30);
        // The queue goes on with later samples once the receiver accepts.
        *rx.script.lock().unwrap() = vec![StatusCode::OK];
        write(&db, 10, 10..11, t0);
        wait_for("10 accepted", || rx.accepted.lock().unwrap().len() == 10).await;
        assert!(rx
            .accepted
            .lock()
            .unwrap()
            .iter()
            .all(|a| a.1 == t0 + 10_000));
        rw.stop().await;
    }

    fn log_series(wal: &crate::tsdb::wal::Wal, r: u64, name: &str) {
        let mut b = Vec::new();
        record::begin_series(&mut b);
        record::put_series(&mut b, r, &[("__name__", name)]);
        wal.log(&b, true).unwrap();
    }

    fn log_sample(wal: &crate::tsdb::wal::Wal, r: u64, t: i64, v: f64) {
        let mut b = Vec::new();
        record::encode_samples(&mut b, &[record::RefSample { r, t, v }]);
        wal.log(&b, true).unwrap();
    }

    /// Segments checkpointed away while the queue was behind: it counts a
    /// gap, takes the series from the checkpoint and goes on after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn segments_removed_by_a_checkpoint_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let rx = Rx::start(vec![StatusCode::OK]).await;
        let metrics = Arc::new(Metrics::new());
        let wal = crate::tsdb::wal::Wal::create(&tmp.path().join("wal"), 0, 64 * 1024).unwrap();
        let t0 = now_ms() + 1000;
        log_series(&wal, 1, "a");
        log_sample(&wal, 1, t0, 1.0);
        let rw = RemoteWrite::new(tmp.path(), metrics.clone());
        rw.apply(&config(rx.addr, "")).await.unwrap();
        wait_for("first sample", || rx.accepted.lock().unwrap().len() == 1).await;
        rw.stop().await;

        // While stopped: more samples, then a checkpoint drops segments 0-1.
        let s0 = wal.cut_segment().unwrap();
        log_series(&wal, 2, "b");
        log_sample(&wal, 1, t0 + 1000, 2.0);
        log_sample(&wal, 2, t0 + 1000, 20.0);
        let upto = wal.cut_segment().unwrap();
        assert_eq!((s0, upto), (0, 1));
        wal.checkpoint(upto, &mut |w| {
            for (r, name) in [(1, "a"), (2, "b")] {
                let mut b = Vec::new();
                record::begin_series(&mut b);
                record::put_series(&mut b, r, &[("__name__", name)]);
                w(&b)?;
            }
            Ok(())
        })
        .unwrap();
        log_sample(&wal, 2, t0 + 2000, 30.0);
        log_sample(&wal, 1, t0 + 2000, 3.0);

        let rw = RemoteWrite::new(tmp.path(), metrics.clone());
        rw.apply(&config(rx.addr, "")).await.unwrap();
        wait_for("samples after the gap", || {
            rx.accepted.lock().unwrap().len() == 3
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut got: Vec<(String, i64, f64)> = rx.accepted.lock().unwrap().clone();
        got.sort_by(|a, b| (a.1, &a.0).partial_cmp(&(b.1, &b.0)).unwrap());
        assert_eq!(
            got,
            vec![
                ("__name__=a,site=s1".to_string(), t0, 1.0),
                ("__name__=a,site=s1".to_string(), t0 + 2000, 3.0),
                ("__name__=b,site=s1".to_string(), t0 + 2000, 30.0),
            ]
        );
        assert_eq!(
            counter(&metrics, "wasmon_remote_storage_wal_gaps_total"),
            1.0
        );
        rw.stop().await;
    }

    /// Reload: a changed queue (same name, new url) resumes where the old
    /// one stopped; a removed queue stops sending.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reload_restarts_changed_queues_from_their_progress() {
        let tmp = tempfile::tempdir().unwrap();
        let (rx1, rx2) = (
            Rx::start(vec![StatusCode::OK]).await,
            Rx::start(vec![StatusCode::OK]).await,
        );
        let db = open_db(tmp.path());
        let metrics = Arc::new(Metrics::new());
        let rw = RemoteWrite::new(tmp.path(), metrics.clone());
        rw.apply(&config(rx1.addr, "")).await.unwrap();
        let t0 = now_ms() + 1000;
        write(&db, 5, 0..2, t0);
        wait_for("10 at rx1", || rx1.accepted.lock().unwrap().len() == 10).await;
        // Same config again (kept or restarted, nothing is sent twice).
        rw.apply(&config(rx1.addr, "")).await.unwrap();
        rw.apply(&config(rx2.addr, "")).await.unwrap();
        write(&db, 5, 2..3, t0);
        wait_for("5 at rx2", || rx2.accepted.lock().unwrap().len() == 5).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rx1.accepted.lock().unwrap().len(), 10);
        assert!(rx2
            .accepted
            .lock()
            .unwrap()
            .iter()
            .all(|a| a.1 == t0 + 2000));
        rw.apply(&Config::parse("", "empty.toml").unwrap())
            .await
            .unwrap();
        write(&db, 5, 3..4, t0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rx2.accepted.lock().unwrap().len(), 5);
        rw.stop().await;
    }
}
