//! Runs every upstream promqltest script in `shared/conformance` against
//! the engine. Evals the index classifies as native-histogram or
//! new-syntax are skipped (with the reason counted); core evals should
//! pass, and the total of passes must not drop below the recorded floor.

use std::collections::HashMap;

use wasmon::promql::promqltest::run_script;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/prometheus/promql/promqltest/testdata"
);
const INDEX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/prometheus/promqltest_eval_index.tsv"
);

/// Passes reached when this floor was last raised; a regression fails the test.
const PASS_FLOOR: usize = 748;

#[test]
fn promqltest_conformance() {
    // (file, line) -> tier
    let index = std::fs::read_to_string(INDEX).expect("eval index");
    let mut tiers: HashMap<(String, usize), String> = HashMap::new();
    for l in index.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() >= 4 {
            if let Ok(n) = f[1].parse() {
                tiers.insert((f[0].to_string(), n), f[3].to_string());
            }
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(DIR)
        .expect("testdata dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no promqltest files in {DIR}");
    let (mut p, mut f, mut s) = (0, 0, 0);
    let mut failures = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let skip = |line: usize| -> Option<String> {
            match tiers.get(&(name.clone(), line)).map(String::as_str) {
                Some("core") => None,
                Some(t) => Some(format!("{t} (not supported)")),
                None => None,
            }
        };
        let o = run_script(&text, &skip);
        println!(
            "{name}: {} passed, {} failed, {} skipped",
            o.passed, o.failed, o.skipped
        );
        if !o.load_errors.is_empty() {
            println!(
                "  ({} load lines not loaded, e.g. line {}: {})",
                o.load_errors.len(),
                o.load_errors[0].line,
                o.load_errors[0].reason
            );
        }
        for x in &o.failures {
            failures.push(format!("{name}:{}: {}\n    {}", x.line, x.query, x.reason));
        }
        p += o.passed;
        f += o.failed;
        s += o.skipped;
    }
    println!("--- failures ---");
    for x in &failures {
        println!("{x}");
    }
    println!("{p} passed, {f} failed, {s} skipped");
    assert!(
        p >= PASS_FLOOR,
        "passes dropped below the floor: {p} < {PASS_FLOOR}"
    );
    assert!(p > 0, "nothing passed");
}
