//! `/api/v1/rules` and `/api/v1/alerts` bodies in Prometheus' JSON shapes.
//! The host wires the routes and passes the query parameters in.

use serde_json::{json, Map, Value};

use super::response::{success_body, ApiError};
use crate::model::duration;
use crate::rules::alerting::{Alert, AlertingRule};
use crate::rules::group::{ms_to_time, Group, Rule, RuleStatus};
use crate::rules::manager::RuleManager;

/// `/api/v1/rules` query parameters.
#[derive(Debug, Clone, Default)]
pub struct RulesFilter {
    /// `type=alert` or `type=record`; `None` = both.
    pub rule_type: Option<String>,
    /// `rule_name[]`, `rule_group[]`, `file[]`: empty = all.
    pub rule_names: Vec<String>,
    pub group_names: Vec<String>,
    pub files: Vec<String>,
    /// `exclude_alerts=true`: omit the `alerts` array of alerting rules.
    pub exclude_alerts: bool,
}

fn rfc3339(ms: i64) -> String {
    ms_to_time(ms).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn labels_obj<'a>(it: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let mut m = Map::new();
    for (k, v) in it {
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Value::Object(m)
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, as the API writes alert values.
fn format_value(v: f64) -> String {
    wasmon_gofmt::format_float(v, 'e', -1)
}

/// One alert as the API shows it.
pub fn alert_json(a: &Alert) -> Value {
    let mut o = json!({
        "labels": labels_obj(a.labels.iter().map(|l| (l.name.as_str(), l.value.as_str()))),
        "annotations": labels_obj(a.annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        "state": a.state.as_str(),
        "activeAt": rfc3339(a.active_at),
        "value": format_value(a.value),
    });
    if let Some(k) = a.keep_firing_since {
        o["keepFiringSince"] = Value::String(rfc3339(k));
    }
    o
}

fn status_fields(o: &mut Map<String, Value>, st: &RuleStatus) {
    o.insert("health".into(), st.health.as_str().into());
    if let Some(e) = &st.last_error {
        o.insert("lastError".into(), e.clone().into());
    }
    o.insert("evaluationTime".into(), st.eval_duration_s.into());
    o.insert(
        "lastEvaluation".into(),
        match st.last_eval_ms {
            Some(t) => rfc3339(t),
            None => "0001-01-01T00:00:00Z".into(),
        }
        .into(),
    );
}

fn alerting_rule_json(r: &AlertingRule, exclude_alerts: bool) -> Value {
    let mut o = Map::new();
    o.insert(
        "state".into(),
        r.state().map(|s| s.as_str()).unwrap_or("unknown").into(),
    );
    o.insert("name".into(), r.name.clone().into());
    o.insert("query".into(), r.expr_text.clone().into());
    o.insert("duration".into(), (r.hold_ms / 1000).into());
    o.insert("keepFiringFor".into(), (r.keep_firing_for_ms / 1000).into());
    o.insert(
        "labels".into(),
        labels_obj(r.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    );
    o.insert(
        "annotations".into(),
        labels_obj(r.annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    );
    if !exclude_alerts {
        o.insert(
            "alerts".into(),
            Value::Array(r.active_alerts().iter().map(alert_json).collect()),
        );
    }
    status_fields(&mut o, &r.status.lock());
    o.insert("type".into(), "alerting".into());
    Value::Object(o)
}

fn rule_json(rule: &Rule, exclude_alerts: bool) -> Value {
    match rule {
        Rule::Alerting(r) => alerting_rule_json(r, exclude_alerts),
        Rule::Recording(r) => {
            let mut o = Map::new();
            o.insert("name".into(), r.name.clone().into());
            o.insert("query".into(), r.expr_text.clone().into());
            o.insert(
                "labels".into(),
                labels_obj(r.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            );
            status_fields(&mut o, &r.status.lock());
            o.insert("type".into(), "recording".into());
            Value::Object(o)
        }
    }
}

/// One group as the API shows it.
pub fn group_json(g: &Group, f: &RulesFilter) -> Option<Value> {
    if !f.group_names.is_empty() && !f.group_names.contains(&g.name) {
        return None;
    }
    if !f.files.is_empty() && !f.files.contains(&g.file) {
        return None;
    }
    let rules: Vec<Value> = g
        .rules
        .iter()
        .filter(|r| match (f.rule_type.as_deref(), r) {
            (Some("alert"), Rule::Recording(_)) | (Some("record"), Rule::Alerting(_)) => false,
            _ => f.rule_names.is_empty() || f.rule_names.iter().any(|n| n == r.name()),
        })
        .map(|r| rule_json(r, f.exclude_alerts))
        .collect();
    if rules.is_empty() && (f.rule_type.is_some() || !f.rule_names.is_empty()) {
        return None;
    }
    Some(json!({
        "name": g.name,
        "file": g.file,
        "rules": rules,
        "interval": g.interval_ms as f64 / 1000.0,
        "limit": g.limit,
        "evaluationTime": g.eval_duration_s(),
        "lastEvaluation": g.last_eval_ms().map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
    }))
}

/// The body of `GET /api/v1/rules`. An invalid `type` is Prometheus'
/// `bad_data` error.
pub fn rules_json(groups: &[std::sync::Arc<Group>], f: &RulesFilter) -> Value {
    if let Some(t) = &f.rule_type {
        if t != "alert" && t != "record" {
            return ApiError::bad_data(format!("unsupported type {t:?}")).body();
        }
    }
    let gs: Vec<Value> = groups.iter().filter_map(|g| group_json(g, f)).collect();
    success_body(json!({"groups": gs}))
}

/// The body of `GET /api/v1/alerts`: every pending and firing alert.
pub fn alerts_json(groups: &[std::sync::Arc<Group>]) -> Value {
    let mut alerts = Vec::new();
    for g in groups {
        for r in g.alerting_rules() {
            alerts.extend(r.active_alerts().iter().map(alert_json));
        }
    }
    success_body(json!({"alerts": alerts}))
}

impl RuleManager {
    /// `GET /api/v1/rules` for the running groups.
    pub fn rules_api(&self, f: &RulesFilter) -> Value {
        rules_json(&self.groups(), f)
    }

    /// `GET /api/v1/alerts` for the running groups.
    pub fn alerts_api(&self) -> Value {
        alerts_json(&self.groups())
    }
}

/// A human-readable duration as rule files write it (for UIs).
pub fn duration_text(ms: i64) -> String {
    duration::format(std::time::Duration::from_millis(ms.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_formatted_like_go() {
        assert_eq!(format_value(1.0), "1e+00");
        assert_eq!(format_value(0.25), "2.5e-01");
        assert_eq!(format_value(12345.0), "1.2345e+04");
    }
}
