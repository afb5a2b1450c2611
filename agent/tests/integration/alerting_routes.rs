//! Runs Alertmanager's route tests (extracted from `dispatch/route_test.go`)
//! against our route tree: ordered receivers, grouping options and keys.

use serde_json::Value;
use wasmon::alerting::config::RouteConfig;
use wasmon::alerting::route::Route;
use wasmon::model::Duration;
use wasmon::model::Labels;

const CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/alertmanager-derived/route_match_cases.json"
);

fn check_case(tree: &Route, case: &Value) -> Result<(), String> {
    let labels = Labels::from_pairs(
        case["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
    );
    let got = tree.match_labels(&labels);
    let exp = case["expected"].as_array().unwrap();
    if got.len() != exp.len() {
        return Err(format!("{} routes, want {}", got.len(), exp.len()));
    }
    let dur = |v: &Value| Duration::parse(v.as_str().unwrap()).unwrap().as_std();
    for (i, (g, e)) in got.iter().zip(exp).enumerate() {
        let o = &g.opts;
        if let Some(r) = e.get("receiver") {
            if o.receiver != r.as_str().unwrap() {
                return Err(format!("[{i}] receiver {:?}, want {r}", o.receiver));
            }
        }
        if let Some(gb) = e.get("group_by") {
            let want: Vec<String> = gb
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            let have: Vec<String> = o.group_by.iter().cloned().collect();
            if have != want {
                return Err(format!("[{i}] group_by {have:?}, want {want:?}"));
            }
        }
        if let Some(all) = e.get("group_by_all") {
            if o.group_by_all != all.as_bool().unwrap() {
                return Err(format!("[{i}] group_by_all {}", o.group_by_all));
            }
        }
        for (name, have) in [
            ("group_wait", o.group_wait),
            ("group_interval", o.group_interval),
            ("repeat_interval", o.repeat_interval),
        ] {
            if let Some(v) = e.get(name) {
                if have != dur(v) {
                    return Err(format!("[{i}] {name} {have:?}, want {v}"));
                }
            }
        }
    }
    if let Some(keys) = case.get("route_keys") {
        let want: Vec<&str> = keys
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let have: Vec<&str> = got.iter().map(|r| r.key()).collect();
        if have != want {
            return Err(format!("keys {have:?}, want {want:?}"));
        }
    }
    Ok(())
}

#[test]
fn route_match_conformance() {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(CASES).unwrap()).unwrap();
    let (mut passed, mut failed) = (0, 0);
    for suite in v["suites"].as_array().unwrap() {
        let name = suite["test"].as_str().unwrap();
        let cfg: RouteConfig = serde_norway::from_str(suite["route_yaml"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let tree = Route::new(&cfg).unwrap();
        for (i, case) in suite["cases"].as_array().unwrap().iter().enumerate() {
            match check_case(&tree, case) {
                Ok(()) => passed += 1,
                Err(e) => {
                    failed += 1;
                    println!("FAIL {name}[{i}] {}: {e}", case["labels"]);
                }
            }
        }
    }
    println!("route_match_cases: {passed} passed, {failed} failed");
    assert!(passed >= 24, "floor: 24 of 24 pass today");
}
