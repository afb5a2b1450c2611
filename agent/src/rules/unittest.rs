//! promtool's rule unit tests (`promtool test rules`), for
//! `wasmon test rules FILE...`.
//!
//! Per test group: the input series (expanding notation `1+1x10`, `_`,
//! `stale`) are loaded lazily — only samples up to the evaluation time are
//! visible, as promtool's lazy loader does; every group is evaluated at
//! every `evaluation_interval` from 0 to the last `eval_time`; firing
//! alerts are collected at alert test times; PromQL tests run at the end.
//! Output and outcome follow promtool: `Unit Testing:  FILE`, then
//! `  SUCCESS` or `  FAILED:` with the differences.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::group::{query_vector, EvalCtx, Group, RuleOpts};
use super::rulefmt::{self, ParseOpts};
use crate::alerting::sink::NoopSink;
use crate::model::duration;
use crate::model::Labels;
use crate::promql::promqltest::{parse_metric, parse_points, Point};
use crate::promql::{Engine, EngineOpts, SharedEngine};
use crate::storage::MemStorage;

type YVal = serde_norway::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitTestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<YVal>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    interval: Option<YVal>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTestCase>,
    #[serde(default)]
    promql_expr_test: Vec<PromqlTestCase>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    #[serde(default)]
    values: Option<YVal>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTestCase {
    #[serde(default)]
    eval_time: Option<YVal>,
    #[serde(default)]
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromqlTestCase {
    expr: String,
    #[serde(default)]
    eval_time: Option<YVal>,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    #[serde(default)]
    value: Option<YVal>,
}

/// Options of the runner (promtool's flags).
#[derive(Debug, Clone, Default)]
pub struct TestOpts {
    /// `--ignore-unknown-fields` for the rule files.
    pub ignore_unknown_fields: bool,
    /// `--run REGEX`: only test groups whose name matches.
    pub run: Option<regex::Regex>,
}

fn yval_str(v: &YVal) -> String {
    match v {
        YVal::String(s) => s.clone(),
        YVal::Number(n) => n.to_string(),
        YVal::Bool(b) => b.to_string(),
        YVal::Null => String::new(),
        other => format!("{other:?}"),
    }
}

fn duration_ms(v: &Option<YVal>) -> Result<Option<i64>, String> {
    match v {
        None | Some(YVal::Null) => Ok(None),
        Some(v) => duration::parse(&yval_str(v))
            .map(|d| Some(d.as_millis() as i64))
            .map_err(|e| e.to_string()),
    }
}

fn parse_value(v: &Option<YVal>) -> Result<f64, String> {
    let s = v.as_ref().map(yval_str).unwrap_or_else(|| "0".into());
    match s.to_ascii_lowercase().as_str() {
        "nan" | ".nan" => Ok(f64::NAN),
        "inf" | "+inf" | ".inf" | "+.inf" => Ok(f64::INFINITY),
        "-inf" | "-.inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().map_err(|_| format!("invalid value {s:?}")),
    }
}

/// Go's `labels.Labels.String()`: `{a="b", c="d"}` with the name as a label.
fn go_labels(l: &Labels) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Go's `strconv.FormatFloat(v, 'E', -1, 64)`.
fn go_float_e(v: f64) -> String {
    wasmon_gofmt::format_float(v, 'E', -1)
}

/// Go's `time.Duration.String()` of ms.
fn go_duration(ms: i64) -> String {
    wasmon_gofmt::format_duration(ms.saturating_mul(1_000_000))
}

fn indent_lines(s: &str, indent: &str) -> String {
    s.split('\n')
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

type LabelsAndAnnotations = Vec<(Labels, Labels)>;

fn la_string(la: &LabelsAndAnnotations) -> String {
    if la.is_empty() {
        return "[]".into();
    }
    let one = |(l, a): &(Labels, Labels)| {
        format!("\nLabels:{}\nAnnotations:{}", go_labels(l), go_labels(a))
    };
    let mut s = format!("[\n0:{}", indent_lines(&one(&la[0]), "  "));
    for (i, x) in la[1..].iter().enumerate() {
        s.push_str(&format!(",\n{}:{}", i + 1, indent_lines(&one(x), "  ")));
    }
    s.push_str("\n]");
    s
}

/// Runs the unit-test files, writing promtool-style output; `Ok(true)`
/// when every file passed.
pub fn run_test_files(files: &[PathBuf], out: &mut dyn Write) -> anyhow::Result<bool> {
    run_test_files_with(files, &TestOpts::default(), out)
}

/// [`run_test_files`] with promtool's options.
pub fn run_test_files_with(
    files: &[PathBuf],
    opts: &TestOpts,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let mut all_ok = true;
    for f in files {
        writeln!(out, "Unit Testing:  {}", f.display())?;
        let errs = run_file(f, opts);
        if errs.is_empty() {
            writeln!(out, "  SUCCESS")?;
        } else {
            all_ok = false;
            writeln!(out, "  FAILED:")?;
            for e in errs {
                writeln!(out, "{e}")?;
                writeln!(out)?;
            }
        }
        writeln!(out)?;
    }
    Ok(all_ok)
}

/// Runs one file; the errors (empty = passed).
pub fn run_file(path: &Path, opts: &TestOpts) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return vec![e.to_string()],
    };
    let tf: UnitTestFile = match serde_norway::from_str(&text) {
        Ok(t) => t,
        Err(e) => return vec![e.to_string()],
    };
    let eval_interval = match duration_ms(&tf.evaluation_interval) {
        Ok(v) => v.filter(|v| *v > 0).unwrap_or(60_000),
        Err(e) => return vec![format!("evaluation_interval: {e}")],
    };
    let mut order = HashMap::new();
    for (i, g) in tf.group_eval_order.iter().enumerate() {
        if order.insert(g.clone(), i).is_some() {
            return vec![format!("group name repeated in evaluation order: {g}")];
        }
    }
    let base = path.parent().unwrap_or(Path::new("."));
    use super::manager::{resolve_rule_files, RuleFilesError};
    let rule_files = match resolve_rule_files(&tf.rule_files, base) {
        Ok(f) => f.files,
        // promtool's words for a missing file.
        Err(RuleFilesError::Missing { path, .. }) => {
            return vec![format!(
                "open {}: no such file or directory",
                path.display()
            )]
        }
        Err(e) => return vec![e.to_string()],
    };
    let mut errs = Vec::new();
    for tg in &tf.tests {
        if let Some(re) = &opts.run {
            if !re.is_match(&tg.name) {
                continue;
            }
        }
        errs.extend(run_group(tg, &rule_files, eval_interval, &order, opts));
    }
    errs
}

fn run_group(
    tg: &TestGroup,
    rule_files: &[PathBuf],
    eval_interval: i64,
    order: &HashMap<String, usize>,
    opts: &TestOpts,
) -> Vec<String> {
    let interval = match duration_ms(&tg.interval) {
        Ok(v) => v.filter(|v| *v > 0).unwrap_or(eval_interval),
        Err(e) => return vec![format!("interval: {e}")],
    };
    // Input series.
    let mut inputs: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
    for s in &tg.input_series {
        let labels = match parse_metric(&s.series) {
            Ok(l) => l,
            Err(e) => return vec![format!("    series: {:?}, err: {e}", s.series)],
        };
        let vals = s.values.as_ref().map(yval_str).unwrap_or_default();
        let points = match parse_points(&vals) {
            Ok(p) => p,
            Err(e) => {
                return vec![format!(
                    "    series: {:?}, values: {vals:?}, err: {e}",
                    s.series
                )]
            }
        };
        let mut samples = Vec::new();
        for (i, p) in points.iter().enumerate() {
            match p {
                Point::Value(v) => samples.push((i as i64 * interval, *v)),
                Point::Missing => {}
                Point::Histogram => {
                    return vec![format!(
                        "    series: {:?}: native histograms are not supported",
                        s.series
                    )]
                }
            }
        }
        inputs.push((labels, samples));
    }
    let store = Arc::new(MemStorage::new());
    let mut ropts = RuleOpts::new(store.clone(), store.clone(), Arc::new(NoopSink));
    ropts.engine = SharedEngine::new(Engine::new(EngineOpts {
        default_subquery_step_ms: eval_interval,
        ..EngineOpts::default()
    }));
    ropts.external_labels = Labels::from_pairs(tg.external_labels.iter());
    ropts.external_url = tg.external_url.clone();
    let ropts = Arc::new(ropts);
    // Rule groups.
    let popts = ParseOpts {
        ignore_unknown_fields: opts.ignore_unknown_fields,
        ..Default::default()
    };
    let mut groups = Vec::new();
    for f in rule_files {
        match rulefmt::parse_file(f, &popts) {
            Ok(rg) => {
                for g in &rg.groups {
                    match Group::new(
                        &f.display().to_string(),
                        g,
                        eval_interval,
                        ropts.clone(),
                        true,
                    ) {
                        Ok(g) => groups.push(g),
                        Err(e) => return vec![format!("{}: {e}", f.display())],
                    }
                }
            }
            Err(e) => return vec![e.to_string()],
        }
    }
    for name in order.keys() {
        if !groups.iter().any(|g| &g.name == name) {
            return vec![format!("group {name:?} in group_eval_order not found")];
        }
    }
    groups.sort_by_key(|g| order.get(&g.name).copied().unwrap_or(0));

    // Evaluation times.
    let mut errs = Vec::new();
    let mut alert_tests: Vec<(i64, &AlertTestCase)> = Vec::new();
    for at in &tg.alert_rule_test {
        match duration_ms(&at.eval_time) {
            Ok(t) => alert_tests.push((t.unwrap_or(0), at)),
            Err(e) => return vec![format!("    alertname: {}, eval_time: {e}", at.alertname)],
        }
    }
    alert_tests.sort_by_key(|(t, _)| *t);
    let mut promql_tests: Vec<(i64, &PromqlTestCase)> = Vec::new();
    for pt in &tg.promql_expr_test {
        match duration_ms(&pt.eval_time) {
            Ok(t) => promql_tests.push((t.unwrap_or(0), pt)),
            Err(e) => return vec![format!("    expr: {:?}, eval_time: {e}", pt.expr)],
        }
    }
    let maxt = alert_tests
        .iter()
        .map(|x| x.0)
        .chain(promql_tests.iter().map(|x| x.0))
        .max()
        .unwrap_or(0);
    let mut alert_times: Vec<i64> = alert_tests.iter().map(|x| x.0).collect();
    alert_times.dedup();
    let wanted: HashMap<i64, Vec<&str>> =
        alert_tests.iter().fold(HashMap::new(), |mut m, (t, a)| {
            m.entry(*t).or_default().push(a.alertname.as_str());
            m
        });
    let mut got: HashMap<i64, HashMap<String, LabelsAndAnnotations>> = HashMap::new();
    let mut cursor = vec![0usize; inputs.len()];
    let mut curr = 0;
    let mut ts = 0i64;
    while ts <= maxt {
        for (i, (l, samples)) in inputs.iter().enumerate() {
            while cursor[i] < samples.len() && samples[cursor[i]].0 <= ts {
                let (t, v) = samples[cursor[i]];
                store.append(l.clone(), t, v);
                cursor[i] += 1;
            }
        }
        let mut eval_errs = Vec::new();
        for g in &groups {
            g.eval(ts);
            for r in &g.rules {
                if let Some(e) = r.status().last_error {
                    eval_errs.push(format!(
                        "    rule: {}, time: {}, err: {e}",
                        r.name(),
                        go_duration(ts)
                    ));
                }
            }
        }
        if !eval_errs.is_empty() {
            errs.extend(eval_errs);
            return errs;
        }
        while curr < alert_times.len()
            && ts <= alert_times[curr]
            && alert_times[curr] < ts + eval_interval
        {
            let t = alert_times[curr];
            let mut present: HashMap<String, LabelsAndAnnotations> = HashMap::new();
            for g in &groups {
                for ar in g.alerting_rules() {
                    if !wanted[&t].contains(&ar.name.as_str()) {
                        continue;
                    }
                    let e = present.entry(ar.name.clone()).or_default();
                    for a in ar.active_alerts() {
                        if a.state == super::alerting::AlertState::Firing {
                            e.push((a.labels.clone(), Labels::from_pairs(a.annotations.iter())));
                        }
                    }
                }
            }
            got.insert(t, present);
            curr += 1;
        }
        ts += eval_interval;
    }
    let test_name = if tg.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", tg.name)
    };
    // Alerts.
    for (t, at) in &alert_tests {
        let mut got_alerts = got
            .get(t)
            .and_then(|m| m.get(&at.alertname))
            .cloned()
            .unwrap_or_default();
        let mut exp: LabelsAndAnnotations = at
            .exp_alerts
            .iter()
            .map(|a| {
                let mut l = a.exp_labels.clone();
                l.insert("alertname".into(), at.alertname.clone());
                (
                    Labels::from_pairs(l.iter()),
                    Labels::from_pairs(a.exp_annotations.iter()),
                )
            })
            .collect();
        got_alerts.sort();
        exp.sort();
        if got_alerts != exp {
            errs.push(format!(
                "{test_name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                at.alertname,
                duration::format(std::time::Duration::from_millis(*t as u64)),
                indent_lines(&la_string(&exp), "            "),
                indent_lines(&la_string(&got_alerts), "            ")
            ));
        }
    }
    // PromQL expressions.
    let engine = ropts.engine.get();
    let ctx = EvalCtx {
        engine: &engine,
        queryable: &*store,
        external_labels: &ropts.external_labels,
        external_url: &ropts.external_url,
    };
    'outer: for (t, pt) in &promql_tests {
        let tstr = duration::format(std::time::Duration::from_millis(*t as u64));
        let got = match crate::promql::parse_query(&pt.expr)
            .map_err(|e| e.to_string())
            .and_then(|e| query_vector(&ctx, &e, *t).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                errs.push(format!("    expr: {:?}, time: {tstr}, err: {e}", pt.expr));
                continue;
            }
        };
        let mut exp = Vec::new();
        for s in &pt.exp_samples {
            let l = if s.labels.trim().is_empty() {
                Ok(Labels::new())
            } else {
                parse_metric(&s.labels).map_err(|e| e.to_string())
            };
            let v = parse_value(&s.value);
            match (l, v) {
                (Ok(l), Ok(v)) => exp.push((l, v)),
                (Err(e), _) | (_, Err(e)) => {
                    errs.push(format!(
                        "    expr: {:?}, time: {tstr}, err: labels {:?}: {e}",
                        pt.expr, s.labels
                    ));
                    continue 'outer;
                }
            }
        }
        let mut got = got;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        let same = got.len() == exp.len()
            && got
                .iter()
                .zip(&exp)
                .all(|(g, e)| g.0 == e.0 && (g.1 == e.1 || (g.1.is_nan() && e.1.is_nan())));
        if !same {
            let fmt = |v: &[(Labels, f64)]| {
                if v.is_empty() {
                    "nil".to_string()
                } else {
                    v.iter()
                        .map(|(l, x)| format!("{} {}", go_labels(l), go_float_e(*x)))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            errs.push(format!(
                "{test_name}    expr: {:?}, time: {tstr},\n        exp: {}\n        got: {}",
                pt.expr,
                fmt(&exp),
                fmt(&got)
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(600_000), "10m0s");
        assert_eq!(go_duration(3_661_500), "1h1m1.5s");
        assert_eq!(go_float_e(1.0), "1E+00");
        assert_eq!(
            go_labels(&Labels::from_pairs([("__name__", "x"), ("a", "b")])),
            "{__name__=\"x\", a=\"b\"}"
        );
    }
}
