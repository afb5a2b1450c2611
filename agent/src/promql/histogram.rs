//! `histogram_quantile` and `histogram_fraction` over classic histograms:
//! series with an `le` label grouped by their other labels.

use std::sync::Arc;

use promql_parser::parser::Expr;

use super::engine::Evaluator;
use super::error::EvalError;
use super::functions::fmt_g;
use super::grouping::{GroupIndex, Proj};
use super::value::*;
use crate::model::{Labels, METRIC_NAME};

#[derive(Clone, Copy)]
pub(crate) struct Bucket {
    pub upper: f64,
    pub count: f64,
}

/// The bucket bound label.
pub(crate) const LE: &str = "le";

/// Buckets of one histogram: the same labels but `le` (and the name).
pub(crate) fn buckets_proj() -> Proj<'static> {
    static LE_ONLY: std::sync::LazyLock<[String; 1]> =
        std::sync::LazyLock::new(|| [LE.to_string()]);
    Proj::AllBut(&*LE_ONLY)
}

/// Groups the vector's buckets by their labels without `le` and the name.
fn group(ev: &mut Evaluator, v: Vec<VSample>) -> Vec<(Labels, Vec<Bucket>)> {
    let p = buckets_proj();
    let mut idx = GroupIndex::default();
    let mut out: Vec<(Labels, Vec<Bucket>)> = Vec::new();
    for s in v {
        let le = s.metric.get(LE).unwrap_or("");
        let upper = match parse_le(le) {
            Some(u) => u,
            None => {
                ev.ann.warn(format!(
                    "bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}",
                    le,
                    s.get(METRIC_NAME).unwrap_or("")
                ));
                continue;
            }
        };
        let (i, new) = idx.get_or_insert(p, &s.metric, s.drop_name);
        if new {
            let mut b = s.metric.to_builder();
            b.del(LE).del(METRIC_NAME);
            out.push((b.build(), Vec::new()));
        }
        out[i].1.push(Bucket { upper, count: s.f });
    }
    out
}

pub(crate) fn parse_le(s: &str) -> Option<f64> {
    match s.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "" => None,
        x => x.parse().ok(),
    }
}

fn prepare(b: &mut Vec<Bucket>) -> Option<(bool, bool)> {
    b.sort_by(|x, y| {
        x.upper
            .partial_cmp(&y.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if b.last()?.upper != f64::INFINITY {
        return None;
    }
    // Coalesce equal bounds.
    let mut out: Vec<Bucket> = Vec::with_capacity(b.len());
    for x in b.iter() {
        match out.last_mut() {
            Some(l) if l.upper == x.upper => l.count += x.count,
            _ => out.push(*x),
        }
    }
    *b = out;
    let mut fixed = false;
    let mut prev = b[0].count;
    for x in b.iter_mut().skip(1) {
        let cur = x.count;
        let d = (cur - prev).abs();
        if d == 0.0 {
            continue;
        }
        if d / cur <= 1e-12 {
            x.count = prev;
            fixed = true;
        } else {
            prev = cur;
        }
    }
    let mut forced = false;
    let mut max = b[0].count;
    for x in b.iter_mut().skip(1) {
        if x.count > max {
            max = x.count;
        } else if x.count < max {
            x.count = max;
            forced = true;
        }
    }
    Some((forced, fixed))
}

pub(crate) fn bucket_quantile(q: f64, mut b: Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    let Some((forced, _)) = prepare(&mut b) else {
        return (f64::NAN, false);
    };
    if b.len() < 2 {
        return (f64::NAN, false);
    }
    let obs = b[b.len() - 1].count;
    if obs == 0.0 || obs.is_nan() {
        return (f64::NAN, false);
    }
    let mut rank = q * obs;
    let n = b.len() - 1;
    let i = b[..n].partition_point(|x| x.count < rank);
    if i == n {
        return (b[n - 1].upper, forced);
    }
    if i == 0 && b[0].upper <= 0.0 {
        return (b[0].upper, forced);
    }
    let (mut start, end, mut count) = (0.0, b[i].upper, b[i].count);
    if i > 0 {
        start = b[i - 1].upper;
        count -= b[i - 1].count;
        rank -= b[i - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}

fn bucket_fraction(lower: f64, upper: f64, mut b: Vec<Bucket>) -> f64 {
    if prepare(&mut b).is_none() {
        return f64::NAN;
    }
    let count = b[b.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lr, mut ur) = (0.0, 0.0, 0.0);
    let (mut ls, mut us) = (false, false);
    for (i, x) in b.iter().enumerate() {
        let lo = if i == 0 {
            if x.upper > 0.0 {
                0.0
            } else {
                f64::NEG_INFINITY
            }
        } else {
            b[i - 1].upper
        };
        let hi = x.upper;
        let c = x.count - rank;
        if !ls && lo >= lower {
            lr = rank;
            ls = true;
        }
        if !us && lo >= upper {
            ur = rank;
            us = true;
        }
        if ls && us {
            break;
        }
        if !ls && lo < lower && hi > lower {
            lr = if hi.is_infinite() || lo.is_infinite() {
                rank
            } else {
                rank + c * (lower - lo) / (hi - lo)
            };
            ls = true;
        }
        if !us && lo < upper && hi > upper {
            ur = if hi.is_infinite() || lo.is_infinite() {
                rank
            } else {
                rank + c * (upper - lo) / (hi - lo)
            };
            us = true;
        }
        if ls && us {
            break;
        }
        rank = x.count;
    }
    if !ls || lr > count {
        lr = count;
    }
    if !us || ur > count {
        ur = count;
    }
    (ur - lr) / count
}

fn out(labels: Labels, f: f64) -> VSample {
    VSample {
        metric: Arc::new(labels),
        drop_name: false,
        f,
    }
}

pub(crate) fn quantile(ev: &mut Evaluator, args: &[&Expr], t: i64) -> Result<Val, EvalError> {
    let q = ev.eval_scalar(args[0], t)?;
    let v = ev.eval_vector(args[1], t)?;
    if !(0.0..=1.0).contains(&q) {
        ev.ann.warn(format!(
            "quantile value should be between 0 and 1, got {}",
            fmt_g(q)
        ));
    }
    let name = v
        .iter()
        .find_map(|s| s.get(METRIC_NAME).map(str::to_string));
    let mut res = Vec::new();
    for (labels, b) in group(ev, v) {
        let (f, forced) = bucket_quantile(q, b);
        if forced {
            ev.ann.info(format!(
                "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {:?}",
                name.clone().unwrap_or_default()
            ));
        }
        res.push(out(labels, f));
    }
    Ok(Val::Vector(res))
}

pub(crate) fn fraction(ev: &mut Evaluator, args: &[&Expr], t: i64) -> Result<Val, EvalError> {
    let lo = ev.eval_scalar(args[0], t)?;
    let hi = ev.eval_scalar(args[1], t)?;
    let v = ev.eval_vector(args[2], t)?;
    let res = group(ev, v)
        .into_iter()
        .map(|(l, b)| out(l, bucket_fraction(lo, hi, b)))
        .collect();
    Ok(Val::Vector(res))
}
