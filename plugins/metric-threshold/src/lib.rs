//! A metric check: evaluates one PromQL expression against the agent's own
//! store and passes when its value is inside `[min, max]` (Flagger's
//! `thresholdRange`).
//!
//! Config: `{"query": "...", "min": 0.0, "max": 0.05, "on_no_data": "fail"}`.
//! `query` must return a scalar or a one-element vector; `min` and `max` are
//! optional (at least one is required); `on_no_data` is `"fail"` (default,
//! like Flagger: no data is no evidence of health) or `"pass"`.

use serde::Deserialize;
use wasmon_sdk::metric_check::{CheckResult, Failure, Guest, MetricCheckRequest};
use wasmon_sdk::types::{Label, Sample};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    query: String,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    on_no_data: NoData,
}

#[derive(Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum NoData {
    #[default]
    Fail,
    Pass,
}

struct Threshold;

impl Guest for Threshold {
    fn evaluate(request: MetricCheckRequest) -> Result<CheckResult, Failure> {
        let cfg: Config = wasmon_sdk::config()?;
        if cfg.min.is_none() && cfg.max.is_none() {
            return Err(Failure::permanent("config needs `min`, `max` or both"));
        }
        let Some(value) = wasmon_sdk::query::scalar(&cfg.query, request.time_ms)? else {
            let ok = cfg.on_no_data == NoData::Pass;
            return Ok(CheckResult {
                ok,
                message: format!("{}: no data", request.check),
                value: None,
                samples: vec![],
            });
        };
        let (ok, why) = verdict(value, cfg.min, cfg.max);
        Ok(CheckResult {
            ok,
            message: format!("{}: {value} {why}", request.check),
            value: Some(value),
            samples: vec![Sample {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "wasmon_metric_check_value".into(),
                }],
                value,
                timestamp_ms: request.time_ms,
            }],
        })
    }
}

fn verdict(v: f64, min: Option<f64>, max: Option<f64>) -> (bool, String) {
    if v.is_nan() {
        return (false, "is NaN".into());
    }
    if let Some(m) = min.filter(|m| v < *m) {
        return (false, format!("< min {m}"));
    }
    if let Some(m) = max.filter(|m| v > *m) {
        return (false, format!("> max {m}"));
    }
    let range = match (min, max) {
        (Some(a), Some(b)) => format!("in [{a}, {b}]"),
        (Some(a), None) => format!(">= min {a}"),
        (None, Some(b)) => format!("<= max {b}"),
        (None, None) => String::new(),
    };
    (true, range)
}

wasmon_sdk::export_metric_check!(Threshold);
