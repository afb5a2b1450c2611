//! Aggregation operators (`sum`, `avg`, `topk`, `count_values`, ...) with
//! `by`/`without` grouping.
//!
//! Groups are found by their grouping labels ([`GroupIndex`]), and each
//! aggregation node remembers, across the steps of a query, which group
//! key each input label set has: a step of `sum by (job)` over many series
//! allocates one label set per group, not per input sample, and compares
//! labels only the first time it meets a label set.

use std::sync::Arc;

use promql_parser::parser::token::*;
use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::engine::Evaluator;
use super::error::{err, EvalError};
use super::functions::{fmt_g, kahan_inc, quantile};
use super::grouping::{GroupIndex, Proj};
use super::value::*;
use crate::model::{Labels, LabelsBuilder, METRIC_NAME};

#[derive(Default)]
struct Group {
    labels: Labels,
    /// Its key in [`GroupCache::keys`].
    key: usize,
    acc: Acc,
}

/// What one aggregation node keeps across the steps of a query.
#[derive(Default)]
pub(crate) struct GroupCache {
    /// Every group key met so far.
    keys: GroupIndex,
    /// Key by label-set pointer (with the `drop_name` bit), holding the
    /// `Arc` so the pointer stays that of these labels.
    by_ptr: FxMap<usize, (Arc<Labels>, usize)>,
    /// Per key, its group's index in the step being evaluated
    /// ([`NO_GROUP`] when the step has none yet; reset after each step).
    step_group: Vec<usize>,
}

const NO_GROUP: usize = usize::MAX;

/// The running state of one group at one step.
#[derive(Default, Clone)]
pub(crate) struct Acc {
    pub count: f64,
    value: f64,
    kahan: f64,
    mean: f64,
    incremental: bool,
    values: Vec<f64>,
}

impl Acc {
    /// Adds one sample (in input order: the float results depend on it).
    pub(crate) fn add(&mut self, op: u16, v: f64) -> Result<(), EvalError> {
        let g = self;
        g.count += 1.0;
        let first = g.count == 1.0;
        match op {
            T_SUM => {
                if first {
                    g.value = v;
                } else {
                    (g.value, g.kahan) = kahan_inc(v, g.value, g.kahan);
                }
            }
            T_AVG => {
                if first {
                    g.value = v;
                    return Ok(());
                }
                if !g.incremental {
                    let (nv, nc) = kahan_inc(v, g.value, g.kahan);
                    if !nv.is_infinite() {
                        (g.value, g.kahan) = (nv, nc);
                        return Ok(());
                    }
                    g.incremental = true;
                    g.mean = g.value / (g.count - 1.0);
                    g.kahan /= g.count - 1.0;
                }
                if g.mean.is_infinite() {
                    if v.is_infinite() && (g.mean > 0.0) == (v > 0.0) {
                        return Ok(());
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        return Ok(());
                    }
                }
                let cur = g.mean + g.kahan;
                (g.mean, g.kahan) = kahan_inc(v / g.count - cur / g.count, g.mean, g.kahan);
            }
            T_MAX => {
                if first || g.value < v || g.value.is_nan() {
                    g.value = v;
                }
            }
            T_MIN => {
                if first || g.value > v || g.value.is_nan() {
                    g.value = v;
                }
            }
            T_COUNT | T_GROUP => {}
            T_STDDEV | T_STDVAR => {
                if first {
                    g.mean = v;
                    g.value = 0.0;
                    g.kahan = 0.0;
                } else {
                    let delta = v - g.mean;
                    g.mean += delta / g.count;
                    g.value += delta * (v - g.mean);
                }
            }
            T_QUANTILE => g.values.push(v),
            _ => {
                return Err(EvalError::Unsupported(format!(
                    "aggregation {}",
                    TokenType::new(op)
                )))
            }
        }
        Ok(())
    }

    /// The group's value; `param` is `quantile`'s.
    pub(crate) fn result(self, op: u16, param: f64) -> f64 {
        let g = self;
        match op {
            T_SUM => {
                if g.value.is_infinite() {
                    g.value
                } else {
                    g.value + g.kahan
                }
            }
            T_AVG => {
                if g.incremental {
                    g.mean + g.kahan
                } else if g.count == 1.0 {
                    g.value
                } else {
                    g.value / g.count + g.kahan / g.count
                }
            }
            T_COUNT => g.count,
            T_GROUP => 1.0,
            T_STDVAR => {
                if g.mean.is_infinite() || g.mean.is_nan() {
                    f64::NAN
                } else {
                    g.value / g.count
                }
            }
            T_STDDEV => {
                if g.mean.is_infinite() || g.mean.is_nan() {
                    f64::NAN
                } else {
                    (g.value / g.count).sqrt()
                }
            }
            T_QUANTILE => {
                let mut vals = g.values;
                quantile(param, &mut vals)
            }
            _ => g.value,
        }
    }
}

pub(crate) fn group_labels(s: &VSample, m: &Option<LabelModifier>) -> Labels {
    match m {
        None => Labels::new(),
        Some(LabelModifier::Include(by)) => {
            let mut b = LabelsBuilder::default();
            for n in &by.labels {
                if let Some(v) = s.get(n) {
                    b.set(n.clone(), v.to_string());
                }
            }
            b.build()
        }
        Some(LabelModifier::Exclude(without)) => {
            let mut b = s.metric.to_builder();
            b.del(METRIC_NAME);
            for w in &without.labels {
                b.del(w);
            }
            b.build()
        }
    }
}

/// Evaluates an aggregation at step `t`.
pub(crate) fn eval(ev: &mut Evaluator, a: &AggregateExpr, t: i64) -> Result<Val, EvalError> {
    let op = a.op.id();
    let mut param = f64::NAN;
    let mut label = String::new();
    match op {
        T_TOPK | T_BOTTOMK | T_QUANTILE => {
            let Some(p) = &a.param else {
                return err("missing aggregation parameter");
            };
            param = ev.eval_scalar(p, t)?;
        }
        T_COUNT_VALUES => {
            let Some(p) = &a.param else {
                return err("missing aggregation parameter");
            };
            label = ev.eval_string(p, t)?;
            if !super::functions::valid_label_name(&label) {
                return err(format!("invalid label name {label:?}"));
            }
        }
        T_LIMITK | T_LIMIT_RATIO => {
            return Err(EvalError::Unsupported("limitk/limit_ratio".into()))
        }
        _ => {}
    }
    let input = ev.eval_vector(&a.expr, t)?;
    let m = &a.modifier;
    if op == T_TOPK || op == T_BOTTOMK {
        if param.is_nan() {
            return err("Parameter value is NaN");
        }
        return Ok(Val::Vector(topk(input, m, param, op == T_TOPK)));
    }
    if op == T_QUANTILE && !(0.0..=1.0).contains(&param) {
        ev.ann.warn(format!(
            "quantile value should be between 0 and 1, got {}",
            fmt_g(param)
        ));
    }
    if op == T_COUNT_VALUES {
        return Ok(Val::Vector(count_values(input, m, &label)));
    }
    let p = Proj::grouping(m);
    let mut groups: Vec<Group> = Vec::new();
    let cache_key = a as *const AggregateExpr as usize;
    let mut cache = ev.group_cache.remove(&cache_key).unwrap_or_default();
    let GroupCache {
        keys,
        by_ptr,
        step_group,
    } = &mut cache;
    for s in input {
        // Label sets shared with storage recur at every step: remember
        // their key by pointer. The cache holds a clone of each `Arc`, so
        // a pointer can never be reused for other labels while cached;
        // label sets owned by this sample alone (built per step) are
        // looked up every time.
        let key = if Arc::strong_count(&s.metric) >= 2 {
            let pk = Arc::as_ptr(&s.metric) as usize | s.drop_name as usize;
            match by_ptr.get(&pk) {
                Some(&(_, k)) => k,
                None => {
                    let k = keys.get_or_insert(p, &s.metric, s.drop_name).0;
                    if by_ptr.len() < 1_000_000 {
                        by_ptr.insert(pk, (s.metric.clone(), k));
                    }
                    k
                }
            }
        } else {
            keys.get_or_insert(p, &s.metric, s.drop_name).0
        };
        if step_group.len() <= key {
            step_group.resize(key + 1, NO_GROUP);
        }
        let i = match step_group[key] {
            NO_GROUP => {
                groups.push(Group {
                    labels: group_labels(&s, m),
                    key,
                    ..Default::default()
                });
                step_group[key] = groups.len() - 1;
                groups.len() - 1
            }
            i => i,
        };
        groups[i].acc.add(op, s.f)?;
    }
    for g in &groups {
        step_group[g.key] = NO_GROUP;
    }
    ev.group_cache.insert(cache_key, cache);
    let out = groups
        .into_iter()
        .map(|g| {
            let f = g.acc.result(op, param);
            VSample {
                metric: Arc::new(g.labels),
                drop_name: false,
                f,
            }
        })
        .collect();
    Ok(Val::Vector(out))
}

/// `topk`'s order (`bottomk`'s when `!top`): NaN last.
pub(crate) fn topk_cmp(a: f64, b: f64, top: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ if top => b.partial_cmp(&a).unwrap(),
        _ => a.partial_cmp(&b).unwrap(),
    }
}

fn topk(input: Vec<VSample>, m: &Option<LabelModifier>, param: f64, top: bool) -> Vec<VSample> {
    let k = if param >= i64::MAX as f64 {
        i64::MAX
    } else {
        param as i64
    };
    if k < 1 {
        return Vec::new();
    }
    let k = k as usize;
    let p = Proj::grouping(m);
    let mut idx = GroupIndex::default();
    let mut groups: Vec<Vec<VSample>> = Vec::new();
    for s in input {
        let (i, new) = idx.get_or_insert(p, &s.metric, s.drop_name);
        if new {
            groups.push(Vec::new());
        }
        groups[i].push(s);
    }
    let mut out = Vec::new();
    for mut g in groups {
        g.sort_by(|a, b| topk_cmp(a.f, b.f, top));
        g.truncate(k);
        out.extend(g);
    }
    out
}

fn count_values(input: Vec<VSample>, m: &Option<LabelModifier>, label: &str) -> Vec<VSample> {
    let mut idx: std::collections::HashMap<Labels, usize> = Default::default();
    let mut out: Vec<(Labels, f64)> = Vec::new();
    for s in input {
        let mut b = group_labels(&s, m).to_builder();
        b.set(label, fmt_g(s.f));
        let l = b.build();
        match idx.get(&l) {
            Some(&i) => out[i].1 += 1.0,
            None => {
                idx.insert(l.clone(), out.len());
                out.push((l, 1.0));
            }
        }
    }
    out.into_iter()
        .map(|(l, f)| VSample {
            metric: Arc::new(l),
            drop_name: false,
            f,
        })
        .collect()
}
