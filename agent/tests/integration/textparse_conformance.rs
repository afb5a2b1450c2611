//! The exposition parsers against upstream test data, read in place from
//! `../shared/conformance` (see its README and MANIFEST):
//!
//! 1. the OpenMetrics parser suite (`openmetrics/tests/testdata/parsers/*/`),
//! 2. prometheus/common's expfmt corpus (fuzz seeds from its parse and
//!    parse-error tests, plus its `testdata/text` page): expfmt's verdicts
//!    for the strict reading (`parse_strict`, `wasmon check metrics`),
//! 3. the real exposition pages of Prometheus' `model/textparse/testdata`,
//! 4. what Prometheus' own scraper (Debian's 2.42) made of every text page
//!    above and of `fixtures/textparse/cases.json` (a page per rule of its
//!    lexer), recorded in `fixtures/textparse/prometheus_2.42.json` by
//!    `fixtures/textparse/prometheus_truth.py`: ingestion must accept and
//!    reject the same pages, with the same samples.
//!
//! Each runner prints `N passed, N failed` with the failures' names, fails on
//! any failure not listed as known (with its reason), and asserts a floor on
//! the pass count so a regression cannot hide.

use std::fs;
use std::path::{Path, PathBuf};

use wasmon::model::Labels;
use wasmon::textparse::{parse, parse_strict, Format, MetricType, Parsed};

const CONFORMANCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance");

fn dir(rel: &str) -> PathBuf {
    let d = Path::new(CONFORMANCE).join(rel);
    assert!(d.is_dir(), "{} missing", d.display());
    d
}

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// One accept/reject case.
struct Case {
    name: String,
    body: Vec<u8>,
    should_parse: bool,
}

/// Runs the cases, prints the tally, and checks it against the known
/// failures and the floor.
fn run(suite: &str, cases: &[Case], format: Format, known: &[(&str, &str)], floor: usize) {
    run_with(suite, cases, |b| parse(b, format), known, floor)
}

fn run_with(
    suite: &str,
    cases: &[Case],
    parse: impl Fn(&[u8]) -> Result<Parsed, wasmon::textparse::ParseError>,
    known: &[(&str, &str)],
    floor: usize,
) {
    let mut passed = 0;
    let mut failed = Vec::new();
    for c in cases {
        let got = parse(&c.body);
        if got.is_ok() == c.should_parse {
            passed += 1;
        } else {
            let detail = match got {
                Ok(p) => format!("accepted ({} samples), should be rejected", p.samples.len()),
                Err(e) => format!("rejected ({e}), should parse"),
            };
            failed.push((c.name.clone(), detail));
        }
    }
    println!(
        "{suite}: {passed} passed, {} failed (of {})",
        failed.len(),
        cases.len()
    );
    let mut unexpected = Vec::new();
    for (name, detail) in &failed {
        match known.iter().find(|(k, _)| k == name) {
            Some((_, why)) => println!("  known failure {name}: {detail} — {why}"),
            None => {
                println!("  FAILED {name}: {detail}");
                unexpected.push(name.as_str());
            }
        }
    }
    for (k, _) in known {
        if !failed.iter().any(|(n, _)| n == k) {
            println!("  note: known failure {k} now passes; remove it from the list");
        }
    }
    assert!(
        unexpected.is_empty(),
        "{suite}: unexpected failures: {unexpected:?}"
    );
    assert!(
        passed >= floor,
        "{suite}: {passed} passed, below the floor of {floor}"
    );
}

// --- 1. OpenMetrics parser suite -------------------------------------------------

/// Inputs the suite wants rejected that this parser accepts on purpose:
/// client_golang emits exactly these on real pages (see
/// `prometheus/model/textparse/testdata/alltypes.5mfs.om.txt`, which must
/// parse), and Prometheus ingests them.
const OM_KNOWN_FAILURES: &[(&str, &str)] = &[
    (
        "bad_histograms_3",
        "a histogram with a negative bucket bound and a _sum: client_golang exposes _sum on such histograms",
    ),
    ("bad_counter_values_17", "a negative summary _sum: client_golang summaries of negative observations"),
    ("bad_counter_values_19", "a negative quantile value: client_golang summaries of negative observations"),
];

/// 211 cases minus the three known failures.
const OM_FLOOR: usize = 208;

#[test]
fn openmetrics_parser_suite() {
    let root = dir("openmetrics/tests/testdata/parsers");
    let mut cases = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for d in entries.into_iter().filter(|p| p.is_dir()) {
        let spec: serde_json::Value = serde_json::from_slice(&read(&d.join("test.json"))).unwrap();
        assert_eq!(spec["type"], "text", "{}", d.display());
        let file = spec["file"].as_str().unwrap_or("metrics");
        cases.push(Case {
            name: d.file_name().unwrap().to_string_lossy().into_owned(),
            body: read(&d.join(file)),
            should_parse: spec["shouldParse"].as_bool().expect("shouldParse"),
        });
    }
    assert_eq!(cases.len(), 211, "the suite changed size");
    run(
        "OpenMetrics parser suite",
        &cases,
        Format::OpenMetrics,
        OM_KNOWN_FAILURES,
        OM_FLOOR,
    );
}

// --- 2. prometheus/common expfmt corpus ------------------------------------------

/// `from_test_parse_*` and `minimal` must parse, the 20
/// `from_test_parse_error_*` must not: expfmt's verdicts, which
/// `parse_strict` (`wasmon check metrics`) gives; ingestion gives
/// Prometheus' (see `prometheus_scraper_verdicts_and_samples`). And
/// `testdata/text` is a full page.
#[test]
fn prometheus_common_expfmt_corpus() {
    let corpus = dir("prometheus-common/expfmt/fuzz/corpus");
    let mut cases = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let should_parse = !name.starts_with("from_test_parse_error_");
        cases.push(Case {
            body: read(&p),
            name,
            should_parse,
        });
    }
    let errors = cases.iter().filter(|c| !c.should_parse).count();
    assert_eq!((cases.len(), errors), (26, 20), "the corpus changed");
    let text = dir("prometheus-common/expfmt/testdata").join("text");
    cases.push(Case {
        name: "testdata/text".into(),
        body: read(&text),
        should_parse: true,
    });
    run_with(
        "prometheus/common expfmt corpus (strict reading)",
        &cases,
        parse_strict,
        &[],
        27,
    );

    // Most error inputs also lack a final line feed, which alone rejects
    // them here; each must still be rejected with one appended, except
    // `from_test_parse_error_0` whose only fault is that.
    let mut only_missing_lf = Vec::new();
    for c in cases.iter().filter(|c| !c.should_parse) {
        let mut body = c.body.clone();
        body.push(b'\n');
        if parse_strict(&body).is_ok() {
            only_missing_lf.push(c.name.as_str());
        }
    }
    assert_eq!(only_missing_lf, ["from_test_parse_error_0"]);
}

/// A few values from the corpus, checked by hand.
#[test]
fn prometheus_common_expfmt_values() {
    let corpus = dir("prometheus-common/expfmt/fuzz/corpus");
    let page2 = read(&corpus.join("from_test_parse_2"));
    let p = parse_strict(&page2).unwrap();
    let name_val2 = Labels::from_pairs([
        ("__name__", "name"),
        ("labelname", "val2"),
        ("basename", "base\"v\\al\nue"),
    ]);
    let s = p
        .samples
        .iter()
        .find(|s| s.labels == name_val2)
        .expect("name{labelname=\"val2\"}");
    assert_eq!((s.value, s.timestamp_ms), (0.23, Some(1_234_567_890)));
    let help: Vec<_> = p
        .metadata
        .iter()
        .map(|m| (m.family.as_str(), m.kind, m.help.as_str()))
        .collect();
    assert_eq!(
        help,
        [
            ("name", MetricType::Counter, "two-line\n doc  str\\ing"),
            ("name2", MetricType::Gauge, "doc str\"ing 2")
        ]
    );
    // Prometheus' scraper takes the same samples, and its HELP text is all
    // after the one blank that follows the name.
    let lenient = parse(&page2, Format::PromText).unwrap();
    assert_eq!(format!("{:?}", lenient.samples), format!("{:?}", p.samples));
    assert_eq!(lenient.metadata[1].help, " \tdoc str\"ing 2");

    // A negative timestamp and a `# HELP ` with no name: Prometheus'
    // scraper refuses this page, expfmt reads it.
    assert!(parse(&read(&corpus.join("from_test_parse_3")), Format::PromText).is_err());
    let p = parse_strict(&read(&corpus.join("from_test_parse_3"))).unwrap();
    let decoy = p
        .samples
        .iter()
        .find(|s| s.labels.name() == Some("decoy"))
        .unwrap();
    assert_eq!((decoy.value, decoy.timestamp_ms), (-1.0, Some(-2)));
    // quantile=".3" of a summary is normalized, as Prometheus 3 does.
    assert!(p
        .samples
        .iter()
        .any(|s| s.labels.get("quantile") == Some("0.3") && s.value == -1.2));
    assert_eq!(p.samples.len(), 12);
    // `my_summary_sum` resolves to the summary family even after another
    // family's TYPE line; its value "08" is a decimal 8.
    assert_eq!(find(&p, "my_summary_sum", &[("n1", "val2")]).value, 8.0);
    assert_eq!(
        find(&p, "my_summary_sum", &[("n1", "val2")]).timestamp_ms,
        Some(15)
    );

    let p = parse(
        &read(&dir("prometheus-common/expfmt/testdata").join("text")),
        Format::PromText,
    )
    .unwrap();
    assert_eq!(p.samples.len(), 248);
    let s = p
        .samples
        .iter()
        .find(|s| {
            s.labels.get("handler") == Some("/alerts") && s.labels.get("quantile") == Some("0.9")
        })
        .unwrap();
    assert_eq!(s.labels.name(), Some("http_request_duration_microseconds"));
}

// --- 3. real exposition pages -------------------------------------------------

fn page(name: &str) -> Parsed {
    let p = dir("prometheus/model/textparse/testdata").join(name);
    let format = if name.ends_with(".om.txt") {
        Format::OpenMetrics
    } else {
        Format::PromText
    };
    parse(&read(&p), format).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn find<'a>(p: &'a Parsed, name: &str, labels: &[(&str, &str)]) -> &'a wasmon::textparse::Sample {
    let want =
        Labels::from_pairs(std::iter::once(("__name__", name)).chain(labels.iter().copied()));
    p.samples
        .iter()
        .find(|s| s.labels == want)
        .unwrap_or_else(|| panic!("no sample {want}"))
}

#[test]
fn textparse_testdata_pages_parse() {
    let root = dir("prometheus/model/textparse/testdata");
    let mut names: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".om.txt") || n.ends_with(".prom.txt"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    for n in &names {
        let p = page(n);
        let lines = String::from_utf8(read(&root.join(n))).unwrap();
        let sample_lines = lines
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        println!(
            "{n}: {} samples, {} families with metadata",
            p.samples.len(),
            p.metadata.len()
        );
        assert_eq!(p.samples.len(), sample_lines, "{n}");
    }
}

#[test]
fn alltypes_5mfs_openmetrics_values() {
    let p = page("alltypes.5mfs.om.txt");
    assert_eq!(p.metadata.len(), 5);
    let rpc = p
        .metadata
        .iter()
        .find(|m| m.family == "rpc_requests")
        .unwrap();
    assert_eq!(
        (rpc.kind, rpc.help.as_str()),
        (
            MetricType::Counter,
            "Total number of RPC requests received."
        )
    );
    // Counter total and its _created, which stays a sample.
    assert_eq!(
        find(&p, "rpc_requests_total", &[("service", "normal")]).value,
        15.0
    );
    assert_eq!(
        find(&p, "rpc_requests_created", &[("service", "normal")]).value,
        1.726839813016717e9
    );
    // Negative bucket bounds, canonical le, exemplars dropped.
    assert_eq!(
        find(
            &p,
            "rpc_durations_histogram_seconds_bucket",
            &[("le", "-0.00099")]
        )
        .value,
        0.0
    );
    let b = find(
        &p,
        "rpc_durations_histogram_seconds_bucket",
        &[("le", "-0.0002899999999999998")],
    );
    assert_eq!((b.value, b.timestamp_ms), (3.0, None));
    assert_eq!(
        find(
            &p,
            "rpc_durations_histogram_seconds_bucket",
            &[("le", "+Inf")]
        )
        .value,
        15.0
    );
    assert_eq!(
        find(&p, "rpc_durations_histogram_seconds_sum", &[]).value,
        -8.452185437166741e-05
    );
    // Summary with a negative quantile value.
    let q = find(
        &p,
        "rpc_durations_seconds",
        &[("service", "normal"), ("quantile", "0.5")],
    );
    assert_eq!(q.value, -5.066758674917046e-06);
    // Empty label values mean absent labels.
    assert_eq!(find(&p, "go_build_info", &[]).value, 1.0);
}

#[test]
fn one_histogram_openmetrics_values() {
    let p = page("1histogram.om.txt");
    let base = [
        ("address", "0.0.0.0"),
        ("generation", "20"),
        ("port", "5001"),
    ];
    let with = |le| base.iter().copied().chain([("le", le)]).collect::<Vec<_>>();
    assert_eq!(
        find(&p, "golang_manual_histogram_seconds_bucket", &with("0.005")).value,
        0.0
    );
    assert_eq!(
        find(&p, "golang_manual_histogram_seconds_bucket", &with("+Inf")).value,
        1.0
    );
    let port3 = [
        ("address", "0.0.0.0"),
        ("generation", "20"),
        ("port", "5003"),
    ];
    assert_eq!(
        find(&p, "golang_manual_histogram_seconds_sum", &port3).value,
        10.0
    );
    assert_eq!(
        find(&p, "golang_manual_histogram_seconds_count", &port3).value,
        1.0
    );
    assert_eq!(p.metadata[0].kind, MetricType::Histogram);
}

#[test]
fn alltypes_237mfs_text_values() {
    let p = page("alltypes.237mfs.prom.txt");
    assert_eq!(p.metadata.len(), 237);
    let gc = p
        .metadata
        .iter()
        .find(|m| m.family == "go_gc_duration_seconds")
        .unwrap();
    assert_eq!(gc.kind, MetricType::Summary);
    assert!(gc.help.starts_with("A summary of the wall-time pause"));
    // quantile="0" and "1" come out canonical, as in Prometheus 3.
    assert_eq!(
        find(&p, "go_gc_duration_seconds", &[("quantile", "0.0")]).value,
        7.6238e-05
    );
    assert_eq!(
        find(&p, "go_gc_duration_seconds", &[("quantile", "1.0")]).value,
        0.002389378
    );
    assert_eq!(
        find(&p, "go_gc_duration_seconds_count", &[]).value,
        190932.0
    );
    assert_eq!(find(&p, "go_gc_gogc_percent", &[]).value, 75.0);

    // Without metadata nothing is typed, so nothing is normalized.
    let bare = page("alltypes.237mfs.nometa.prom.txt");
    assert!(bare.metadata.is_empty());
    assert_eq!(bare.samples.len(), p.samples.len());
    assert_eq!(
        find(&bare, "go_gc_duration_seconds", &[("quantile", "0")]).value,
        7.6238e-05
    );
}

// --- 4. Prometheus' scraper, page by page -------------------------------------------

fn fixtures(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/integration/fixtures/textparse")
        .join(rel)
}

/// The pages `prometheus_truth.py` served, by the names it recorded.
fn truth_pages() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let cases: serde_json::Value = serde_json::from_slice(&read(&fixtures("cases.json"))).unwrap();
    for c in cases.as_array().unwrap() {
        let body = match (c["body"].as_str(), c["hex"].as_str()) {
            (Some(b), _) => b.as_bytes().to_vec(),
            (None, Some(h)) => (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect(),
            _ => panic!("case without a body: {c}"),
        };
        out.push((c["name"].as_str().unwrap().to_string(), body));
    }
    let corpus = dir("prometheus-common/expfmt/fuzz/corpus");
    for e in fs::read_dir(&corpus).unwrap() {
        let p = e.unwrap().path();
        let name = format!("expfmt/{}", p.file_name().unwrap().to_string_lossy());
        out.push((name, read(&p)));
    }
    out.push((
        "expfmt/testdata/text".into(),
        read(&dir("prometheus-common/expfmt/testdata").join("text")),
    ));
    let testdata = dir("prometheus/model/textparse/testdata");
    for e in fs::read_dir(&testdata).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".prom.txt") {
            out.push((format!("textparse/{name}"), read(&p)));
        }
    }
    out
}

/// A label set in a form both sides share: `le`/`quantile` values that are
/// numbers compare as numbers (Prometheus 3, and so wasmon, rewrites them
/// as `1.0` where 2.42 kept `1`).
fn comparable(pairs: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut v: Vec<_> = pairs
        .map(|(k, v)| {
            let v = match v.parse::<f64>() {
                Ok(f) if k == "le" || k == "quantile" => format!("{f:?}"),
                _ => v,
            };
            (k, v)
        })
        .collect();
    v.sort();
    v
}

fn same_value(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Pages where wasmon follows Prometheus 3 and 2.42 differs.
const SCRAPER_3X: &[(&str, &str)] = &[
    (
        "quoted_name",
        "Prometheus 3 reads quoted (UTF-8) metric names",
    ),
    (
        "quoted_label",
        "Prometheus 3 reads quoted (UTF-8) label names",
    ),
];

#[test]
fn prometheus_scraper_verdicts_and_samples() {
    let truth: serde_json::Value =
        serde_json::from_slice(&read(&fixtures("prometheus_2.42.json"))).unwrap();
    let truth = truth["pages"].as_object().unwrap();
    let pages = truth_pages();
    assert_eq!(
        pages.len(),
        truth.len(),
        "pages and recorded verdicts differ"
    );
    let (mut agree, mut rejected, mut failures) = (0, 0, Vec::new());
    for (name, body) in &pages {
        let want = &truth[name.as_str()];
        let got = parse(body, Format::PromText);
        let problem = match (want["error"].as_str(), &got) {
            (Some(why), Ok(p)) => Some(format!(
                "accepted ({} samples); Prometheus: {why}",
                p.samples.len()
            )),
            (None, Err(e)) => Some(format!("rejected ({e}); Prometheus ingests it")),
            (Some(_), Err(_)) => {
                rejected += 1;
                None
            }
            (None, Ok(p)) => {
                // Prometheus stores a series' first sample of a scrape.
                let mut ours: Vec<(Vec<(String, String)>, f64)> = Vec::new();
                for s in &p.samples {
                    let l = comparable(
                        s.labels
                            .iter()
                            .map(|l| (l.name.to_string(), l.value.to_string())),
                    );
                    if !ours.iter().any(|(k, _)| *k == l) {
                        ours.push((l, s.value));
                    }
                }
                let theirs: Vec<(Vec<(String, String)>, f64)> = want["samples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| {
                        let l = s["labels"]
                            .as_object()
                            .unwrap()
                            .iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()));
                        (comparable(l), s["value"].as_str().unwrap().parse().unwrap())
                    })
                    .collect();
                let missing: Vec<_> = theirs
                    .iter()
                    .filter(|(l, v)| !ours.iter().any(|(k, w)| k == l && same_value(*v, *w)))
                    .collect();
                let extra: Vec<_> = ours
                    .iter()
                    .filter(|(l, _)| !theirs.iter().any(|(k, _)| k == l))
                    .collect();
                (!missing.is_empty() || !extra.is_empty())
                    .then(|| format!("samples differ: missing {missing:?}, extra {extra:?}"))
            }
        };
        match problem {
            None => agree += 1,
            Some(p) => match SCRAPER_3X.iter().find(|(k, _)| k == name) {
                Some((_, why)) => println!("  3.x: {name}: {p} — {why}"),
                None => failures.push(format!("{name}: {p}")),
            },
        }
    }
    println!(
        "Prometheus 2.42's scraper: {agree} of {} pages agree ({rejected} rejected by both)",
        pages.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(agree + SCRAPER_3X.len(), pages.len());
}

// --- 5. `wasmon check metrics` against `promtool check metrics` ---------------------

/// Lines promtool (Debian's 2.42, client_golang 1.14's promlint) prints and
/// `wasmon check metrics` does not, by page: current promlint checks a
/// family's name for its own type only, where 1.14 flagged every type's
/// name in every family's (a false positive client_golang fixed).
const PROMLINT_1_14_ONLY: &[(&str, &str)] = &[
    (
        "alltypes.237mfs.prom.txt",
        "prometheus_target_scrapes_exceeded_native_histogram_bucket_limit_total metric name should not include type 'histogram'",
    ),
    (
        "alltypes.237mfs.nometa.prom.txt",
        "prometheus_target_scrapes_exceeded_native_histogram_bucket_limit_total metric name should not include type 'histogram'",
    ),
];

/// What a checker said about a page: its exit code and stderr lines (a
/// parse error cut after its line number, where the two word it apart).
fn verdict(out: &std::process::Output) -> (Option<i32>, Vec<String>) {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines = err
        .lines()
        .map(|l| match l.find("parsing error in line ") {
            Some(i) => {
                let rest = &l[i + "parsing error in line ".len()..];
                let n = rest.split(':').next().unwrap_or("");
                format!("{}{n}", &l[..i + "parsing error in line ".len()])
            }
            None => l.to_string(),
        })
        .collect();
    (out.status.code(), lines)
}

#[test]
fn check_metrics_finds_what_promtool_finds() {
    let promtool = "/usr/bin/promtool";
    if !Path::new(promtool).exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{promtool} is missing: CI must install Debian's `prometheus` package"
        );
        eprintln!("SKIPPED: {promtool} is missing (apt-get install prometheus)");
        return;
    }
    let mut pages: Vec<(String, PathBuf)> = Vec::new();
    for d in [
        fixtures("lint"),
        dir("prometheus-common/expfmt/fuzz/corpus"),
        dir("prometheus/model/textparse/testdata"),
    ] {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".om.txt") {
                pages.push((name, p));
            }
        }
    }
    pages.push((
        "expfmt/testdata/text".into(),
        dir("prometheus-common/expfmt/testdata").join("text"),
    ));
    pages.sort();
    let (mut lint_problems, mut parse_errors, mut failures) = (0, 0, Vec::new());
    for (name, path) in &pages {
        let theirs = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(fs::File::open(path).unwrap())
            .output()
            .unwrap();
        let ours = std::process::Command::new(env!("CARGO_BIN_EXE_wasmon"))
            .args(["check", "metrics"])
            .arg(path)
            .output()
            .unwrap();
        let (their_code, mut their_lines) = verdict(&theirs);
        their_lines.retain(|l| !PROMLINT_1_14_ONLY.contains(&(name.as_str(), l.as_str())));
        let their_code = match their_code {
            Some(3) if their_lines.is_empty() => Some(0),
            c => c,
        };
        let (our_code, our_lines) = verdict(&ours);
        match our_code {
            Some(3) => lint_problems += our_lines.len(),
            Some(1) => parse_errors += 1,
            _ => {}
        }
        if (their_code, &their_lines) != (our_code, &our_lines) {
            failures.push(format!(
                "{name}: promtool {their_code:?} {their_lines:#?}\nwasmon {our_code:?} {our_lines:#?}"
            ));
        }
    }
    println!(
        "check metrics: {} pages, {lint_problems} lint problems, {parse_errors} unreadable, as promtool",
        pages.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        lint_problems >= 30 && parse_errors == 20,
        "{lint_problems} {parse_errors}"
    );

    // The page may come on stdin too.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmon"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"# TYPE http_requests counter\nhttp_requests 1\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        verdict(&out),
        (
            Some(3),
            vec![
                "http_requests counter metrics should have \"_total\" suffix".to_string(),
                "http_requests no help text".to_string()
            ]
        )
    );
}
