//! `wasmon check metrics`: a text-format page read strictly (expfmt, see
//! `expfmt.rs`) and linted as `promtool check metrics` does with
//! client_golang's `testutil/promlint`, whose rules and texts these are
//! (current client_golang: each family is checked for its own type in its
//! name; Debian's promtool 2.42 vendors 1.14, which also flags the other
//! types' names and has no duplicate check).
//!
//! Problems are per metric family, as expfmt groups a page: `x_sum`,
//! `x_count` (and `x_bucket`) samples belong to an earlier summary
//! (histogram) `x`, whose series are keyed without `quantile` (`le`);
//! families with no sample are not linted.

use std::collections::HashMap;

use super::{parse_strict, MetricType, ParseError};
use crate::model::Labels;

/// One lint finding: `promtool` prints it as `metric text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub metric: String,
    pub text: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.metric, self.text)
    }
}

/// A metric family as expfmt builds it.
struct Family {
    name: String,
    kind: MetricType,
    has_help: bool,
    /// Label sets of its metrics, `le`/`quantile` left out for histograms
    /// and summaries (whose samples with the same rest are one metric).
    metrics: Vec<Labels>,
    /// How many times each label set came (more than once: not unique).
    seen: HashMap<Labels, usize>,
}

/// Lints a page; `Err` when expfmt would not read it.
pub fn lint(body: &[u8]) -> Result<Vec<Problem>, ParseError> {
    let parsed = parse_strict(body)?;
    let mut families: Vec<Family> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for m in &parsed.metadata {
        by_name.insert(m.family.clone(), families.len());
        families.push(Family {
            name: m.family.clone(),
            kind: m.kind,
            has_help: !m.help.is_empty(),
            metrics: Vec::new(),
            seen: HashMap::new(),
        });
    }
    for s in &parsed.samples {
        let name = s.labels.name().unwrap_or_default();
        let f = match family_of(name, &families, &by_name) {
            Some(f) => f,
            None => {
                by_name.insert(name.to_string(), families.len());
                families.push(Family {
                    name: name.to_string(),
                    kind: MetricType::Unknown,
                    has_help: false,
                    metrics: Vec::new(),
                    seen: HashMap::new(),
                });
                families.len() - 1
            }
        };
        let fam = &mut families[f];
        let mut b = s.labels.to_builder();
        b.del(crate::model::METRIC_NAME);
        let merged = match fam.kind {
            MetricType::Histogram => Some("le"),
            MetricType::Summary => Some("quantile"),
            _ => None,
        };
        if let Some(special) = merged {
            b.del(special);
        }
        let key = b.build();
        let n = fam.seen.entry(key.clone()).or_default();
        *n += 1;
        if merged.is_none() || *n == 1 {
            fam.metrics.push(key);
        }
    }
    let mut problems: Vec<Problem> = families
        .iter()
        .filter(|f| !f.metrics.is_empty())
        .flat_map(|f| {
            lint_family(f).into_iter().map(|text| Problem {
                metric: f.name.clone(),
                text,
            })
        })
        .collect();
    problems.sort_by(|a, b| (&a.metric, &a.text).cmp(&(&b.metric, &b.text)));
    Ok(problems)
}

/// The family a sample belongs to, as expfmt resolves it.
fn family_of(name: &str, families: &[Family], by_name: &HashMap<String, usize>) -> Option<usize> {
    if let Some(&f) = by_name.get(name) {
        return Some(f);
    }
    let base = |suffix: &str, kinds: &[MetricType]| {
        let &f = by_name.get(name.strip_suffix(suffix)?)?;
        kinds.contains(&families[f].kind).then_some(f)
    };
    let both = [MetricType::Summary, MetricType::Histogram];
    base("_sum", &both)
        .or_else(|| base("_count", &both))
        .or_else(|| base("_bucket", &[MetricType::Histogram]))
}

/// client_golang's `defaultValidations`, in its order.
fn lint_family(f: &Family) -> Vec<String> {
    let mut out = Vec::new();
    let n = f.name.as_str();
    let untyped = f.kind == MetricType::Unknown;
    // LintHelp
    if !f.has_help {
        out.push("no help text".to_string());
    }
    // LintMetricUnits
    if let Some((unit, base)) = metric_unit(n) {
        if unit != base {
            out.push(format!("use base unit {base:?} instead of {unit:?}"));
        }
    }
    // LintCounter
    let counter = f.kind == MetricType::Counter;
    let total = n.ends_with("_total");
    if counter && !total {
        out.push(r#"counter metrics should have "_total" suffix"#.to_string());
    } else if !untyped && !counter && total {
        out.push(r#"non-counter metrics should not have "_total" suffix"#.to_string());
    }
    // LintHistogramSummaryReserved
    if !untyped {
        let histogram = f.kind == MetricType::Histogram;
        let summary = f.kind == MetricType::Summary;
        if !histogram && n.ends_with("_bucket") {
            out.push(r#"non-histogram metrics should not have "_bucket" suffix"#.to_string());
        }
        for suffix in ["_count", "_sum"] {
            if !histogram && !summary && n.ends_with(suffix) {
                out.push(format!(
                    "non-histogram and non-summary metrics should not have {suffix:?} suffix"
                ));
            }
        }
        for m in &f.metrics {
            for l in m.iter() {
                if !histogram && l.name == "le" {
                    out.push(r#"non-histogram metrics should not have "le" label"#.to_string());
                }
                if !summary && l.name == "quantile" {
                    out.push(r#"non-summary metrics should not have "quantile" label"#.to_string());
                }
            }
        }
    }
    // LintMetricTypeInName
    if !untyped {
        let lower = n.to_lowercase();
        let typename = f.kind.as_str();
        if lower.contains(&format!("_{typename}_")) || lower.ends_with(&format!("_{typename}")) {
            out.push(format!("metric name should not include type '{typename}'"));
        }
    }
    // LintReservedChars
    if n.contains(':') {
        out.push("metric names should not contain ':'".to_string());
    }
    // LintCamelCase
    if camel_case(n) {
        out.push("metric names should be written in 'snake_case' not 'camelCase'".to_string());
    }
    for m in &f.metrics {
        let n = m.iter().filter(|l| camel_case(&l.name)).count();
        for _ in 0..n {
            out.push("label names should be written in 'snake_case' not 'camelCase'".to_string());
        }
    }
    // LintUnitAbbreviations
    let lower = n.to_lowercase();
    for s in UNIT_ABBREVIATIONS {
        if lower.contains(&format!("_{s}_")) || lower.ends_with(&format!("_{s}")) {
            out.push("metric names should not contain abbreviated units".to_string());
        }
    }
    // LintDuplicateMetric: each metric with an equal one after it.
    let histogram_or_summary = matches!(f.kind, MetricType::Histogram | MetricType::Summary);
    if !histogram_or_summary {
        for &n in f.seen.values() {
            for _ in 1..n {
                out.push("metric not unique".to_string());
            }
        }
    }
    out
}

/// `[a-z][A-Z]` anywhere.
fn camel_case(s: &str) -> bool {
    s.as_bytes()
        .windows(2)
        .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase())
}

/// The first `_`-separated part of the name that is a unit, with or without
/// an SI/binary prefix, and its base unit.
fn metric_unit(name: &str) -> Option<(&str, &'static str)> {
    name.split('_').find_map(|s| {
        if let Some(&(_, base)) = UNITS.iter().find(|(u, _)| *u == s) {
            return Some((s, base));
        }
        UNIT_PREFIXES.iter().find_map(|p| {
            let rest = s.strip_prefix(p)?;
            UNITS
                .iter()
                .find(|(u, _)| *u == rest)
                .map(|&(_, base)| (s, base))
        })
    })
}

/// A unit and its base unit (client_golang's `units`).
const UNITS: &[(&str, &str)] = &[
    ("amperes", "amperes"),
    ("bytes", "bytes"),
    ("celsius", "celsius"),
    ("grams", "grams"),
    ("joules", "joules"),
    ("kelvin", "kelvin"),
    ("meters", "meters"),
    ("metres", "metres"),
    ("seconds", "seconds"),
    ("volts", "volts"),
    ("minutes", "seconds"),
    ("hours", "seconds"),
    ("days", "seconds"),
    ("weeks", "seconds"),
    ("kelvins", "kelvin"),
    ("fahrenheit", "celsius"),
    ("rankine", "celsius"),
    ("inches", "meters"),
    ("yards", "meters"),
    ("miles", "meters"),
    ("bits", "bytes"),
    ("calories", "joules"),
    ("pounds", "grams"),
    ("ounces", "grams"),
];

const UNIT_PREFIXES: &[&str] = &[
    "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi", "mega",
    "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi",
];

const UNIT_ABBREVIATIONS: &[&str] = &[
    "s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d",
];
