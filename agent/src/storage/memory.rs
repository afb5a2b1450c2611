//! The in-memory store: a map of series, each a time-sorted sample vector.
//! For tests, benchmarks, promqltest and `wasmon test rules` — a plain pub
//! module (not `cfg(test)`) so integration tests, benches and fuzz targets
//! use the same one.
//!
//! Through [`Appendable`] it keeps the store contract: appends become
//! visible on commit, a sample older than its series' newest is
//! [`AppendRejection::OutOfOrder`], the same timestamp with another value
//! is [`AppendRejection::DuplicateTimestamp`] (the same value again is
//! accepted and changes nothing, as in the TSDB). It has no series handles
//! and no time window. [`MemStorage::append`] is the loader's way in: it
//! writes directly, in any order.

use std::collections::HashMap;

use parking_lot::RwLock;

use super::{AppendRejection, Appendable, Appender, Matcher, Queryable, SeriesData};
use crate::model::{Labels, TimestampMs};

#[derive(Default)]
pub struct MemStorage {
    series: RwLock<HashMap<Labels, Vec<(TimestampMs, f64)>>>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Writes a sample now, bypassing the appender contract: an
    /// out-of-order timestamp is inserted in place and a duplicate
    /// timestamp replaces the older value (test fixtures load this way).
    pub fn append(&self, labels: Labels, t: TimestampMs, v: f64) {
        let mut m = self.series.write();
        let s = m.entry(labels).or_default();
        match s.last() {
            Some(&(lt, _)) if lt < t => s.push((t, v)),
            None => s.push((t, v)),
            _ => match s.binary_search_by_key(&t, |p| p.0) {
                Ok(i) => s[i].1 = v,
                Err(i) => s.insert(i, (t, v)),
            },
        }
    }

    /// Adds a whole series at once (samples must be time-sorted); replaces
    /// any samples the series had. For bulk loading in benchmarks.
    pub fn insert_series(&self, labels: Labels, samples: Vec<(TimestampMs, f64)>) {
        self.series.write().insert(labels, samples);
    }

    /// Removes everything.
    pub fn clear(&self) {
        self.series.write().clear();
    }

    /// Number of series held.
    pub fn num_series(&self) -> usize {
        self.series.read().len()
    }

    /// Every sample of the series whose `__name__` is `name`, as
    /// `(labels, t, v)`, by labels then time.
    pub fn series(&self, name: &str) -> Vec<(Labels, TimestampMs, f64)> {
        let m = self.series.read();
        let mut named: Vec<_> = m.iter().filter(|(l, _)| l.name() == Some(name)).collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        named
            .into_iter()
            .flat_map(|(l, s)| s.iter().map(move |&(t, v)| (l.clone(), t, v)))
            .collect()
    }
}

impl Queryable for MemStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> anyhow::Result<Vec<SeriesData>> {
        let m = self.series.read();
        let mut out = Vec::new();
        for (labels, samples) in m.iter() {
            if !matchers.iter().all(|mt| mt.matches_labels(labels)) {
                continue;
            }
            let lo = samples.partition_point(|p| p.0 < mint);
            let hi = samples.partition_point(|p| p.0 <= maxt);
            if lo < hi {
                out.push(SeriesData {
                    labels: labels.clone(),
                    samples: samples[lo..hi].to_vec(),
                });
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

/// Pending samples, checked against the store and the batch as they come.
struct MemAppender<'a> {
    store: &'a MemStorage,
    pending: HashMap<Labels, Vec<(TimestampMs, f64)>>,
}

impl Appender for MemAppender<'_> {
    fn append(&mut self, labels: &Labels, t: TimestampMs, v: f64) -> Result<(), AppendRejection> {
        let newest = match self.pending.get(labels).and_then(|p| p.last()) {
            Some(&s) => Some(s),
            None => self
                .store
                .series
                .read()
                .get(labels)
                .and_then(|s| s.last().copied()),
        };
        if let Some((lt, lv)) = newest {
            if t < lt {
                return Err(AppendRejection::OutOfOrder);
            }
            if t == lt {
                // Compared as bits, so a repeated NaN (a staleness marker)
                // is the same value.
                return if lv.to_bits() == v.to_bits() {
                    Ok(())
                } else {
                    Err(AppendRejection::DuplicateTimestamp)
                };
            }
        }
        self.pending.entry(labels.clone()).or_default().push((t, v));
        Ok(())
    }

    fn commit(self: Box<Self>) -> anyhow::Result<()> {
        let mut m = self.store.series.write();
        for (labels, samples) in self.pending {
            let s = m.entry(labels).or_default();
            for (t, v) in samples {
                // Another appender may have committed newer samples since
                // these were checked; they keep the order contract.
                match s.last() {
                    Some(&(lt, _)) if lt >= t => {}
                    _ => s.push((t, v)),
                }
            }
        }
        Ok(())
    }

    fn rollback(self: Box<Self>) {}
}

impl Appendable for MemStorage {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(MemAppender {
            store: self,
            pending: HashMap::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MatchOp;

    fn l(v: &str) -> Labels {
        Labels::from_pairs([("__name__", "m"), ("s", v)])
    }

    #[test]
    fn select_range() {
        let s = MemStorage::new();
        let l = Labels::from_pairs([("__name__", "m")]);
        for t in 0..10 {
            s.append(l.clone(), t * 10, t as f64);
        }
        let m = [Matcher::new(MatchOp::Equal, "__name__", "m").unwrap()];
        let r = s.select(&m, 15, 40).unwrap();
        assert_eq!(r[0].samples, vec![(20, 2.0), (30, 3.0), (40, 4.0)]);
    }

    #[test]
    fn appends_are_visible_on_commit_only() {
        let s = MemStorage::new();
        let mut a = s.appender();
        a.append(&l("a"), 10, 1.0).unwrap();
        assert!(s.series("m").is_empty());
        a.commit().unwrap();
        assert_eq!(s.series("m"), [(l("a"), 10, 1.0)]);
        let mut a = s.appender();
        a.append(&l("a"), 20, 2.0).unwrap();
        a.rollback();
        assert_eq!(s.series("m").len(), 1);
    }

    #[test]
    fn appender_keeps_the_order_contract() {
        let s = MemStorage::new();
        let mut a = s.appender();
        a.append(&l("a"), 10, 1.0).unwrap();
        // Within the batch and against committed samples alike.
        assert_eq!(a.append(&l("a"), 5, 1.0), Err(AppendRejection::OutOfOrder));
        assert_eq!(
            a.append(&l("a"), 10, 2.0),
            Err(AppendRejection::DuplicateTimestamp)
        );
        assert_eq!(a.append(&l("a"), 10, 1.0), Ok(()));
        a.append(&l("b"), 5, 1.0).unwrap();
        a.commit().unwrap();
        let mut a = s.appender();
        assert_eq!(a.append(&l("a"), 9, 1.0), Err(AppendRejection::OutOfOrder));
        let stale = crate::model::stale_nan();
        a.append(&l("a"), 11, stale).unwrap();
        assert_eq!(a.append(&l("a"), 11, stale), Ok(()));
        a.commit().unwrap();
        let got: Vec<_> = s.series("m").into_iter().map(|(l, t, _)| (l, t)).collect();
        assert_eq!(got, [(l("a"), 10), (l("a"), 11), (l("b"), 5)]);
    }
}
