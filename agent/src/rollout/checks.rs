//! One evaluation of a rollout's checks: PromQL thresholds through the
//! query API and `metric-check` plugin instances, each a [`Verdict`].

use chrono::Utc;

use super::{Evaluation, Rollout, RolloutManager, Verdict};

impl RolloutManager {
    /// Evaluates every check of `r` now.
    pub async fn evaluate(&self, r: &Rollout) -> Evaluation {
        let now = Utc::now();
        let mut checks = Vec::new();
        for m in &r.metrics {
            let v = match self
                .query
                .instant(m.query.clone(), now.timestamp_millis())
                .await
            {
                Err(e) => Verdict {
                    check: m.name.clone(),
                    ok: false,
                    value: None,
                    message: format!("query failed: {e}"),
                },
                Ok(samples) => match samples.as_slice() {
                    [] => Verdict {
                        check: m.name.clone(),
                        ok: false,
                        value: None,
                        message: "no data".to_string(),
                    },
                    [one] => {
                        let (ok, message) = in_range(one.value, m.min, m.max);
                        Verdict {
                            check: m.name.clone(),
                            ok,
                            value: Some(one.value),
                            message,
                        }
                    }
                    many => Verdict {
                        check: m.name.clone(),
                        ok: false,
                        value: None,
                        message: format!("{} series: the query must return one value", many.len()),
                    },
                },
            };
            checks.push(v);
        }
        for (name, inst) in &r.metric_checks {
            let guarded = crate::plugins::Policy::Guarded {
                remember_permanent: false,
            };
            let v = match crate::checks::evaluate_metric_check(&self.plugins, inst, name, guarded)
                .await
            {
                Ok(res) => Verdict {
                    check: name.clone(),
                    ok: res.ok,
                    value: res.value,
                    message: res.message,
                },
                Err(e) => Verdict {
                    check: name.clone(),
                    ok: false,
                    value: None,
                    message: format!("plugin: {e}"),
                },
            };
            checks.push(v);
        }
        Evaluation {
            at: now,
            passed: checks.iter().all(|c| c.ok),
            checks,
        }
    }
}

fn in_range(v: f64, min: Option<f64>, max: Option<f64>) -> (bool, String) {
    if v.is_nan() {
        return (false, "NaN".to_string());
    }
    if let Some(m) = min.filter(|m| v < *m) {
        return (false, format!("{v} < min {m}"));
    }
    if let Some(m) = max.filter(|m| v > *m) {
        return (false, format!("{v} > max {m}"));
    }
    (true, format!("{v} within range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert!(in_range(0.01, None, Some(0.05)).0);
        assert!(!in_range(0.2, None, Some(0.05)).0);
        assert!(!in_range(1.0, Some(2.0), None).0);
        assert!(!in_range(f64::NAN, Some(0.0), Some(1.0)).0);
    }
}
