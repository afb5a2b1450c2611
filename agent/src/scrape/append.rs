//! Where scraped samples go: a small trait so the scrape loop does not depend
//! on the store's concrete type (tests use an in-memory one).

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
pub trait SampleAppender: Send {
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
    /// [`crate::tsdb::series::hash_labels`] (the store need not hash them
    /// again).
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

/// Something that hands out appenders (the TSDB).
pub trait Appendable: Send + Sync + 'static {
    fn appender(&self) -> Box<dyn SampleAppender + '_>;
}

/// An in-memory store for tests: every committed sample, in order.
#[derive(Default)]
pub struct MemoryStore {
    pub samples: std::sync::Mutex<Vec<(Labels, TimestampMs, f64)>>,
}

struct MemoryAppender<'a> {
    store: &'a MemoryStore,
    pending: Vec<(Labels, TimestampMs, f64)>,
}

impl SampleAppender for MemoryAppender<'_> {
    fn append(&mut self, labels: &Labels, t: TimestampMs, v: f64) -> Result<(), AppendRejection> {
        self.pending.push((labels.clone(), t, v));
        Ok(())
    }
    fn commit(self: Box<Self>) -> anyhow::Result<()> {
        self.store.samples.lock().unwrap().extend(self.pending);
        Ok(())
    }
    fn rollback(self: Box<Self>) {}
}

impl Appendable for MemoryStore {
    fn appender(&self) -> Box<dyn SampleAppender + '_> {
        Box::new(MemoryAppender {
            store: self,
            pending: Vec::new(),
        })
    }
}

impl MemoryStore {
    /// Committed samples of the series whose `__name__` is `name`.
    pub fn series(&self, name: &str) -> Vec<(Labels, TimestampMs, f64)> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _, _)| l.name() == Some(name))
            .cloned()
            .collect()
    }
}

/// The TSDB's appender behind the scrape loop's trait.
struct DbAppender(crate::tsdb::Appender);

fn rejection(e: crate::tsdb::AppendError) -> AppendRejection {
    use crate::tsdb::AppendError as E;
    match e {
        E::OutOfOrder => AppendRejection::OutOfOrder,
        E::OutOfBounds => AppendRejection::OutOfBounds,
        E::TooFarInFuture => AppendRejection::TooFarInFuture,
        E::DuplicateSampleForTimestamp => AppendRejection::DuplicateTimestamp,
        e => AppendRejection::Other(e.to_string()),
    }
}

impl SampleAppender for DbAppender {
    fn append(&mut self, labels: &Labels, t: TimestampMs, v: f64) -> Result<(), AppendRejection> {
        self.0.append(labels, t, v).map(drop).map_err(rejection)
    }
    fn append_get_ref(
        &mut self,
        labels: &Labels,
        t: TimestampMs,
        v: f64,
    ) -> Result<Option<u64>, AppendRejection> {
        self.0.append(labels, t, v).map(Some).map_err(rejection)
    }
    fn append_hashed(
        &mut self,
        labels: &Labels,
        hash: u64,
        t: TimestampMs,
        v: f64,
    ) -> Result<Option<u64>, AppendRejection> {
        self.0
            .append_hashed(labels, hash, t, v)
            .map(Some)
            .map_err(rejection)
    }
    fn append_ref(&mut self, r: u64, t: TimestampMs, v: f64) -> Result<(), AppendRejection> {
        self.0.append_ref(r, t, v).map(drop).map_err(rejection)
    }
    fn commit(self: Box<Self>) -> anyhow::Result<()> {
        self.0.commit()
    }
    fn rollback(self: Box<Self>) {
        self.0.rollback()
    }
}

impl Appendable for crate::tsdb::Db {
    fn appender(&self) -> Box<dyn SampleAppender + '_> {
        Box::new(DbAppender(crate::tsdb::Db::appender(self)))
    }
}
