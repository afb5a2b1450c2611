//! The evaluator: walks promql-parser's AST once per step.
//!
//! Series are selected once per selector for the whole query range before
//! any step runs (bounds computed from offsets, `@`, ranges and subqueries),
//! so per-step work is a binary search in memory. Each step evaluates the
//! tree to an intermediate [`Val`]; a range query stitches the steps into
//! series. Simpler than Prometheus' column-wise `rangeEval`, and fast enough
//! because labels are shared (`Arc`) and the name is dropped lazily.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::parser::{
    AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};

use super::columnar::{merge, Grid};
use super::error::{err, EvalError, ParseError};
use super::value::*;
use crate::model::{is_stale_nan, Labels, TimestampMs, METRIC_NAME};
use crate::storage::{MatchOp, Matcher, Queryable};

/// Engine settings (Prometheus' flags of the same meaning).
#[derive(Debug, Clone)]
pub struct EngineOpts {
    /// How far back an instant selector looks for a sample (`--query.lookback-delta`).
    pub lookback_delta_ms: i64,
    /// Most samples a query may load (`--query.max-samples`).
    pub max_samples: usize,
    /// Wall-clock budget of one query (`--query.timeout`).
    pub timeout: Duration,
    /// Subquery step when none is written (Prometheus uses the rule/global evaluation interval).
    pub default_subquery_step_ms: i64,
    /// Evaluate range queries one step at a time (the reference evaluator
    /// the column-wise one is tested against; slower).
    pub stepwise_range: bool,
    /// Stops the query when cancelled (its client went away, the agent is
    /// shutting down); checked where the deadline is.
    pub cancel: Option<tokio_util::sync::CancellationToken>,
}

impl Default for EngineOpts {
    fn default() -> Self {
        EngineOpts {
            lookback_delta_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step_ms: 60_000,
            stepwise_range: false,
            cancel: None,
        }
    }
}

/// Evaluates parsed PromQL against a [`Queryable`].
#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub opts: EngineOpts,
}

/// Parses a query with promql-parser, mapping its error.
pub fn parse(q: &str) -> Result<Expr, EvalError> {
    parse_query(q).map_err(EvalError::Parse)
}

/// promql-parser's `parse` behind wasmon's checks (see [`super::syntax`]):
/// nesting is bounded before the parser recurses, literals it would misread
/// or panic on are errors, and every error names its position as
/// Prometheus does (`1:5: parse error: ...`). Every PromQL text from
/// outside goes through here: bad input must be an error, never a panic
/// or a stack overflow.
pub fn parse_query(q: &str) -> Result<Expr, ParseError> {
    super::syntax::check(q)?;
    super::syntax::parse_unpositioned(q).map_err(|e| super::syntax::locate(q, &e))
}

pub(crate) fn dur_ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => -dur_ms(d),
    }
}

/// Strips parentheses.
pub(crate) fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

impl Engine {
    pub fn new(opts: EngineOpts) -> Engine {
        Engine { opts }
    }

    /// Evaluates `expr` at one instant `t`.
    pub fn instant(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        t: TimestampMs,
    ) -> Result<QueryResult, EvalError> {
        super::syntax::on_deep_stack(expr, || self.instant_here(q, expr, t))
    }

    fn instant_here(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        t: TimestampMs,
    ) -> Result<QueryResult, EvalError> {
        let mut ev = Evaluator::new(self, q, t, t, 0);
        ev.prepare(expr)?;
        let v = ev.eval(expr, t)?;
        let value = match v {
            Val::Scalar(v) => Value::Scalar { t, v },
            Val::Str(s) => Value::String { t, s },
            Val::Vector(vs) => {
                let mut seen = std::collections::HashSet::new();
                let mut out = Vec::with_capacity(vs.len());
                for s in vs {
                    let labels = s.labels();
                    if !seen.insert(labels.clone()) {
                        return err("vector cannot contain metrics with the same labelset");
                    }
                    out.push(Sample { labels, t, v: s.f });
                }
                Value::Vector(out)
            }
            Val::Matrix(ms) => {
                let mut seen = std::collections::HashSet::new();
                let mut out = Vec::with_capacity(ms.len());
                for s in ms {
                    let labels = effective(&s.metric, s.drop_name);
                    if !seen.insert(labels.clone()) {
                        return err("vector cannot contain metrics with the same labelset");
                    }
                    out.push(Series {
                        labels,
                        points: s.points,
                    });
                }
                Value::Matrix(out)
            }
        };
        let stats = ev.stats();
        Ok(QueryResult {
            value,
            annotations: ev.ann,
            stats,
        })
    }

    /// Evaluates `expr` at every `step` from `start` to `end` (inclusive);
    /// the result is always a matrix, series sorted by labels.
    pub fn range(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        start: TimestampMs,
        end: TimestampMs,
        step: i64,
    ) -> Result<QueryResult, EvalError> {
        super::syntax::on_deep_stack(expr, || self.range_here(q, expr, start, end, step))
    }

    fn range_here(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        start: TimestampMs,
        end: TimestampMs,
        step: i64,
    ) -> Result<QueryResult, EvalError> {
        if step <= 0 {
            return err("zero or negative query resolution step widths are not accepted. Try a positive integer");
        }
        if end < start {
            return err("end timestamp must not be before start time");
        }
        use promql_parser::parser::value::ValueType;
        match expr.value_type() {
            ValueType::Scalar | ValueType::Vector => {}
            ValueType::Matrix => {
                return err("invalid expression type \"range vector\" for range query, must be Scalar or instant Vector")
            }
            ValueType::String => {
                return err("invalid expression type \"string\" for range query, must be Scalar or instant Vector")
            }
        }
        let mut ev = Evaluator::new(self, q, start, end, step);
        ev.prepare(expr)?;
        let mut series: Vec<Series> = if !self.opts.stepwise_range
            && expr.value_type() == ValueType::Vector
            && Evaluator::columnar(expr)
        {
            let grid: Grid = Arc::new((start..=end).step_by(step as usize).collect());
            let mat = ev.col(expr, &grid)?;
            merge(mat, &grid)?
                .into_iter()
                .map(|(labels, s)| Series {
                    labels,
                    points: s.points,
                })
                .collect()
        } else {
            if !self.opts.stepwise_range {
                let grid: Grid = Arc::new((start..=end).step_by(step as usize).collect());
                ev.precompute_children(expr, &grid)?;
            }
            let mut col = Collector::default();
            let mut t = start;
            while t <= end {
                match ev.eval(expr, t)? {
                    Val::Scalar(v) => col.add_scalar(t, v),
                    Val::Vector(vs) => {
                        for s in &vs {
                            col.add(s, t)?;
                        }
                    }
                    other => {
                        return err(format!(
                            "invalid expression type {:?} for range query",
                            other.type_name()
                        ))
                    }
                }
                ev.add_samples(0)?;
                t += step;
            }
            col.series
                .into_iter()
                .map(|c| Series {
                    labels: c.labels,
                    points: c.points,
                })
                .collect()
        };
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let total: usize = series.iter().map(|s| s.points.len()).sum();
        if total > self.opts.max_samples {
            return Err(EvalError::TooManySamples("query execution"));
        }
        let stats = ev.stats();
        Ok(QueryResult {
            value: Value::Matrix(series),
            annotations: ev.ann,
            stats,
        })
    }
}

/// Stitches per-step vectors into series, keyed first by the shared label
/// pointer (cheap) and then by the effective label set.
#[derive(Default)]
pub(crate) struct Collector {
    by_ptr: FxMap<(usize, bool), usize>,
    keep: Vec<Arc<Labels>>,
    by_labels: HashMap<Labels, usize>,
    pub series: Vec<Collected>,
}

pub(crate) struct Collected {
    pub labels: Labels,
    pub metric: Arc<Labels>,
    pub drop_name: bool,
    pub points: Vec<(TimestampMs, f64)>,
}

impl Collector {
    pub fn add(&mut self, s: &VSample, t: TimestampMs) -> Result<(), EvalError> {
        let key = (Arc::as_ptr(&s.metric) as usize, s.drop_name);
        let idx = match self.by_ptr.get(&key) {
            Some(&i) => i,
            None => {
                let labels = s.labels();
                let i = match self.by_labels.get(&labels) {
                    Some(&i) => i,
                    None => {
                        let i = self.series.len();
                        self.by_labels.insert(labels.clone(), i);
                        self.series.push(Collected {
                            labels,
                            metric: s.metric.clone(),
                            drop_name: s.drop_name,
                            points: Vec::new(),
                        });
                        i
                    }
                };
                self.keep.push(s.metric.clone());
                self.by_ptr.insert(key, i);
                i
            }
        };
        let pts = &mut self.series[idx].points;
        if pts.last().is_some_and(|p| p.0 == t) {
            return err("vector cannot contain metrics with the same labelset");
        }
        pts.push((t, s.f));
        Ok(())
    }

    pub fn add_scalar(&mut self, t: TimestampMs, v: f64) {
        if self.series.is_empty() {
            self.series.push(Collected {
                labels: Labels::new(),
                metric: Arc::new(Labels::new()),
                drop_name: false,
                points: Vec::new(),
            });
        }
        self.series[0].points.push((t, v));
    }
}

/// One series as selected from storage, labels shared with every sample
/// derived from it.
pub(crate) struct Stored {
    pub metric: Arc<Labels>,
    pub samples: Vec<(TimestampMs, f64)>,
}

/// Per-query state.
pub(crate) struct Evaluator<'a> {
    pub opts: &'a EngineOpts,
    q: &'a dyn Queryable,
    pub start: TimestampMs,
    pub end: TimestampMs,
    pub interval: i64,
    deadline: Instant,
    bounds: FxMap<usize, (i64, i64)>,
    cache: FxMap<usize, Arc<Vec<Stored>>>,
    pub ann: Annotations,
    loaded: usize,
    pub scanned: u64,
    /// Per-selector positions from the previous step, so consecutive steps
    /// advance through each series instead of binary-searching (which
    /// costs a cache miss per probe on large stores).
    cursors: FxMap<usize, Cursor>,
    /// Per aggregation node: its group keys across steps (see `aggregate`).
    pub group_cache: FxMap<usize, super::aggregate::GroupCache>,
    /// Subexpressions already computed column-wise for every step, by node
    /// address (see `columnar`).
    pub pre: FxMap<usize, super::columnar::Pre>,
}

/// Window positions of every series of one selector at the last step.
#[derive(Default)]
struct Cursor {
    lo: i64,
    hi: i64,
    idx: Vec<(usize, usize)>,
}

impl Cursor {
    /// Positions `(a, b)` such that `samples[a..b]` is the window `(lo, hi]`.
    fn seek(
        &mut self,
        i: usize,
        samples: &[(i64, f64)],
        lo: i64,
        hi: i64,
        fresh: bool,
    ) -> (usize, usize) {
        let (mut a, mut b) = if fresh {
            (
                samples.partition_point(|p| p.0 <= lo),
                samples.partition_point(|p| p.0 <= hi),
            )
        } else {
            self.idx[i]
        };
        if !fresh {
            while a < samples.len() && samples[a].0 <= lo {
                a += 1;
            }
            b = b.max(a);
            while b < samples.len() && samples[b].0 <= hi {
                b += 1;
            }
        }
        self.idx[i] = (a, b);
        (a, b)
    }

    fn start(&mut self, n: usize, lo: i64, hi: i64) -> bool {
        let fresh = self.idx.len() != n || lo < self.lo || hi < self.hi;
        if fresh {
            self.idx = vec![(0, 0); n];
        }
        self.lo = lo;
        self.hi = hi;
        fresh
    }
}

impl<'a> Evaluator<'a> {
    fn new(e: &'a Engine, q: &'a dyn Queryable, start: i64, end: i64, interval: i64) -> Self {
        Evaluator {
            opts: &e.opts,
            q,
            start,
            end,
            interval,
            deadline: Instant::now() + e.opts.timeout,
            bounds: FxMap::default(),
            cache: FxMap::default(),
            ann: Annotations::default(),
            loaded: 0,
            scanned: 0,
            cursors: FxMap::default(),
            group_cache: FxMap::default(),
            pre: FxMap::default(),
        }
    }

    /// Computes each selector's time bounds and selects its series.
    fn prepare(&mut self, e: &Expr) -> Result<(), EvalError> {
        self.walk_bounds(e, self.start, self.end);
        self.fetch_all(e)
    }

    fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.start),
            Some(AtModifier::End) => Some(self.end),
            Some(AtModifier::At(t)) => Some(crate::clock::system_time_ms(*t)),
        }
    }

    /// The evaluation time of a selector or subquery evaluated at step `t`.
    pub fn sel_time(&self, at: &Option<AtModifier>, off: &Option<Offset>, t: i64) -> i64 {
        self.at_ms(at).unwrap_or(t) - offset_ms(off)
    }

    fn widen(&mut self, key: usize, lo: i64, hi: i64) {
        let b = self.bounds.entry(key).or_insert((lo, hi));
        b.0 = b.0.min(lo);
        b.1 = b.1.max(hi);
    }

    /// Records the data range each selector needs when `e` is evaluated at
    /// times in `[lo, hi]`.
    fn walk_bounds(&mut self, e: &Expr, lo: i64, hi: i64) {
        match e {
            Expr::VectorSelector(vs) => {
                let (a, b) = self.shift(&vs.at, &vs.offset, lo, hi);
                self.widen(vs as *const _ as usize, a - self.opts.lookback_delta_ms, b);
            }
            Expr::MatrixSelector(ms) => {
                let (a, b) = self.shift(&ms.vs.at, &ms.vs.offset, lo, hi);
                self.widen(&ms.vs as *const _ as usize, a - dur_ms(&ms.range), b);
            }
            Expr::Subquery(sq) => {
                let (a, b) = self.shift(&sq.at, &sq.offset, lo, hi);
                self.walk_bounds(&sq.expr, a - dur_ms(&sq.range), b);
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk_bounds(p, lo, hi);
                }
                self.walk_bounds(&a.expr, lo, hi);
            }
            Expr::Unary(u) => self.walk_bounds(&u.expr, lo, hi),
            Expr::Binary(b) => {
                self.walk_bounds(&b.lhs, lo, hi);
                self.walk_bounds(&b.rhs, lo, hi);
            }
            Expr::Paren(p) => self.walk_bounds(&p.expr, lo, hi),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.walk_bounds(a, lo, hi);
                }
            }
            _ => {}
        }
    }

    fn shift(&self, at: &Option<AtModifier>, off: &Option<Offset>, lo: i64, hi: i64) -> (i64, i64) {
        let o = offset_ms(off);
        match self.at_ms(at) {
            Some(t) => (t - o, t - o),
            None => (lo - o, hi - o),
        }
    }

    fn fetch_all(&mut self, e: &Expr) -> Result<(), EvalError> {
        match e {
            Expr::VectorSelector(vs) => self.fetch(vs),
            Expr::MatrixSelector(ms) => self.fetch(&ms.vs),
            Expr::Subquery(sq) => self.fetch_all(&sq.expr),
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.fetch_all(p)?;
                }
                self.fetch_all(&a.expr)
            }
            Expr::Unary(u) => self.fetch_all(&u.expr),
            Expr::Binary(b) => {
                self.fetch_all(&b.lhs)?;
                self.fetch_all(&b.rhs)
            }
            Expr::Paren(p) => self.fetch_all(&p.expr),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.fetch_all(a)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn fetch(&mut self, vs: &VectorSelector) -> Result<(), EvalError> {
        let key = vs as *const _ as usize;
        let Some(&(lo, hi)) = self.bounds.get(&key) else {
            return Ok(());
        };
        let mut groups: Vec<Vec<&promql_parser::label::Matcher>> = Vec::new();
        if vs.matchers.or_matchers.is_empty() {
            groups.push(vs.matchers.matchers.iter().collect());
        } else {
            for g in &vs.matchers.or_matchers {
                groups.push(g.iter().chain(vs.matchers.matchers.iter()).collect());
            }
        }
        let mut out: Vec<Stored> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let multi = groups.len() > 1;
        for g in groups {
            let mut ms = Vec::new();
            if let Some(n) = &vs.name {
                ms.push(
                    Matcher::new(MatchOp::Equal, METRIC_NAME, n.clone())
                        .map_err(|e| EvalError::Eval(format!("{e:#}")))?,
                );
            }
            for m in g {
                ms.push(super::storage::matcher_from_parser(m)?);
            }
            // Left-open window: (lo, hi].
            let data = self
                .q
                .select(&ms, lo + 1, hi)
                .map_err(|e| EvalError::Storage(e.to_string()))?;
            for s in data {
                // Only `or`-ed matcher groups can select a series twice.
                if multi && !seen.insert(s.labels.clone()) {
                    continue;
                }
                self.add_samples(s.samples.len())?;
                out.push(Stored {
                    metric: Arc::new(s.labels),
                    samples: s.samples,
                });
            }
        }
        self.cache.insert(key, Arc::new(out));
        Ok(())
    }

    fn stats(&self) -> QueryStats {
        QueryStats {
            samples_loaded: self.loaded as u64,
            samples_scanned: self.scanned,
        }
    }

    /// Counts loaded samples against the limit and checks the deadline.
    pub fn add_samples(&mut self, n: usize) -> Result<(), EvalError> {
        self.loaded += n;
        if self.loaded > self.opts.max_samples {
            return Err(EvalError::TooManySamples("query execution"));
        }
        if Instant::now() > self.deadline {
            return Err(EvalError::Timeout("expression evaluation"));
        }
        if self.opts.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            return Err(EvalError::Cancelled("expression evaluation"));
        }
        Ok(())
    }

    pub fn series_of(&self, vs: &VectorSelector) -> Arc<Vec<Stored>> {
        self.cache
            .get(&(vs as *const _ as usize))
            .cloned()
            .unwrap_or_default()
    }

    /// An instant selector at step `t`: the latest sample in
    /// `(ts - lookback, ts]` per series unless it is a staleness marker.
    /// `f` gets the series, the sample's timestamp and value.
    pub fn select_instant(
        &mut self,
        vs: &VectorSelector,
        t: i64,
        mut f: impl FnMut(&Stored, i64, f64),
    ) -> Result<(), EvalError> {
        self.add_samples(0)?;
        let ts = self.sel_time(&vs.at, &vs.offset, t);
        let lb = self.opts.lookback_delta_ms;
        let series = self.series_of(vs);
        self.scanned += series.len() as u64;
        let key = vs as *const _ as usize;
        let mut cur = self.cursors.remove(&key).unwrap_or_default();
        let fresh = cur.start(series.len(), ts - lb, ts);
        for (n, s) in series.iter().enumerate() {
            let (_, i) = cur.seek(n, &s.samples, ts - lb, ts, fresh);
            if i == 0 {
                continue;
            }
            let (pt, pv) = s.samples[i - 1];
            if pt > ts - lb && !is_stale_nan(pv) {
                f(s, pt, pv);
            }
        }
        self.cursors.insert(key, cur);
        Ok(())
    }

    fn eval_vs(&mut self, vs: &VectorSelector, t: i64) -> Result<Vec<VSample>, EvalError> {
        let mut out = Vec::new();
        self.select_instant(vs, t, |s, _, v| {
            out.push(VSample {
                metric: s.metric.clone(),
                drop_name: false,
                f: v,
            })
        })?;
        Ok(out)
    }

    /// Visits each series' samples in the window `(ts - range, ts]` of a
    /// range-vector expression (matrix selector or subquery, maybe in
    /// parentheses) evaluated at step `t`, without copying for selectors.
    /// Returns the window `(start, end)`.
    pub fn with_range(
        &mut self,
        e: &Expr,
        t: i64,
        mut f: impl FnMut(&Arc<Labels>, bool, &[(i64, f64)]),
    ) -> Result<(i64, i64), EvalError> {
        self.add_samples(0)?;
        match unparen(e) {
            Expr::MatrixSelector(ms) => {
                let (lo, hi) = self.window(ms, t);
                let mut buf = Vec::new();
                let mut scanned = 0;
                let series = self.series_of(&ms.vs);
                let key = &ms.vs as *const _ as usize;
                let mut cur = self.cursors.remove(&key).unwrap_or_default();
                let fresh = cur.start(series.len(), lo, hi);
                for (n, s) in series.iter().enumerate() {
                    let (a, b) = cur.seek(n, &s.samples, lo, hi, fresh);
                    let sl = &s.samples[a..b];
                    scanned += sl.len() as u64;
                    if sl.iter().any(|p| is_stale_nan(p.1)) {
                        buf.clear();
                        buf.extend(sl.iter().filter(|p| !is_stale_nan(p.1)));
                        if !buf.is_empty() {
                            f(&s.metric, false, &buf);
                        }
                    } else if !sl.is_empty() {
                        f(&s.metric, false, sl);
                    }
                }
                self.scanned += scanned;
                self.cursors.insert(key, cur);
                Ok((lo, hi))
            }
            Expr::Subquery(sq) => {
                let hi = self.sel_time(&sq.at, &sq.offset, t);
                let lo = hi - dur_ms(&sq.range);
                for s in self.eval_subquery(sq, t)? {
                    if !s.points.is_empty() {
                        f(&s.metric, s.drop_name, &s.points);
                    }
                }
                Ok((lo, hi))
            }
            other => err(format!(
                "expected type range vector in call to function, got {}",
                promql_parser::parser::value::ValueType::to_string(&other.value_type())
            )),
        }
    }

    fn window(&self, ms: &MatrixSelector, t: i64) -> (i64, i64) {
        let hi = self.sel_time(&ms.vs.at, &ms.vs.offset, t);
        (hi - dur_ms(&ms.range), hi)
    }

    /// Evaluates a subquery at step `t`: the inner expression at every
    /// multiple of the subquery step in `(ts - range, ts]`.
    pub fn eval_subquery(&mut self, sq: &SubqueryExpr, t: i64) -> Result<Vec<RSeries>, EvalError> {
        let step = sq
            .step
            .as_ref()
            .map(dur_ms)
            .filter(|s| *s > 0)
            .unwrap_or(self.opts.default_subquery_step_ms);
        let end = self.sel_time(&sq.at, &sq.offset, t);
        let range_start = end - dur_ms(&sq.range);
        let mut ts = step * (range_start / step);
        if ts <= range_start {
            ts += step;
        }
        let mut col = Collector::default();
        while ts <= end {
            match self.eval(&sq.expr, ts)? {
                Val::Scalar(v) => col.add_scalar(ts, v),
                Val::Vector(vs) => {
                    self.add_samples(vs.len())?;
                    for s in &vs {
                        col.add(s, ts)?;
                    }
                }
                other => {
                    return err(format!(
                        "subquery of a {} is not allowed",
                        other.type_name()
                    ))
                }
            }
            ts += step;
        }
        Ok(col
            .series
            .into_iter()
            .map(|c| RSeries {
                metric: c.metric,
                drop_name: c.drop_name,
                points: c.points,
            })
            .collect())
    }

    /// Evaluates `e` at step `t`.
    pub fn eval(&mut self, e: &Expr, t: i64) -> Result<Val, EvalError> {
        if !self.pre.is_empty() {
            if let Some(p) = self.pre.get_mut(&(e as *const Expr as usize)) {
                if let Some(v) = p.at(t) {
                    return Ok(Val::Vector(v));
                }
            }
        }
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(mut vs) => {
                    for s in &mut vs {
                        s.f = -s.f;
                        s.drop_name = true;
                    }
                    Ok(Val::Vector(vs))
                }
                other => err(format!("unary expression only allowed on expressions of type scalar or vector, got: {}", other.type_name())),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.eval_vs(vs, t)?)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                let mut out = Vec::new();
                self.with_range(e, t, |m, d, pts| {
                    out.push(RSeries { metric: m.clone(), drop_name: d, points: pts.to_vec() })
                })?;
                let n: usize = out.iter().map(|s| s.points.len()).sum();
                self.add_samples(n)?;
                Ok(Val::Matrix(out))
            }
            Expr::Call(c) => super::functions::call(self, c, t),
            Expr::Aggregate(a) => super::aggregate::eval(self, a, t),
            Expr::Binary(b) => super::binary::eval(self, b, t),
            Expr::Extension(_) => Err(EvalError::Unsupported("extension expressions".into())),
        }
    }

    /// Evaluates `e` as a scalar (parameters of functions and aggregations).
    pub fn eval_scalar(&mut self, e: &Expr, t: i64) -> Result<f64, EvalError> {
        match self.eval(e, t)? {
            Val::Scalar(v) => Ok(v),
            other => err(format!("expected scalar, got {}", other.type_name())),
        }
    }

    pub fn eval_vector(&mut self, e: &Expr, t: i64) -> Result<Vec<VSample>, EvalError> {
        match self.eval(e, t)? {
            Val::Vector(v) => Ok(v),
            other => err(format!(
                "expected instant vector, got {}",
                other.type_name()
            )),
        }
    }

    pub fn eval_string(&mut self, e: &Expr, t: i64) -> Result<String, EvalError> {
        match self.eval(e, t)? {
            Val::Str(s) => Ok(s),
            other => err(format!("expected string, got {}", other.type_name())),
        }
    }
}

#[cfg(test)]
mod parse_fuzz_regressions {
    #[test]
    fn huge_range_literal_is_an_error_not_a_panic() {
        let e = super::parse("max_over_time(deriv(up[2m])[11e400:30s])").unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }
}
