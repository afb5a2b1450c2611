//! A rule group: its rules evaluated in order at one timestamp. Each
//! rule's output is committed before the next rule runs (so later rules see
//! it); a series a rule produced last time but not this time gets a
//! staleness marker; alerts due for sending go to the [`AlertSink`]
//! (`alerting::sink`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use promql_parser::parser::Expr;

use super::alerting::{Alert, AlertingRule};
use super::error::{BuildError, RuleEvalError};
use super::recording::RecordingRule;
use super::rulefmt::{RuleDef, RuleGroup, RuleKind};
use crate::alerting::sink::{AlertSink, OutgoingAlert};
use crate::model::{stale_nan, Labels};
use crate::promql::{Engine, ParseError, SharedEngine, Value};
use crate::storage::{Appendable, Queryable};

/// What evaluating rules needs; shared by all groups of a manager.
#[derive(Clone)]
pub struct RuleOpts {
    /// The running config's engine (a reload's `[query]` limits apply at
    /// the next evaluation).
    pub engine: SharedEngine,
    pub queryable: Arc<dyn Queryable>,
    pub appendable: Arc<dyn Appendable>,
    pub sink: Arc<dyn AlertSink>,
    pub external_labels: Labels,
    /// `--web.external-url`; alert generator URLs start with it.
    pub external_url: String,
    pub resend_delay_ms: i64,
    /// Restoring `for` state: how far back `ALERTS_FOR_STATE` is read.
    pub outage_tolerance_ms: i64,
    /// Restoring `for` state: the least time left before a restored alert fires.
    pub for_grace_period_ms: i64,
    /// Where new pending alerts go on incident timelines.
    pub incidents: Option<Arc<crate::incident::Incidents>>,
}

impl RuleOpts {
    /// Prometheus' defaults: resend 1m, outage tolerance 1h, grace 10m.
    pub fn new(
        queryable: Arc<dyn Queryable>,
        appendable: Arc<dyn Appendable>,
        sink: Arc<dyn AlertSink>,
    ) -> RuleOpts {
        RuleOpts {
            engine: SharedEngine::default(),
            queryable,
            appendable,
            sink,
            external_labels: Labels::new(),
            external_url: String::new(),
            resend_delay_ms: 60_000,
            outage_tolerance_ms: 3_600_000,
            for_grace_period_ms: 600_000,
            incidents: None,
        }
    }
}

/// What one rule evaluation reads.
pub struct EvalCtx<'a> {
    pub engine: &'a Engine,
    pub queryable: &'a dyn Queryable,
    pub external_labels: &'a Labels,
    pub external_url: &'a str,
}

/// Runs an instant query the way rules do: a vector as is, a scalar as a
/// one-element vector without labels, anything else an error.
pub fn query_vector(
    ctx: &EvalCtx<'_>,
    e: &Expr,
    t: i64,
) -> Result<Vec<(Labels, f64)>, RuleEvalError> {
    let r = ctx.engine.instant(ctx.queryable, e, t)?;
    match r.value {
        Value::Vector(v) => Ok(v.into_iter().map(|s| (s.labels, s.v)).collect()),
        Value::Scalar { v, .. } => Ok(vec![(Labels::new(), v)]),
        _ => Err(RuleEvalError::NotVector),
    }
}

/// A rule's health after its last evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    #[default]
    Unknown,
    Good,
    Bad,
}

impl Health {
    /// As the API writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Good => "ok",
            Health::Bad => "err",
        }
    }
}

/// Evaluation bookkeeping of one rule.
#[derive(Debug, Clone, Default)]
pub struct RuleStatus {
    pub health: Health,
    pub last_error: Option<String>,
    pub last_eval_ms: Option<i64>,
    pub eval_duration_s: f64,
}

/// A recording or alerting rule.
#[derive(Debug)]
pub enum Rule {
    Recording(RecordingRule),
    Alerting(AlertingRule),
}

impl Rule {
    pub fn name(&self) -> &str {
        match self {
            Rule::Recording(r) => &r.name,
            Rule::Alerting(r) => &r.name,
        }
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        match self {
            Rule::Recording(r) => &r.labels,
            Rule::Alerting(r) => &r.labels,
        }
    }

    pub fn status(&self) -> RuleStatus {
        match self {
            Rule::Recording(r) => r.status.lock().clone(),
            Rule::Alerting(r) => r.status.lock().clone(),
        }
    }

    fn status_mut(&self) -> parking_lot::MutexGuard<'_, RuleStatus> {
        match self {
            Rule::Recording(r) => r.status.lock(),
            Rule::Alerting(r) => r.status.lock(),
        }
    }

    fn from_def(
        def: &RuleDef,
        group_labels: &BTreeMap<String, String>,
        restored: bool,
    ) -> Result<Rule, ParseError> {
        let mut labels = group_labels.clone();
        labels.extend(def.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(match &def.kind {
            RuleKind::Record(n) => Rule::Recording(RecordingRule::new(n, &def.expr, labels)?),
            RuleKind::Alert(n) => Rule::Alerting(AlertingRule::new(
                n,
                &def.expr,
                def.for_.as_millis() as i64,
                def.keep_firing_for.as_millis() as i64,
                labels,
                def.annotations.clone(),
                restored,
            )?),
        })
    }
}

#[derive(Debug, Default)]
struct GroupState {
    series_prev: Vec<HashSet<Labels>>,
    last_eval_ms: Option<i64>,
    eval_duration_s: f64,
}

/// A group of rules evaluated together.
pub struct Group {
    pub name: String,
    pub file: String,
    pub interval_ms: i64,
    pub limit: usize,
    pub query_offset_ms: i64,
    pub rules: Vec<Rule>,
    /// The definition (for reload equality).
    pub def: RuleGroup,
    opts: Arc<RuleOpts>,
    state: parking_lot::Mutex<GroupState>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("interval_ms", &self.interval_ms)
            .finish()
    }
}

impl Group {
    /// Builds a group from its definition. `default_interval_ms` applies
    /// when the group sets none; `restored` = alerting rules write ALERTS
    /// from the first evaluation (no `for` state restoration pending).
    pub fn new(
        file: &str,
        def: &RuleGroup,
        default_interval_ms: i64,
        opts: Arc<RuleOpts>,
        restored: bool,
    ) -> Result<Group, BuildError> {
        let rules = def
            .rules
            .iter()
            .map(|r| {
                Rule::from_def(r, &def.labels, restored).map_err(|error| BuildError {
                    group: def.name.clone(),
                    rule: r.name().to_string(),
                    error,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let n = rules.len();
        Ok(Group {
            name: def.name.clone(),
            file: file.to_string(),
            interval_ms: def
                .interval
                .map(|d| d.as_millis() as i64)
                .unwrap_or(default_interval_ms)
                .max(1),
            limit: def.limit,
            query_offset_ms: def.query_offset.map(|d| d.as_millis() as i64).unwrap_or(0),
            rules,
            def: def.clone(),
            opts,
            state: parking_lot::Mutex::new(GroupState {
                series_prev: vec![HashSet::new(); n],
                ..Default::default()
            }),
        })
    }

    pub fn opts(&self) -> &RuleOpts {
        &self.opts
    }

    /// Same definition and interval: a reload keeps the running group.
    pub fn equals(&self, other: &Group) -> bool {
        self.name == other.name
            && self.file == other.file
            && self.interval_ms == other.interval_ms
            && self.def == other.def
    }

    pub fn last_eval_ms(&self) -> Option<i64> {
        self.state.lock().last_eval_ms
    }

    pub fn eval_duration_s(&self) -> f64 {
        self.state.lock().eval_duration_s
    }

    fn hash(&self) -> u64 {
        // FNV-1a over file and name: a stable per-group offset.
        let mut h: u64 = 0xcbf29ce484222325;
        for b in self.file.bytes().chain([0xff]).chain(self.name.bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h
    }

    /// The latest evaluation time at or before `start_ms` of this group's
    /// schedule: multiples of the interval shifted by a per-group offset,
    /// so groups spread over the interval (Prometheus' `EvalTimestamp`).
    pub fn eval_timestamp(&self, start_ms: i64) -> i64 {
        let offset = (self.hash() % self.interval_ms as u64) as i64;
        let adj = start_ms - offset;
        let base = adj - adj.rem_euclid(self.interval_ms);
        base + offset
    }

    fn ctx<'a>(&'a self, engine: &'a Engine) -> EvalCtx<'a> {
        EvalCtx {
            engine,
            queryable: &*self.opts.queryable,
            external_labels: &self.opts.external_labels,
            external_url: &self.opts.external_url,
        }
    }

    /// Evaluates every rule at `ts` (ms), writes results, sends alerts.
    pub fn eval(&self, ts: i64) {
        let started = Instant::now();
        let engine = self.opts.engine.get();
        let ctx = self.ctx(&engine);
        for (i, rule) in self.rules.iter().enumerate() {
            let rs = Instant::now();
            let res = match rule {
                Rule::Recording(r) => r.eval(&ctx, ts, self.query_offset_ms, self.limit),
                Rule::Alerting(r) => r.eval(&ctx, ts, self.query_offset_ms, self.limit),
            };
            {
                let mut st = rule.status_mut();
                st.last_eval_ms = Some(ts);
                st.eval_duration_s = rs.elapsed().as_secs_f64();
                match &res {
                    Ok(_) => {
                        st.health = super::group::Health::Good;
                        st.last_error = None;
                    }
                    Err(e) => {
                        st.health = Health::Bad;
                        st.last_error = Some(e.to_string());
                    }
                }
            }
            let vector = match res {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(group = %self.name, rule = %rule.name(), error = %e, "rule evaluation failed");
                    continue;
                }
            };
            if let (Rule::Alerting(r), Some(inc)) = (rule, &self.opts.incidents) {
                super::incident_hook::record_pending(inc, r, ts);
            }
            if let Rule::Alerting(r) = rule {
                let alerts = r.alerts_to_send(ts, self.opts.resend_delay_ms, self.interval_ms);
                if !alerts.is_empty() {
                    let out = alerts.iter().map(|a| self.outgoing(r, a)).collect();
                    self.opts.sink.send(out);
                }
            }
            let t = ts - self.query_offset_ms;
            let mut app = self.opts.appendable.appender();
            let mut returned = HashSet::with_capacity(vector.len());
            for (l, v) in vector {
                match app.append(&l, t, v) {
                    Ok(()) => {
                        returned.insert(l);
                    }
                    Err(e) => {
                        tracing::debug!(group = %self.name, rule = %rule.name(), series = %l, error = %e, "rule sample rejected")
                    }
                }
            }
            let mut st = self.state.lock();
            for l in st.series_prev[i].iter() {
                if !returned.contains(l) {
                    let _ = app.append(l, t, stale_nan());
                }
            }
            // A commit fails only when the WAL refuses the write: the
            // store logs that (at most once a minute), counts the refused
            // samples and makes the agent unready.
            if let Err(e) = app.commit() {
                tracing::debug!(group = %self.name, error = %e, "committing rule results failed");
            }
            st.series_prev[i] = returned;
        }
        let mut st = self.state.lock();
        st.last_eval_ms = Some(ts);
        st.eval_duration_s = started.elapsed().as_secs_f64();
    }

    /// Converts an alert for the sink, as Prometheus' notifier does:
    /// starts at `fired_at`, ends at `resolved_at` or `valid_until`,
    /// external labels added where the alert lacks them.
    fn outgoing(&self, r: &AlertingRule, a: &Alert) -> OutgoingAlert {
        let mut lb = a.labels.to_builder();
        for l in self.opts.external_labels.iter() {
            if a.labels.get(&l.name).is_none() {
                lb.set(l.name.clone(), l.value.clone());
            }
        }
        let ends = a.resolved_at.or(a.valid_until).unwrap_or(a.active_at);
        OutgoingAlert {
            labels: lb.build(),
            annotations: a.annotations.clone(),
            starts_at: ms_to_time(a.fired_at.unwrap_or(a.active_at)),
            ends_at: ms_to_time(ends),
            generator_url: generator_url(&self.opts.external_url, &r.expr_text),
        }
    }

    /// Restores `for` state of every alerting rule at `ts`.
    pub fn restore_for_state(&self, ts: i64) {
        let engine = self.opts.engine.get();
        let ctx = self.ctx(&engine);
        for r in &self.rules {
            if let Rule::Alerting(a) = r {
                a.restore_for_state(
                    &ctx,
                    ts,
                    self.opts.outage_tolerance_ms,
                    self.opts.for_grace_period_ms,
                );
            }
        }
    }

    /// Marks every series this group wrote last time stale (the group was
    /// removed).
    pub fn mark_stale(&self, ts: i64) {
        let st = self.state.lock();
        let mut app = self.opts.appendable.appender();
        for s in &st.series_prev {
            for l in s {
                let _ = app.append(l, ts, stale_nan());
            }
        }
        let _ = app.commit();
    }

    /// Takes over what an older version of this group knew: per-rule
    /// previously written series and active alerts, matched by rule name
    /// and labels (Prometheus' `CopyState`).
    pub fn copy_state_from(&self, old: &Group) {
        let ost = old.state.lock();
        let mut st = self.state.lock();
        st.last_eval_ms = ost.last_eval_ms;
        st.eval_duration_s = ost.eval_duration_s;
        let mut used = HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let Some(j) = old.rules.iter().enumerate().position(|(j, o)| {
                !used.contains(&j)
                    && o.name() == r.name()
                    && o.labels() == r.labels()
                    && std::mem::discriminant(o) == std::mem::discriminant(r)
            }) else {
                continue;
            };
            used.insert(j);
            st.series_prev[i] = ost.series_prev[j].clone();
            if let (Rule::Alerting(n), Rule::Alerting(o)) = (r, &old.rules[j]) {
                n.copy_state(o);
            }
            *r.status_mut() = old.rules[j].status();
        }
    }

    /// Alerting rules of the group.
    pub fn alerting_rules(&self) -> impl Iterator<Item = &AlertingRule> {
        self.rules.iter().filter_map(|r| match r {
            Rule::Alerting(a) => Some(a),
            _ => None,
        })
    }
}

/// `externalURL + /graph?g0.expr=EXPR&g0.tab=1`.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    format!(
        "{}/graph?g0.expr={}&g0.tab=1",
        external_url.trim_end_matches('/'),
        wasmon_template::query_escape(expr)
    )
}

pub fn ms_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
