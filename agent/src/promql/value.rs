//! Values: what a query returns (public, owned labels) and what flows
//! between operators inside the engine (labels shared through `Arc`, the
//! metric name dropped lazily).
//!
//! Dropping `__name__` is delayed, as in Prometheus 3: an operator only sets
//! `drop_name`, so per-step evaluation never rebuilds label sets, and the
//! name is removed when the result is materialized.

use std::sync::Arc;

use crate::model::{Labels, TimestampMs, METRIC_NAME};

/// One element of an instant vector result.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t: TimestampMs,
    pub v: f64,
}

/// One series of a matrix result, points in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(TimestampMs, f64)>,
}

/// A query result, typed like Prometheus' `resultType`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: TimestampMs, v: f64 },
    String { t: TimestampMs, s: String },
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    /// Prometheus' name for the type (`resultType` in the HTTP API).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Warnings and infos attached to a result, rendered like Prometheus
/// (`PromQL warning: ...`, `PromQL info: ...`) but without the position
/// suffix, which the parser does not track.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    pub fn warn(&mut self, msg: String) {
        let m = format!("PromQL warning: {msg}");
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }
    pub fn info(&mut self, msg: String) {
        let m = format!("PromQL info: {msg}");
        if !self.infos.contains(&m) {
            self.infos.push(m);
        }
    }
}

/// Work counters of one query.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueryStats {
    /// Samples selected from storage.
    pub samples_loaded: u64,
    /// Samples read by evaluation (a sample in `rate(x[5m])` windows of
    /// several steps counts once per step).
    pub samples_scanned: u64,
}

/// A query's value, annotations and statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    pub annotations: Annotations,
    pub stats: QueryStats,
}

/// An instant-vector element inside the engine.
#[derive(Debug, Clone)]
pub(crate) struct VSample {
    pub metric: Arc<Labels>,
    /// The metric name is to be dropped when the result is materialized.
    pub drop_name: bool,
    pub f: f64,
}

impl VSample {
    /// A label value as operators see it (the name is gone once dropped).
    pub fn get(&self, name: &str) -> Option<&str> {
        if self.drop_name && is_name_label(name) {
            return None;
        }
        self.metric.get(name)
    }

    /// The effective label set.
    pub fn labels(&self) -> Labels {
        effective(&self.metric, self.drop_name)
    }
}

/// A series of a range vector inside the engine.
#[derive(Debug, Clone)]
pub(crate) struct RSeries {
    pub metric: Arc<Labels>,
    pub drop_name: bool,
    pub points: Vec<(TimestampMs, f64)>,
}

/// The labels that go with the metric name: the name itself and the
/// type-and-unit metadata labels of Prometheus 3 (`__type__`, `__unit__`).
pub(crate) fn is_name_label(n: &str) -> bool {
    n == METRIC_NAME || n == "__type__" || n == "__unit__"
}

pub(crate) fn effective(l: &Labels, drop_name: bool) -> Labels {
    if drop_name && l.iter().any(|x| is_name_label(&x.name)) {
        let mut b = l.to_builder();
        b.retain(|x| !is_name_label(&x.name));
        b.build()
    } else {
        l.clone()
    }
}

/// An intermediate value.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Scalar(f64),
    Str(String),
    Vector(Vec<VSample>),
    Matrix(Vec<RSeries>),
}

impl Val {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Str(_) => "string",
            Val::Vector(_) => "vector",
            Val::Matrix(_) => "matrix",
        }
    }
}

/// A fast non-cryptographic hasher (FxHash) for maps keyed by pointers
/// and indices, where SipHash would dominate the cost of per-step lookups.
/// Never for label values: it collides on strings one character apart
/// (group identity by labels is `grouping`'s).
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64)
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64)
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FxBuild = std::hash::BuildHasherDefault<FxHasher>;
pub(crate) type FxMap<K, V> = std::collections::HashMap<K, V, FxBuild>;
