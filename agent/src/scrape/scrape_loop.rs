//! One target's scrape loop: fetch, parse, label, limit, append, mark stale,
//! report — Prometheus' scrapeLoop semantics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;

use super::target::{Job, Target};
use crate::clock::now_ms;
use crate::model::labels::{Labels, LabelsBuilder};
use crate::model::relabel::process_builder;
use crate::model::{stale_nan, TimestampMs, METRIC_NAME};
use crate::storage::{AppendRejection, Appendable, Appender};
use crate::textparse;

/// The Accept header Prometheus sends: OpenMetrics preferred, text format next.
pub const ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// Health of a target, for the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Unknown,
    Up,
    Down,
}

/// What the last scrape of a target did.
#[derive(Debug, Clone)]
pub struct TargetState {
    pub health: Health,
    pub last_error: String,
    pub last_scrape: Option<SystemTime>,
    pub last_duration: Duration,
    pub last_samples: usize,
    /// TYPE/HELP/UNIT of the families on the last good page (for
    /// `/api/v1/metadata`, which Grafana uses for metric type hints).
    /// Shared: replaced only when a page's metadata changes.
    pub metadata: Arc<Vec<textparse::Metadata>>,
}

impl Default for TargetState {
    fn default() -> Self {
        TargetState {
            health: Health::Unknown,
            last_error: String::new(),
            last_scrape: None,
            last_duration: Duration::ZERO,
            last_samples: 0,
            metadata: Arc::default(),
        }
    }
}

/// Counters the agent exports about scraping.
#[derive(Debug, Default)]
pub struct ScrapeStats {
    pub out_of_order: std::sync::atomic::AtomicU64,
    pub duplicates: std::sync::atomic::AtomicU64,
    pub out_of_bounds: std::sync::atomic::AtomicU64,
    pub too_far_in_future: std::sync::atomic::AtomicU64,
    /// Samples of scrapes whose commit the store could not write (the
    /// target's lastError says why).
    pub write_failed: std::sync::atomic::AtomicU64,
    /// Samples stored: counted once their scrape's commit succeeded.
    pub appended: std::sync::atomic::AtomicU64,
}

/// How a lastError about refused samples reads.
const REJECTED: &str = "rejected by the store";

/// Samples of one scrape the store refused. The scrape still succeeds
/// (`up` 1, the rest is stored), as in Prometheus, but unlike Prometheus
/// the target says so in its lastError: a target whose clock is a day
/// off otherwise looks healthy while none of its samples are kept.
#[derive(Debug, Default)]
struct Rejected {
    out_of_order: usize,
    duplicates: usize,
    out_of_bounds: usize,
    too_far_in_future: usize,
    /// The first sample refused for its timestamp: (series, timestamp).
    example: Option<(String, TimestampMs)>,
}

impl Rejected {
    /// Counts a refused sample (here and in the agent-wide `stats`).
    fn note(
        &mut self,
        why: &AppendRejection,
        labels: &Labels,
        t: TimestampMs,
        stats: &ScrapeStats,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let (mine, total) = match why {
            AppendRejection::OutOfOrder => (&mut self.out_of_order, &stats.out_of_order),
            AppendRejection::DuplicateTimestamp => (&mut self.duplicates, &stats.duplicates),
            AppendRejection::OutOfBounds => (&mut self.out_of_bounds, &stats.out_of_bounds),
            AppendRejection::TooFarInFuture => {
                (&mut self.too_far_in_future, &stats.too_far_in_future)
            }
            AppendRejection::Other(_) => return,
        };
        *mine += 1;
        total.fetch_add(1, Relaxed);
        let by_time = matches!(
            why,
            AppendRejection::OutOfBounds | AppendRejection::TooFarInFuture
        );
        if by_time && self.example.is_none() {
            self.example = Some((labels.to_string(), t));
        }
    }

    /// The target's lastError for a scrape with refused samples.
    fn message(&self, now: TimestampMs) -> Option<String> {
        let parts: Vec<String> = [
            (self.too_far_in_future, "too far in the future"),
            (
                self.out_of_bounds,
                "out of bounds (too old for the store's time window)",
            ),
            (self.out_of_order, "out of order"),
            (self.duplicates, "duplicate sample for timestamp"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} {why}"))
        .collect();
        if parts.is_empty() {
            return None;
        }
        let total =
            self.out_of_order + self.duplicates + self.out_of_bounds + self.too_far_in_future;
        let s = if total == 1 { "" } else { "s" };
        let mut msg = format!("{total} sample{s} {REJECTED}: {}", parts.join(", "));
        if let Some((series, t)) = &self.example {
            // The two largest units ("1day 2h", "56years 11months").
            let off =
                humantime::format_duration(Duration::from_millis(t.abs_diff(now) / 1000 * 1000))
                    .to_string();
            let off = off.split(' ').take(2).collect::<Vec<_>>().join(" ");
            let side = if *t > now { "ahead of" } else { "behind" };
            let when = u64::try_from(*t)
                .ok()
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
                .map_or_else(
                    || format!("{t} ms"),
                    |st| humantime::format_rfc3339_millis(st).to_string(),
                );
            msg.push_str(&format!(
                "; e.g. {series} at {when}, {off} {side} the agent's clock (is the target's clock wrong?)"
            ));
        }
        Some(msg)
    }
}

/// Why a scrape failed (becomes `up 0` and the target's lastError).
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("{0}")]
    Http(String),
    #[error("server returned HTTP status {0}")]
    Status(String),
    #[error("body size limit exceeded: the response is larger than {human} ({0} bytes, decompressed; the job's body_size_limit)", human = bytesize::ByteSize::b(*.0))]
    BodyTooLarge(u64),
    #[error("parse error: {0}")]
    Parse(String),
    #[error("sample limit exceeded: {got} samples, limit {limit}")]
    SampleLimit { got: usize, limit: usize },
    #[error("label limit exceeded: {0}")]
    LabelLimit(String),
    #[error("storage: {0}")]
    Storage(String),
}

pub struct ScrapeLoop {
    pub job: Arc<Job>,
    pub target: Arc<Target>,
    pub state: Arc<Mutex<TargetState>>,
    client: reqwest::Client,
    store: Arc<dyn Appendable>,
    stats: Arc<ScrapeStats>,
    /// The target's series, for staleness markers and `scrape_series_added`.
    cache: SeriesCache,
    /// Where each sample's final label set is built (kept: its buffers are
    /// reused from sample to sample and scrape to scrape).
    scratch: LabelsBuilder,
}

/// Prometheus' `--scrape.timestamp-tolerance`: a scrape that starts within
/// this much of its scheduled time is stamped with the scheduled time, so
/// timestamps advance by exactly the interval and compress to a few bits.
pub const TIMESTAMP_TOLERANCE_MS: i64 = 2;

/// The loop's schedule: scrape k is due at `first + k * interval`.
///
/// The ticker that drives the loop keeps its phase (missed ticks are
/// skipped, not shifted), so a late scrape does not move the schedule: it
/// is stamped with its real time and the next one snaps back to the grid.
/// Only when scrapes keep missing the grid (the wall clock was stepped, or
/// drifted from the monotonic ticker) does the schedule restart from the
/// current time.
pub struct Schedule {
    interval_ms: i64,
    first: Option<TimestampMs>,
    last: TimestampMs,
    misses: u32,
}

/// Consecutive off-grid scrapes after which the schedule restarts.
const RESCHEDULE_AFTER: u32 = 3;

impl Schedule {
    pub fn new(interval: Duration) -> Schedule {
        Schedule {
            interval_ms: interval.as_millis().max(1) as i64,
            first: None,
            last: TimestampMs::MIN,
            misses: 0,
        }
    }

    /// The timestamp for a scrape starting at wall time `now`: the nearest
    /// scheduled time when within tolerance (and after the last stamp),
    /// else `now`.
    pub fn timestamp(&mut self, now: TimestampMs) -> TimestampMs {
        let Some(first) = self.first else {
            self.first = Some(now);
            self.last = now;
            return now;
        };
        let k = (now - first + self.interval_ms / 2).div_euclid(self.interval_ms);
        let due = first + k * self.interval_ms;
        let t = if (now - due).abs() <= TIMESTAMP_TOLERANCE_MS && due > self.last {
            self.misses = 0;
            due
        } else {
            self.misses += 1;
            if self.misses >= RESCHEDULE_AFTER {
                self.first = Some(now);
                self.misses = 0;
            }
            now.max(self.last.saturating_add(1))
        };
        self.last = t;
        t
    }
}

/// What the loop remembers of a target's series between scrapes: which
/// were in the last (good) scrape, whether they had their own timestamps
/// (those get no staleness marker), and the store's handle for writing the
/// marker without the label set.
///
/// A series is known by its store handle, which is the store's identity
/// for its label set (the head compares labels, not only hashes), or by
/// its label set when the store gave no handle — never by a hash of its
/// labels, which would let two series that collide share one entry (one
/// of them then never marked stale). One 16-byte slot per series (the
/// agent's memory per series is what limits its cardinality), updated in
/// place, with generations instead of a fresh map per scrape. A scrape
/// that fails half way must still mark the *last good* scrape's series
/// stale, so an entry touched by the current scrape keeps what the
/// previous one said of it.
#[derive(Default)]
struct SeriesCache {
    /// By store handle.
    by_ref: HashMap<u64, Cached, foldhash::fast::FixedState>,
    /// Series the store gave no handle for (a store without handles, or
    /// a sample it refused), by label set: rare.
    by_labels: HashMap<Labels, Cached>,
    /// Number of the scrape in progress (or last done).
    generation: u32,
    /// Whether scrape `generation` completed (`finish` ran).
    done: bool,
}

#[derive(Clone, Copy)]
struct Cached {
    /// Generation of the last scrape that had the series.
    seen: u32,
    /// That scrape gave it an explicit timestamp.
    explicit: bool,
    /// Before `seen` became the current generation: was the series in the
    /// previous scrape without an explicit timestamp (it is owed a marker
    /// if the current scrape fails)?
    owed: bool,
}

impl Cached {
    /// Whether a series last seen in `self` is owed a staleness marker
    /// when the last good scrape was `good` and the current one is `g`.
    fn owed(&self, good: u32, g: u32) -> bool {
        if self.seen == good {
            !self.explicit
        } else {
            // Touched by the failed scrape: what the good one said.
            self.seen == g && self.owed
        }
    }
}

impl SeriesCache {
    fn begin(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.done = false;
    }

    /// Records a series of the current scrape, known by the store's
    /// `handle` or else by `labels`; returns whether it is new since the
    /// previous scrape. A sample the store `refused` with an explicit
    /// timestamp is not tracked: it is owed no marker, and (as in
    /// Prometheus) a refused sample adds no series.
    fn saw(&mut self, handle: Option<u64>, labels: &Labels, explicit: bool, refused: bool) -> bool {
        let g = self.generation;
        let prev = g.wrapping_sub(1);
        let fresh = Cached {
            seen: g.wrapping_sub(2),
            explicit: true,
            owed: false,
        };
        let e = match handle {
            Some(r) => {
                // Known by labels until now (its sample was refused last
                // time): carry its state over.
                let before = if self.by_labels.is_empty() {
                    None
                } else {
                    self.by_labels.remove(labels)
                };
                self.by_ref.entry(r).or_insert(before.unwrap_or(fresh))
            }
            None if explicit && refused => return false,
            None => match self.by_labels.get_mut(labels) {
                Some(e) => e,
                None => self.by_labels.entry(labels.clone()).or_insert(fresh),
            },
        };
        let added = e.seen != g && e.seen != prev;
        if e.seen != g {
            e.owed = e.seen == prev && !e.explicit;
        }
        e.seen = g;
        e.explicit = explicit;
        added
    }

    /// After a good scrape: markers for the previous scrape's series that
    /// this one lacks, then forget them.
    fn finish(&mut self, app: &mut dyn Appender, t: TimestampMs) {
        let g = self.generation;
        self.by_ref.retain(|&r, e| {
            if e.seen != g && !e.explicit {
                append_stale(app, StaleTarget::Ref(r), t);
            }
            e.seen == g
        });
        self.by_labels.retain(|l, e| {
            if e.seen != g && !e.explicit {
                append_stale(app, StaleTarget::Labels(l), t);
            }
            e.seen == g
        });
        self.done = true;
        if self.by_ref.capacity() > self.by_ref.len() * 4 && self.by_ref.capacity() > 64 {
            self.by_ref.shrink_to_fit();
        }
    }

    /// After a failed scrape (or at the end): markers for every series of
    /// the last good scrape, then forget everything.
    fn all_stale(&mut self, app: &mut dyn Appender, t: TimestampMs) {
        let g = self.generation;
        // The last good scrape: this one if it completed, else the one before.
        let good = if self.done { g } else { g.wrapping_sub(1) };
        for (&r, e) in &self.by_ref {
            if e.owed(good, g) {
                append_stale(app, StaleTarget::Ref(r), t);
            }
        }
        for (l, e) in &self.by_labels {
            if e.owed(good, g) {
                append_stale(app, StaleTarget::Labels(l), t);
            }
        }
        self.by_ref = HashMap::default();
        self.by_labels = HashMap::new();
    }

    fn is_empty(&self) -> bool {
        self.by_ref.is_empty() && self.by_labels.is_empty()
    }
}

/// Result of appending one scrape's samples.
struct Appended {
    scraped: usize,
    post_relabel: usize,
    added: usize,
    rejected: Rejected,
    /// The page's metadata (None when the scrape failed: keep the last).
    metadata: Option<Vec<textparse::Metadata>>,
}

impl ScrapeLoop {
    pub fn new(
        job: Arc<Job>,
        target: Arc<Target>,
        store: Arc<dyn Appendable>,
        stats: Arc<ScrapeStats>,
    ) -> ScrapeLoop {
        ScrapeLoop {
            client: job.client.clone(),
            job,
            target,
            state: Arc::default(),
            store,
            stats,
            cache: SeriesCache::default(),
            scratch: LabelsBuilder::default(),
        }
    }

    /// The first scrape waits this long after the loop starts, spreading
    /// targets over the interval as Prometheus does.
    pub fn offset(&self) -> Duration {
        let h = self.target.labels.hash64() ^ self.target.url.len() as u64;
        let ms = self.job.interval.as_millis().max(1) as u64;
        Duration::from_millis(h % ms)
    }

    /// Runs until `stop` fires, then writes staleness markers for everything
    /// the target exposed.
    pub async fn run(mut self, mut stop: tokio::sync::oneshot::Receiver<()>) {
        tokio::select! {
            _ = tokio::time::sleep(self.offset()) => {}
            _ = &mut stop => return,
        }
        let mut tick = tokio::time::interval(self.job.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut schedule = Schedule::new(self.job.interval);
        let mut last = TimestampMs::MIN;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stop => break,
            }
            last = schedule.timestamp(now_ms());
            self.scrape_once(last).await;
        }
        // A snapped timestamp may be a little ahead of the clock: stay after it.
        self.end_of_run_staleness(now_ms().max(last.saturating_add(1)));
    }

    /// One scrape at time `t`: append samples and the synthetic series.
    pub async fn scrape_once(&mut self, t: TimestampMs) {
        let start = Instant::now();
        let result = match self.fetch().await {
            Ok((body, ctype)) => self.append_body(&body, ctype.as_deref(), t),
            Err(e) => Err(e),
        };
        let duration = start.elapsed();
        let (up, appended, err) = match result {
            Ok(a) => (1.0, a, String::new()),
            Err(e) => {
                // A failed scrape marks every series of the last good one stale.
                self.mark_all_stale(t);
                let a = Appended {
                    scraped: 0,
                    post_relabel: 0,
                    added: 0,
                    rejected: Rejected::default(),
                    metadata: None,
                };
                (0.0, a, e.to_string())
            }
        };
        let (err, rejected) = match appended.rejected.message(t) {
            Some(m) if err.is_empty() => (m, true),
            _ => (err, false),
        };
        self.report(t, up, duration, &appended);
        let mut st = self.state.lock().unwrap();
        if rejected && !st.last_error.contains(REJECTED) {
            // Once per episode: the target's lastError and the counters
            // carry it from then on.
            tracing::warn!(job = %self.job.name, target = %self.target.url, error = %err, "scraped samples rejected");
        } else if rejected {
            // The scrape worked (`up` 1): not a failure.
            tracing::debug!(job = %self.job.name, target = %self.target.url, error = %err, "scraped samples rejected");
        } else if !err.is_empty() {
            tracing::debug!(job = %self.job.name, target = %self.target.url, error = %err, "scrape failed");
        }
        st.health = if up == 1.0 { Health::Up } else { Health::Down };
        st.last_error = err;
        st.last_scrape = Some(SystemTime::now());
        st.last_duration = duration;
        st.last_samples = appended.scraped;
        if let Some(m) = appended.metadata {
            if *st.metadata != m {
                st.metadata = Arc::new(m);
            }
        }
    }

    async fn fetch(&self) -> Result<(Vec<u8>, Option<String>), ScrapeError> {
        let mut req = self
            .client
            .get(&self.target.url)
            .timeout(self.job.timeout)
            .header("Accept", ACCEPT)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", self.job.timeout.as_secs_f64()),
            );
        // Read per scrape: a rotated token file is used at once.
        if let Some(auth) = self
            .job
            .credentials
            .header_value()
            .await
            .map_err(|e| ScrapeError::Http(e.to_string()))?
        {
            req = req.header(reqwest::header::AUTHORIZATION, auth);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ScrapeError::Http(format_reqwest(&e)))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(ScrapeError::Status(resp.status().to_string()));
        }
        let ctype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let limit = self.job.config.body_size_limit.as_u64();
        // Known only for a body sent uncompressed (reqwest drops it when it
        // decodes gzip): refuse at once rather than read to the limit.
        let announced = resp.content_length();
        if limit > 0 && announced.is_some_and(|n| n > limit) {
            return Err(ScrapeError::BodyTooLarge(limit));
        }
        let mut body = Vec::with_capacity(announced.map_or(0, |n| n as usize).min(1 << 20));
        // Decompressed as it arrives (reqwest decodes gzip chunk by chunk),
        // so a gzip bomb stops at the limit.
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ScrapeError::Http(format_reqwest(&e)))?;
            if limit > 0 && (body.len() + chunk.len()) as u64 > limit {
                return Err(ScrapeError::BodyTooLarge(limit));
            }
            reserve_body(&mut body, chunk.len(), limit);
            body.extend_from_slice(&chunk);
        }
        Ok((body, ctype))
    }

    fn append_body(
        &mut self,
        body: &[u8],
        ctype: Option<&str>,
        t: TimestampMs,
    ) -> Result<Appended, ScrapeError> {
        let format = textparse::format_for_content_type(ctype);
        let cfg = &self.job.config;
        let mut app = self.store.appender();
        self.cache.begin();
        let (mut scraped, mut post_relabel, mut added) = (0usize, 0usize, 0usize);
        // Samples the appender took; counted as stored once committed.
        let mut taken = 0u64;
        let mut rejected = Rejected::default();
        let mut failed: Option<ScrapeError> = None;
        let mut scratch = std::mem::take(&mut self.scratch);
        // Samples are appended as the page is parsed (nothing of the page is
        // held parsed); any error rolls the whole batch back.
        let parsed = textparse::parse_each(body, format, &mut |s| {
            scraped += 1;
            let Some(labels) = sample_labels(&self.job, &self.target, s.labels, &mut scratch)
            else {
                return Ok(());
            };
            post_relabel += 1;
            if cfg.sample_limit > 0 && post_relabel > cfg.sample_limit {
                failed = Some(ScrapeError::SampleLimit {
                    got: post_relabel,
                    limit: cfg.sample_limit,
                });
                return Err(textparse::Stop);
            }
            if let Err(e) = check_label_limits(labels, cfg) {
                failed = Some(e);
                return Err(textparse::Stop);
            }
            let explicit = s.timestamp_ms.is_some() && cfg.honor_timestamps;
            let ts = match s.timestamp_ms {
                Some(ts) if cfg.honor_timestamps => ts,
                _ => t,
            };
            let h = crate::model::hash_labels(labels);
            let (mut handle, mut refused) = (None, true);
            match app.append_hashed(labels, h, ts, s.value) {
                Ok(r) => {
                    (handle, refused) = (r, false);
                    taken += 1;
                }
                Err(AppendRejection::Other(e)) => {
                    failed = Some(ScrapeError::Storage(e));
                    return Err(textparse::Stop);
                }
                Err(why) => rejected.note(&why, labels, ts, &self.stats),
            }
            if self.cache.saw(handle, labels, explicit, refused) {
                added += 1;
            }
            Ok(())
        });
        self.scratch = scratch;
        let metadata = match parsed {
            Ok(m) => m,
            Err(e) => {
                app.rollback();
                return Err(match (e, failed) {
                    (_, Some(f)) => f,
                    (textparse::Interrupted::Parse(e), None) => ScrapeError::Parse(e.to_string()),
                    (textparse::Interrupted::Stopped, None) => {
                        ScrapeError::Storage("scrape stopped".into())
                    }
                });
            }
        };
        // Series of the last scrape missing from this one get a staleness marker.
        self.cache.finish(&mut *app, t);
        use std::sync::atomic::Ordering::Relaxed;
        if let Err(e) = app.commit() {
            self.stats.write_failed.fetch_add(taken, Relaxed);
            return Err(ScrapeError::Storage(format!("{e:#}")));
        }
        self.stats.appended.fetch_add(taken, Relaxed);
        Ok(Appended {
            scraped,
            post_relabel,
            added,
            rejected,
            metadata: Some(metadata),
        })
    }

    fn mark_all_stale(&mut self, t: TimestampMs) {
        if self.cache.is_empty() {
            return;
        }
        let mut app = self.store.appender();
        self.cache.all_stale(&mut *app, t);
        // A commit fails only when the WAL refuses the write: the store logs
        // that (at most once a minute), counts the refused samples and
        // makes the agent unready; a line per commit would be a storm.
        if let Err(e) = app.commit() {
            tracing::debug!(error = %format!("{e:#}"), "writing staleness markers");
        }
    }

    /// The synthetic series every scrape writes, like Prometheus.
    fn report(&self, t: TimestampMs, up: f64, duration: Duration, a: &Appended) {
        let mut app = self.store.appender();
        for (name, v) in [
            ("up", up),
            ("scrape_duration_seconds", duration.as_secs_f64()),
            ("scrape_samples_scraped", a.scraped as f64),
            (
                "scrape_samples_post_metric_relabeling",
                a.post_relabel as f64,
            ),
            ("scrape_series_added", a.added as f64),
        ] {
            let mut lb = self.target.labels.to_builder();
            lb.set(METRIC_NAME, name);
            let _ = app.append(&lb.build(), t, v);
        }
        // A commit fails only when the WAL refuses the write: the store logs
        // that (at most once a minute), counts the refused samples and
        // makes the agent unready; a line per commit would be a storm.
        if let Err(e) = app.commit() {
            tracing::debug!(error = %format!("{e:#}"), "writing scrape report series");
        }
    }

    /// A target that went away: stale markers for its series and report series.
    fn end_of_run_staleness(&mut self, t: TimestampMs) {
        self.mark_all_stale(t);
        let mut app = self.store.appender();
        for name in [
            "up",
            "scrape_duration_seconds",
            "scrape_samples_scraped",
            "scrape_samples_post_metric_relabeling",
            "scrape_series_added",
        ] {
            let mut lb = self.target.labels.to_builder();
            lb.set(METRIC_NAME, name);
            let _ = app.append(&lb.build(), t, stale_nan());
        }
        let _ = app.commit();
    }
}

/// Past this size a body's buffer jumps to the whole limit.
const BODY_DIRECT_RESERVE: usize = 1 << 20;

/// Makes room for `more` bytes in a scrape body with limit `limit` (0 =
/// none). Small bodies grow by doubling; one past [`BODY_DIRECT_RESERVE`]
/// gets capacity for the whole limit at once. That reserves address space,
/// not memory (pages are faulted in only when the body is written into
/// them), and saves the copies doubling makes: growing 32 → 64 MiB holds
/// both, and the freed smaller buffers stay resident in the allocator a
/// while, which took a bomb stopped at the limit to twice the limit in RSS
/// and more. A limit too large to reserve (the system refuses the address
/// space) falls back to doubling.
fn reserve_body(body: &mut Vec<u8>, more: usize, limit: u64) {
    let need = body.len() + more;
    if need <= body.capacity() {
        return;
    }
    if let Ok(l) = usize::try_from(limit) {
        let direct = l > 0 && need.max(body.capacity() * 2) > BODY_DIRECT_RESERVE;
        if direct && body.try_reserve_exact(l.max(need) - body.len()).is_ok() {
            return;
        }
    }
    body.reserve(more);
}

/// A staleness marker for a remembered series. A handle the store no
/// longer knows (its series was compacted away) needs no marker.
/// The series a staleness marker is for.
enum StaleTarget<'a> {
    Ref(u64),
    Labels(&'a Labels),
}

fn append_stale(app: &mut dyn Appender, s: StaleTarget, t: TimestampMs) {
    let _ = match s {
        StaleTarget::Ref(r) => app.append_ref(r, t, stale_nan()),
        StaleTarget::Labels(l) => app.append(l, t, stale_nan()),
    };
}

/// Target labels merged into a scraped sample's labels, then metric
/// relabeling, built in `scratch` (reused from sample to sample: no
/// allocation in the common case of no name conflict). None when a rule
/// dropped the sample.
fn sample_labels<'b>(
    job: &Job,
    target: &Target,
    scraped: &Labels,
    scratch: &'b mut LabelsBuilder,
) -> Option<&'b Labels> {
    if !scratch.assign_union(scraped, &target.labels) {
        // A scraped label also set by the target.
        *scratch = scraped.to_builder();
        for tl in target.labels.iter() {
            match scratch.get(&tl.name).map(str::to_string) {
                Some(_) if job.config.honor_labels => {}
                Some(existing) => {
                    // Conflicts keep the scraped value as exported_<name>.
                    let mut name = format!("exported_{}", tl.name);
                    while scratch.get(&name).is_some() {
                        name = format!("exported_{name}");
                    }
                    scratch.set(name, existing);
                    scratch.set_str(&tl.name, &tl.value);
                }
                None => {
                    scratch.set_str(&tl.name, &tl.value);
                }
            }
        }
    }
    if !process_builder(scratch, &job.metric_relabel) {
        return None;
    }
    let l = scratch.labels();
    // A rule that removed the name leaves nothing to store.
    l.name()?;
    Some(l)
}

fn check_label_limits(l: &Labels, cfg: &crate::config::ScrapeConfig) -> Result<(), ScrapeError> {
    if cfg.label_limit > 0 && l.len() > cfg.label_limit {
        return Err(ScrapeError::LabelLimit(format!(
            "{} labels on {l}, limit {}",
            l.len(),
            cfg.label_limit
        )));
    }
    for lab in l.iter() {
        if cfg.label_name_length_limit > 0 && lab.name.len() > cfg.label_name_length_limit {
            return Err(ScrapeError::LabelLimit(format!(
                "label name {:?} longer than {}",
                lab.name, cfg.label_name_length_limit
            )));
        }
        if cfg.label_value_length_limit > 0 && lab.value.len() > cfg.label_value_length_limit {
            return Err(ScrapeError::LabelLimit(format!(
                "value of label {:?} longer than {}",
                lab.name, cfg.label_value_length_limit
            )));
        }
    }
    Ok(())
}

fn format_reqwest(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_timeout() {
        msg = format!("context deadline exceeded ({msg})");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_snaps_small_jitter_only() {
        let mut s = Schedule::new(Duration::from_secs(15));
        assert_eq!(s.timestamp(1_000_003), 1_000_003);
        assert_eq!(
            s.timestamp(1_015_004),
            1_015_003,
            "1 ms late snaps to the schedule"
        );
        assert_eq!(s.timestamp(1_030_001), 1_030_003, "2 ms early snaps too");
        assert_eq!(
            s.timestamp(1_045_050),
            1_045_050,
            "47 ms late keeps the real time"
        );
        assert_eq!(
            s.timestamp(1_060_004),
            1_060_003,
            "and the next scrape is back on the grid"
        );
        // A skipped tick (a long stall) keeps the grid too.
        assert_eq!(s.timestamp(1_090_002), 1_090_003);
        // A stepped clock: off the grid three times, then a new grid.
        assert_eq!(s.timestamp(1_105_503), 1_105_503);
        assert_eq!(s.timestamp(1_120_503), 1_120_503);
        assert_eq!(s.timestamp(1_135_503), 1_135_503);
        assert_eq!(s.timestamp(1_150_504), 1_150_503);
        // Never a stamp at or before the last one.
        let mut s = Schedule::new(Duration::from_secs(1));
        assert_eq!(s.timestamp(10_000), 10_000);
        assert_eq!(s.timestamp(10_998), 11_000);
        assert_eq!(s.timestamp(11_000), 11_001, "the slot is taken");
    }
}
