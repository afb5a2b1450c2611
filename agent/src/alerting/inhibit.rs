//! Inhibition (Alertmanager's `inhibit/`): a firing alert matching a rule's
//! source side mutes alerts matching its target side when the labels named
//! in `equal` have the same values (a missing label equals an empty one).
//!
//! An alert that matches both sides of a rule cannot be inhibited by an
//! alert that also matches both sides (itself included), as upstream.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::config::{ConfigError, InhibitRuleConfig};
use super::matcher::{MatchType, Matcher, Matchers};
use super::types::{Alert, Fingerprint};
use crate::model::Labels;

/// One compiled inhibit rule.
#[derive(Debug, Clone)]
pub struct InhibitRule {
    pub name: Option<String>,
    pub source: Matchers,
    pub target: Matchers,
    pub equal: BTreeSet<String>,
}

fn legacy(
    eq: &std::collections::BTreeMap<String, String>,
    re: &std::collections::BTreeMap<String, super::config::ConfigRegex>,
    rest: &[Matcher],
) -> Result<Matchers, ConfigError> {
    let mut v = Vec::new();
    for (n, val) in eq {
        v.push(Matcher::new(MatchType::Equal, n.clone(), val.clone())?);
    }
    for (n, r) in re {
        v.push(Matcher::new(MatchType::Regexp, n.clone(), r.anchored())?);
    }
    v.extend(rest.iter().cloned());
    Ok(Matchers(v))
}

impl InhibitRule {
    pub fn new(c: &InhibitRuleConfig) -> Result<InhibitRule, ConfigError> {
        c.validate()?;
        Ok(InhibitRule {
            name: c.name.clone(),
            source: legacy(&c.source_match, &c.source_match_re, &c.source_matchers.0)?,
            target: legacy(&c.target_match, &c.target_match_re, &c.target_matchers.0)?,
            equal: c.equal.iter().cloned().collect(),
        })
    }

    /// The first firing source alert that inhibits `target` under this rule.
    fn inhibiting<'a>(
        &self,
        target: &Labels,
        exclude_two_sided: bool,
        alerts: &'a [Alert],
        now: DateTime<Utc>,
    ) -> Option<&'a Alert> {
        alerts.iter().find(|a| {
            !a.resolved_at(now)
                && self.source.matches(&a.labels)
                && self
                    .equal
                    .iter()
                    .all(|n| a.labels.get(n).unwrap_or("") == target.get(n).unwrap_or(""))
                && !(exclude_two_sided && self.target.matches(&a.labels))
        })
    }
}

/// The inhibitor: all rules.
#[derive(Debug, Clone, Default)]
pub struct Inhibitor {
    pub rules: Vec<InhibitRule>,
}

impl Inhibitor {
    pub fn new(rules: &[InhibitRuleConfig]) -> Result<Inhibitor, ConfigError> {
        Ok(Inhibitor {
            rules: rules
                .iter()
                .map(InhibitRule::new)
                .collect::<Result<_, _>>()?,
        })
    }

    /// The fingerprint of an alert (among `alerts`, the current alerts)
    /// that inhibits an alert with labels `target` at `now`, if any.
    pub fn mutes(
        &self,
        target: &Labels,
        alerts: &[Alert],
        now: DateTime<Utc>,
    ) -> Option<Fingerprint> {
        for r in &self.rules {
            if !r.target.matches(target) {
                continue;
            }
            let two_sided = r.source.matches(target);
            if let Some(a) = r.inhibiting(target, two_sided, alerts, now) {
                return Some(a.fingerprint());
            }
        }
        None
    }
}

/// The inhibitions of one moment, indexed for many lookups (the API marks
/// every alert): per rule, the firing source alerts by their values of the
/// rule's `equal` labels. Building it is O(alerts × rules), a lookup
/// O(rules); the answers are those of [`Inhibitor::mutes`] over the same
/// alerts (the first inhibiting alert in the slice's order).
pub struct InhibitIndex<'a> {
    rules: &'a [InhibitRule],
    /// Per rule, by the `equal` labels' values.
    sources: Vec<HashMap<Vec<&'a str>, Sources>>,
}

/// The first firing source alert with some `equal` values, and the first
/// that does not also match the rule's target side (the only kind that may
/// inhibit a target matching both sides).
#[derive(Debug, Clone, Copy, Default)]
struct Sources {
    any: Option<Fingerprint>,
    one_sided: Option<Fingerprint>,
}

fn equal_values<'a>(rule: &InhibitRule, labels: &'a Labels) -> Vec<&'a str> {
    rule.equal
        .iter()
        .map(|n| labels.get(n).unwrap_or(""))
        .collect()
}

impl Inhibitor {
    /// The index of `alerts` (the current alerts) at `now`.
    pub fn index<'a>(&'a self, alerts: &'a [Alert], now: DateTime<Utc>) -> InhibitIndex<'a> {
        let sources = self
            .rules
            .iter()
            .map(|r| {
                let mut m: HashMap<Vec<&str>, Sources> = HashMap::new();
                for a in alerts {
                    if a.resolved_at(now) || !r.source.matches(&a.labels) {
                        continue;
                    }
                    let s = m.entry(equal_values(r, &a.labels)).or_default();
                    let two_sided = r.target.matches(&a.labels);
                    if s.any.is_none() {
                        s.any = Some(a.fingerprint());
                    }
                    if !two_sided && s.one_sided.is_none() {
                        s.one_sided = Some(a.fingerprint());
                    }
                }
                m
            })
            .collect();
        InhibitIndex {
            rules: &self.rules,
            sources,
        }
    }
}

impl InhibitIndex<'_> {
    /// The fingerprint of an alert that inhibits `target`, if any.
    pub fn mutes(&self, target: &Labels) -> Option<Fingerprint> {
        for (r, sources) in self.rules.iter().zip(&self.sources) {
            if sources.is_empty() || !r.target.matches(target) {
                continue;
            }
            let Some(s) = sources.get(&equal_values(r, target)) else {
                continue;
            };
            let found = if r.source.matches(target) {
                s.one_sided
            } else {
                s.any
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn alert(pairs: &[(&str, &str)], end: i64) -> Alert {
        Alert {
            labels: Labels::from_pairs(pairs.iter().copied()),
            annotations: Default::default(),
            starts_at: t(0),
            ends_at: t(end),
            generator_url: String::new(),
            updated_at: t(0),
            timeout: false,
        }
    }

    fn inhibitor(yaml: &str) -> Inhibitor {
        let rules: Vec<InhibitRuleConfig> = serde_norway::from_str(yaml).unwrap();
        Inhibitor::new(&rules).unwrap()
    }

    #[test]
    fn source_mutes_target_with_equal_labels() {
        let ih = inhibitor(
            "- source_matchers: [severity=critical]\n  target_matchers: [severity=warning]\n  equal: [cluster]",
        );
        let crit = alert(
            &[
                ("alertname", "A"),
                ("severity", "critical"),
                ("cluster", "c1"),
            ],
            100,
        );
        let alerts = vec![crit.clone()];
        let warn1 = Labels::from_pairs([
            ("alertname", "B"),
            ("severity", "warning"),
            ("cluster", "c1"),
        ]);
        let warn2 = Labels::from_pairs([
            ("alertname", "B"),
            ("severity", "warning"),
            ("cluster", "c2"),
        ]);
        assert_eq!(ih.mutes(&warn1, &alerts, t(10)), Some(crit.fingerprint()));
        assert_eq!(ih.mutes(&warn2, &alerts, t(10)), None);
        // A resolved source inhibits nothing.
        assert_eq!(ih.mutes(&warn1, &alerts, t(100)), None);
    }

    /// The index answers as the scan does, over alerts that match one side,
    /// both sides or none, firing or resolved, with and without the
    /// `equal` labels.
    #[test]
    fn index_agrees_with_the_scan() {
        let ih = inhibitor(
            "- source_matchers: [severity=~\"critical|page\"]\n  target_matchers: [severity=~\"warning|page\"]\n  equal: [cluster, zone]\n- source_matchers: [alertname=Down]\n  target_matchers: [alertname!=Down]",
        );
        let sev = ["critical", "warning", "page", "info"];
        let mut alerts = Vec::new();
        for i in 0..400usize {
            let mut pairs = vec![
                (
                    "alertname",
                    if i % 37 == 0 { "Down" } else { "X" }.to_string(),
                ),
                ("severity", sev[i % 4].to_string()),
                ("n", i.to_string()),
            ];
            if i % 5 != 0 {
                pairs.push(("cluster", format!("c{}", i % 7)));
            }
            if i % 3 != 0 {
                pairs.push(("zone", format!("z{}", i % 2)));
            }
            let labels = Labels::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
            let mut a = alert(&[], if i % 11 == 0 { 5 } else { 100 });
            a.labels = labels;
            alerts.push(a);
        }
        alerts.sort_by_key(|a| a.fingerprint());
        let idx = ih.index(&alerts, t(10));
        let mut inhibited = 0;
        for a in &alerts {
            let want = ih.mutes(&a.labels, &alerts, t(10));
            assert_eq!(idx.mutes(&a.labels), want, "{}", a.labels);
            inhibited += want.is_some() as usize;
        }
        assert!(inhibited > 50 && inhibited < 400, "{inhibited}");
    }

    #[test]
    fn legacy_and_missing_equal_labels() {
        let ih = inhibitor(
            "- source_match: {alertname: Down}\n  target_match_re: {alertname: '.*'}\n  equal: [zone]",
        );
        let alerts = vec![alert(&[("alertname", "Down")], 100)];
        // Both lack `zone`: equal.
        let other = Labels::from_pairs([("alertname", "Other")]);
        assert!(ih.mutes(&other, &alerts, t(1)).is_some());
        // The source matches both sides: it does not inhibit itself.
        let down = Labels::from_pairs([("alertname", "Down")]);
        assert!(ih.mutes(&down, &alerts, t(1)).is_none());
    }
}
