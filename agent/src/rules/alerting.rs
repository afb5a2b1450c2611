//! Alerting rules and their state machine, as Prometheus runs them:
//!
//! - a new result element becomes a *pending* alert (`active_at` = now);
//! - it turns *firing* once it has been active for `for` (at once with
//!   `for: 0`);
//! - when it disappears, a firing alert with `keep_firing_for` keeps firing
//!   that long; otherwise it becomes *inactive* with `resolved_at`, and is
//!   kept (and resent) for 15 minutes so a lost notification is repaired;
//!   a pending alert that disappears is simply dropped;
//! - each evaluation writes `ALERTS{alertstate=...}` and `ALERTS_FOR_STATE`
//!   (value = `active_at` in seconds, for restoring `for` after a restart).
//!
//! Sending: an alert is (re)sent when firing and not sent for the resend
//! delay, or when resolved since the last send; `ends_at` of a firing alert
//! is `now + 4 × max(resend delay, group interval)`.

use std::collections::{BTreeMap, HashMap};

use promql_parser::parser::Expr;

use super::error::RuleEvalError;
use super::group::{query_vector, EvalCtx, RuleStatus};
use super::template::{self, AlertTemplateData, FuncContext};
use crate::model::{Labels, LabelsBuilder, METRIC_NAME};
use crate::promql::ParseError;

/// Removed alerts are kept and resent this long after they resolve.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// The label carrying the alert's name.
pub const ALERT_NAME_LABEL: &str = "alertname";
/// The label carrying the state in `ALERTS`.
pub const ALERT_STATE_LABEL: &str = "alertstate";
/// The series holding alert states.
pub const ALERT_METRIC_NAME: &str = "ALERTS";
/// The series holding `active_at` of active alerts.
pub const ALERT_FOR_STATE_METRIC_NAME: &str = "ALERTS_FOR_STATE";

/// An alert instance's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert instance (times in ms since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_sent_at: Option<i64>,
    pub valid_until: Option<i64>,
    pub keep_firing_since: Option<i64>,
}

impl Alert {
    fn needs_sending(&self, ts: i64, resend_delay: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        // Resolved since the last send: send it now.
        if let Some(r) = self.resolved_at {
            if self.last_sent_at.is_none_or(|s| r > s) {
                return true;
            }
        }
        match self.last_sent_at {
            None => true,
            Some(s) => s + resend_delay < ts,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct AlertingState {
    pub active: HashMap<Labels, Alert>,
    /// ALERTS samples are written only once `for` state has been restored
    /// (or restoration was not asked for).
    pub restored: bool,
}

/// One alerting rule.
#[derive(Debug)]
pub struct AlertingRule {
    pub name: String,
    pub expr_text: String,
    pub(crate) expr: Expr,
    /// `for`, ms.
    pub hold_ms: i64,
    pub keep_firing_for_ms: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub(crate) state: parking_lot::Mutex<AlertingState>,
    pub(crate) status: parking_lot::Mutex<RuleStatus>,
}

impl AlertingRule {
    pub fn new(
        name: &str,
        expr_text: &str,
        hold_ms: i64,
        keep_firing_for_ms: i64,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
        restored: bool,
    ) -> Result<Self, ParseError> {
        let expr = crate::promql::parse_query(expr_text)?;
        Ok(AlertingRule {
            name: name.to_string(),
            expr_text: expr_text.to_string(),
            expr,
            hold_ms,
            keep_firing_for_ms,
            labels,
            annotations,
            state: parking_lot::Mutex::new(AlertingState {
                active: HashMap::new(),
                restored,
            }),
            status: Default::default(),
        })
    }

    pub fn set_restored(&self, r: bool) {
        self.state.lock().restored = r;
    }

    pub fn restored(&self) -> bool {
        self.state.lock().restored
    }

    /// Evaluates at `ts`, updates the alerts and returns the `ALERTS` and
    /// `ALERTS_FOR_STATE` samples to write (timestamped `ts - query_offset`).
    pub fn eval(
        &self,
        ctx: &EvalCtx<'_>,
        ts: i64,
        query_offset: i64,
        limit: usize,
    ) -> Result<Vec<(Labels, f64)>, RuleEvalError> {
        let res = query_vector(ctx, &self.expr, ts - query_offset)?;
        // The template's `query` function takes its errors as text.
        let tquery = |q: &str| {
            let e = crate::promql::parse_query(q).map_err(|e| e.to_string())?;
            query_vector(ctx, &e, ts).map_err(|e| e.to_string())
        };
        let funcs = FuncContext {
            query: Some(&tquery),
            external_url: ctx.external_url.to_string(),
            now_ms: ts,
        };
        let mut fresh: HashMap<Labels, Alert> = HashMap::with_capacity(res.len());
        for (metric, v) in res {
            let data = AlertTemplateData {
                labels: metric.clone(),
                external_labels: ctx.external_labels.clone(),
                external_url: ctx.external_url.to_string(),
                value: v,
            };
            let expand =
                |text: &str| template::expand_alert_template(&self.name, text, &data, &funcs);
            let mut lb: LabelsBuilder = metric.to_builder();
            lb.del(METRIC_NAME);
            for (k, t) in &self.labels {
                lb.set(k.clone(), expand(t));
            }
            lb.set(ALERT_NAME_LABEL, self.name.clone());
            let annotations: BTreeMap<String, String> = self
                .annotations
                .iter()
                .map(|(k, t)| (k.clone(), expand(t)))
                .collect();
            let labels = lb.build();
            if fresh.contains_key(&labels) {
                return Err(RuleEvalError::DuplicateLabelset { by: "alert" });
            }
            fresh.insert(
                labels.clone(),
                Alert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value: v,
                    active_at: ts,
                    fired_at: None,
                    resolved_at: None,
                    last_sent_at: None,
                    valid_until: None,
                    keep_firing_since: None,
                },
            );
        }

        let mut st = self.state.lock();
        let restored = st.restored;
        let active = &mut st.active;
        let present: std::collections::HashSet<Labels> = fresh.keys().cloned().collect();
        for (h, a) in fresh {
            match active.get_mut(&h) {
                Some(old) if old.state != AlertState::Inactive => {
                    old.value = a.value;
                    old.annotations = a.annotations;
                }
                _ => {
                    active.insert(h, a);
                }
            }
        }
        let mut out = Vec::new();
        let mut num_active = 0usize;
        let mut delete = Vec::new();
        let t_out = ts - query_offset;
        for (fp, a) in active.iter_mut() {
            if !present.contains(fp) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && self.keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since.get_or_insert(ts);
                    if ts - since < self.keep_firing_for_ms {
                        keep_firing = true;
                    }
                }
                if a.state == AlertState::Pending
                    || a.resolved_at
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
                {
                    delete.push(fp.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            num_active += 1;
            if a.state == AlertState::Pending && ts - a.active_at >= self.hold_ms {
                a.state = AlertState::Firing;
                a.fired_at = Some(ts);
            }
            if restored {
                out.push((self.alert_series(a), 1.0));
                out.push((
                    self.for_state_series(a),
                    a.active_at.div_euclid(1000) as f64,
                ));
            }
        }
        for fp in delete {
            active.remove(&fp);
        }
        let _ = t_out;
        if limit > 0 && num_active > limit {
            active.clear();
            return Err(RuleEvalError::Limit {
                limit,
                got: num_active,
                what: "alerts",
            });
        }
        Ok(out)
    }

    fn alert_series(&self, a: &Alert) -> Labels {
        let mut b = a.labels.to_builder();
        b.set(METRIC_NAME, ALERT_METRIC_NAME);
        b.set(ALERT_STATE_LABEL, a.state.as_str());
        b.build()
    }

    fn for_state_series(&self, a: &Alert) -> Labels {
        let mut b = a.labels.to_builder();
        b.set(METRIC_NAME, ALERT_FOR_STATE_METRIC_NAME);
        b.build()
    }

    /// Alerts due to be sent at `ts`; marks them sent.
    pub fn alerts_to_send(&self, ts: i64, resend_delay: i64, interval: i64) -> Vec<Alert> {
        let mut st = self.state.lock();
        let mut out = Vec::new();
        for a in st.active.values_mut() {
            if a.needs_sending(ts, resend_delay) {
                a.last_sent_at = Some(ts);
                a.valid_until = Some(ts + 4 * resend_delay.max(interval));
                out.push(a.clone());
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Pending and firing alerts (resolved ones excluded), sorted by labels.
    pub fn active_alerts(&self) -> Vec<Alert> {
        let st = self.state.lock();
        let mut v: Vec<Alert> = st
            .active
            .values()
            .filter(|a| a.resolved_at.is_none())
            .cloned()
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// Every alert held, resolved ones included.
    pub fn current_alerts(&self) -> Vec<Alert> {
        let st = self.state.lock();
        let mut v: Vec<Alert> = st.active.values().cloned().collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// The highest state of any alert (`None` before the first evaluation).
    pub fn state(&self) -> Option<AlertState> {
        self.status.lock().last_eval_ms?;
        Some(
            self.state
                .lock()
                .active
                .values()
                .map(|a| a.state)
                .max()
                .unwrap_or(AlertState::Inactive),
        )
    }

    /// Restores `active_at` of current alerts from `ALERTS_FOR_STATE`
    /// (Prometheus' `RestoreForState` for one rule).
    pub(crate) fn restore_for_state(
        &self,
        ctx: &EvalCtx<'_>,
        ts: i64,
        outage_tolerance: i64,
        grace: i64,
    ) {
        use crate::storage::{MatchOp, Matcher};
        if self.hold_ms < grace {
            self.set_restored(true);
            return;
        }
        let mut matchers = vec![
            Matcher::new(MatchOp::Equal, METRIC_NAME, ALERT_FOR_STATE_METRIC_NAME).unwrap(),
            Matcher::new(MatchOp::Equal, ALERT_NAME_LABEL, self.name.clone()).unwrap(),
        ];
        for (k, v) in &self.labels {
            if let Ok(m) = Matcher::new(MatchOp::Equal, k.clone(), v.clone()) {
                matchers.push(m);
            }
        }
        let series = match ctx.queryable.select(&matchers, ts - outage_tolerance, ts) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(rule = %self.name, error = %e, "restoring alert state failed");
                return;
            }
        };
        let by_labels: HashMap<Labels, (i64, f64)> = series
            .into_iter()
            .filter_map(|s| {
                let last = *s.samples.last()?;
                Some((s.labels.without_name(), last))
            })
            .collect();
        let mut st = self.state.lock();
        for a in st.active.values_mut() {
            let Some(&(t, v)) = by_labels.get(&a.labels) else {
                continue;
            };
            if crate::model::is_stale_nan(v) {
                continue;
            }
            let down_at = t.div_euclid(1000) * 1000;
            let mut restored_active_at = (v as i64) * 1000;
            let spent_pending = down_at - restored_active_at;
            let remaining = self.hold_ms - spent_pending;
            if remaining <= 0 {
                // Was firing when we went down: the next evaluation fires it again.
            } else if remaining < grace {
                restored_active_at = ts + grace - self.hold_ms;
            } else {
                restored_active_at += ts - down_at;
            }
            a.active_at = restored_active_at;
        }
        st.restored = true;
    }

    /// Takes the alerts of an older instance of this rule (reload).
    pub(crate) fn copy_state(&self, old: &AlertingRule) {
        let o = old.state.lock();
        let mut s = self.state.lock();
        s.active = o.active.clone();
    }
}
