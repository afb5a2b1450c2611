//! What the engine reads: a [`Queryable`] that selects series by label
//! matchers over a time range.
//!
//! The engine owns this trait (not the TSDB) so it can be tested against
//! [`MemStorage`] and so any store — the embedded TSDB, a remote read
//! client — can be plugged in with a small adapter.

use std::collections::HashMap;

use parking_lot::RwLock;

use crate::model::{Labels, TimestampMs};

/// The engine selects with the store's own matchers (Prometheus semantics:
/// anchored regexes, an absent label reads as `""`), so both agree by
/// construction.
pub use crate::tsdb::{MatchOp, Matcher};

/// Converts promql-parser's matcher (whose regex is not `(?s)`).
pub fn matcher_from_parser(m: &promql_parser::label::Matcher) -> Result<Matcher, String> {
    use promql_parser::label::MatchOp as P;
    let op = match m.op {
        P::Equal => MatchOp::Equal,
        P::NotEqual => MatchOp::NotEqual,
        P::Re(_) => MatchOp::Regex,
        P::NotRe(_) => MatchOp::NotRegex,
    };
    Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| format!("{e:#}"))
}

/// Does the series with these labels match?
pub fn matches_labels(m: &Matcher, l: &Labels) -> bool {
    m.matches(l.get(&m.name).unwrap_or(""))
}

/// One selected series: its labels and its samples in time order within
/// the requested range. Staleness markers are passed through as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub labels: Labels,
    pub samples: Vec<(TimestampMs, f64)>,
}

/// A store the engine can read.
pub trait Queryable: Send + Sync {
    /// Series matching all `matchers` with their samples in `[mint, maxt]`
    /// (inclusive). Series without samples in the range may be omitted.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> anyhow::Result<Vec<SeriesData>>;
}

/// An in-memory store for tests and benchmarks: a map of series, each a
/// time-sorted sample vector.
#[derive(Default)]
pub struct MemStorage {
    series: RwLock<HashMap<Labels, Vec<(TimestampMs, f64)>>>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Appends a sample; an out-of-order timestamp is inserted in place and
    /// a duplicate timestamp replaces the older value.
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
            if !matchers.iter().all(|mt| matches_labels(mt, labels)) {
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

/// The embedded store, as the engine sees it.
impl Queryable for crate::tsdb::Db {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> anyhow::Result<Vec<SeriesData>> {
        Ok(crate::tsdb::Db::select(self, matchers, mint, maxt)
            .into_iter()
            .map(|s| SeriesData {
                labels: s.labels,
                samples: s.samples,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_semantics() {
        let l = Labels::from_pairs([("a", "x\ny")]);
        assert!(matches_labels(
            &Matcher::new(MatchOp::Regex, "a", "x.y").unwrap(),
            &l
        ));
        assert!(!matches_labels(
            &Matcher::new(MatchOp::Regex, "a", "x").unwrap(),
            &l
        ));
        assert!(matches_labels(
            &Matcher::new(MatchOp::Equal, "b", "").unwrap(),
            &l
        ));
        assert!(matches_labels(
            &Matcher::new(MatchOp::Regex, "b", ".*").unwrap(),
            &l
        ));
        assert!(!matches_labels(
            &Matcher::new(MatchOp::NotEqual, "b", "").unwrap(),
            &l
        ));
    }

    #[test]
    fn mem_select_range() {
        let s = MemStorage::new();
        let l = Labels::from_pairs([("__name__", "m")]);
        for t in 0..10 {
            s.append(l.clone(), t * 10, t as f64);
        }
        let m = [Matcher::new(MatchOp::Equal, "__name__", "m").unwrap()];
        let r = s.select(&m, 15, 40).unwrap();
        assert_eq!(r[0].samples, vec![(20, 2.0), (30, 3.0), (40, 4.0)]);
    }
}
