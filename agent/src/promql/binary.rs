//! Binary operators: arithmetic, comparison (filtering or `bool`), and the
//! set operators, with `on`/`ignoring` matching and `group_left`/
//! `group_right`. Error texts are Prometheus' own, since users search them.

use std::collections::HashSet;
use std::sync::Arc;

use promql_parser::parser::token::*;
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::engine::Evaluator;
use super::error::{err, EvalError};
use super::grouping::{GroupIndex, Proj};
use super::value::*;
use crate::model::{Labels, METRIC_NAME};

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Applies `op`; for comparisons returns (lhs, whether it holds).
fn apply(op: u16, l: f64, r: f64) -> Result<(f64, bool), EvalError> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => return err(format!("operator {} not allowed here", TokenType::new(op))),
    })
}

/// Evaluates a binary expression at step `t`.
pub(crate) fn eval(ev: &mut Evaluator, b: &BinaryExpr, t: i64) -> Result<Val, EvalError> {
    let op = b.op.id();
    let ret_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            let (v, keep) = apply(op, l, r)?;
            if is_comparison(op) {
                Ok(Val::Scalar(if keep { 1.0 } else { 0.0 }))
            } else {
                Ok(Val::Scalar(v))
            }
        }
        (Val::Vector(l), Val::Scalar(r)) => vector_scalar(op, l, r, false, ret_bool),
        (Val::Scalar(l), Val::Vector(r)) => vector_scalar(op, r, l, true, ret_bool),
        (Val::Vector(l), Val::Vector(r)) => {
            let default = BinModifier::default();
            let m = b.modifier.as_ref().unwrap_or(&default);
            match op {
                T_LAND | T_LOR | T_LUNLESS => Ok(Val::Vector(set_op(op, l, r, &m.matching))),
                _ => vector_vector(op, l, r, m),
            }
        }
        (l, r) => err(format!(
            "invalid operand types for binary operator: {} and {}",
            l.type_name(),
            r.type_name()
        )),
    }
}

fn vector_scalar(
    op: u16,
    v: Vec<VSample>,
    s: f64,
    swap: bool,
    ret_bool: bool,
) -> Result<Val, EvalError> {
    let cmp = is_comparison(op);
    let mut out = Vec::with_capacity(v.len());
    for mut x in v {
        let (l, r) = if swap { (s, x.f) } else { (x.f, s) };
        let (mut val, keep) = apply(op, l, r)?;
        if cmp && swap {
            val = r;
        }
        if ret_bool {
            val = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        x.f = val;
        if !cmp || ret_bool {
            x.drop_name = true;
        }
        out.push(x);
    }
    Ok(Val::Vector(out))
}

fn set_op(
    op: u16,
    l: Vec<VSample>,
    r: Vec<VSample>,
    matching: &Option<LabelModifier>,
) -> Vec<VSample> {
    let p = Proj::matching(matching);
    let index = |v: &[VSample]| {
        let mut ix = GroupIndex::default();
        for s in v {
            ix.get_or_insert(p, &s.metric, s.drop_name);
        }
        ix
    };
    match op {
        T_LAND => {
            let rs = index(&r);
            l.into_iter()
                .filter(|s| rs.get(p, &s.metric, s.drop_name).is_some())
                .collect()
        }
        T_LUNLESS => {
            let rs = index(&r);
            l.into_iter()
                .filter(|s| rs.get(p, &s.metric, s.drop_name).is_none())
                .collect()
        }
        _ => {
            let ls = index(&l);
            let mut out = l;
            out.extend(
                r.into_iter()
                    .filter(|s| ls.get(p, &s.metric, s.drop_name).is_none()),
            );
            out
        }
    }
}

/// Go's `labels.Labels.String()`: `{a="b", c="d"}` with the name as a label.
fn go_labels(l: &Labels) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|x| format!("{}={:?}", x.name, x.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// The labels a match group is identified by (for error messages).
fn match_labels(s: &VSample, matching: &Option<LabelModifier>) -> Labels {
    let l = s.labels();
    match matching {
        Some(LabelModifier::Include(on)) => {
            let mut b = crate::model::LabelsBuilder::default();
            for n in &on.labels {
                if let Some(v) = l.get(n) {
                    b.set(n.clone(), v.to_string());
                }
            }
            b.build()
        }
        Some(LabelModifier::Exclude(ign)) => {
            let mut b = l.to_builder();
            b.del(METRIC_NAME);
            for n in &ign.labels {
                b.del(n);
            }
            b.build()
        }
        None => l.without_name(),
    }
}

fn vector_vector(
    op: u16,
    lhs: Vec<VSample>,
    rhs: Vec<VSample>,
    m: &BinModifier,
) -> Result<Val, EvalError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Val::Vector(Vec::new()));
    }
    let cmp = is_comparison(op);
    let (card, include) = match &m.card {
        VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany => (0, None),
        VectorMatchCardinality::ManyToOne(l) => (1, Some(l)),
        VectorMatchCardinality::OneToMany(l) => (2, Some(l)),
    };
    // The "one" side goes right.
    let (many, one) = if card == 2 { (rhs, lhs) } else { (lhs, rhs) };
    let p = Proj::matching(&m.matching);
    // The "one" side by match group: `right[g]` is group g's sample.
    let mut groups = GroupIndex::default();
    let mut right: Vec<VSample> = Vec::new();
    for rs in one {
        let (g, new) = groups.get_or_insert(p, &rs.metric, rs.drop_name);
        if !new {
            let prev = &right[g];
            let side = if card == 2 { "left" } else { "right" };
            return err(format!(
                "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                go_labels(&match_labels(&rs, &m.matching)),
                side,
                go_labels(&prev.labels()),
                go_labels(&rs.labels()),
            ));
        }
        right.push(rs);
    }
    // Per match group: the result label sets so far (one-to-one: only
    // whether the group matched).
    let mut matched: FxMap<usize, HashSet<Labels>> = FxMap::default();
    let mut out = Vec::new();
    for ls in many {
        let Some(g) = groups.get(p, &ls.metric, ls.drop_name) else {
            continue;
        };
        let rs = &right[g];
        let (fl, fr) = if card == 2 {
            (rs.f, ls.f)
        } else {
            (ls.f, rs.f)
        };
        let (mut val, keep) = apply(op, fl, fr)?;
        // One-to-one: a second match is an error even if filtered away.
        if card == 0 && matched.insert(g, HashSet::new()).is_some() {
            return err("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
        }
        if m.return_bool {
            val = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        // Result labels.
        let drop = ls.drop_name || !cmp || m.return_bool;
        let mut b = ls.metric.to_builder();
        if ls.drop_name {
            b.retain(|l| !is_name_label(&l.name));
        }
        if card == 0 {
            match &m.matching {
                Some(LabelModifier::Include(on)) => {
                    b.retain(|l| on.labels.contains(&l.name));
                }
                Some(LabelModifier::Exclude(ign)) => {
                    for n in &ign.labels {
                        b.del(n);
                    }
                }
                None => {}
            }
        }
        if let Some(inc) = include {
            for n in &inc.labels {
                match rs.get(n) {
                    Some(v) => b.set(n.clone(), v.to_string()),
                    None => b.del(n),
                };
            }
        }
        let metric = b.build();
        if card != 0 {
            let key = effective(&metric, drop);
            if !matched.entry(g).or_default().insert(key) {
                return err(
                    "multiple matches for labels: grouping labels must ensure unique matches",
                );
            }
        }
        out.push(VSample {
            metric: Arc::new(metric),
            drop_name: drop,
            f: val,
        });
    }
    Ok(Val::Vector(out))
}
