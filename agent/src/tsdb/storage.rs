//! The TSDB behind the storage contracts ([`crate::storage`]): what the
//! scrape loop, rules and checks append through and what the PromQL engine
//! reads.

use super::{AppendError, Db};
use crate::model::{Labels, TimestampMs};
use crate::storage::{AppendRejection, Appendable, Appender, Matcher, Queryable, SeriesData};

struct DbAppender(super::Appender);

fn rejection(e: AppendError) -> AppendRejection {
    match e {
        AppendError::OutOfOrder => AppendRejection::OutOfOrder,
        AppendError::OutOfBounds => AppendRejection::OutOfBounds,
        AppendError::TooFarInFuture => AppendRejection::TooFarInFuture,
        AppendError::DuplicateSampleForTimestamp => AppendRejection::DuplicateTimestamp,
        e => AppendRejection::Other(e.to_string()),
    }
}

impl Appender for DbAppender {
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

impl Appendable for Db {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(DbAppender(Db::appender(self)))
    }
}

impl Queryable for Db {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> anyhow::Result<Vec<SeriesData>> {
        Ok(Db::select(self, matchers, mint, maxt)
            .into_iter()
            .map(|s| SeriesData {
                labels: s.labels,
                samples: s.samples,
            })
            .collect())
    }
}
