//! Recording rules: evaluate an expression, rename the result to the
//! rule's name, add the rule's labels.

use std::collections::{BTreeMap, HashSet};

use promql_parser::parser::Expr;

use super::error::RuleEvalError;
use super::group::{query_vector, EvalCtx, RuleStatus};
use crate::model::{Labels, METRIC_NAME};
use crate::promql::ParseError;

/// One recording rule.
#[derive(Debug)]
pub struct RecordingRule {
    pub name: String,
    pub expr_text: String,
    pub(crate) expr: Expr,
    /// Rule labels (group labels merged in, rule labels win).
    pub labels: BTreeMap<String, String>,
    pub(crate) status: parking_lot::Mutex<RuleStatus>,
}

impl RecordingRule {
    pub fn new(
        name: &str,
        expr_text: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Self, ParseError> {
        let expr = crate::promql::parse_query(expr_text)?;
        Ok(RecordingRule {
            name: name.to_string(),
            expr_text: expr_text.to_string(),
            expr,
            labels,
            status: Default::default(),
        })
    }

    /// Evaluates at `ts` (query at `ts - query_offset`): the samples to
    /// write, or Prometheus' error.
    pub fn eval(
        &self,
        ctx: &EvalCtx<'_>,
        ts: i64,
        query_offset: i64,
        limit: usize,
    ) -> Result<Vec<(Labels, f64)>, RuleEvalError> {
        let res = query_vector(ctx, &self.expr, ts - query_offset)?;
        let mut out = Vec::with_capacity(res.len());
        let mut seen = HashSet::with_capacity(res.len());
        for (l, v) in res {
            let mut b = l.to_builder();
            b.set(METRIC_NAME, self.name.clone());
            for (k, v) in &self.labels {
                b.set(k.clone(), v.clone());
            }
            let l = b.build();
            if !seen.insert(l.clone()) {
                return Err(RuleEvalError::DuplicateLabelset { by: "rule" });
            }
            out.push((l, v));
        }
        if limit > 0 && out.len() > limit {
            return Err(RuleEvalError::Limit {
                limit,
                got: out.len(),
                what: "series",
            });
        }
        Ok(out)
    }
}
