//! The storage contracts, after Prometheus' `storage/interface.go`: what
//! writers ([`Appendable`]: scraping, rule evaluation, checks) and readers
//! ([`Queryable`]: the PromQL engine, rules, plugins) need from a store, and
//! the label [`Matcher`]s that select series.
//!
//! The embedded TSDB implements both traits (`tsdb/storage.rs`); so does
//! [`memory::MemStorage`], the one in-memory store for tests, benchmarks,
//! `wasmon test rules` and promqltest. Modules that only write or read
//! samples depend on this module, not on `tsdb`.

pub mod matcher;
pub mod memory;

pub use matcher::{MatchOp, Matcher};
pub use memory::MemStorage;

use crate::model::{Labels, TimestampMs};

/// Why the store refused one sample. The scrape goes on; the sample is
/// counted and dropped, as Prometheus does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendRejection {
    #[error("out of order sample")]
    OutOfOrder,
    #[error("duplicate sample for timestamp")]
    DuplicateTimestamp,
    /// Older than the store's window (its persisted range, or half a block
    /// behind its newest sample).
    #[error("out of bounds")]
    OutOfBounds,
    /// Further ahead of the agent's clock than the store accepts.
    #[error("too far in the future")]
    TooFarInFuture,
    #[error("{0}")]
    Other(String),
}

/// A batch of appends that becomes visible on commit.
pub trait Appender: Send {
    fn append(&mut self, labels: &Labels, t: TimestampMs, v: f64) -> Result<(), AppendRejection>;

    /// Like `append`, also returning the store's handle for the series when
    /// it has one, so a caller can later write to it without its labels
    /// (the scrape loop keeps handles, not label sets, for staleness).
    fn append_get_ref(
        &mut self,
        labels: &Labels,
        t: TimestampMs,
        v: f64,
    ) -> Result<Option<u64>, AppendRejection> {
        self.append(labels, t, v).map(|()| None)
    }

    /// `append_get_ref` for a caller that has `hash`, the labels'
    /// [`crate::model::hash_labels`] (the store need not hash them again).
    fn append_hashed(
        &mut self,
        labels: &Labels,
        hash: u64,
        t: TimestampMs,
        v: f64,
    ) -> Result<Option<u64>, AppendRejection> {
        let _ = hash;
        self.append_get_ref(labels, t, v)
    }

    /// Appends to a series by the handle `append_get_ref` returned.
    fn append_ref(&mut self, r: u64, t: TimestampMs, v: f64) -> Result<(), AppendRejection> {
        let _ = (r, t, v);
        Err(AppendRejection::Other(
            "this store has no series handles".into(),
        ))
    }

    fn commit(self: Box<Self>) -> anyhow::Result<()>;
    fn rollback(self: Box<Self>);
}

/// Something that hands out appenders.
pub trait Appendable: Send + Sync + 'static {
    fn appender(&self) -> Box<dyn Appender + '_>;
}

/// One selected series: its labels and its samples in time order within
/// the requested range. Staleness markers are passed through as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub labels: Labels,
    pub samples: Vec<(TimestampMs, f64)>,
}

/// A store that can be read. Prometheus splits this into a `Queryable`
/// handing out a `Querier` per time range; every reader here makes one
/// select per range, so the range is a parameter of the select.
pub trait Queryable: Send + Sync {
    /// Series matching all `matchers` with their samples in `[mint, maxt]`
    /// (inclusive), sorted by labels. Series without samples in the range
    /// may be omitted.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> anyhow::Result<Vec<SeriesData>>;
}
