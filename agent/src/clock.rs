//! The one source of time for the parts of the agent whose timing tests
//! drive by hand: the alert dispatcher, the rule manager and the plugin
//! host (the `clock` interface plugins import, the circuit breaker).
//! [`SystemClock`] is wall-clock time with tokio timers; [`ManualClock`]
//! moves only when a test tells it to, and wakes the sleepers it passes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::watch;

/// Wall-clock now, ms since the epoch: for the parts that stamp with real
/// time and are not driven by a [`Clock`] (the TSDB's bounds, scrapes, the
/// query API's default time, plugin calls).
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A `SystemTime` as ms since the epoch, negative before it.
pub fn system_time_ms(t: std::time::SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Now, and a sleep until an instant of the same clock.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once `now() >= t`.
    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'static, ()>;

    /// Now, ms since the epoch.
    fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }
    /// Resolves once `now_ms() >= t`.
    fn sleep_until_ms(&self, t: i64) -> BoxFuture<'static, ()> {
        // Out of chrono's range only for absurd instants: the far end of
        // its range is "never" for every caller.
        let at = DateTime::from_timestamp_millis(t).unwrap_or(if t < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        });
        self.sleep_until(at)
    }
}

/// Wall-clock time and tokio timers.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let d = (t - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(d))
    }
}

/// Time that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    tx: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            tx: watch::Sender::new(start),
        })
    }
    /// A clock starting at `start_ms` ms since the epoch.
    pub fn from_ms(start_ms: i64) -> Arc<ManualClock> {
        ManualClock::new(DateTime::from_timestamp_millis(start_ms).expect("a test's start time"))
    }
    pub fn advance(&self, d: Duration) {
        self.tx
            .send_modify(|t| *t += chrono::Duration::from_std(d).unwrap());
    }
    pub fn advance_ms(&self, ms: i64) {
        self.tx
            .send_modify(|t| *t += chrono::Duration::milliseconds(ms));
    }
    pub fn set(&self, t: DateTime<Utc>) {
        self.tx.send_replace(t);
    }
    pub fn set_ms(&self, ms: i64) {
        self.set(DateTime::from_timestamp_millis(ms).expect("a test's time"));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.tx.borrow()
    }
    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut rx = self.tx.subscribe();
        Box::pin(async move {
            loop {
                if *rx.borrow_and_update() >= t {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[tokio::test]
    async fn manual_clock_sleeps_until_advanced() {
        let c = ManualClock::new(t(0));
        let s = c.sleep_until(t(10));
        let h = tokio::spawn(s);
        tokio::task::yield_now().await;
        assert!(!h.is_finished());
        c.advance(Duration::from_secs(10));
        h.await.unwrap();
        assert_eq!(c.now(), t(10));
    }

    #[tokio::test]
    async fn manual_clock_in_ms() {
        let c = ManualClock::from_ms(1_000_000);
        let h = tokio::spawn(c.sleep_until_ms(1_010_000));
        tokio::task::yield_now().await;
        assert!(!h.is_finished());
        c.advance_ms(10_000);
        h.await.unwrap();
        assert_eq!(c.now_ms(), 1_010_000);
        c.set_ms(5);
        assert_eq!(c.now_ms(), 5);
    }
}
