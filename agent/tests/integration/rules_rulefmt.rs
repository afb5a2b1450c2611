//! Upstream rulefmt test data: every `*.bad.yaml` is rejected, every other
//! file accepted. Files named `legacy_*` are checked with legacy (pre-UTF-8)
//! name validation, as upstream does.

use std::path::PathBuf;

use wasmon::rules::rulefmt::{parse_file, ParseOpts};

fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/conformance/prometheus/model/rulefmt/testdata"
    ))
}

#[test]
fn upstream_rulefmt_testdata() {
    let Ok(rd) = std::fs::read_dir(dir()) else {
        eprintln!(
            "conformance data not found at {}; skipping",
            dir().display()
        );
        return;
    };
    let mut files: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).collect();
    files.sort();
    let (mut good_ok, mut bad_ok, mut wrong) = (0, 0, Vec::new());
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let opts = ParseOpts {
            legacy_names: name.starts_with("legacy_"),
            ..Default::default()
        };
        let res = parse_file(f, &opts);
        let bad = name.contains(".bad.");
        match (bad, res) {
            (true, Err(e)) => {
                println!("rejected {name}: {e}");
                bad_ok += 1;
            }
            (false, Ok(g)) => {
                println!("accepted {name}: {} groups", g.groups.len());
                good_ok += 1;
            }
            (true, Ok(_)) => wrong.push(format!("{name}: accepted but should fail")),
            (false, Err(e)) => wrong.push(format!("{name}: rejected: {e}")),
        }
    }
    println!(
        "rulefmt: {good_ok} good accepted, {bad_ok} bad rejected, {} wrong",
        wrong.len()
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(good_ok + bad_ok >= 16);
}

/// Rule files used by upstream's rules tests and the alert-generator
/// compliance suite load unchanged (except the ones written to be invalid).
#[test]
fn upstream_rule_fixtures_load() {
    let base = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/conformance"
    ));
    let mut files: Vec<PathBuf> = std::fs::read_dir(base.join("prometheus/rules/fixtures"))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.push(base.join("compliance/alert_generator/rules.yaml"));
    files.sort();
    let mut n = 0;
    for f in files.iter().filter(|f| f.exists()) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let res = parse_file(f, &ParseOpts::default());
        match name.as_str() {
            "invalid_rules.yaml" => assert!(res.is_err(), "{name}"),
            // Several YAML documents in one file: Prometheus reads only the first.
            "rules_multi_doc.yaml" => {}
            _ => {
                res.unwrap_or_else(|e| panic!("{name}: {e}"));
                n += 1;
            }
        }
    }
    println!("{n} upstream rule fixtures loaded");
}

/// Found by cargo fuzz: promql-parser 0.11 panics on a range too large for a
/// Duration. A rule file carrying one must be rejected with an error naming
/// the rule, not crash the agent on load or reload.
#[test]
fn out_of_range_durations_in_expressions_are_errors_not_panics() {
    let text = "groups:\n  - name: slo\n    rules:\n      - alert: HighErrorRate\n        expr: sum(rate(http_requests_total[5555555555555555555555555555555555555555555:5m])) > 0.05\n      - record: job:x\n        expr: max_over_time(deriv(up[2m])[11e400:30s])\n";
    let err = wasmon::rules::rulefmt::parse(text, "slo.yml", &Default::default()).unwrap_err();
    let msg = format!("{err:?}");
    assert!(msg.contains("out of range"), "{msg}");
}

/// A rule file is untrusted text too: deep YAML nesting, a deeply nested
/// `expr` and a deeply nested template are errors naming the file, never a
/// stack overflow (on a tokio worker's 2 MiB stack, where reloads run) or
/// libyaml's quadratic scan of deep flow collections (40 s for 50,000 `[`).
#[test]
fn deep_nesting_in_rule_files_is_an_error() {
    let deep_yaml_flow = format!("groups: {}{}\n", "[".repeat(50_000), "]".repeat(50_000));
    let deep_yaml_block = (0..1_000)
        .map(|i| format!("{}- \n", "  ".repeat(i)))
        .collect::<String>();
    let rule = |expr: &str, annotation: &str| {
        format!("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: {expr:?}\n        annotations:\n          summary: {annotation:?}\n")
    };
    let deep_expr = rule(
        &format!("{}up{}", "(".repeat(50_000), ")".repeat(50_000)),
        "x",
    );
    let deep_template = rule(
        "up",
        &format!(
            "{}x{}",
            "{{if true}}".repeat(50_000),
            "{{end}}".repeat(50_000)
        ),
    );
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            for (text, want) in [
                (
                    deep_yaml_flow,
                    "deep.yml:1:1009: nested too deeply: more than 1000 open brackets",
                ),
                (
                    format!("groups: {}{}\n", "[".repeat(1000), "]".repeat(1000)),
                    "recursion limit exceeded",
                ),
                (deep_yaml_block, "recursion limit exceeded"),
                (deep_expr, "more than 1000 levels"),
                (deep_template, "more than 100 levels"),
            ] {
                let err = wasmon::rules::rulefmt::parse(&text, "deep.yml", &Default::default())
                    .unwrap_err();
                let msg = format!("{err:#}");
                assert!(msg.contains("deep.yml"), "{msg}");
                assert!(msg.contains(want), "{want}: {msg}");
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
