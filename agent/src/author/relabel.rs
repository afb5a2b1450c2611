//! `wasmon relabel test`: what a job's `relabel_configs` do to one
//! discovered label set, rule by rule, offline (the config file only). The
//! trace is [`Target::trace`], the agent's own relabeling, so what it
//! prints is what the running agent does with that set.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use crate::config::Config;
use crate::model::labels::Labels;
use crate::scrape::target::{Job, Target};
use crate::scrape::trace::TargetTrace;

/// Exit codes, as `--help` documents them.
pub const EXIT_KEPT: u8 = 0;
pub const EXIT_DROPPED: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

#[derive(Args)]
#[command(after_help = "Exit status: 0 when the set becomes a target, \
1 when it does not (dropped by a rule, or left without a usable __address__: \
the agent drops it too), 2 on an error (bad config, unknown job, bad label set).")]
pub struct TestArgs {
    /// The config file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The scrape job (`job_name`) whose rules to apply.
    #[arg(long)]
    pub job: String,
    /// The discovered label set: `{name="value", ...}` (PromQL selector
    /// syntax, `=` only) or a JSON object `{"name": "value"}`.
    pub labels: String,
    /// `text` (readable) or `json` (the API's relabel_steps answer).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Why the command line's label set is no label set.
#[derive(Debug, thiserror::Error)]
pub enum LabelSetError {
    #[error("label set as JSON: {0} (expected an object of strings, {{\"name\": \"value\"}})")]
    Json(#[from] serde_json::Error),
    #[error("label set: {0}")]
    Syntax(String),
    #[error(
        "label set: {name}{op}{value:?}: only name=\"value\" pairs (a label set, not a selector)"
    )]
    NotEqual {
        name: String,
        op: String,
        value: String,
    },
    #[error(
        "label set: a metric name before the braces ({0:?}): write __name__=\"{0}\" inside them"
    )]
    MetricName(String),
    #[error("label set: {0:?} is given twice")]
    Duplicate(String),
}

/// Parses a label set given as `{a="b", c="d"}` or as a JSON object.
pub fn parse_label_set(s: &str) -> Result<Labels, LabelSetError> {
    let t = s.trim();
    if t.trim_start_matches('{').trim_start().starts_with('"') {
        return Ok(crate::scrape::trace::labels_from_json(t)?);
    }
    let inner = t.strip_prefix('{').and_then(|t| t.strip_suffix('}'));
    if t.is_empty() || inner.is_some_and(|i| i.trim().is_empty()) {
        return Ok(Labels::new());
    }
    let expr = crate::promql::parse_query(t).map_err(|e| LabelSetError::Syntax(e.to_string()))?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(LabelSetError::Syntax(format!(
            "{t:?} is not {{name=\"value\", ...}}"
        )));
    };
    if let Some(name) = vs.name {
        return Err(LabelSetError::MetricName(name));
    }
    let mut seen = BTreeSet::new();
    let mut pairs = Vec::new();
    for m in vs.matchers.matchers {
        if !matches!(m.op, promql_parser::label::MatchOp::Equal) {
            return Err(LabelSetError::NotEqual {
                name: m.name,
                op: m.op.to_string(),
                value: m.value,
            });
        }
        if !seen.insert(m.name.clone()) {
            return Err(LabelSetError::Duplicate(m.name));
        }
        pairs.push((m.name, m.value));
    }
    Ok(Labels::from_pairs(pairs))
}

/// Runs `wasmon relabel test`; errors are exit 2 (see [`TestArgs`]).
pub fn test(args: TestArgs) -> Result<ExitCode> {
    let (job, trace) = match trace_from_config(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(EXIT_ERROR));
        }
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&trace)?),
        Output::Text => print!("{}", render(&job, &trace)),
    }
    Ok(ExitCode::from(match trace.target {
        Some(Ok(_)) => EXIT_KEPT,
        _ => EXIT_DROPPED,
    }))
}

fn trace_from_config(args: &TestArgs) -> Result<(Job, TargetTrace)> {
    let labels = parse_label_set(&args.labels)?;
    let config = Config::load(&args.config)
        .with_context(|| format!("loading config {}", args.config.display()))?;
    let Some(sc) = config
        .scrape_configs
        .iter()
        .find(|sc| *sc.job_name.get_ref() == args.job)
    else {
        let jobs: Vec<String> = config
            .scrape_configs
            .iter()
            .map(|sc| format!("{:?}", sc.job_name.get_ref()))
            .collect();
        anyhow::bail!(
            "no job {:?} in {} (its jobs: {})",
            args.job,
            args.config.display(),
            if jobs.is_empty() {
                "none".to_string()
            } else {
                jobs.join(", ")
            }
        );
    };
    let job = Job::from_config(sc, &config)?;
    let trace = Target::trace(&job, labels);
    Ok((job, trace))
}

/// The trace as a person reads it: per rule, the labels it added (+),
/// changed (~) and removed (-), then the verdict and the target.
pub fn render(job: &Job, t: &TargetTrace) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "job {:?}: discovered {}", job.name, t.discovered);
    let defaults = diff(&t.discovered, &t.relabel.input);
    if !defaults.is_empty() {
        let _ = writeln!(out, "job defaults:");
        out.push_str(&defaults);
    }
    let mut before = &t.relabel.input;
    for s in &t.relabel.steps {
        let r = &s.rule;
        let mut head = format!("rule {} action={}", s.index, r.action);
        if !r.source_labels.is_empty() {
            let _ = write!(head, " source_labels=[{}]", r.source_labels.join(", "));
        }
        // As written (a TOML literal string): no doubled backslashes.
        let _ = write!(head, " regex='{}'", r.regex);
        if !r.target_label.is_empty() {
            let _ = write!(head, " target_label={:?}", r.target_label);
        }
        if r.modulus != 0 {
            let _ = write!(head, " modulus={}", r.modulus);
        }
        let _ = write!(head, " replacement={:?}", r.replacement);
        if r.separator != ";" {
            let _ = write!(head, " separator={:?}", r.separator);
        }
        let _ = writeln!(out, "{head}");
        match t.relabel.dropped_by {
            Some(by) if by == s.index => {
                let value: Vec<&str> = r
                    .source_labels
                    .iter()
                    .map(|n| before.get(n).unwrap_or(""))
                    .collect();
                let _ = writeln!(
                    out,
                    "  DROPPED by this rule (source value {:?})",
                    value.join(&r.separator)
                );
            }
            Some(by) if by < s.index => {
                let _ = writeln!(out, "  (not applied: dropped by rule {by})");
            }
            _ => {
                let d = diff(before, &s.output);
                out.push_str(if d.is_empty() { "  (no change)\n" } else { &d });
                before = &s.output;
            }
        }
    }
    match &t.target {
        None => {
            let _ = writeln!(
                out,
                "verdict: DROPPED by rule {}",
                t.relabel.dropped_by.unwrap_or_default()
            );
        }
        Some(Err(e)) => {
            let _ = writeln!(out, "verdict: NO TARGET: {e} (the agent drops this set)");
        }
        Some(Ok(target)) => {
            let _ = writeln!(out, "verdict: KEPT");
            let _ = writeln!(out, "target labels: {}", target.labels);
            let _ = writeln!(out, "scrape URL: {}", target.url);
        }
    }
    out
}

/// `+ name="value"`, `~ name="old" -> "new"`, `- name="value"` lines.
fn diff(before: &Labels, after: &Labels) -> String {
    let mut out = String::new();
    for l in after.iter() {
        match before.get(&l.name) {
            None => {
                let _ = writeln!(out, "  + {}={:?}", l.name, l.value);
            }
            Some(v) if v != l.value => {
                let _ = writeln!(out, "  ~ {}={:?} -> {:?}", l.name, v, l.value);
            }
            Some(_) => {}
        }
    }
    for l in before.iter() {
        if after.get(&l.name).is_none() {
            let _ = writeln!(out, "  - {}={:?}", l.name, l.value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_from_selector_or_json() {
        let want = Labels::from_pairs([("__address__", "10.0.0.1:8080"), ("a", "x\"y")]);
        assert_eq!(
            parse_label_set(r#"{__address__="10.0.0.1:8080", a="x\"y"}"#).unwrap(),
            want
        );
        assert_eq!(
            parse_label_set(r#"{"__address__": "10.0.0.1:8080", "a": "x\"y"}"#).unwrap(),
            want
        );
        assert_eq!(parse_label_set("{}").unwrap(), Labels::new());
        for (bad, says) in [
            (r#"{a=~"x"}"#, "only name=\"value\" pairs"),
            (r#"{a="x", a="y"}"#, "\"a\" is given twice"),
            (r#"up{a="x"}"#, "metric name"),
            (r#"{a="x""#, "label set:"),
            (r#"{"a": 1}"#, "expected an object of strings"),
        ] {
            let e = parse_label_set(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
