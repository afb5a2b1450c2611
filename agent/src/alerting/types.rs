//! The alert model and the store of current alerts (Alertmanager's
//! `types.Alert` and `provider/mem`): fingerprints, `POST /api/v2/alerts`
//! normalisation and merge semantics, and garbage collection of resolved
//! alerts.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::model::Labels;

/// An alert's identity: FNV-64a over its sorted labels.
pub type Fingerprint = u64;

const FNV_OFFSET: u64 = 14695981039346656037;
const FNV_PRIME: u64 = 1099511628211;
const SEPARATOR: u8 = 0xff;

/// Prometheus' `model.LabelSet.Fingerprint`: FNV-64a over name, 0xff,
/// value, 0xff for each label in name order.
pub fn fingerprint(labels: &Labels) -> Fingerprint {
    let mut h = FNV_OFFSET;
    let mut add = |b: &[u8]| {
        for &c in b {
            h ^= c as u64;
            h = h.wrapping_mul(FNV_PRIME);
        }
    };
    for l in labels.iter() {
        add(l.name.as_bytes());
        add(&[SEPARATOR]);
        add(l.value.as_bytes());
        add(&[SEPARATOR]);
    }
    h
}

/// A fingerprint as Alertmanager prints it: 16 hex digits.
pub fn fingerprint_hex(fp: Fingerprint) -> String {
    format!("{fp:016x}")
}

/// Prometheus' `model.LabelSet.String`: `{a="b", c="d"}`.
pub fn labelset_string(labels: &Labels) -> String {
    let mut s = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&l.name);
        s.push('=');
        s.push_str(&super::matcher::go_quote(&l.value));
    }
    s.push('}');
    s
}

/// Prometheus' `model.LabelSet.Before` as an order (Alertmanager sorts
/// alert groups and alerts by it): fewer labels first; then, at the first
/// name in name order where the sets differ, the set lacking that name
/// first, or the smaller value first.
pub fn labelset_order(a: &Labels, b: &Labels) -> Ordering {
    if a.len() != b.len() {
        return a.len().cmp(&b.len());
    }
    for (x, y) in a.as_slice().iter().zip(b.as_slice()) {
        match x.name.cmp(&y.name) {
            // `y.name` comes first and only `b` has it.
            Ordering::Greater => return Ordering::Less,
            Ordering::Less => return Ordering::Greater,
            Ordering::Equal => match x.value.cmp(&y.value) {
                Ordering::Equal => {}
                o => return o,
            },
        }
    }
    Ordering::Equal
}

/// Alertmanager's `AlertSlice` order: by `job`, then `instance` (an alert
/// without one after those with it), then [`labelset_order`].
pub fn alert_order(a: &Alert, b: &Alert) -> Ordering {
    for k in ["job", "instance"] {
        match (a.labels.get(k), b.labels.get(k)) {
            (None, None) => continue,
            (Some(_), None) => return Ordering::Less,
            (None, Some(_)) => return Ordering::Greater,
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => {}
        }
    }
    labelset_order(&a.labels, &b.labels)
}

/// RFC 3339 as Go prints `time.Time` in JSON.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// RFC 3339 with milliseconds, as Alertmanager's API v2 prints times
/// (go-openapi's `strfmt.DateTime`: `2026-01-02T03:04:05.000Z`).
pub fn rfc3339_millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An alert as the dispatcher knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub generator_url: String,
    pub updated_at: DateTime<Utc>,
    /// `ends_at` was set by resolve_timeout, not by the sender.
    pub timeout: bool,
}

impl Alert {
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(&self.labels)
    }

    /// Resolved at `now`: its end time has passed.
    pub fn resolved_at(&self, now: DateTime<Utc>) -> bool {
        self.ends_at <= now
    }

    pub fn status_at(&self, now: DateTime<Utc>) -> &'static str {
        if self.resolved_at(now) {
            "resolved"
        } else {
            "firing"
        }
    }

    /// Alertmanager's `Alert.Merge`: `o` is the newer report of the same
    /// alert (by `updated_at`); keep the earliest start, and the latest
    /// explicit end.
    pub fn merge(&self, o: &Alert, now: DateTime<Utc>) -> Alert {
        if o.updated_at < self.updated_at {
            return o.merge(self, now);
        }
        let mut res = o.clone();
        if self.starts_at < o.starts_at {
            res.starts_at = self.starts_at;
        }
        if o.resolved_at(now) {
            if self.resolved_at(now) && self.ends_at > o.ends_at {
                res.ends_at = self.ends_at;
            }
        } else if self.ends_at > o.ends_at && !self.timeout {
            res.ends_at = self.ends_at;
        }
        res
    }
}

/// Unix seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z).
pub const GO_ZERO_TIME: i64 = -62_135_596_800;

/// An alert as `POST /api/v2/alerts` receives it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
}

/// Why a posted alert is refused (Alertmanager 0.25's texts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("start time must be before end time")]
    EndBeforeStart,
    #[error("invalid label set: invalid name {}", super::matcher::go_quote(.0))]
    LabelName(String),
    #[error("at least one label pair required")]
    NoLabels,
    #[error("invalid annotations: invalid name {}", super::matcher::go_quote(.0))]
    AnnotationName(String),
}

impl PostableAlert {
    /// Alertmanager's API normalisation and validation (0.25, texts
    /// included): a missing start is now (or the end, if given); a missing
    /// end is now + resolve_timeout; labels with empty values are dropped;
    /// label and annotation names must be classic label names.
    pub fn into_alert(
        self,
        now: DateTime<Utc>,
        resolve_timeout: Duration,
    ) -> Result<Alert, AlertError> {
        let invalid_name = |names: &BTreeMap<String, String>| {
            names
                .keys()
                .find(|n| !crate::model::is_legacy_label_name(n))
                .cloned()
        };
        // Go clients (amtool) send the zero time "0001-01-01T00:00:00Z" for
        // "unset"; Alertmanager treats it as absent, and so do we.
        let unset = |t: Option<DateTime<Utc>>| t.filter(|t| t.timestamp() != GO_ZERO_TIME);
        let (starts, ends) = (unset(self.starts_at), unset(self.ends_at));
        let starts_at = match (starts, ends) {
            (Some(s), _) => s,
            (None, Some(e)) => e,
            (None, None) => now,
        };
        let (ends_at, timeout) = match ends {
            Some(e) => (e, false),
            None => (
                now + chrono::Duration::from_std(resolve_timeout).unwrap_or(chrono::Duration::MAX),
                true,
            ),
        };
        if ends_at < starts_at {
            return Err(AlertError::EndBeforeStart);
        }
        let labels: BTreeMap<String, String> = self
            .labels
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if let Some(e) = invalid_name(&labels) {
            return Err(AlertError::LabelName(e));
        }
        if labels.is_empty() {
            return Err(AlertError::NoLabels);
        }
        if let Some(e) = invalid_name(&self.annotations) {
            return Err(AlertError::AnnotationName(e));
        }
        Ok(Alert {
            labels: Labels::from_pairs(labels),
            annotations: self.annotations,
            starts_at,
            ends_at,
            generator_url: self.generator_url,
            updated_at: now,
            timeout,
        })
    }
}

/// The current alerts, by fingerprint. Resolved alerts stay until [`gc`].
///
/// [`gc`]: AlertStore::gc
#[derive(Debug, Default)]
pub struct AlertStore {
    alerts: Mutex<HashMap<Fingerprint, Alert>>,
}

impl AlertStore {
    pub fn new() -> AlertStore {
        AlertStore::default()
    }

    /// Insert or merge one alert (`provider/mem` `Put`): a report that
    /// overlaps the stored alert's active range is merged into it; a report
    /// of a new occurrence replaces it. Returns the stored result.
    pub fn put(&self, alert: Alert, now: DateTime<Utc>) -> Alert {
        let fp = alert.fingerprint();
        let mut m = self.alerts.lock();
        let alert = match m.get(&fp) {
            Some(old)
                if (alert.ends_at > old.starts_at && alert.ends_at < old.ends_at)
                    || (alert.starts_at > old.starts_at && alert.starts_at < old.ends_at) =>
            {
                old.merge(&alert, now)
            }
            _ => alert,
        };
        m.insert(fp, alert.clone());
        alert
    }

    pub fn get(&self, fp: Fingerprint) -> Option<Alert> {
        self.alerts.lock().get(&fp).cloned()
    }

    /// All alerts, in fingerprint order.
    pub fn list(&self) -> Vec<Alert> {
        // Sort by the map's key: recomputing fingerprints (a hash of every
        // label) inside the sort made this the dispatcher's hot spot under
        // load.
        let m = self.alerts.lock();
        let mut v: Vec<(&Fingerprint, &Alert)> = m.iter().collect();
        v.sort_unstable_by_key(|(fp, _)| **fp);
        v.into_iter().map(|(_, a)| a.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.alerts.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop alerts resolved at `now`; returns how many.
    pub fn gc(&self, now: DateTime<Utc>) -> usize {
        let mut m = self.alerts.lock();
        let before = m.len();
        m.retain(|_, a| !a.resolved_at(now));
        before - m.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_zero_times_mean_unset() {
        let now = Utc::now();
        let p: PostableAlert = serde_json::from_str(
            r#"{"labels": {"a": "b"}, "startsAt": "0001-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let a = p.into_alert(now, Duration::from_secs(300)).unwrap();
        assert_eq!(a.starts_at, now);
        assert_eq!(a.ends_at, now + chrono::Duration::seconds(300));
        assert!(a.timeout);
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn fingerprints_match_prometheus() {
        // model.LabelSet{}.Fingerprint() is the FNV offset basis.
        assert_eq!(fingerprint(&Labels::new()), FNV_OFFSET);
        // Values computed with prometheus/common model.LabelsToSignature.
        let l = Labels::from_pairs([("alertname", "x")]);
        let mut h = FNV_OFFSET;
        for b in b"alertname\xffx\xff" {
            h ^= *b as u64;
            h = h.wrapping_mul(FNV_PRIME);
        }
        assert_eq!(fingerprint(&l), h);
        assert_eq!(fingerprint_hex(0xab), "00000000000000ab");
        assert_eq!(
            labelset_string(&Labels::from_pairs([("b", "2"), ("a", "1")])),
            r#"{a="1", b="2"}"#
        );
    }

    #[test]
    fn post_normalisation() {
        let p = PostableAlert {
            labels: [("alertname".to_string(), "x".to_string())].into(),
            ..Default::default()
        };
        let a = p
            .clone()
            .into_alert(t(0), Duration::from_secs(300))
            .unwrap();
        assert_eq!(a.starts_at, t(0));
        assert_eq!(a.ends_at, t(300));
        assert!(a.timeout);
        assert!(!a.resolved_at(t(299)));
        assert!(a.resolved_at(t(300)));
        let bad = PostableAlert::default().into_alert(t(0), Duration::from_secs(1));
        assert_eq!(
            bad.unwrap_err().to_string(),
            "at least one label pair required"
        );
    }

    /// The answers of Alertmanager 0.25 to the same alerts.
    #[test]
    fn validation_like_alertmanager() {
        let check = |labels: &[(&str, &str)], annotations: &[(&str, &str)]| {
            PostableAlert {
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                annotations: annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }
            .into_alert(t(0), Duration::from_secs(300))
        };
        for (labels, want) in [
            (
                &[("alertname", "A"), ("0bad-name", "x")][..],
                r#"invalid label set: invalid name "0bad-name""#,
            ),
            (
                &[("alertname", "A"), ("bad-name", "x")],
                r#"invalid label set: invalid name "bad-name""#,
            ),
            (
                &[("alertname", "A"), ("ünï", "x")],
                r#"invalid label set: invalid name "ünï""#,
            ),
            (&[("", "x")], r#"invalid label set: invalid name """#),
            (&[("a", "")], "at least one label pair required"),
        ] {
            assert_eq!(
                check(labels, &[]).unwrap_err().to_string(),
                want,
                "{labels:?}"
            );
        }
        assert_eq!(
            check(&[("alertname", "A")], &[("0x", "y")])
                .unwrap_err()
                .to_string(),
            r#"invalid annotations: invalid name "0x""#
        );
        // An empty value means "no such label", as upstream.
        let a = check(&[("alertname", "A"), ("a", "")], &[("summary", "")]).unwrap();
        assert_eq!(a.labels, Labels::from_pairs([("alertname", "A")]));
        assert!(check(&[("_ok", "1"), ("Z9", "2")], &[]).is_ok());
    }

    /// Orders Alertmanager 0.25 listed its groups and alerts in.
    #[test]
    fn orders_like_alertmanager() {
        let l = |p: &[(&str, &str)]| Labels::from_pairs(p.iter().copied());
        // Groups {alertname=A}, {alertname=B}, {alertname=A, cluster=c1}.
        let mut v = vec![
            l(&[("alertname", "A"), ("cluster", "c1")]),
            l(&[("alertname", "B")]),
            l(&[("alertname", "A")]),
        ];
        v.sort_by(labelset_order);
        assert_eq!(
            v,
            [
                l(&[("alertname", "A")]),
                l(&[("alertname", "B")]),
                l(&[("alertname", "A"), ("cluster", "c1")])
            ]
        );
        // Same size, different names: the set lacking the first name differing goes first.
        assert_eq!(
            labelset_order(&l(&[("b", "1")]), &l(&[("a", "1")])),
            Ordering::Less
        );
        assert_eq!(
            labelset_order(&l(&[("a", "1"), ("c", "1")]), &l(&[("a", "1"), ("b", "9")])),
            Ordering::Less
        );
        let alert = |p: &[(&str, &str)]| Alert {
            labels: l(p),
            annotations: Default::default(),
            starts_at: t(0),
            ends_at: t(1),
            generator_url: String::new(),
            updated_at: t(0),
            timeout: false,
        };
        let mut v = [
            alert(&[("alertname", "Z")]),
            alert(&[("alertname", "A"), ("instance", "b")]),
            alert(&[("alertname", "B"), ("job", "j"), ("instance", "a")]),
            alert(&[("alertname", "A"), ("instance", "a")]),
        ];
        v.sort_by(alert_order);
        let names: Vec<_> = v.iter().map(|a| a.labels.to_string()).collect();
        assert_eq!(
            names,
            [
                r#"{alertname="B", instance="a", job="j"}"#,
                r#"{alertname="A", instance="a"}"#,
                r#"{alertname="A", instance="b"}"#,
                r#"{alertname="Z"}"#
            ]
        );
    }

    #[test]
    fn store_merges_and_gcs() {
        let s = AlertStore::new();
        let mk = |start: i64, end: i64, upd: i64, ann: &str| Alert {
            labels: Labels::from_pairs([("alertname", "x")]),
            annotations: [("a".to_string(), ann.to_string())].into(),
            starts_at: t(start),
            ends_at: t(end),
            generator_url: String::new(),
            updated_at: t(upd),
            timeout: false,
        };
        s.put(mk(0, 100, 0, "first"), t(0));
        // A re-send extends the end and updates annotations, keeps start.
        let got = s.put(mk(50, 200, 50, "second"), t(50));
        assert_eq!(got.starts_at, t(0));
        assert_eq!(got.ends_at, t(200));
        assert_eq!(got.annotations["a"], "second");
        // Resolving: an end in the past.
        let got = s.put(mk(50, 60, 70, "resolved"), t(70));
        assert!(got.resolved_at(t(70)));
        assert_eq!(s.len(), 1, "resolved alerts stay until gc");
        assert_eq!(s.gc(t(70)), 1);
        assert!(s.is_empty());
    }
}
