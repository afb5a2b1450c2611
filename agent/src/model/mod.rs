//! The data model shared by scrape, tsdb, promql and rules (Prometheus'
//! `model/` package): label sets, samples, metric metadata.

pub mod duration;
pub mod labels;
pub mod relabel;

pub use duration::{Duration, DurationError};
pub use labels::{
    hash_labels, hash_pairs, is_legacy_label_name, Label, Labels, LabelsBuilder, METRIC_NAME,
};

/// Milliseconds since the Unix epoch, Prometheus' timestamp unit.
pub type TimestampMs = i64;

/// The bit pattern Prometheus writes as a staleness marker: a special NaN
/// that ordinary NaN values never carry.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Is `v` a staleness marker (not merely a NaN)?
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}
