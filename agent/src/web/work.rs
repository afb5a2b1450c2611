//! How the API runs CPU-heavy work: listings over every alert, silence or
//! series, and PromQL. Such work never runs on the async workers, which
//! must stay free for `/-/ready`, scrapes, the dispatcher and signals; it
//! runs on tokio's blocking pool, at most [`WorkPool::slots`] requests at a
//! time (later ones wait, within their deadline), with a [`Work`] handle it
//! polls between items.
//!
//! A dropped future cannot stop a thread, so stopping is cooperative: the
//! handle reports a stop when the client went away (axum drops the
//! handler's future, whose guard cancels the request's token), when the
//! deadline passed, or when the agent is shutting down
//! ([`WorkPool::shut_down`], called on SIGTERM before the HTTP server
//! drains). The async side also gives up a little after the deadline, so a
//! client gets its 503 even from work that checks rarely.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::selfmetrics::Extra;

/// The deadline of heavy API requests that have no query timeout of their
/// own (alert, group and silence listings, series and label lookups).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the async side waits past the deadline for the work to notice
/// it (so work with its own, more precise timeout error reports it first).
const GRACE: Duration = Duration::from_secs(1);

/// Why heavy work stopped before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    #[error("the request timed out after {0:?}")]
    Deadline(Duration),
    #[error("the client closed the connection")]
    ClientGone,
    #[error("the agent is shutting down")]
    ShuttingDown,
    #[error("the request failed inside the agent (see its log)")]
    Internal,
}

impl Stopped {
    /// The HTTP status Prometheus and Alertmanager answer with: 503 for a
    /// timeout or an unavailable server, 499 for a client that left.
    pub fn status(self) -> StatusCode {
        match self {
            Stopped::Deadline(_) | Stopped::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Stopped::ClientGone => {
                StatusCode::from_u16(499).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            Stopped::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// What running work polls: [`Work::check`] between items.
pub struct Work {
    token: CancellationToken,
    shutdown: CancellationToken,
    deadline: Instant,
    timeout: Duration,
}

impl Work {
    /// Err when the work should stop now. Cheap (two atomic loads and a
    /// clock read): call it once per item.
    pub fn check(&self) -> Result<(), Stopped> {
        if self.shutdown.is_cancelled() {
            Err(Stopped::ShuttingDown)
        } else if Instant::now() >= self.deadline {
            Err(Stopped::Deadline(self.timeout))
        } else if self.token.is_cancelled() {
            Err(Stopped::ClientGone)
        } else {
            Ok(())
        }
    }

    /// The request's token (cancelled when the client goes away, the async
    /// side gives up or the agent shuts down), for code that polls a token
    /// itself, like the PromQL engine.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

#[derive(Default)]
struct Stats {
    in_flight: AtomicI64,
    cancelled: AtomicU64,
    timed_out: AtomicU64,
}

/// Decrements the in-flight gauge when the work's thread is free again,
/// panics included.
struct InFlight(Arc<Stats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The agent's budget for heavy API work.
#[derive(Clone)]
pub struct WorkPool {
    shutdown: CancellationToken,
    slots: Arc<Semaphore>,
    slot_count: usize,
    stats: Arc<Stats>,
}

impl Default for WorkPool {
    fn default() -> Self {
        WorkPool::new(WorkPool::default_slots())
    }
}

impl WorkPool {
    pub fn new(slots: usize) -> WorkPool {
        let slots = slots.max(1);
        WorkPool {
            shutdown: CancellationToken::new(),
            slots: Arc::new(Semaphore::new(slots)),
            slot_count: slots,
            stats: Arc::default(),
        }
    }

    /// Twice the CPUs, at least 8 (Alertmanager's `--web.get-concurrency`
    /// default is max(GOMAXPROCS, 8)): enough that a dashboard's burst does
    /// not queue, few enough that the blocking pool's threads and their
    /// memory stay bounded.
    pub fn default_slots() -> usize {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        (2 * cpus).max(8)
    }

    /// How many requests may run heavy work at once.
    pub fn slots(&self) -> usize {
        self.slot_count
    }

    /// Stops all heavy work, running and to come (agent shutdown).
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }

    /// Runs `f` on the blocking pool within `timeout` (from now, waiting for
    /// a slot included). `f` must call [`Work::check`] between items and
    /// return its error; dropping the returned future (the client went
    /// away) cancels the work.
    pub async fn run<T, F>(&self, timeout: Duration, f: F) -> Result<T, Stopped>
    where
        T: Send + 'static,
        F: FnOnce(&Work) -> Result<T, Stopped> + Send + 'static,
    {
        let deadline = Instant::now() + timeout;
        let token = self.shutdown.child_token();
        let _cancel_on_drop = token.clone().drop_guard();
        let permit = tokio::select! {
            p = self.slots.clone().acquire_owned() => p.map_err(|_| Stopped::ShuttingDown)?,
            _ = tokio::time::sleep_until(deadline.into()) => {
                self.stats.timed_out.fetch_add(1, Relaxed);
                return Err(Stopped::Deadline(timeout));
            }
            _ = self.shutdown.cancelled() => return Err(Stopped::ShuttingDown),
        };
        let work = Work {
            token: token.clone(),
            shutdown: self.shutdown.clone(),
            deadline,
            timeout,
        };
        let stats = self.stats.clone();
        stats.in_flight.fetch_add(1, Relaxed);
        let mut handle = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let in_flight = InFlight(stats);
            let r = f(&work);
            match &r {
                Err(Stopped::Deadline(_)) => in_flight.0.timed_out.fetch_add(1, Relaxed),
                Err(Stopped::ClientGone | Stopped::ShuttingDown) => {
                    in_flight.0.cancelled.fetch_add(1, Relaxed)
                }
                _ => 0,
            };
            r
        });
        tokio::select! {
            r = &mut handle => r.unwrap_or(Err(Stopped::Internal)),
            _ = tokio::time::sleep_until((deadline + GRACE).into()) => {
                // The work sees the deadline at its next check.
                token.cancel();
                Err(Stopped::Deadline(timeout))
            }
            _ = self.shutdown.cancelled() => Err(Stopped::ShuttingDown),
        }
    }

    /// The pool's figures for `/metrics`.
    pub fn metrics(&self) -> Vec<Extra> {
        vec![
            Extra::gauge(
                "wasmon_http_heavy_requests_in_flight",
                "API requests whose heavy work (listings, PromQL) occupies a blocking thread now",
                self.stats.in_flight.load(Relaxed) as f64,
            ),
            Extra::gauge(
                "wasmon_http_heavy_requests_max",
                "API requests that may run heavy work at once; more wait within their deadline",
                self.slot_count as f64,
            ),
            Extra::counter(
                "wasmon_http_heavy_requests_cancelled",
                "Heavy API work stopped early because its client went away or the agent shut down",
                self.stats.cancelled.load(Relaxed) as f64,
            ),
            Extra::counter(
                "wasmon_http_heavy_requests_timed_out",
                "Heavy API requests answered 503 at their deadline",
                self.stats.timed_out.load(Relaxed) as f64,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// Work that runs until told to stop, flagging when it has.
    fn until_stopped(done: Arc<AtomicBool>) -> impl FnOnce(&Work) -> Result<(), Stopped> {
        move |w| loop {
            if let Err(e) = w.check() {
                done.store(true, Relaxed);
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    async fn until_in_flight(pool: &WorkPool, n: i64) {
        let start = Instant::now();
        while pool.stats.in_flight.load(Relaxed) != n {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "never {n} in flight"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn wait_for(flag: &AtomicBool) {
        let start = Instant::now();
        while !flag.load(Relaxed) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "work never stopped"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn deadline_stops_the_work_with_503() {
        let pool = WorkPool::new(2);
        let done = Arc::new(AtomicBool::new(false));
        let r = pool
            .run(Duration::from_millis(50), until_stopped(done.clone()))
            .await;
        assert_eq!(r, Err(Stopped::Deadline(Duration::from_millis(50))));
        assert_eq!(
            Stopped::Deadline(Duration::ZERO).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        wait_for(&done).await;
        assert_eq!(pool.stats.timed_out.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn dropping_the_request_stops_the_work() {
        let pool = Arc::new(WorkPool::new(2));
        let done = Arc::new(AtomicBool::new(false));
        let (p, d) = (pool.clone(), done.clone());
        let task =
            tokio::spawn(async move { p.run(Duration::from_secs(3600), until_stopped(d)).await });
        until_in_flight(&pool, 1).await;
        // What axum does when the client disconnects.
        task.abort();
        wait_for(&done).await;
        until_in_flight(&pool, 0).await;
        assert_eq!(pool.stats.cancelled.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn shutdown_stops_running_and_waiting_work() {
        let pool = Arc::new(WorkPool::new(1));
        let done = Arc::new(AtomicBool::new(false));
        let (p, d) = (pool.clone(), done.clone());
        let running =
            tokio::spawn(async move { p.run(Duration::from_secs(3600), until_stopped(d)).await });
        until_in_flight(&pool, 1).await;
        let p = pool.clone();
        let waiting = tokio::spawn(async move {
            p.run(Duration::from_secs(3600), |_| Ok::<_, Stopped>(()))
                .await
        });
        pool.shut_down();
        assert_eq!(running.await.unwrap(), Err(Stopped::ShuttingDown));
        assert_eq!(waiting.await.unwrap(), Err(Stopped::ShuttingDown));
        wait_for(&done).await;
    }

    /// The PromQL engine polls the request's token where it checks its
    /// deadline: a cancelled query stops with `Cancelled`.
    #[tokio::test]
    async fn queries_stop_when_the_request_is_cancelled() {
        use crate::promql::{error::EvalError, parse, Engine};
        use crate::storage::MemStorage;
        let db = Arc::new(MemStorage::new());
        for i in 0..100 {
            db.append(
                crate::model::Labels::from_pairs([("__name__", "up"), ("i", &*i.to_string())]),
                0,
                1.0,
            );
        }
        let pool = WorkPool::new(2);
        let expr = parse("sum(up)").unwrap();
        let run = |cancel: bool| {
            let (db, expr) = (db.clone(), expr.clone());
            pool.run(Duration::from_secs(60), move |w| {
                if cancel {
                    w.token().cancel();
                }
                let mut e = Engine::default();
                e.opts.cancel = Some(w.token().clone());
                Ok((
                    e.instant(&*db, &expr, 1000).map(|_| ()),
                    e.range(&*db, &expr, 0, 60_000, 1000).map(|_| ()),
                ))
            })
        };
        assert_eq!(run(false).await, Ok((Ok(()), Ok(()))));
        let cancelled = Err(EvalError::Cancelled("expression evaluation"));
        assert_eq!(run(true).await, Ok((cancelled.clone(), cancelled)));
    }

    #[tokio::test]
    async fn slots_bound_concurrency_and_queue_within_the_deadline() {
        let pool = Arc::new(WorkPool::new(1));
        let done = Arc::new(AtomicBool::new(false));
        let (p, d) = (pool.clone(), done.clone());
        let busy =
            tokio::spawn(async move { p.run(Duration::from_millis(300), until_stopped(d)).await });
        until_in_flight(&pool, 1).await;
        // Waits for the slot, which frees when the first one's deadline hits.
        let r = pool
            .run(Duration::from_secs(30), |w| w.check().map(|()| 7))
            .await;
        assert_eq!(r, Ok(7));
        assert!(matches!(busy.await.unwrap(), Err(Stopped::Deadline(_))));
        // A queued request whose deadline passes first gets its 503.
        let (p, d) = (pool.clone(), Arc::new(AtomicBool::new(false)));
        let _busy =
            tokio::spawn(async move { p.run(Duration::from_secs(30), until_stopped(d)).await });
        until_in_flight(&pool, 1).await;
        let r = pool
            .run(Duration::from_millis(20), |_| Ok::<_, Stopped>(()))
            .await;
        assert_eq!(r, Err(Stopped::Deadline(Duration::from_millis(20))));
        pool.shut_down();
    }
}
