//! Instant PromQL queries against the agent's own store (`metric-check` only).
//!
//! Only the `metric-check` world imports `query`; the module exists only with
//! that feature so that no other kind of plugin can import it by accident
//! (the host would refuse to load it).

use crate::types::{Failure, Sample};

/// Evaluates `expr` at `time_ms` (milliseconds since the epoch) and returns
/// the instant vector; a scalar comes back as one sample without labels.
///
/// A query error is a [`Failure::Permanent`]: the expression comes from the
/// plugin's config, and the same query would fail again.
pub fn instant(expr: &str, time_ms: i64) -> Result<Vec<Sample>, Failure> {
    crate::bindings::wasmon::plugin::query::instant(expr, time_ms)
        .map_err(|e| Failure::Permanent(format!("query {expr:?}: {e}")))
}

/// Evaluates `expr` and returns its single value: the value of a scalar or of
/// a one-element vector. No sample is `Ok(None)`; several are an error.
pub fn scalar(expr: &str, time_ms: i64) -> Result<Option<f64>, Failure> {
    let samples = instant(expr, time_ms)?;
    match samples.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.value)),
        many => Err(Failure::Permanent(format!(
            "query {expr:?}: expected one sample, got {}",
            many.len()
        ))),
    }
}
