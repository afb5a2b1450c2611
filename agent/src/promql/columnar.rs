//! Column-wise evaluation of range queries, after Prometheus' `rangeEval`.
//!
//! Evaluating a range query step by step touches every series at every
//! step (a cache miss per series per step, group keys looked up again and
//! again). Here the expensive nodes are evaluated over all steps at once:
//!
//! - an instant selector and a range function over a matrix selector or a
//!   subquery are computed series by series, sliding each series' window
//!   across the steps;
//! - an aggregation computes each input series' group once and accumulates
//!   the series' points into per-group rows (one cell per step), so the
//!   per-step order of additions — and so every float result — is the one
//!   of the step-wise evaluator;
//! - `histogram_quantile` groups buckets once per series, likewise;
//! - a subquery's inner expression is evaluated once on the union of the
//!   aligned inner steps, not again for every outer step.
//!
//! Every other node (binary operators, most functions) is still evaluated
//! step by step, but its expensive children are computed column-wise first
//! and read back per step (see [`Pre`]). Results are series of
//! `(step index, value)` over a [`Grid`] of step times.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::token::*;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AggregateExpr, Call, Expr, SubqueryExpr, VectorSelector};

use super::aggregate::{group_labels, topk_cmp, Acc};
use super::engine::{dur_ms, unparen, Evaluator, Stored};
use super::error::{err, EvalError};
use super::functions::{
    fmt_g, is_range_fn, non_counter_name, range_fn_keeps_name, range_params, range_value, Win, K,
};
use super::grouping::{GroupIndex, Proj};
use super::histogram::{bucket_quantile, buckets_proj, parse_le, Bucket, LE};
use super::value::*;
use crate::model::{is_stale_nan, Labels, METRIC_NAME};

/// Step times of one evaluation, ascending.
pub(crate) type Grid = Arc<Vec<i64>>;

/// One series over a grid: `(step index, value)` points, ascending.
pub(crate) struct CSeries {
    pub metric: Arc<Labels>,
    pub drop_name: bool,
    pub pts: Vec<(u32, f64)>,
}

/// A subexpression computed column-wise that the step-wise evaluator reads
/// back one step at a time instead of evaluating it again.
pub(crate) struct Pre {
    grid: Grid,
    mat: Vec<CSeries>,
    cur: Vec<usize>,
    last: usize,
}

impl Pre {
    fn new(grid: Grid, mat: Vec<CSeries>) -> Pre {
        Pre {
            grid,
            cur: vec![0; mat.len()],
            mat,
            last: 0,
        }
    }

    /// The vector at time `t`, or `None` if `t` is not a step of the grid.
    pub fn at(&mut self, t: i64) -> Option<Vec<VSample>> {
        let i = self.grid.binary_search(&t).ok()?;
        if i < self.last {
            self.cur.iter_mut().for_each(|c| *c = 0);
        }
        self.last = i;
        let mut out = Vec::new();
        for (s, c) in self.mat.iter().zip(self.cur.iter_mut()) {
            while *c < s.pts.len() && (s.pts[*c].0 as usize) < i {
                *c += 1;
            }
            if *c < s.pts.len() && s.pts[*c].0 as usize == i {
                out.push(VSample {
                    metric: s.metric.clone(),
                    drop_name: s.drop_name,
                    f: s.pts[*c].1,
                });
            }
        }
        Some(out)
    }
}

/// Receives each series of a column-wise result (only non-empty ones).
type Sink<'s> = dyn FnMut(&Arc<Labels>, bool, &[(u32, f64)]) -> Result<(), EvalError> + 's;

/// Cells (groups × steps) an aggregation keeps before it stops giving new
/// groups a row while streaming and buffers their input series instead.
const MAX_STREAM_CELLS: usize = 1 << 21;

fn ptr(e: &Expr) -> usize {
    e as *const Expr as usize
}

fn is_range_call(c: &Call) -> bool {
    is_range_fn(c.func.name) && c.func.name != "absent_over_time"
}

/// The children a node evaluates at its own step time.
fn same_time_children(e: &Expr) -> Vec<&Expr> {
    match unparen(e) {
        Expr::Binary(b) => vec![&*b.lhs, &*b.rhs],
        Expr::Unary(u) => vec![&*u.expr],
        Expr::Call(c) if !is_range_fn(c.func.name) => {
            c.args.args.iter().map(|a| a.as_ref()).collect()
        }
        Expr::Aggregate(a) => vec![&*a.expr],
        _ => Vec::new(),
    }
}

/// Windows `(hi - range, hi]` of `smp` for each `hi` (ascending except
/// where an `@` pins them), visited with the step index.
fn for_windows(
    smp: &[(i64, f64)],
    his: &[i64],
    range: i64,
    mut f: impl FnMut(usize, i64, &[(i64, f64)]),
) -> u64 {
    let (mut a, mut b, mut prev) = (0usize, 0usize, i64::MIN);
    let mut scanned = 0u64;
    for (i, &hi) in his.iter().enumerate() {
        let lo = hi - range;
        if hi < prev {
            a = smp.partition_point(|p| p.0 <= lo);
            b = smp.partition_point(|p| p.0 <= hi);
        } else {
            while a < smp.len() && smp[a].0 <= lo {
                a += 1;
            }
            b = b.max(a);
            while b < smp.len() && smp[b].0 <= hi {
                b += 1;
            }
        }
        prev = hi;
        if a < b {
            scanned += (b - a) as u64;
            f(i, hi, &smp[a..b]);
        }
    }
    scanned
}

/// Stitches per-step vectors into series: one series per label set, or
/// more when a step holds the same label set more than once.
#[derive(Default)]
struct Stitch {
    by_ptr: FxMap<(usize, bool), usize>,
    keep: Vec<Arc<Labels>>,
    by_labels: HashMap<Labels, usize>,
    next: Vec<usize>,
    series: Vec<CSeries>,
}

impl Stitch {
    fn push_new(&mut self, s: &VSample) -> usize {
        self.series.push(CSeries {
            metric: s.metric.clone(),
            drop_name: s.drop_name,
            pts: Vec::new(),
        });
        self.next.push(usize::MAX);
        self.series.len() - 1
    }

    fn add(&mut self, s: VSample, i: u32) {
        let key = (Arc::as_ptr(&s.metric) as usize, s.drop_name);
        let mut j = match self.by_ptr.get(&key) {
            Some(&j) => j,
            None => {
                let l = s.labels();
                let j = match self.by_labels.get(&l) {
                    Some(&j) => j,
                    None => {
                        let j = self.push_new(&s);
                        self.by_labels.insert(l, j);
                        j
                    }
                };
                self.keep.push(s.metric.clone());
                self.by_ptr.insert(key, j);
                j
            }
        };
        loop {
            if self.series[j].pts.last().is_none_or(|p| p.0 != i) {
                self.series[j].pts.push((i, s.f));
                return;
            }
            if self.next[j] == usize::MAX {
                let k = self.push_new(&s);
                self.next[j] = k;
                self.series[k].pts.push((i, s.f));
                return;
            }
            j = self.next[j];
        }
    }
}

/// Merges series with equal effective labels (a range result, a subquery's
/// series); two points at one step are the duplicate-labelset error.
pub(crate) fn merge(mat: Vec<CSeries>, grid: &[i64]) -> Result<Vec<(Labels, RSeries)>, EvalError> {
    let mut by: HashMap<Labels, usize> = HashMap::with_capacity(mat.len());
    let mut out: Vec<(Labels, RSeries)> = Vec::with_capacity(mat.len());
    for s in mat {
        if s.pts.is_empty() {
            continue;
        }
        let l = effective(&s.metric, s.drop_name);
        let pts = s.pts.iter().map(|&(i, v)| (grid[i as usize], v));
        match by.get(&l) {
            Some(&k) => {
                let old = std::mem::take(&mut out[k].1.points);
                let new: Vec<(i64, f64)> = pts.collect();
                let mut m = Vec::with_capacity(old.len() + new.len());
                let (mut a, mut b) = (0, 0);
                while a < old.len() || b < new.len() {
                    if b == new.len() || (a < old.len() && old[a].0 < new[b].0) {
                        m.push(old[a]);
                        a += 1;
                    } else if a == old.len() || new[b].0 < old[a].0 {
                        m.push(new[b]);
                        b += 1;
                    } else {
                        return err("vector cannot contain metrics with the same labelset");
                    }
                }
                out[k].1.points = m;
            }
            None => {
                by.insert(l.clone(), out.len());
                out.push((
                    l,
                    RSeries {
                        metric: s.metric,
                        drop_name: s.drop_name,
                        points: pts.collect(),
                    },
                ));
            }
        }
    }
    Ok(out)
}

impl Evaluator<'_> {
    /// Is `e` worth evaluating column-wise (rather than per step)?
    pub(crate) fn columnar(e: &Expr) -> bool {
        match unparen(e) {
            Expr::Aggregate(a) => matches!(
                a.op.id(),
                T_SUM
                    | T_AVG
                    | T_MIN
                    | T_MAX
                    | T_COUNT
                    | T_GROUP
                    | T_STDDEV
                    | T_STDVAR
                    | T_QUANTILE
                    | T_TOPK
                    | T_BOTTOMK
            ),
            Expr::Call(c) => is_range_call(c) || c.func.name == "histogram_quantile",
            _ => false,
        }
    }

    /// Evaluates an instant-vector expression at every step of `g`.
    pub(crate) fn col(&mut self, e: &Expr, g: &Grid) -> Result<Vec<CSeries>, EvalError> {
        match unparen(e) {
            Expr::VectorSelector(_) => self.collect_each(e, g),
            Expr::Call(c) if is_range_call(c) => self.collect_each(e, g),
            Expr::Call(c) if c.func.name == "histogram_quantile" => self.col_hist_quantile(c, g),
            Expr::Aggregate(a) if Self::columnar(e) => self.col_aggregate(a, g),
            _ => self.col_stepwise(e, g),
        }
    }

    fn collect_each(&mut self, e: &Expr, g: &Grid) -> Result<Vec<CSeries>, EvalError> {
        let mut out = Vec::new();
        self.col_each(e, g, &mut |m, d, p| {
            out.push(CSeries {
                metric: m.clone(),
                drop_name: d,
                pts: p.to_vec(),
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// Like [`col`](Self::col) but hands each series to `sink` as soon as it
    /// is computed, so selectors and range functions are not materialized.
    fn col_each(&mut self, e: &Expr, g: &Grid, sink: &mut Sink) -> Result<(), EvalError> {
        match unparen(e) {
            Expr::VectorSelector(vs) => self.col_selector(vs, g, sink),
            Expr::Call(c) if is_range_call(c) => self.col_range_fn(c, g, sink),
            _ => {
                for s in self.col(e, g)? {
                    if !s.pts.is_empty() {
                        sink(&s.metric, s.drop_name, &s.pts)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Precomputes the column-wise children of a node evaluated step-wise;
    /// returns their keys in `pre`.
    pub(crate) fn precompute_children(
        &mut self,
        e: &Expr,
        g: &Grid,
    ) -> Result<Vec<usize>, EvalError> {
        let mut keys = Vec::new();
        for k in same_time_children(e) {
            self.precompute(k, g, &mut keys)?;
        }
        Ok(keys)
    }

    fn precompute(&mut self, e: &Expr, g: &Grid, keys: &mut Vec<usize>) -> Result<(), EvalError> {
        if e.value_type() == ValueType::Vector && Self::columnar(e) {
            let mat = self.col(e, g)?;
            self.pre.insert(ptr(e), Pre::new(g.clone(), mat));
            keys.push(ptr(e));
            return Ok(());
        }
        for k in same_time_children(e) {
            self.precompute(k, g, keys)?;
        }
        Ok(())
    }

    /// Any node: its columnar children first, then per step.
    fn col_stepwise(&mut self, e: &Expr, g: &Grid) -> Result<Vec<CSeries>, EvalError> {
        let keys = self.precompute_children(e, g)?;
        let mut st = Stitch::default();
        for (i, &t) in g.iter().enumerate() {
            let v = self.eval_vector(e, t)?;
            for s in v {
                st.add(s, i as u32);
            }
            self.add_samples(0)?;
        }
        for k in keys {
            self.pre.remove(&k);
        }
        Ok(st.series)
    }

    fn col_selector(
        &mut self,
        vs: &VectorSelector,
        g: &Grid,
        sink: &mut Sink,
    ) -> Result<(), EvalError> {
        let series: Arc<Vec<Stored>> = self.series_of(vs);
        let lb = self.opts.lookback_delta_ms;
        let ts: Vec<i64> = g
            .iter()
            .map(|&t| self.sel_time(&vs.at, &vs.offset, t))
            .collect();
        self.scanned += (series.len() * g.len()) as u64;
        let mut buf = Vec::with_capacity(g.len());
        for (n, s) in series.iter().enumerate() {
            if n % 1024 == 0 {
                self.add_samples(0)?;
            }
            buf.clear();
            let smp = &s.samples;
            let (mut j, mut prev) = (0usize, i64::MIN);
            for (i, &x) in ts.iter().enumerate() {
                if x < prev {
                    j = smp.partition_point(|p| p.0 <= x);
                } else {
                    while j < smp.len() && smp[j].0 <= x {
                        j += 1;
                    }
                }
                prev = x;
                if j == 0 {
                    continue;
                }
                let (pt, pv) = smp[j - 1];
                if pt > x - lb && !is_stale_nan(pv) {
                    buf.push((i as u32, pv));
                }
            }
            if !buf.is_empty() {
                sink(&s.metric, false, &buf)?;
            }
        }
        Ok(())
    }

    fn col_range_fn(&mut self, c: &Call, g: &Grid, sink: &mut Sink) -> Result<(), EvalError> {
        let name = c.func.name;
        let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
        let mut params = Vec::with_capacity(g.len());
        let mut mi = 0;
        for &t in g.iter() {
            let (m, p) = range_params(self, name, &args, t)?;
            mi = m;
            params.push(p);
        }
        let kind = K::of(name);
        let keep_name = range_fn_keeps_name(name);
        let counter_fn = matches!(kind, K::Rate | K::Increase);
        let mut non_counter: Vec<String> = Vec::new();
        let (range, his, series): (i64, Vec<i64>, Vec<RSeries>) = match unparen(args[mi]) {
            Expr::MatrixSelector(ms) => {
                let his: Vec<i64> = g
                    .iter()
                    .map(|&t| self.sel_time(&ms.vs.at, &ms.vs.offset, t))
                    .collect();
                let range = dur_ms(&ms.range);
                let stored = self.series_of(&ms.vs);
                let mut buf = Vec::with_capacity(g.len());
                let mut clean = Vec::new();
                let mut scanned = 0;
                for (n, s) in stored.iter().enumerate() {
                    if n % 256 == 0 {
                        self.add_samples(0)?;
                    }
                    let smp: &[(i64, f64)] = if s.samples.iter().any(|p| is_stale_nan(p.1)) {
                        clean.clear();
                        clean.extend(s.samples.iter().filter(|p| !is_stale_nan(p.1)));
                        &clean
                    } else {
                        &s.samples
                    };
                    buf.clear();
                    let sc = Self::range_series(kind, smp, &his, range, g, &params, &mut buf);
                    scanned += sc;
                    if counter_fn && sc > 0 {
                        if let Some(n) = non_counter_name(&s.metric) {
                            if !non_counter.iter().any(|x| x == n) {
                                non_counter.push(n.to_string());
                            }
                        }
                    }
                    if !buf.is_empty() {
                        sink(&s.metric, !keep_name, &buf)?;
                    }
                }
                self.scanned += scanned;
                self.flush_non_counter(non_counter);
                return Ok(());
            }
            Expr::Subquery(sq) => {
                let his = g
                    .iter()
                    .map(|&t| self.sel_time(&sq.at, &sq.offset, t))
                    .collect();
                (dur_ms(&sq.range), his, self.col_subquery(sq, g)?)
            }
            other => {
                return err(format!(
                    "expected type range vector in call to function, got {}",
                    ValueType::to_string(&other.value_type())
                ))
            }
        };
        let mut buf = Vec::with_capacity(g.len());
        for s in &series {
            buf.clear();
            let sc = Self::range_series(kind, &s.points, &his, range, g, &params, &mut buf);
            self.scanned += sc;
            if counter_fn && !s.drop_name && sc > 0 {
                if let Some(n) = non_counter_name(&s.metric) {
                    if !non_counter.iter().any(|x| x == n) {
                        non_counter.push(n.to_string());
                    }
                }
            }
            if !buf.is_empty() {
                sink(&s.metric, s.drop_name || !keep_name, &buf)?;
            }
        }
        self.flush_non_counter(non_counter);
        Ok(())
    }

    fn flush_non_counter(&mut self, names: Vec<String>) {
        for n in names {
            self.ann.info(format!(
                "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}"
            ));
        }
    }

    /// One series of a range function over all steps.
    fn range_series(
        kind: K,
        smp: &[(i64, f64)],
        his: &[i64],
        range: i64,
        g: &[i64],
        params: &[Vec<f64>],
        out: &mut Vec<(u32, f64)>,
    ) -> u64 {
        let range_s = range as f64 / 1e3;
        for_windows(smp, his, range, |i, hi, p| {
            let w = Win {
                start: hi - range,
                end: hi,
                t: g[i],
                range_s,
            };
            if let Some(v) = range_value(kind, p, &w, &params[i]) {
                out.push((i as u32, v));
            }
        })
    }

    /// A subquery's series for all steps of `g`: its inner expression
    /// evaluated once on the union of the inner steps every outer step
    /// would evaluate, merged by labels as the step-wise subquery does.
    fn col_subquery(&mut self, sq: &SubqueryExpr, g: &Grid) -> Result<Vec<RSeries>, EvalError> {
        let step = sq
            .step
            .as_ref()
            .map(dur_ms)
            .filter(|s| *s > 0)
            .unwrap_or(self.opts.default_subquery_step_ms);
        let mut times: Vec<i64> = Vec::new();
        for &t in g.iter() {
            let end = self.sel_time(&sq.at, &sq.offset, t);
            let range_start = end - dur_ms(&sq.range);
            let mut ts = step * (range_start / step);
            if ts <= range_start {
                ts += step;
            }
            if let Some(&l) = times.last() {
                if ts <= l {
                    ts = l + step;
                }
            }
            while ts <= end {
                times.push(ts);
                ts += step;
            }
            if times.len() > self.opts.max_samples {
                return Err(EvalError::TooManySamples("query execution"));
            }
        }
        if times.is_empty() {
            return Ok(Vec::new());
        }
        let g2: Grid = Arc::new(times);
        match sq.expr.value_type() {
            ValueType::Scalar => {
                let keys = self.precompute_children(&sq.expr, &g2)?;
                let mut points = Vec::with_capacity(g2.len());
                for &t in g2.iter() {
                    points.push((t, self.eval_scalar(&sq.expr, t)?));
                }
                for k in keys {
                    self.pre.remove(&k);
                }
                Ok(vec![RSeries {
                    metric: Arc::new(Labels::new()),
                    drop_name: false,
                    points,
                }])
            }
            ValueType::Vector => {
                let mat = self.col(&sq.expr, &g2)?;
                let n: usize = mat.iter().map(|s| s.pts.len()).sum();
                self.add_samples(n)?;
                Ok(merge(mat, &g2)?.into_iter().map(|x| x.1).collect())
            }
            other => err(format!("subquery of a {other} is not allowed")),
        }
    }

    fn col_aggregate(&mut self, a: &AggregateExpr, g: &Grid) -> Result<Vec<CSeries>, EvalError> {
        let op = a.op.id();
        let m = &a.modifier;
        let n = g.len();
        let mut params = vec![f64::NAN; n];
        if matches!(op, T_TOPK | T_BOTTOMK | T_QUANTILE) {
            let Some(p) = &a.param else {
                return err("missing aggregation parameter");
            };
            for (i, &t) in g.iter().enumerate() {
                params[i] = self.eval_scalar(p, t)?;
            }
        }
        if op == T_TOPK || op == T_BOTTOMK {
            let input = self.col(&a.expr, g)?;
            if params.iter().any(|p| p.is_nan()) {
                return err("Parameter value is NaN");
            }
            return Ok(topk(input, m, &params, op == T_TOPK));
        }
        // Rows of cells (one per step) per group; groups past the cell
        // budget buffer their series and are summed one at a time at the end.
        let p = Proj::grouping(m);
        let mut idx = GroupIndex::default();
        let mut labels: Vec<Labels> = Vec::new();
        let mut row_of: Vec<Option<usize>> = Vec::new();
        let mut rows: Vec<Acc> = Vec::new();
        let mut pending: Vec<(usize, Vec<(u32, f64)>)> = Vec::new();
        self.col_each(&a.expr, g, &mut |metric, drop, pts| {
            let s = VSample {
                metric: metric.clone(),
                drop_name: drop,
                f: 0.0,
            };
            let (gi, new) = idx.get_or_insert(p, metric, drop);
            if new {
                labels.push(group_labels(&s, m));
                if rows.len() + n <= MAX_STREAM_CELLS {
                    row_of.push(Some(rows.len() / n.max(1)));
                    rows.resize(rows.len() + n, Acc::default());
                } else {
                    row_of.push(None);
                }
            }
            match row_of[gi] {
                Some(r) => {
                    let row = &mut rows[r * n..(r + 1) * n];
                    for &(i, v) in pts {
                        row[i as usize].add(op, v)?;
                    }
                }
                None => pending.push((gi, pts.to_vec())),
            }
            Ok(())
        })?;
        if op == T_QUANTILE {
            for &p in &params {
                if !(0.0..=1.0).contains(&p) {
                    self.ann.warn(format!(
                        "quantile value should be between 0 and 1, got {}",
                        fmt_g(p)
                    ));
                }
            }
        }
        let finish = |row: &mut [Acc], labels: Labels| -> CSeries {
            let pts = row
                .iter_mut()
                .enumerate()
                .filter(|(_, c)| c.count > 0.0)
                .map(|(i, c)| (i as u32, std::mem::take(c).result(op, params[i])))
                .collect();
            CSeries {
                metric: Arc::new(labels),
                drop_name: false,
                pts,
            }
        };
        let mut out = Vec::with_capacity(labels.len());
        let mut pending_groups: Vec<usize> = Vec::new();
        for (gi, l) in labels.iter().enumerate() {
            match row_of[gi] {
                Some(r) => out.push(finish(&mut rows[r * n..(r + 1) * n], l.clone())),
                None => pending_groups.push(gi),
            }
        }
        drop(rows);
        if !pending_groups.is_empty() {
            let mut members: FxMap<usize, Vec<usize>> = FxMap::default();
            for (j, (gi, _)) in pending.iter().enumerate() {
                members.entry(*gi).or_default().push(j);
            }
            let mut row = vec![Acc::default(); n];
            for gi in pending_groups {
                for &j in members.get(&gi).into_iter().flatten() {
                    for &(i, v) in &pending[j].1 {
                        row[i as usize].add(op, v)?;
                    }
                }
                out.push(finish(&mut row, labels[gi].clone()));
                self.add_samples(0)?;
            }
        }
        Ok(out)
    }

    fn col_hist_quantile(&mut self, c: &Call, g: &Grid) -> Result<Vec<CSeries>, EvalError> {
        let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
        let n = g.len();
        let mut qs = Vec::with_capacity(n);
        for &t in g.iter() {
            qs.push(self.eval_scalar(args[0], t)?);
        }
        let p = buckets_proj();
        let mut idx = GroupIndex::default();
        let mut labels: Vec<Labels> = Vec::new();
        let mut cells: Vec<Vec<Bucket>> = Vec::new();
        // Per step: the first input sample's metric name (for the info).
        let mut names: Vec<String> = Vec::new();
        let mut first_name: Vec<Option<usize>> = vec![None; n];
        let mut warns: Vec<String> = Vec::new();
        self.col_each(args[1], g, &mut |metric, drop, pts| {
            let s = VSample {
                metric: metric.clone(),
                drop_name: drop,
                f: 0.0,
            };
            if let Some(nm) = s.get(METRIC_NAME) {
                let mut ni = None;
                for &(i, _) in pts {
                    if first_name[i as usize].is_none() {
                        let k = *ni.get_or_insert_with(|| {
                            if names.last().map(String::as_str) != Some(nm) {
                                names.push(nm.to_string());
                            }
                            names.len() - 1
                        });
                        first_name[i as usize] = Some(k);
                    }
                }
            }
            let le = metric.get(LE).unwrap_or("");
            let Some(upper) = parse_le(le) else {
                warns.push(format!(
                    "bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}",
                    le,
                    s.get(METRIC_NAME).unwrap_or("")
                ));
                return Ok(());
            };
            let (gi, new) = idx.get_or_insert(p, metric, drop);
            if new {
                let mut b = metric.to_builder();
                b.del(LE).del(METRIC_NAME);
                labels.push(b.build());
                cells.resize_with(cells.len() + n, Vec::new);
            }
            let row = &mut cells[gi * n..(gi + 1) * n];
            for &(i, v) in pts {
                row[i as usize].push(Bucket { upper, count: v });
            }
            Ok(())
        })?;
        for w in warns {
            self.ann.warn(w);
        }
        for &q in &qs {
            if !(0.0..=1.0).contains(&q) {
                self.ann.warn(format!(
                    "quantile value should be between 0 and 1, got {}",
                    fmt_g(q)
                ));
            }
        }
        let mut out = Vec::with_capacity(labels.len());
        for (gi, l) in labels.into_iter().enumerate() {
            let mut pts = Vec::new();
            for (i, cell) in cells[gi * n..(gi + 1) * n].iter_mut().enumerate() {
                if cell.is_empty() {
                    continue;
                }
                let (f, forced) = bucket_quantile(qs[i], std::mem::take(cell));
                if forced {
                    let name = first_name[i].map(|k| names[k].as_str()).unwrap_or("");
                    self.ann.info(format!(
                        "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {name:?}"
                    ));
                }
                pts.push((i as u32, f));
            }
            out.push(CSeries {
                metric: Arc::new(l),
                drop_name: false,
                pts,
            });
        }
        Ok(out)
    }
}

/// `topk`/`bottomk` over all steps: per step, each group's input samples
/// sorted as the step-wise operator sorts them (stable, input order).
fn topk(
    input: Vec<CSeries>,
    m: &Option<promql_parser::parser::LabelModifier>,
    params: &[f64],
    top: bool,
) -> Vec<CSeries> {
    let p = Proj::grouping(m);
    let mut idx = GroupIndex::default();
    let gid: Vec<usize> = input
        .iter()
        .map(|s| idx.get_or_insert(p, &s.metric, s.drop_name).0)
        .collect();
    let mut groups: Vec<Vec<(f64, usize)>> = vec![Vec::new(); idx.len()];
    let mut cur = vec![0usize; input.len()];
    let mut out: Vec<Vec<(u32, f64)>> = vec![Vec::new(); input.len()];
    for (i, &param) in params.iter().enumerate() {
        let k = if param >= i64::MAX as f64 {
            i64::MAX
        } else {
            param as i64
        };
        for (j, s) in input.iter().enumerate() {
            let c = &mut cur[j];
            while *c < s.pts.len() && (s.pts[*c].0 as usize) < i {
                *c += 1;
            }
            if *c < s.pts.len() && s.pts[*c].0 as usize == i && k >= 1 {
                groups[gid[j]].push((s.pts[*c].1, j));
            }
        }
        if k < 1 {
            continue;
        }
        for grp in &mut groups {
            grp.sort_by(|a, b| topk_cmp(a.0, b.0, top));
            for &(v, j) in grp.iter().take(k as usize) {
                out[j].push((i as u32, v));
            }
            grp.clear();
        }
    }
    input
        .into_iter()
        .zip(out)
        .filter(|(_, p)| !p.is_empty())
        .map(|(s, pts)| CSeries {
            metric: s.metric,
            drop_name: s.drop_name,
            pts,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// Every upstream conformance query, as range queries, gives the same
    /// result column-wise as step by step.
    #[test]
    fn columnar_matches_stepwise_on_conformance_queries() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/conformance/prometheus/promql/promqltest/testdata"
        );
        let Ok(rd) = std::fs::read_dir(dir) else {
            eprintln!("no conformance data at {dir}; skipped");
            return;
        };
        let mut files: Vec<_> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "test"))
            .collect();
        files.sort();
        let mut diffs = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            for d in super::super::promqltest::cross_check_script(&text) {
                diffs.push(format!("{name}: {d}"));
            }
        }
        for d in &diffs {
            eprintln!("{d}");
        }
        assert!(diffs.is_empty(), "{} differences", diffs.len());
    }
}
