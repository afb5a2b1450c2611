//! promtool's rule unit-test files from the upstream test data, run with
//! `run_test_files`; each file's expected outcome is whether promtool
//! passes it. Files needing newer features (native histograms,
//! `start_timestamp`, `fuzzy_compare`) are skipped with the reason.

use std::path::{Path, PathBuf};

use wasmon::rules::unittest::{run_test_files, run_test_files_with, TestOpts};

fn shared(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance")
        .join(p)
}

/// Is this YAML a promtool unit-test file (has `tests:` at top level)?
fn is_unit_test_file(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("tests:"))
}

fn skip_reason(text: &str) -> Option<&'static str> {
    if text.contains("histogram:")
        || text.contains("{{schema")
        || text.contains("{{count")
        || text.contains("{{sum")
    {
        return Some("native histograms");
    }
    if text.contains("start_timestamp") {
        return Some("start_timestamp (newer promtool)");
    }
    if text.contains("fuzzy_compare") {
        return Some("fuzzy_compare (newer promtool)");
    }
    None
}

/// promtool's verdict (default flags): files written to fail, fail.
fn expected_pass(name: &str) -> bool {
    !(name.starts_with("bad-")
        || name == "failing.yml"
        // one test group is written to fail
        || name == "rules_run.yml"
        // passes only with --ignore-unknown-fields
        || name == "rules_run_extrafields.yml")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    v.sort();
    for p in v {
        if p.is_dir() {
            collect(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
            out.push(p);
        }
    }
}

#[test]
fn promtool_unit_test_files() {
    let mut files = Vec::new();
    collect(&shared("prometheus/cmd/promtool/testdata"), &mut files);
    collect(&shared("derived-rule-tests"), &mut files);
    collect(&shared("thanos"), &mut files);
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let mut wrong = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        if !is_unit_test_file(&text) {
            continue;
        }
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if let Some(r) = skip_reason(&text) {
            println!("SKIP {name}: {r}");
            skipped += 1;
            continue;
        }
        let mut out = Vec::new();
        let ok = run_test_files(std::slice::from_ref(f), &mut out).unwrap();
        let exp = expected_pass(&name);
        let out = String::from_utf8_lossy(&out);
        if ok == exp {
            passed += 1;
            println!(
                "ok   {name} (promtool {})",
                if exp { "passes" } else { "fails" }
            );
            if !exp {
                // Show why, so a failure for the wrong reason is visible.
                for l in out.lines().skip(2).take(3) {
                    println!("       {l}");
                }
            }
        } else {
            failed += 1;
            println!(
                "FAIL {name}: expected {}, got:\n{out}",
                if exp { "pass" } else { "fail" }
            );
            wrong.push(name);
        }
    }
    println!("rule unit tests: {passed} passed, {failed} failed, {skipped} skipped");
    assert!(wrong.is_empty(), "{wrong:?}");
    assert!(passed >= 11, "{passed} passed");
}

#[test]
fn ignore_unknown_fields_flag() {
    let f = shared("prometheus/cmd/promtool/testdata/rules_run_extrafields.yml");
    if !f.exists() {
        return;
    }
    let opts = TestOpts {
        ignore_unknown_fields: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    assert!(
        run_test_files_with(&[f], &opts, &mut out).unwrap(),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn failure_output_like_promtool() {
    let f = shared("prometheus/cmd/promtool/testdata/failing.yml");
    if !f.exists() {
        return;
    }
    let mut out = Vec::new();
    assert!(!run_test_files(&[f], &mut out).unwrap());
    let out = String::from_utf8(out).unwrap();
    println!("{out}");
    assert!(out.contains("Unit Testing:  "));
    assert!(out.contains("  FAILED:"));
    assert!(out.contains("    name: Failing test,\n    expr: \"test\", time: 0s,\n        exp: {__name__=\"test\"} 1E+00\n        got: {__name__=\"test\"} 0E+00"), "{out}");
    assert!(out.contains("alertname: AlwaysFiring, time: 5m"), "{out}");
}
