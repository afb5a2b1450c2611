//! PromQL functions over floats (Prometheus 3.x semantics; native
//! histograms are not stored, so histogram-only functions return nothing).
//!
//! Range-vector functions receive each series' window as a borrowed slice
//! (see `Evaluator::with_range`) so `rate(x[5m])` over many series copies
//! no samples.

use std::sync::Arc;

use promql_parser::parser::{Call, Expr};
use regex::Regex;

use super::engine::{dur_ms, unparen, Evaluator};
use super::error::{err, EvalError};
use super::value::*;
use crate::model::{Labels, METRIC_NAME};

/// Kahan-compensated increment, as Prometheus' `kahanSumInc`.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Least-squares fit with the intercept at `intercept_t` (ms).
fn linear_regression(pts: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = pts[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in pts.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// What a range function sees besides the samples.
pub(crate) struct Win {
    pub start: i64,
    pub end: i64,
    pub t: i64,
    pub range_s: f64,
}

fn extrapolated_rate(p: &[(i64, f64)], w: &Win, counter: bool, rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (first, last) = (p[0], p[p.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        for i in 1..p.len() {
            if p[i].1 < p[i - 1].1 {
                result += p[i - 1].1;
            }
        }
    }
    let mut to_start = (first.0 - w.start) as f64 / 1e3;
    let mut to_end = (w.end - last.0) as f64 / 1e3;
    let sampled = (last.0 - first.0) as f64 / 1e3;
    let avg = sampled / (p.len() - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if rate {
        factor /= w.range_s;
    }
    Some(result * factor)
}

fn instant_value(p: &[(i64, f64)], rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (prev, last) = (p[p.len() - 2], p[p.len() - 1]);
    let mut v = if rate && last.1 < prev.1 {
        last.1
    } else {
        last.1 - prev.1
    };
    let dt = last.0 - prev.0;
    if dt == 0 {
        return None;
    }
    if rate {
        v /= dt as f64 / 1e3;
    }
    Some(v)
}

fn avg_over(p: &[(i64, f64)]) -> f64 {
    let (mut sum, mut c, mut mean, mut count) = (0.0, 0.0, 0.0, 0.0);
    let mut incremental = false;
    for &(_, v) in p {
        count += 1.0;
        if !incremental {
            let (ns, nc) = kahan_inc(v, sum, c);
            if count == 1.0 || !ns.is_infinite() {
                (sum, c) = (ns, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn variance(p: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut cm, mut aux, mut ca) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in p {
        count += 1.0;
        let delta = v - (mean + cm);
        (mean, cm) = kahan_inc(delta / count, mean, cm);
        (aux, ca) = kahan_inc(delta * (v - (mean + cm)), aux, ca);
    }
    (aux + ca) / count
}

/// Prometheus' `quantile` over plain values (sorted here).
pub(crate) fn quantile(q: f64, vals: &mut [f64]) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    vals.sort_by(|a, b| {
        if a.is_nan() && !b.is_nan() {
            std::cmp::Ordering::Less
        } else if b.is_nan() {
            std::cmp::Ordering::Greater
        } else {
            a.partial_cmp(b).unwrap()
        }
    });
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lo = rank.floor().max(0.0);
    let hi = (lo + 1.0).min(n - 1.0);
    let w = rank - rank.floor();
    vals[lo as usize] * (1.0 - w) + vals[hi as usize] * w
}

pub(crate) fn range_fn_keeps_name(name: &str) -> bool {
    matches!(name, "last_over_time" | "first_over_time")
}

pub(crate) fn is_range_fn(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "irate"
            | "increase"
            | "delta"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "resets"
            | "changes"
            | "avg_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "min_over_time"
            | "max_over_time"
            | "last_over_time"
            | "first_over_time"
            | "present_over_time"
            | "quantile_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "mad_over_time"
            | "absent_over_time"
            | "double_exponential_smoothing"
            | "ts_of_max_over_time"
            | "ts_of_min_over_time"
            | "ts_of_last_over_time"
            | "ts_of_first_over_time"
    )
}

/// Evaluates a function call at step `t`.
pub(crate) fn call(ev: &mut Evaluator, c: &Call, t: i64) -> Result<Val, EvalError> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
    if is_range_fn(name) {
        return range_call(ev, name, &args, t);
    }
    let sv =
        |ev: &mut Evaluator, i: usize| -> Result<f64, EvalError> { ev.eval_scalar(args[i], t) };
    match name {
        "time" => Ok(Val::Scalar(t as f64 / 1e3)),
        "pi" => Ok(Val::Scalar(std::f64::consts::PI)),
        "vector" => {
            let v = sv(ev, 0)?;
            Ok(Val::Vector(vec![VSample {
                metric: Arc::new(Labels::new()),
                drop_name: false,
                f: v,
            }]))
        }
        "scalar" => {
            let v = ev.eval_vector(args[0], t)?;
            Ok(Val::Scalar(if v.len() == 1 { v[0].f } else { f64::NAN }))
        }
        "abs" | "ceil" | "floor" | "exp" | "ln" | "log2" | "log10" | "sqrt" | "sgn" | "sin"
        | "cos" | "tan" | "asin" | "acos" | "atan" | "sinh" | "cosh" | "tanh" | "asinh"
        | "acosh" | "atanh" | "deg" | "rad" => {
            let f: fn(f64) -> f64 = match name {
                "abs" => f64::abs,
                "ceil" => f64::ceil,
                "floor" => f64::floor,
                "exp" => f64::exp,
                "ln" => f64::ln,
                "log2" => f64::log2,
                "log10" => f64::log10,
                "sqrt" => f64::sqrt,
                "sgn" => |v: f64| {
                    if v > 0.0 {
                        1.0
                    } else if v < 0.0 {
                        -1.0
                    } else {
                        v
                    }
                },
                "sin" => f64::sin,
                "cos" => f64::cos,
                "tan" => f64::tan,
                "asin" => f64::asin,
                "acos" => f64::acos,
                "atan" => f64::atan,
                "sinh" => f64::sinh,
                "cosh" => f64::cosh,
                "tanh" => f64::tanh,
                "asinh" => f64::asinh,
                "acosh" => f64::acosh,
                "atanh" => f64::atanh,
                "deg" => |v: f64| v * 180.0 / std::f64::consts::PI,
                _ => |v: f64| v * std::f64::consts::PI / 180.0,
            };
            map_vector(ev, args[0], t, f)
        }
        "round" => {
            let to = if args.len() > 1 { sv(ev, 1)? } else { 1.0 };
            let inv = 1.0 / to;
            map_vector(ev, args[0], t, move |v| (v * inv + 0.5).floor() / inv)
        }
        "clamp" => {
            let (lo, hi) = (sv(ev, 1)?, sv(ev, 2)?);
            if hi < lo {
                return Ok(Val::Vector(Vec::new()));
            }
            map_vector(ev, args[0], t, move |v| v.max(lo).min(hi))
        }
        "clamp_min" => {
            let lo = sv(ev, 1)?;
            map_vector(ev, args[0], t, move |v| v.max(lo))
        }
        "clamp_max" => {
            let hi = sv(ev, 1)?;
            map_vector(ev, args[0], t, move |v| v.min(hi))
        }
        "timestamp" => {
            if let Expr::VectorSelector(vs) = unparen(args[0]) {
                let mut out = Vec::new();
                ev.select_instant(vs, t, |s, pt, _| {
                    out.push(VSample {
                        metric: s.metric.clone(),
                        drop_name: true,
                        f: pt as f64 / 1e3,
                    })
                })?;
                return Ok(Val::Vector(out));
            }
            map_vector(ev, args[0], t, move |_| t as f64 / 1e3)
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let f: fn(f64) -> f64 = match name {
                "day_of_month" => |v| date_part(v, |d| d.day as f64),
                "day_of_week" => |v| date_part(v, |d| d.weekday as f64),
                "day_of_year" => |v| date_part(v, |d| d.yday as f64),
                "days_in_month" => |v| date_part(v, |d| days_in_month(d.year, d.month) as f64),
                "hour" => |v| date_part(v, |d| d.hour as f64),
                "minute" => |v| date_part(v, |d| d.minute as f64),
                "month" => |v| date_part(v, |d| d.month as f64),
                _ => |v| date_part(v, |d| d.year as f64),
            };
            if args.is_empty() {
                let v = f(t as f64 / 1e3);
                return Ok(Val::Vector(vec![VSample {
                    metric: Arc::new(Labels::new()),
                    drop_name: false,
                    f: v,
                }]));
            }
            map_vector(ev, args[0], t, f)
        }
        "sort" | "sort_desc" => {
            if ev.interval > 0 {
                ev.ann.warn("sort is ineffective for range queries since results are always ordered by labels".into());
            }
            let mut v = ev.eval_vector(args[0], t)?;
            let desc = name == "sort_desc";
            v.sort_by(|a, b| {
                use std::cmp::Ordering::*;
                match (a.f.is_nan(), b.f.is_nan()) {
                    (true, true) => Equal,
                    (true, false) => Greater,
                    (false, true) => Less,
                    _ if desc => b.f.partial_cmp(&a.f).unwrap(),
                    _ => a.f.partial_cmp(&b.f).unwrap(),
                }
            });
            Ok(Val::Vector(v))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            if ev.interval > 0 {
                ev.ann.warn("sort is ineffective for range queries since results are always ordered by labels".into());
            }
            let mut v = ev.eval_vector(args[0], t)?;
            let mut names = Vec::new();
            for a in &args[1..] {
                names.push(ev.eval_string(a, t)?);
            }
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                for n in &names {
                    let (x, y) = (a.get(n).unwrap_or(""), b.get(n).unwrap_or(""));
                    if x != y {
                        let o = natural_cmp(x, y);
                        return if desc { o.reverse() } else { o };
                    }
                }
                let o = a.labels().cmp(&b.labels());
                if desc {
                    o.reverse()
                } else {
                    o
                }
            });
            Ok(Val::Vector(v))
        }
        "label_replace" => {
            let v = ev.eval_vector(args[0], t)?;
            let dst = ev.eval_string(args[1], t)?;
            let repl = ev.eval_string(args[2], t)?;
            let src = ev.eval_string(args[3], t)?;
            let re_s = ev.eval_string(args[4], t)?;
            let re = Regex::new(&format!("^(?s:{re_s})$")).map_err(|e| {
                EvalError::Eval(format!(
                    "invalid regular expression in label_replace(): {re_s}: {e}"
                ))
            })?;
            if !valid_label_name(&dst) {
                return err(format!(
                    "invalid destination label name in label_replace(): {dst}"
                ));
            }
            let mut out = Vec::with_capacity(v.len());
            for s in v {
                let val = s.get(&src).unwrap_or("");
                if let Some(caps) = re.captures(val) {
                    let mut res = String::new();
                    caps.expand(&repl, &mut res);
                    out.push(set_label(s, &dst, &res));
                } else {
                    out.push(s);
                }
            }
            check_dups(&out)?;
            Ok(Val::Vector(out))
        }
        "label_join" => {
            let v = ev.eval_vector(args[0], t)?;
            let dst = ev.eval_string(args[1], t)?;
            let sep = ev.eval_string(args[2], t)?;
            let mut srcs = Vec::new();
            for a in &args[3..] {
                let s = ev.eval_string(a, t)?;
                if !valid_label_name(&s) {
                    return err(format!("invalid source label name in label_join(): {s}"));
                }
                srcs.push(s);
            }
            if !valid_label_name(&dst) {
                return err(format!(
                    "invalid destination label name in label_join(): {dst}"
                ));
            }
            let mut out = Vec::with_capacity(v.len());
            for s in v {
                let joined = srcs
                    .iter()
                    .map(|n| s.get(n).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(&sep);
                out.push(set_label(s, &dst, &joined));
            }
            check_dups(&out)?;
            Ok(Val::Vector(out))
        }
        "absent" => {
            let v = ev.eval_vector(args[0], t)?;
            if !v.is_empty() {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(Val::Vector(vec![VSample {
                metric: Arc::new(absent_labels(args[0])),
                drop_name: false,
                f: 1.0,
            }]))
        }
        "histogram_quantile" => super::histogram::quantile(ev, &args, t),
        "histogram_fraction" => super::histogram::fraction(ev, &args, t),
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            // Float samples are ignored by these (native histograms only).
            ev.eval_vector(args[0], t)?;
            Ok(Val::Vector(Vec::new()))
        }
        other => Err(EvalError::Unsupported(format!("function {other:?}"))),
    }
}

/// Applies `f` to every sample of an instant-vector argument, dropping the name.
fn map_vector(
    ev: &mut Evaluator,
    e: &Expr,
    t: i64,
    f: impl Fn(f64) -> f64,
) -> Result<Val, EvalError> {
    let mut v = ev.eval_vector(e, t)?;
    for s in &mut v {
        s.f = f(s.f);
        s.drop_name = true;
    }
    Ok(Val::Vector(v))
}

fn set_label(mut s: VSample, name: &str, value: &str) -> VSample {
    let mut b = s.labels().to_builder();
    b.set(name, value);
    s.metric = Arc::new(b.build());
    s.drop_name = false;
    s
}

pub(crate) fn check_dups(v: &[VSample]) -> Result<(), EvalError> {
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(s.labels()) {
            return err("vector cannot contain metrics with the same labelset");
        }
    }
    Ok(())
}

/// UTF-8 label names are valid in Prometheus 3 as long as they are non-empty.
pub(crate) fn valid_label_name(n: &str) -> bool {
    !n.is_empty()
}

/// The labels `absent()` reports: the equality matchers of a selector.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match unparen(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::new(),
    };
    let mut b = crate::model::LabelsBuilder::default();
    let mut has = std::collections::HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && !has.contains(&m.name) {
            b.set(m.name.clone(), m.value.clone());
            has.insert(m.name.clone());
        } else {
            b.del(&m.name);
        }
    }
    b.build()
}

/// Range functions, resolved once per call instead of per series.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum K {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Deriv,
    PredictLinear,
    Resets,
    Changes,
    AvgOverTime,
    SumOverTime,
    CountOverTime,
    MinOverTime,
    MaxOverTime,
    LastOverTime,
    FirstOverTime,
    TsOfLastOverTime,
    TsOfFirstOverTime,
    TsOfMaxOverTime,
    TsOfMinOverTime,
    PresentOverTime,
    AbsentOverTime,
    QuantileOverTime,
    StddevOverTime,
    StdvarOverTime,
    MadOverTime,
    DoubleExponentialSmoothing,
    Other,
}

impl K {
    pub(crate) fn of(name: &str) -> K {
        match name {
            "rate" => K::Rate,
            "increase" => K::Increase,
            "delta" => K::Delta,
            "irate" => K::Irate,
            "idelta" => K::Idelta,
            "deriv" => K::Deriv,
            "predict_linear" => K::PredictLinear,
            "resets" => K::Resets,
            "changes" => K::Changes,
            "avg_over_time" => K::AvgOverTime,
            "sum_over_time" => K::SumOverTime,
            "count_over_time" => K::CountOverTime,
            "min_over_time" => K::MinOverTime,
            "max_over_time" => K::MaxOverTime,
            "last_over_time" => K::LastOverTime,
            "first_over_time" => K::FirstOverTime,
            "ts_of_last_over_time" => K::TsOfLastOverTime,
            "ts_of_first_over_time" => K::TsOfFirstOverTime,
            "ts_of_max_over_time" => K::TsOfMaxOverTime,
            "ts_of_min_over_time" => K::TsOfMinOverTime,
            "present_over_time" => K::PresentOverTime,
            "absent_over_time" => K::AbsentOverTime,
            "quantile_over_time" => K::QuantileOverTime,
            "stddev_over_time" => K::StddevOverTime,
            "stdvar_over_time" => K::StdvarOverTime,
            "mad_over_time" => K::MadOverTime,
            "double_exponential_smoothing" => K::DoubleExponentialSmoothing,
            _ => K::Other,
        }
    }
}

/// Evaluates and checks a range function's scalar parameters at step `t`;
/// returns the index of the range-vector argument and the parameters.
pub(crate) fn range_params(
    ev: &mut Evaluator,
    name: &str,
    args: &[&Expr],
    t: i64,
) -> Result<(usize, Vec<f64>), EvalError> {
    // Which argument is the range vector, and the scalar parameters.
    let (mi, params): (usize, Vec<f64>) = match name {
        "quantile_over_time" => (1, vec![ev.eval_scalar(args[0], t)?]),
        "predict_linear" => (0, vec![ev.eval_scalar(args[1], t)?]),
        "double_exponential_smoothing" => (
            0,
            vec![ev.eval_scalar(args[1], t)?, ev.eval_scalar(args[2], t)?],
        ),
        _ => (0, vec![]),
    };
    if name == "quantile_over_time" && !(0.0..=1.0).contains(&params[0]) {
        ev.ann.warn(format!(
            "quantile value should be between 0 and 1, got {}",
            fmt_g(params[0])
        ));
    }
    if name == "double_exponential_smoothing" {
        let (sf, tf) = (params[0], params[1]);
        if sf <= 0.0 || sf >= 1.0 {
            return err(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
                fmt_g(sf)
            ));
        }
        if tf <= 0.0 || tf >= 1.0 {
            return err(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {}",
                fmt_g(tf)
            ));
        }
    }
    Ok((mi, params))
}

fn range_call(ev: &mut Evaluator, name: &str, args: &[&Expr], t: i64) -> Result<Val, EvalError> {
    let (mi, params) = range_params(ev, name, args, t)?;
    let range_ms = match unparen(args[mi]) {
        Expr::MatrixSelector(ms) => dur_ms(&ms.range),
        Expr::Subquery(sq) => dur_ms(&sq.range),
        _ => 0,
    };
    let mut out = Vec::new();
    let mut any = false;
    let mut non_counter: Vec<String> = Vec::new();
    let keep_name = range_fn_keeps_name(name);
    let kind = K::of(name);
    let counter_fn = kind == K::Rate || kind == K::Increase;
    let mut wref = Win {
        start: 0,
        end: 0,
        t,
        range_s: range_ms as f64 / 1e3,
    };
    // The window is only known after with_range; compute it up front the same way.
    if let Expr::MatrixSelector(ms) = unparen(args[mi]) {
        wref.end = ev.sel_time(&ms.vs.at, &ms.vs.offset, t);
    } else if let Expr::Subquery(sq) = unparen(args[mi]) {
        wref.end = ev.sel_time(&sq.at, &sq.offset, t);
    }
    wref.start = wref.end - range_ms;
    let w = wref;
    ev.with_range(args[mi], t, |m, drop, p| {
        any = true;
        if counter_fn && !drop {
            if let Some(n) = non_counter_name(m) {
                if !non_counter.iter().any(|x| x == n) {
                    non_counter.push(n.to_string());
                }
            }
        }
        let v = range_value(kind, p, &w, &params);
        if let Some(v) = v {
            out.push(VSample {
                metric: m.clone(),
                drop_name: drop || !keep_name,
                f: v,
            });
        }
    })?;
    for n in non_counter {
        ev.ann.info(format!(
            "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}"
        ));
    }
    if name == "absent_over_time" {
        if any {
            return Ok(Val::Vector(Vec::new()));
        }
        return Ok(Val::Vector(vec![VSample {
            metric: Arc::new(absent_labels(args[0])),
            drop_name: false,
            f: 1.0,
        }]));
    }
    Ok(Val::Vector(out))
}

/// The metric name of a series a counter function reads if the name does
/// not look like a counter's (for the "might not be a counter" info).
pub(crate) fn non_counter_name(m: &Labels) -> Option<&str> {
    // The name sorts first in typical label sets: a linear scan beats a
    // binary search here.
    let n = m
        .iter()
        .find(|l| l.name == METRIC_NAME)
        .map(|l| l.value.as_str())?;
    (!["_total", "_sum", "_count", "_bucket"]
        .iter()
        .any(|s| n.ends_with(s)))
    .then_some(n)
}

/// One range function over one window (stale markers already removed).
pub(crate) fn range_value(kind: K, p: &[(i64, f64)], w: &Win, params: &[f64]) -> Option<f64> {
    match kind {
        K::Rate => extrapolated_rate(p, w, true, true),
        K::Increase => extrapolated_rate(p, w, true, false),
        K::Delta => extrapolated_rate(p, w, false, false),
        K::Irate => instant_value(p, true),
        K::Idelta => instant_value(p, false),
        K::Deriv => (p.len() >= 2).then(|| linear_regression(p, p[0].0).0),
        K::PredictLinear => (p.len() >= 2).then(|| {
            let (s, i) = linear_regression(p, w.t);
            s * params[0] + i
        }),
        K::Resets => Some(p.windows(2).filter(|x| x[1].1 < x[0].1).count() as f64),
        K::Changes => Some(
            p.windows(2)
                .filter(|x| x[1].1 != x[0].1 && !(x[0].1.is_nan() && x[1].1.is_nan()))
                .count() as f64,
        ),
        K::AvgOverTime => Some(avg_over(p)),
        K::SumOverTime => {
            let (mut s, mut c) = (0.0, 0.0);
            for &(_, v) in p {
                (s, c) = kahan_inc(v, s, c);
            }
            Some(if s.is_infinite() { s } else { s + c })
        }
        K::CountOverTime => Some(p.len() as f64),
        K::MinOverTime => Some(p.iter().fold(
            f64::NAN,
            |m, &(_, v)| if v < m || m.is_nan() { v } else { m },
        )),
        K::MaxOverTime => Some(p.iter().fold(
            f64::NAN,
            |m, &(_, v)| if v > m || m.is_nan() { v } else { m },
        )),
        K::LastOverTime => p.last().map(|x| x.1),
        K::FirstOverTime => p.first().map(|x| x.1),
        K::TsOfLastOverTime => p.last().map(|x| x.0 as f64 / 1e3),
        K::TsOfFirstOverTime => p.first().map(|x| x.0 as f64 / 1e3),
        K::TsOfMaxOverTime | K::TsOfMinOverTime => {
            let max = matches!(kind, K::TsOfMaxOverTime);
            let mut best = p[0];
            for &x in &p[1..] {
                if (max && (x.1 >= best.1 || best.1.is_nan()))
                    || (!max && (x.1 <= best.1 || best.1.is_nan()))
                {
                    best = x;
                }
            }
            Some(best.0 as f64 / 1e3)
        }
        K::PresentOverTime => Some(1.0),
        K::AbsentOverTime => None,
        K::QuantileOverTime => {
            let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
            Some(quantile(params[0], &mut vals))
        }
        K::StddevOverTime => Some(variance(p).sqrt()),
        K::StdvarOverTime => Some(variance(p)),
        K::MadOverTime => {
            let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
            let med = quantile(0.5, &mut vals);
            let mut dev: Vec<f64> = vals.iter().map(|v| (v - med).abs()).collect();
            Some(quantile(0.5, &mut dev))
        }
        K::DoubleExponentialSmoothing => holt_winters(p, params[0], params[1]),
        _ => None,
    }
}

fn holt_winters(p: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (mut s0, mut s1, mut b) = (0.0, p[0].1, p[1].1 - p[0].1);
    for (i, &(_, x)) in p.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        s0 = s1;
        s1 = sf * x + (1.0 - sf) * (s0 + b);
    }
    Some(s1)
}

/// Go's `%g`-like shortest formatting used in messages.
pub(crate) fn fmt_g(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Natural ordering: digit runs compare numerically.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let x = a[si..i].trim_start_matches('0');
            let y = b[sj..j].trim_start_matches('0');
            let o = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            if ab[i] != bb[j] {
                return ab[i].cmp(&bb[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    weekday: u32,
    yday: u32,
}

fn date_part(secs: f64, f: fn(&Civil) -> f64) -> f64 {
    if secs.is_nan() || secs.is_infinite() {
        return f64::NAN;
    }
    let s = secs.floor() as i64;
    let days = s.div_euclid(86400);
    let rem = s.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = CUM[(month - 1) as usize] + day + if leap && month > 2 { 1 } else { 0 };
    let c = Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: ((rem % 3600) / 60) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
        yday,
    };
    f(&c)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        // 2024-02-29T13:45:00Z, a Thursday.
        let t = 1709214300.0;
        assert_eq!(date_part(t, |d| d.year as f64), 2024.0);
        assert_eq!(date_part(t, |d| d.month as f64), 2.0);
        assert_eq!(date_part(t, |d| d.day as f64), 29.0);
        assert_eq!(date_part(t, |d| d.weekday as f64), 4.0);
        assert_eq!(date_part(t, |d| d.yday as f64), 60.0);
        assert_eq!(date_part(t, |d| d.hour as f64), 13.0);
    }

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("a2", "a10"), std::cmp::Ordering::Less);
        assert_eq!(natural_cmp("b", "a10"), std::cmp::Ordering::Greater);
    }
}
