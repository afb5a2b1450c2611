//! One remote-write queue: the WAL reader thread, the shards and the
//! progress file. See the module docs of [`super`] for the design.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::proto;
use super::{QueueLabels, QueueSpec, RemoteMetrics};
use crate::model::relabel::{self, Relabeler};
use crate::model::Labels;
use crate::tsdb::record::{self, Record};
use crate::tsdb::wal;

/// A place in the WAL: just past a record of `segment`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pos {
    pub segment: u32,
    pub offset: u64,
}

/// What `DATA/remote_write/<name>.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct ProgressFile {
    url: String,
    /// Samples older than this (ms) are never sent: a new queue starts at
    /// "now", like Prometheus', instead of replaying the whole WAL.
    min_t: i64,
    /// Per shard: everything of that shard up to here was acknowledged.
    shards: Vec<Pos>,
}

/// The per-shard positions and where they are persisted.
struct Tracker {
    path: PathBuf,
    url: String,
    min_t: i64,
    shards: Vec<Pos>,
    dirty: bool,
}

impl Tracker {
    /// Loads the progress file; a missing or unreadable one starts fresh
    /// at `now_ms`. A different shard count keeps the oldest position for
    /// every shard (more duplicates, never a loss).
    fn load(path: PathBuf, url: &str, n: usize, now_ms: i64) -> Tracker {
        let loaded = std::fs::read(&path).ok().and_then(|b| {
            serde_json::from_slice::<ProgressFile>(&b)
                .map_err(|e| {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable remote-write progress file; starting from now")
                })
                .ok()
        });
        let (min_t, shards) = match loaded {
            Some(p) if !p.shards.is_empty() => {
                let shards = if p.shards.len() == n {
                    p.shards
                } else {
                    vec![*p.shards.iter().min().unwrap(); n]
                };
                (p.min_t, shards)
            }
            _ => (now_ms, vec![Pos::default(); n]),
        };
        Tracker {
            path,
            url: url.to_string(),
            min_t,
            shards,
            dirty: true,
        }
    }

    fn committed(&self) -> Pos {
        self.shards.iter().copied().min().unwrap_or_default()
    }

    fn set(&mut self, shard: usize, pos: Pos) {
        if pos > self.shards[shard] {
            self.shards[shard] = pos;
            self.dirty = true;
        }
    }

    /// Writes the file (temp + rename: a crash leaves the old or the new
    /// one). No fsync: a kill -9 keeps the page cache, and after a power
    /// loss the WAL's own tail is gone too.
    fn persist(&mut self) {
        if !self.dirty {
            return;
        }
        let p = ProgressFile {
            url: self.url.clone(),
            min_t: self.min_t,
            shards: self.shards.clone(),
        };
        let tmp = self.path.with_extension("json.tmp");
        let r = serde_json::to_vec(&p)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|_| std::fs::rename(&tmp, &self.path));
        match r {
            Ok(()) => self.dirty = false,
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "writing remote-write progress")
            }
        }
    }
}

/// A series as the queue sends it.
struct SeriesInfo {
    labels: Labels,
    shard: usize,
}

enum Item {
    Sample(Arc<SeriesInfo>, i64, f64),
    /// Everything this shard has of the WAL up to here has been handed over.
    Mark(Pos),
}

pub struct Queue {
    name: String,
    stop_tx: watch::Sender<bool>,
    stop_flag: Arc<AtomicBool>,
    shards: Vec<tokio::task::JoinHandle<()>>,
    reader: Option<std::thread::JoinHandle<()>>,
    tracker: Arc<Mutex<Tracker>>,
}

/// A stable 64-bit FNV-1a over the label pairs: shard assignment must not
/// change across restarts (std's hasher makes no such promise).
fn stable_hash(l: &Labels) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for l in l.iter() {
        for b in l
            .name
            .bytes()
            .chain([0xff])
            .chain(l.value.bytes())
            .chain([0xff])
        {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What a shard needs to send.
struct Sender {
    client: reqwest::Client,
    url: String,
    headers: reqwest::header::HeaderMap,
    cfg: crate::config::remote::QueueConfig,
    labels: QueueLabels,
    metrics: Arc<RemoteMetricsRef>,
}

/// The metric children of one queue, resolved once.
struct RemoteMetricsRef {
    samples: prometheus_client::metrics::counter::Counter,
    failed: prometheus_client::metrics::counter::Counter,
    retried: prometheus_client::metrics::counter::Counter,
    dropped: prometheus_client::metrics::counter::Counter,
    pending: prometheus_client::metrics::gauge::Gauge,
    highest_sent: prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    sent_bytes: prometheus_client::metrics::counter::Counter,
    wal_gaps: prometheus_client::metrics::counter::Counter,
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
        let relabelers = cfg.relabelers().map_err(|e| anyhow::anyhow!(e))?;
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

struct Reader {
    name: String,
    dir: PathBuf,
    txs: Vec<mpsc::Sender<Item>>,
    /// Per shard: samples in records ending at or before this were sent by
    /// an earlier run.
    start: Vec<Pos>,
    min_t: i64,
    external: Labels,
    relabelers: Vec<Relabeler>,
    /// Series ref → the series as sent (None: dropped by relabeling).
    refs: HashMap<u64, Option<Arc<SeriesInfo>>>,
    stop: Arc<AtomicBool>,
    metrics: Arc<RemoteMetricsRef>,
}

/// Why the reader stopped handing out records.
enum Halt {
    Stop,
}

impl Reader {
    fn run(mut self) {
        if let Err(Halt::Stop) = self.run_inner() {
            tracing::debug!(remote_name = %self.name, "remote write reader stopped");
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn series(&mut self, list: Vec<(u64, Labels)>) {
        for (r, l) in list {
            let mut lb = l.to_builder();
            for e in self.external.iter() {
                if l.get(&e.name).is_none() {
                    lb.set(e.name.clone(), e.value.clone());
                }
            }
            let info = relabel::process(&lb.build(), &self.relabelers)
                .filter(|l| !l.is_empty())
                .map(|labels| {
                    let shard = (stable_hash(&labels) % self.txs.len() as u64) as usize;
                    Arc::new(SeriesInfo { labels, shard })
                });
            self.refs.insert(r, info);
        }
    }

    /// Reads only the series records of a file up to `upto` (or the end).
    fn load_series(&mut self, path: &Path, upto: Option<u64>) {
        let mut found = Vec::new();
        let r = wal::read_file_from(path, 0, &mut |p, end| {
            if upto.is_some_and(|u| end > u) {
                return false;
            }
            if let Ok(Record::Series(list)) = record::decode(p) {
                found.push(list);
            }
            true
        });
        if let Err(e) = r {
            tracing::warn!(remote_name = %self.name, path = %path.display(), error = %e, "reading WAL series for remote write");
        }
        for list in found {
            self.series(list);
        }
    }

    /// Series from the checkpoint (if any) and the segments in `range`.
    fn load_history(&mut self, listing: &wal::Listing, before: Pos) {
        if let Some(cp) = listing.checkpoint {
            self.load_series(&self.dir.join(wal::checkpoint_name(cp)), None);
        }
        let first = listing.checkpoint.map_or(0, |c| c + 1);
        for &s in listing
            .segments
            .iter()
            .filter(|&&s| s >= first && s <= before.segment)
        {
            let upto = (s == before.segment).then_some(before.offset);
            self.load_series(&self.dir.join(wal::segment_name(s)), upto);
        }
    }

    fn run_inner(&mut self) -> Result<(), Halt> {
        let start = self.start.iter().copied().min().unwrap_or_default();
        let listing = wal::list(&self.dir).unwrap_or_default();
        self.load_history(&listing, start);
        let first = listing.checkpoint.map_or(0, |c| c + 1);
        let first = listing.segments.iter().copied().find(|&s| s >= first);
        let mut pos = start;
        if let Some(f) = first {
            if pos.segment < f {
                if pos != Pos::default() {
                    self.gap(pos.segment, f);
                }
                pos = Pos {
                    segment: f,
                    offset: 0,
                };
            }
        }
        let mut buf: Vec<Vec<u8>> = Vec::new();
        loop {
            if self.stopping() {
                return Err(Halt::Stop);
            }
            // List before reading: the writer creates the next segment only
            // after flushing this one, so "nothing new here and a next one
            // was listed" means this one is complete.
            let listing = wal::list(&self.dir).unwrap_or_default();
            let next = listing.segments.iter().copied().find(|&s| s > pos.segment);
            let path = self.dir.join(wal::segment_name(pos.segment));
            buf.clear();
            let mut ends = Vec::new();
            let r = wal::read_file_from(&path, pos.offset, &mut |p, end| {
                buf.push(p.to_vec());
                ends.push(end);
                buf.len() < 256
            });
            let (end, err) = match r {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match next {
                        // Removed under us by a checkpoint: the series of the
                        // lost segments are in that checkpoint.
                        Some(n) => {
                            self.gap(pos.segment, n);
                            if let Some(cp) = listing.checkpoint {
                                self.load_series(&self.dir.join(wal::checkpoint_name(cp)), None);
                            }
                            pos = Pos {
                                segment: n,
                                offset: 0,
                            };
                        }
                        None => std::thread::sleep(Duration::from_millis(100)),
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(remote_name = %self.name, path = %path.display(), error = %e, "reading the WAL for remote write");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            let records = std::mem::take(&mut buf);
            let got = !records.is_empty();
            for (p, rec_end) in records.iter().zip(ends) {
                let here = Pos {
                    segment: pos.segment,
                    offset: rec_end,
                };
                self.handle(p, here)?;
            }
            buf = records;
            pos.offset = end.max(pos.offset);
            if !got {
                match next {
                    Some(n) => {
                        if let Some(err) = err {
                            tracing::warn!(remote_name = %self.name, segment = pos.segment, offset = pos.offset, %err, "WAL segment ends in a bad record; remote write goes on with the next");
                        }
                        pos = Pos {
                            segment: n,
                            offset: 0,
                        };
                    }
                    None => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }

    fn gap(&self, from: u32, to: u32) {
        self.metrics.wal_gaps.inc();
        tracing::warn!(remote_name = %self.name, from_segment = from, to_segment = to,
            "WAL segments were checkpointed away before remote write read them: their samples are not sent");
    }

    fn handle(&mut self, payload: &[u8], here: Pos) -> Result<(), Halt> {
        match record::decode(payload) {
            Ok(Record::Series(list)) => self.series(list),
            Ok(Record::Samples(list)) => {
                for s in list {
                    if s.t < self.min_t {
                        continue;
                    }
                    let Some(info) = self.refs.get(&s.r) else {
                        tracing::debug!(remote_name = %self.name, r = s.r, "sample of an unknown series ref in the WAL");
                        continue;
                    };
                    let Some(info) = info else {
                        self.metrics.dropped.inc();
                        continue;
                    };
                    if here <= self.start[info.shard] {
                        continue;
                    }
                    self.metrics.pending.inc();
                    self.send(info.shard, Item::Sample(info.clone(), s.t, s.v))?;
                }
                for i in 0..self.txs.len() {
                    self.send(i, Item::Mark(here))?;
                }
            }
            Err(e) => {
                tracing::warn!(remote_name = %self.name, ?here, error = %e, "undecodable WAL record skipped by remote write")
            }
        }
        Ok(())
    }

    /// Blocks while the shard is full (the WAL is the buffer), but wakes up
    /// to notice a stop.
    fn send(&self, shard: usize, mut item: Item) -> Result<(), Halt> {
        loop {
            match self.txs[shard].try_send(item) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Halt::Stop),
                Err(mpsc::error::TrySendError::Full(it)) => {
                    if self.stopping() {
                        return Err(Halt::Stop);
                    }
                    item = it;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

async fn run_shard(
    shard: usize,
    mut rx: mpsc::Receiver<Item>,
    sender: Arc<Sender>,
    tracker: Arc<Mutex<Tracker>>,
    mut stop: watch::Receiver<bool>,
) {
    let cfg = &sender.cfg;
    let mut batch: Vec<(Arc<SeriesInfo>, i64, f64)> = Vec::with_capacity(cfg.max_samples_per_send);
    let mut mark: Option<Pos> = None;
    // An item read ahead while looking for marks (see below).
    let mut carry: Option<Item> = None;
    loop {
        let deadline = tokio::time::sleep(cfg.batch_send_deadline);
        tokio::pin!(deadline);
        // Gather a batch: up to max_samples_per_send, or what arrived within
        // batch_send_deadline of the first sample.
        loop {
            let item = match carry.take() {
                Some(it) => Some(it),
                None => tokio::select! {
                    item = rx.recv() => item,
                    _ = &mut deadline, if !batch.is_empty() => break,
                    _ = stop.changed() => {
                        // Marks already queued behind acknowledged batches
                        // still count: fewer re-sends after the restart.
                        if batch.is_empty() {
                            while let Ok(Item::Mark(p)) = rx.try_recv() {
                                tracker.lock().set(shard, p);
                            }
                        }
                        return;
                    }
                },
            };
            match item {
                None => return,
                Some(Item::Sample(s, t, v)) => {
                    if batch.is_empty() {
                        deadline
                            .as_mut()
                            .reset(tokio::time::Instant::now() + cfg.batch_send_deadline);
                    }
                    batch.push((s, t, v));
                    if batch.len() >= cfg.max_samples_per_send {
                        break;
                    }
                }
                Some(Item::Mark(p)) => {
                    if batch.is_empty() {
                        tracker.lock().set(shard, p);
                    } else {
                        mark = Some(p);
                    }
                }
            }
        }
        // The mark closing the batch's last record usually follows right
        // behind its samples: take it along, so that acknowledging the batch
        // records the whole record as sent.
        loop {
            match rx.try_recv() {
                Ok(Item::Mark(p)) => mark = Some(p),
                Ok(other) => {
                    carry = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        if !sender.send_with_retries(&batch, &mut stop).await {
            return;
        }
        sender.metrics.pending.dec_by(batch.len() as i64);
        batch.clear();
        if let Some(p) = mark.take() {
            let mut t = tracker.lock();
            t.set(shard, p);
            t.persist();
        }
    }
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
    async fn send_with_retries(
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex as StdMutex;

    use axum::http::{HeaderMap, StatusCode};

    use super::*;
    use crate::config::Config;
    use crate::remote::RemoteWrite;
    use crate::selfmetrics::Metrics;
    use crate::tsdb::{Db, Options};

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

    #[test]
    fn shard_hash_is_stable() {
        // Pinned: shard assignment must survive restarts and upgrades.
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        assert_eq!(stable_hash(&l), stable_hash(&l.clone()));
        assert_eq!(stable_hash(&Labels::new()), 0xcbf29ce484222325);
    }
}
