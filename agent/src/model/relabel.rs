//! Prometheus relabeling (`relabel_configs`, `metric_relabel_configs`):
//! the same actions, defaults, regex anchoring and `$1` expansion, so rules
//! copied from a Prometheus config behave the same here.

use md5::{Digest, Md5};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::labels::{Labels, LabelsBuilder};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

/// The action's name as written in the config (`keepequal`, `hashmod`).
impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = format!("{self:?}").to_lowercase();
        f.write_str(&name)
    }
}

/// One relabel rule as written in the config.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default)]
    pub source_labels: Vec<String>,
    #[serde(default = "default_separator")]
    pub separator: String,
    #[serde(default = "default_regex")]
    pub regex: String,
    #[serde(default)]
    pub modulus: u64,
    #[serde(default)]
    pub target_label: String,
    #[serde(default = "default_replacement")]
    pub replacement: String,
    #[serde(default)]
    pub action: Action,
}

fn default_separator() -> String {
    ";".into()
}
fn default_regex() -> String {
    "(.*)".into()
}
fn default_replacement() -> String {
    "$1".into()
}

/// A label name that may hold `$1`/`${name}` references (Prometheus'
/// `relabelTarget`): what `replace`'s `target_label` and `labelmap`'s
/// `replacement` may be.
fn relabel_target(s: &str) -> bool {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        // `\w` spelled out: Go's is ASCII, Rust's Unicode.
        Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[a-zA-Z0-9_]+\}|[a-zA-Z0-9_]+))+[a-zA-Z0-9_]*)+$")
            .expect("valid regex")
    })
    .is_match(s)
}

/// Why a relabel rule is invalid; the texts are Prometheus'.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RelabelError {
    #[error("invalid regex {regex:?}: {error}")]
    Regex { regex: String, error: regex::Error },
    #[error("relabel configuration for {action} action requires 'target_label' value")]
    TargetLabelMissing { action: Action },
    #[error("relabel configuration for hashmod requires non-zero modulus")]
    ZeroModulus,
    #[error("{label:?} is invalid 'target_label' for {action} action")]
    InvalidTargetLabel { label: String, action: Action },
    #[error("{replacement:?} is invalid 'replacement' for {action} action")]
    InvalidReplacement { replacement: String, action: Action },
    #[error("{action} action requires only 'regex', and no other fields")]
    OnlyRegex { action: Action },
    #[error("{action} action requires only 'source_labels' and 'target_label'")]
    OnlySourceAndTarget { action: Action },
    #[error("'replacement' can not be set for {action} action")]
    ReplacementSet { action: Action },
}

/// A validated rule with its regex compiled.
#[derive(Debug, Clone)]
pub struct Relabeler {
    cfg: RelabelConfig,
    regex: Regex,
}

impl Relabeler {
    /// Validates like Prometheus does (same conditions, similar messages).
    pub fn new(cfg: RelabelConfig) -> Result<Relabeler, RelabelError> {
        // Prometheus anchors at both ends and lets `.` match newlines.
        let regex =
            Regex::new(&format!("^(?s:{})$", cfg.regex)).map_err(|error| RelabelError::Regex {
                regex: cfg.regex.clone(),
                error,
            })?;
        let action = cfg.action;
        use Action::*;
        if matches!(
            action,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        ) && cfg.target_label.is_empty()
        {
            return Err(RelabelError::TargetLabelMissing { action });
        }
        if action == HashMod && cfg.modulus == 0 {
            return Err(RelabelError::ZeroModulus);
        }
        // Label names the rule writes, as Prometheus checks them: `replace`
        // may build the name from `$1`/`${name}` references; the others
        // write the name as it is.
        let bad_target = match action {
            Replace => !relabel_target(&cfg.target_label),
            HashMod | Lowercase | Uppercase | KeepEqual | DropEqual => {
                !super::is_legacy_label_name(&cfg.target_label)
            }
            _ => false,
        };
        if bad_target {
            return Err(RelabelError::InvalidTargetLabel {
                label: cfg.target_label.clone(),
                action,
            });
        }
        if matches!(action, Lowercase | Uppercase | KeepEqual | DropEqual)
            && cfg.replacement != default_replacement()
        {
            return Err(RelabelError::ReplacementSet { action });
        }
        if action == LabelMap && !relabel_target(&cfg.replacement) {
            return Err(RelabelError::InvalidReplacement {
                replacement: cfg.replacement.clone(),
                action,
            });
        }
        if matches!(action, LabelDrop | LabelKeep)
            && (!cfg.source_labels.is_empty()
                || !cfg.target_label.is_empty()
                || cfg.modulus != 0
                || cfg.separator != default_separator()
                || cfg.replacement != default_replacement())
        {
            return Err(RelabelError::OnlyRegex { action });
        }
        if matches!(action, KeepEqual | DropEqual) && cfg.regex != default_regex() {
            return Err(RelabelError::OnlySourceAndTarget { action });
        }
        Ok(Relabeler { cfg, regex })
    }

    /// The rule as written in the config.
    pub fn config(&self) -> &RelabelConfig {
        &self.cfg
    }

    /// Applies the rule; false means the whole label set is dropped.
    fn apply(&self, lb: &mut LabelsBuilder) -> bool {
        let c = &self.cfg;
        let val = c
            .source_labels
            .iter()
            .map(|n| lb.get(n).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&c.separator);
        match c.action {
            Action::Drop => {
                if self.regex.is_match(&val) {
                    return false;
                }
            }
            Action::Keep => {
                if !self.regex.is_match(&val) {
                    return false;
                }
            }
            Action::DropEqual => {
                if lb.get(&c.target_label).unwrap_or("") == val {
                    return false;
                }
            }
            Action::KeepEqual => {
                if lb.get(&c.target_label).unwrap_or("") != val {
                    return false;
                }
            }
            Action::Replace => {
                let Some(caps) = self.regex.captures(&val) else {
                    return true;
                };
                let mut target = String::new();
                caps.expand(&c.target_label, &mut target);
                // A name built from the data may not be one: skipped, as
                // Prometheus does.
                if !super::is_legacy_label_name(&target) {
                    return true;
                }
                let mut res = String::new();
                caps.expand(&c.replacement, &mut res);
                if res.is_empty() {
                    lb.del(&target);
                } else {
                    lb.set(target, res);
                }
            }
            Action::Lowercase => {
                lb.set(c.target_label.clone(), val.to_lowercase());
            }
            Action::Uppercase => {
                lb.set(c.target_label.clone(), val.to_uppercase());
            }
            Action::HashMod => {
                let digest = Md5::digest(val.as_bytes());
                // Prometheus folds the digest into a uint64 with shifts that
                // overflow to zero for the first 8 bytes: the last 8 bytes, big-endian.
                let mut last8 = [0u8; 8];
                last8.copy_from_slice(&digest[8..16]);
                let m = u64::from_be_bytes(last8) % c.modulus;
                lb.set(c.target_label.clone(), m.to_string());
            }
            Action::LabelMap => {
                let renamed: Vec<(String, String)> = lb
                    .iter()
                    .filter(|l| self.regex.is_match(&l.name))
                    .map(|l| {
                        (
                            self.regex
                                .replace(&l.name, c.replacement.as_str())
                                .into_owned(),
                            l.value.clone(),
                        )
                    })
                    .collect();
                for (n, v) in renamed {
                    lb.set(n, v);
                }
            }
            Action::LabelDrop => {
                lb.retain(|l| !self.regex.is_match(&l.name));
            }
            Action::LabelKeep => {
                lb.retain(|l| self.regex.is_match(&l.name));
            }
        }
        true
    }
}

/// Applies rules in order; None when a rule dropped the label set.
pub fn process(labels: &Labels, rules: &[Relabeler]) -> Option<Labels> {
    if rules.is_empty() {
        return Some(labels.clone());
    }
    let mut lb = labels.to_builder();
    process_builder(&mut lb, rules).then(|| lb.build())
}

/// Like [`process`], on a builder the caller already has.
pub fn process_builder(lb: &mut LabelsBuilder, rules: &[Relabeler]) -> bool {
    run(lb, rules, |_, _, _| {})
}

/// The one loop over the rules, for [`process_builder`] and [`trace`]
/// alike: `seen(index, rule, kept)` is called after each rule applied, with
/// the builder as that rule left it. Stops at the first rule that drops.
fn run(
    lb: &mut LabelsBuilder,
    rules: &[Relabeler],
    mut seen: impl FnMut(usize, &LabelsBuilder, bool),
) -> bool {
    for (i, r) in rules.iter().enumerate() {
        let keep = r.apply(lb);
        seen(i, lb, keep);
        if !keep {
            return false;
        }
    }
    true
}

/// One rule's effect on a label set, as a [`trace`] records it. Its JSON
/// is Prometheus' `RelabelStep` (`/api/v1/targets/relabel_steps`):
/// `{"rule": {...}, "output": {...}, "keep": bool}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// The rule's position in `relabel_configs` (from 0).
    #[serde(skip)]
    pub index: usize,
    #[serde(serialize_with = "prometheus_rule")]
    pub rule: RelabelConfig,
    /// The labels the rule left; empty when the set was dropped at or
    /// before this rule (as Prometheus' relabel_steps reports it).
    #[serde(serialize_with = "label_map")]
    pub output: Labels,
    /// False from the rule that dropped the set on (the rules after it
    /// were not applied).
    pub keep: bool,
}

/// What the rules did to one label set, rule by rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub input: Labels,
    /// One per rule, applied or not.
    pub steps: Vec<Step>,
    /// The index of the rule that dropped the set.
    pub dropped_by: Option<usize>,
}

impl Trace {
    /// The labels after the last rule; None when dropped.
    pub fn output(&self) -> Option<&Labels> {
        match (self.dropped_by, self.steps.last()) {
            (Some(_), _) => None,
            (None, Some(s)) => Some(&s.output),
            (None, None) => Some(&self.input),
        }
    }
}

/// A rule as Prometheus' `relabel.Config` marshals to JSON: empty
/// `source_labels`, `modulus` and `target_label` left out.
fn prometheus_rule<S: serde::Serializer>(c: &RelabelConfig, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(None)?;
    if !c.source_labels.is_empty() {
        m.serialize_entry("source_labels", &c.source_labels)?;
    }
    m.serialize_entry("separator", &c.separator)?;
    m.serialize_entry("regex", &c.regex)?;
    if c.modulus != 0 {
        m.serialize_entry("modulus", &c.modulus)?;
    }
    if !c.target_label.is_empty() {
        m.serialize_entry("target_label", &c.target_label)?;
    }
    m.serialize_entry("replacement", &c.replacement)?;
    m.serialize_entry("action", &c.action)?;
    m.end()
}

/// Labels as a JSON object, as Prometheus marshals `labels.Labels`.
pub fn label_map<S: serde::Serializer>(l: &Labels, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(l.iter().map(|l| (&l.name, &l.value)))
}

/// Applies the rules to `lb` as [`process_builder`] does (the same loop)
/// and records each rule's step; the builder ends as `process_builder`
/// would leave it.
pub fn trace(lb: &mut LabelsBuilder, rules: &[Relabeler]) -> Trace {
    let input = lb.build();
    let mut steps = Vec::with_capacity(rules.len());
    let mut dropped_by = None;
    run(lb, rules, |index, lb, keep| {
        if !keep {
            dropped_by = Some(index);
        }
        steps.push(Step {
            index,
            rule: rules[index].cfg.clone(),
            output: if keep { lb.build() } else { Labels::new() },
            keep,
        });
    });
    let applied = steps.len();
    steps.extend(rules[applied..].iter().enumerate().map(|(i, r)| Step {
        index: applied + i,
        rule: r.cfg.clone(),
        output: Labels::new(),
        keep: false,
    }));
    Trace {
        input,
        steps,
        dropped_by,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> Relabeler {
        Relabeler::new(toml::from_str(toml_text).unwrap()).unwrap()
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    /// Prometheus refuses a `replacement` on the actions that ignore it.
    #[test]
    fn replacement_is_refused_where_it_is_ignored() {
        for action in ["lowercase", "uppercase", "keepequal", "dropequal"] {
            let text = format!(
                "action = \"{action}\"\nsource_labels = [\"a\"]\ntarget_label = \"b\"\nreplacement = \"x\""
            );
            let e = Relabeler::new(toml::from_str(&text).unwrap()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("'replacement' can not be set for {action} action")
            );
            rule(&text.replace("\nreplacement = \"x\"", ""));
        }
    }

    // Cases follow Prometheus' model/relabel/relabel_test.go.
    #[test]
    fn replace() {
        let r = rule("source_labels = [\"a\"]\nregex = \"f(.*)\"\ntarget_label = \"d\"\nseparator = \";\"\nreplacement = \"ch${1}-ch${1}\"");
        assert_eq!(
            process(
                &l(&[("a", "foo"), ("b", "bar"), ("c", "baz")]),
                std::slice::from_ref(&r)
            ),
            Some(l(&[
                ("a", "foo"),
                ("b", "bar"),
                ("c", "baz"),
                ("d", "choo-choo")
            ]))
        );
        // No match: unchanged.
        assert_eq!(process(&l(&[("a", "boo")]), &[r]), Some(l(&[("a", "boo")])));
        // Anchored: "o" alone does not match "foo".
        let r = rule(
            "source_labels = [\"a\"]\nregex = \"o\"\ntarget_label = \"x\"\nreplacement = \"y\"",
        );
        assert_eq!(process(&l(&[("a", "foo")]), &[r]), Some(l(&[("a", "foo")])));
        // Several sources joined by the separator; empty result deletes the target.
        let r = rule("source_labels = [\"a\", \"b\"]\nregex = \"(.*);(.*)\"\ntarget_label = \"c\"\nreplacement = \"$2$1\"");
        assert_eq!(
            process(&l(&[("a", "x"), ("b", "y")]), std::slice::from_ref(&r)),
            Some(l(&[("a", "x"), ("b", "y"), ("c", "yx")]))
        );
        assert_eq!(process(&l(&[("c", "old")]), &[r]), Some(l(&[])));
        // Target label from a capture group.
        let r = rule("source_labels = [\"a\"]\nregex = \"some-([^-]+)-([^,]+)\"\ntarget_label = \"${1}\"\nreplacement = \"${2}\"");
        assert_eq!(
            process(&l(&[("a", "some-name-value")]), &[r]),
            Some(l(&[("a", "some-name-value"), ("name", "value")]))
        );
    }

    #[test]
    fn keep_drop() {
        let keep = rule("source_labels = [\"a\"]\nregex = \"f.*\"\naction = \"keep\"");
        assert!(process(&l(&[("a", "foo")]), std::slice::from_ref(&keep)).is_some());
        assert!(process(&l(&[("a", "boo")]), std::slice::from_ref(&keep)).is_none());
        // A missing label is the empty string.
        assert!(process(&l(&[]), &[keep]).is_none());
        let drop = rule("source_labels = [\"a\"]\nregex = \"f.*\"\naction = \"drop\"");
        assert!(process(&l(&[("a", "foo")]), &[drop]).is_none());
        let ke = rule("source_labels = [\"a\"]\ntarget_label = \"b\"\naction = \"keepequal\"");
        assert!(process(&l(&[("a", "x"), ("b", "x")]), std::slice::from_ref(&ke)).is_some());
        assert!(process(&l(&[("a", "x"), ("b", "y")]), &[ke]).is_none());
        let de = rule("source_labels = [\"a\"]\ntarget_label = \"b\"\naction = \"dropequal\"");
        assert!(process(&l(&[("a", "x"), ("b", "x")]), &[de]).is_none());
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // The case from Prometheus' relabel_test.go: "baz" % 1000 -> "976".
        let r = rule(
            "source_labels = [\"c\"]\ntarget_label = \"d\"\nmodulus = 1000\naction = \"hashmod\"",
        );
        let out = process(&l(&[("a", "foo"), ("b", "bar"), ("c", "baz")]), &[r]).unwrap();
        assert_eq!(out.get("d"), Some("976"));
    }

    #[test]
    fn labelmap_drop_keep_case() {
        let r = rule("regex = \"__meta_(.*)\"\naction = \"labelmap\"\nreplacement = \"${1}\"");
        assert_eq!(
            process(&l(&[("__meta_pod", "p"), ("a", "1")]), &[r]),
            Some(l(&[("__meta_pod", "p"), ("a", "1"), ("pod", "p")]))
        );
        let r = rule("regex = \"__meta.*\"\naction = \"labeldrop\"");
        assert_eq!(
            process(&l(&[("__meta_pod", "p"), ("a", "1")]), &[r]),
            Some(l(&[("a", "1")]))
        );
        let r = rule("regex = \"a|b\"\naction = \"labelkeep\"");
        assert_eq!(
            process(&l(&[("a", "1"), ("b", "2"), ("c", "3")]), &[r]),
            Some(l(&[("a", "1"), ("b", "2")]))
        );
        let r = rule("source_labels = [\"a\"]\ntarget_label = \"b\"\naction = \"uppercase\"");
        assert_eq!(
            process(&l(&[("a", "Foo")]), &[r]).unwrap().get("b"),
            Some("FOO")
        );
    }

    #[test]
    fn invalid_rules_rejected() {
        let bad = |t: &str| {
            Relabeler::new(toml::from_str(t).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(bad("action = \"replace\"\nsource_labels=[\"a\"]").contains("target_label"));
        assert!(bad("action = \"hashmod\"\ntarget_label=\"a\"").contains("modulus"));
        assert!(bad("action = \"labeldrop\"\nsource_labels=[\"a\"]").contains("only 'regex'"));
        assert!(bad("regex = \"(\"\ntarget_label=\"a\"").contains("invalid regex"));
        // Typed, for callers that branch on what is wrong.
        let e = Relabeler::new(toml::from_str("action = \"hashmod\"\ntarget_label=\"a\"").unwrap());
        assert_eq!(e.unwrap_err(), RelabelError::ZeroModulus);
    }

    /// The label names a rule writes are checked as Prometheus 2.x checks
    /// them (promtool 2.42's words).
    #[test]
    fn invalid_target_labels_rejected() {
        let new = |t: &str| Relabeler::new(toml::from_str(t).unwrap());
        for (t, msg) in [
            (
                "source_labels = [\"a\"]\ntarget_label = \"0bad-name\"",
                "\"0bad-name\" is invalid 'target_label' for replace action",
            ),
            (
                "source_labels = [\"a\"]\ntarget_label = \"a-b\"",
                "for replace action",
            ),
            (
                "action = \"hashmod\"\nmodulus = 2\ntarget_label = \"${1}x\"",
                "\"${1}x\" is invalid 'target_label' for hashmod action",
            ),
            (
                "action = \"lowercase\"\ntarget_label = \"0x\"",
                "for lowercase action",
            ),
            (
                "action = \"keepequal\"\ntarget_label = \"0x\"",
                "for keepequal action",
            ),
            (
                "action = \"labelmap\"\nreplacement = \"0$1\"",
                "\"0$1\" is invalid 'replacement' for labelmap action",
            ),
        ] {
            let err = new(t).unwrap_err().to_string();
            assert!(err.contains(msg), "{t}: {err}");
        }
        for ok in [
            "source_labels = [\"a\"]\ntarget_label = \"${1}\"",
            "source_labels = [\"a\"]\ntarget_label = \"x_$1\"",
            "source_labels = [\"a\"]\ntarget_label = \"__param_target\"",
            "action = \"labelmap\"\nregex = \"__meta_(.+)\"",
        ] {
            new(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    /// Each step shows what its rule left; the dropping rule and those
    /// after it show keep=false and no labels, as Prometheus' relabel_steps.
    #[test]
    fn trace_records_each_step() {
        let rules = [
            rule("source_labels = [\"a\"]\ntarget_label = \"b\"\nreplacement = \"x$1\""),
            rule("source_labels = [\"b\"]\nregex = \"xdrop\"\naction = \"drop\""),
            rule("target_label = \"c\"\nreplacement = \"never\""),
        ];
        let mut lb = l(&[("a", "1")]).to_builder();
        let t = trace(&mut lb, &rules);
        assert_eq!(t.input, l(&[("a", "1")]));
        assert_eq!(t.dropped_by, None);
        assert_eq!(t.steps[0].output, l(&[("a", "1"), ("b", "x1")]));
        assert_eq!(
            t.steps[2].output,
            l(&[("a", "1"), ("b", "x1"), ("c", "never")])
        );
        assert_eq!(t.output(), Some(&lb.build()));
        assert_eq!(Some(lb.build()), process(&l(&[("a", "1")]), &rules));

        let t = trace(&mut l(&[("a", "drop")]).to_builder(), &rules);
        assert_eq!(t.dropped_by, Some(1));
        assert_eq!(t.output(), None);
        let keeps: Vec<bool> = t.steps.iter().map(|s| s.keep).collect();
        assert_eq!(keeps, [true, false, false]);
        assert!(t.steps[1].output.is_empty() && t.steps[2].output.is_empty());
        assert_eq!(t.steps[2].index, 2);
        // Prometheus' JSON: empty fields of the rule left out.
        assert_eq!(
            serde_json::to_value(&t.steps[1]).unwrap(),
            serde_json::json!({"rule": {"source_labels": ["b"], "separator": ";", "regex": "xdrop",
                "replacement": "$1", "action": "drop"}, "output": {}, "keep": false})
        );
    }

    #[test]
    fn replace_skips_a_target_name_built_invalid() {
        let r = rule("source_labels = [\"a\"]\nregex = \"(.*)\"\ntarget_label = \"${1}\"\nreplacement = \"v\"");
        let r = std::slice::from_ref(&r);
        assert_eq!(process(&l(&[("a", "0bad")]), r), Some(l(&[("a", "0bad")])));
        assert_eq!(
            process(&l(&[("a", "good")]), r),
            Some(l(&[("a", "good"), ("good", "v")]))
        );
    }
}
