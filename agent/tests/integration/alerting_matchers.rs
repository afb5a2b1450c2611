//! Runs Alertmanager's matcher parser tables (extracted from
//! `pkg/labels/parse_test.go` and `matcher/parse/parse_test.go`) against
//! both of our parsers.

use serde_json::Value;
use wasmon::alerting::matcher::{parse_matcher, parse_matchers, parse_matchers_classic, Matcher};

const CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/alertmanager-derived/matcher_parse_cases.json"
);

fn triples(ms: &[Matcher]) -> Vec<(String, String, String)> {
    ms.iter()
        .map(|m| (m.name.clone(), m.op.as_str().to_string(), m.value.clone()))
        .collect()
}

fn run(
    name: &str,
    cases: &[Value],
    parse: &dyn Fn(&str) -> Result<Vec<Matcher>, String>,
) -> (usize, Vec<String>) {
    let mut passed = 0;
    let mut failed = Vec::new();
    for c in cases {
        let input = c["input"].as_str().unwrap();
        let got = parse(input);
        let ok = match (&got, c.get("matchers"), c.get("error")) {
            (Ok(ms), Some(exp), _) => {
                let exp: Vec<(String, String, String)> = exp
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| {
                        let t = t.as_array().unwrap();
                        (
                            t[0].as_str().unwrap().to_string(),
                            t[1].as_str().unwrap().to_string(),
                            t[2].as_str().unwrap().to_string(),
                        )
                    })
                    .collect();
                triples(ms) == exp
            }
            (Err(e), None, Some(exp)) => {
                let exp = exp.as_str().unwrap();
                e == exp || (exp.ends_with(": ") && e.starts_with(exp)) || e.contains(exp)
            }
            _ => false,
        };
        if ok {
            passed += 1;
        } else {
            failed.push(format!("{name}: input {input:?}: got {got:?}, want {c}"));
        }
    }
    println!("{name}: {passed} passed, {} failed", failed.len());
    for f in &failed {
        println!("  FAIL {f}");
    }
    (passed, failed)
}

#[test]
fn matcher_parse_conformance() {
    let text = std::fs::read_to_string(CASES).expect("conformance data");
    let v: Value = serde_json::from_str(&text).unwrap();
    let (classic, _) = run(
        "classic_parser",
        v["classic_parser"].as_array().unwrap(),
        &|s| parse_matchers_classic(s).map_err(|e| e.to_string()),
    );
    let (utf8, _) = run("utf8_parser", v["utf8_parser"].as_array().unwrap(), &|s| {
        parse_matchers(s).map_err(|e| e.to_string())
    });
    let (single, _) = run(
        "utf8_parser_single_matcher",
        v["utf8_parser_single_matcher"].as_array().unwrap(),
        &|s| parse_matcher(s).map(|m| vec![m]).map_err(|e| e.to_string()),
    );
    // Floors: every case passes today.
    assert!(classic >= 53, "classic {classic}");
    assert!(utf8 >= 45, "utf8 {utf8}");
    assert!(single >= 31, "single {single}");
}

/// Matchers arrive from the API (`filter`, silences) and config: deep
/// nesting in the text or in a regex is an error, never a stack overflow,
/// on a tokio worker's 2 MiB stack. (Both parsers are loops; the regex
/// crate refuses nesting past its limit.)
#[test]
fn deeply_nested_matchers_are_errors() {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let deep_regex = format!("a=~\"{}x{}\"", "(".repeat(50_000), ")".repeat(50_000));
            for input in [
                format!("{{{deep_regex}}}"),
                deep_regex.clone(),
                "{".repeat(50_000),
                format!("{}a=b", "{".repeat(50_000)),
            ] {
                assert!(parse_matchers(&input).is_err(), "{}", &input[..20]);
                assert!(parse_matchers_classic(&input).is_err(), "{}", &input[..20]);
            }
            assert!(parse_matcher(&deep_regex).is_err());
        })
        .unwrap()
        .join()
        .unwrap();
}
