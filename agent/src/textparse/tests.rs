//! One test per rule; the upstream corpora run in
//! `agent/tests/integration/textparse_conformance.rs`.

use super::*;
use crate::model::{is_stale_nan, Labels};

fn prom(s: &str) -> Result<Parsed, ParseError> {
    parse(s.as_bytes(), Format::PromText)
}

/// The strict reading (`expfmt.rs`, `wasmon check metrics`).
fn strict(s: &str) -> Result<Parsed, ParseError> {
    parse_strict(s.as_bytes())
}

fn om(s: &str) -> Result<Parsed, ParseError> {
    parse(s.as_bytes(), Format::OpenMetrics)
}

/// Samples as `labels value [ts]` lines, for compact assertions.
fn lines(p: &Parsed) -> Vec<String> {
    p.samples
        .iter()
        .map(|s| match s.timestamp_ms {
            Some(t) => format!("{} {} {t}", s.labels, s.value),
            None => format!("{} {}", s.labels, s.value),
        })
        .collect()
}

#[track_caller]
fn prom_ok(s: &str) -> Vec<String> {
    lines(&prom(s).unwrap_or_else(|e| panic!("{s:?}: {e}")))
}

#[track_caller]
fn strict_ok(s: &str) -> Vec<String> {
    lines(&strict(s).unwrap_or_else(|e| panic!("{s:?}: {e}")))
}

#[track_caller]
fn strict_err(s: &str) -> ParseError {
    match strict(s) {
        Ok(p) => panic!("{s:?} parsed: {:?}", lines(&p)),
        Err(e) => e,
    }
}

#[track_caller]
fn om_ok(s: &str) -> Vec<String> {
    lines(&om(s).unwrap_or_else(|e| panic!("{s:?}: {e}")))
}

#[track_caller]
fn prom_err(s: &str) -> ParseError {
    match prom(s) {
        Ok(p) => panic!("{s:?} parsed: {:?}", lines(&p)),
        Err(e) => e,
    }
}

#[track_caller]
fn om_err(s: &str) -> ParseError {
    match om(s) {
        Ok(p) => panic!("{s:?} parsed: {:?}", lines(&p)),
        Err(e) => e,
    }
}

// --- shared -----------------------------------------------------------------

#[test]
fn content_negotiation() {
    use Format::*;
    assert_eq!(format_for_content_type(None), PromText);
    assert_eq!(
        format_for_content_type(Some("text/plain; version=0.0.4; charset=utf-8")),
        PromText
    );
    assert_eq!(format_for_content_type(Some("application/json")), PromText);
    assert_eq!(format_for_content_type(Some("")), PromText);
    assert_eq!(
        format_for_content_type(Some(
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        )),
        OpenMetrics
    );
    assert_eq!(
        format_for_content_type(Some(" Application/OpenMetrics-Text")),
        OpenMetrics
    );
}

#[test]
fn error_display_has_line_number() {
    let e = prom_err("a 1\nb x\n");
    assert_eq!(e.line, 2);
    assert!(e.to_string().starts_with("line 2: "), "{e}");
}

#[test]
fn invalid_utf8_rejected_with_its_line() {
    for (f, why) in [
        (Format::PromText, "invalid UTF-8 label value"),
        (Format::OpenMetrics, "invalid UTF-8"),
    ] {
        let e = parse(b"a 1\nb{x=\"\xff\"} 1\n# EOF\n", f).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (2, why));
    }
    let e = parse_strict(b"a 1\nb{x=\"\xff\"} 1\n").unwrap_err();
    assert_eq!((e.line, e.message.as_str()), (2, "invalid UTF-8"));
    // Even in a comment (Latin-1 here), for the strict reading and
    // OpenMetrics; Prometheus' text parser skips comments unread.
    assert!(parse_strict(b"# caf\xe9\n").is_err());
    assert!(parse(b"# caf\xe9\n# EOF\n", Format::OpenMetrics).is_err());
}

#[test]
fn nan_is_never_the_staleness_marker() {
    for s in [prom("a NaN\n").unwrap(), om("a NaN\n# EOF\n").unwrap()] {
        let v = s.samples[0].value;
        assert!(v.is_nan() && !is_stale_nan(v));
    }
}

#[test]
fn labels_include_name_and_drop_empty_values() {
    let p = prom("a{b=\"\",c=\"1\"} 1\n").unwrap();
    assert_eq!(
        p.samples[0].labels,
        Labels::from_pairs([("__name__", "a"), ("c", "1")])
    );
    let p = om("a{b=\"\",c=\"1\"} 1\n# EOF\n").unwrap();
    assert_eq!(
        p.samples[0].labels,
        Labels::from_pairs([("__name__", "a"), ("c", "1")])
    );
}

#[test]
fn duplicate_label_names_rejected() {
    prom_err("a{b=\"1\",b=\"2\"} 1\n");
    prom_err("a{b=\"\",b=\"2\"} 1\n");
    om_err("a{b=\"1\",b=\"2\"} 1\n# EOF\n");
}

#[test]
fn name_label_inside_braces_rejected() {
    prom_err("a{__name__=\"b\"} 1\n");
    om_err("a{__name__=\"b\"} 1\n# EOF\n");
}

#[test]
fn special_values() {
    assert_eq!(
        prom_ok("a +Inf\nb -Inf\nc 1.5e3\nd -0\ne .5\n"),
        ["a{} inf", "b{} -inf", "c{} 1500", "d{} -0", "e{} 0.5"]
    );
    for v in ["0x1p-3", "0x1", "1_000", "1e400", "+NaN", "one"] {
        prom_err(&format!("a {v}\n"));
        om_err(&format!("a {v}\n# EOF\n"));
    }
}

// --- Prometheus text format ---------------------------------------------------

#[test]
fn prom_basic_syntax_and_whitespace() {
    let got = prom_ok(concat!(
        "\n",
        "name {a=\"1\",b=\"2\"} 0.23 1234567890\n",
        "name2{ a = \"x\" , }-Inf\n",
        "name3{a=\"1\"\t,b   =   \"2\"\t\t} +Inf 54321\n",
        "empty{} 3\n",
        "\t\n",
    ));
    assert_eq!(
        got,
        [
            "name{a=\"1\", b=\"2\"} 0.23 1234567890",
            "name2{a=\"x\"} -inf",
            "name3{a=\"1\", b=\"2\"} inf 54321",
            "empty{} 3",
        ]
    );
}

/// What Prometheus' scraper ingests and expfmt refuses.
#[test]
fn prom_lenient_like_prometheus() {
    // No line feed at the end; blanks after the value and timestamp.
    assert_eq!(prom_ok("a 1\nb 2"), ["a{} 1", "b{} 2"]);
    assert_eq!(prom_ok("a 1 \nb 2 3 \t"), ["a{} 1", "b{} 2 3"]);
    assert_eq!(prom_ok("a 1\n# comment"), ["a{} 1"]);
    // Labels without commas between them.
    assert_eq!(prom_ok("a{b=\"1\" c=\"2\"} 1\n"), ["a{b=\"1\", c=\"2\"} 1"]);
    // Other escapes are kept as written.
    let p = prom("a{b=\"x\\ty\\q\\\\z\\\"\\n\"} 1\n").unwrap();
    assert_eq!(p.samples[0].labels.get("b"), Some("x\\ty\\q\\z\"\n"));
    // The value may follow the name or the brace directly.
    assert_eq!(
        prom_ok("a{b=\"c\"}1\na-1 2\n"),
        ["a{b=\"c\"} 1", "a{} -1 2"]
    );
    // A NUL at the start of a line ends the page.
    assert_eq!(prom_ok("a 1\n\0b 2\nc x\n"), ["a{} 1"]);
    assert_eq!(prom_ok("a{b=\"x\0y\"} 1\n").len(), 1);
    // A non-numeric le/quantile is kept.
    assert_eq!(
        prom_ok("# TYPE m histogram\nm_bucket{le=\"bla\"} 3\n"),
        ["m_bucket{le=\"bla\"} 3"]
    );
}

/// Prometheus' lexer lets a quoted string run over a line feed.
#[test]
fn prom_label_values_may_span_lines() {
    let p = prom("a{b=\"new\nline\",\"c\nd\"=\"e\"} 1\nf 2\n").unwrap();
    assert_eq!(p.samples[0].labels.get("b"), Some("new\nline"));
    assert_eq!(p.samples[0].labels.get("c\nd"), Some("e"));
    assert_eq!(lines(&p)[1], "f{} 2");
    // Later lines keep their numbers.
    assert_eq!(prom_err("a{b=\"x\ny\"} 1\nc x\n").line, 3);
    // A backslash before the line feed, or a string that never closes.
    assert_eq!(prom_err("a 1\na{b=\"x\\\ny\"} 1\n").line, 2);
    assert_eq!(prom_err("a{b=\"x\n} 1\n").line, 1);
    // The string closes on a later sample's quote: one garbled sample.
    prom_err("a{b=\"c} 1\nd{e=\"f\"} 2\ng 3\n");
}

#[test]
fn prom_metadata_is_not_checked_against_samples() {
    let p = prom(concat!(
        "m 4.12\n",
        "# TYPE m counter\n",
        "# TYPE m gauge\n",
        "# HELP m one\n",
        "# HELP m two\n",
        "# HELP other x\\\\y\\nz\\\"q\\t\n",
        "# HELP empty\n",
        "# HELP blank \t \n",
        "#  HELP  spaced   two blanks \n",
        "#HELP not metadata\n",
        "# TYPE\n",
        "m 5\n",
    ))
    .unwrap();
    assert_eq!(p.samples.len(), 2);
    let md: Vec<_> = p
        .metadata
        .iter()
        .map(|m| (m.family.as_str(), m.kind, m.help.as_str()))
        .collect();
    assert_eq!(
        md,
        [
            ("m", MetricType::Gauge, "two"),
            ("other", MetricType::Unknown, "x\\y\nz\\\"q\\t"),
            ("empty", MetricType::Unknown, ""),
            ("blank", MetricType::Unknown, ""),
            ("spaced", MetricType::Unknown, "  two blanks "),
        ]
    );
}

/// What Prometheus' scraper refuses, with its reason.
#[test]
fn prom_rejects_like_prometheus() {
    for (page, line, why) in [
        (
            "a 1\nb 1 -2\n",
            2,
            "expected timestamp or new record, got \"-\"",
        ),
        ("a 1 +2\n", 1, "expected timestamp or new record, got \"+\""),
        (
            "a 1 2.5\n",
            1,
            "expected next entry after timestamp, got \".\"",
        ),
        (
            "a 1 2 3\n",
            1,
            "expected next entry after timestamp, got \"3\"",
        ),
        (
            "a 1 99999999999999999999\n",
            1,
            "strconv.ParseInt: parsing \"99999999999999999999\": value out of range",
        ),
        (
            "a true\n",
            1,
            "strconv.ParseFloat: parsing \"true\": invalid syntax",
        ),
        ("a 1_2\n", 1, "unsupported character in float: \"1_2\""),
        (
            "a 1\r\n",
            1,
            "strconv.ParseFloat: parsing \"1\\r\": invalid syntax",
        ),
        ("# TYPE a  counter\n", 1, "invalid metric type \" counter\""),
        ("# TYPE a counter \n", 1, "invalid metric type \"counter \""),
        ("# TYPE a COUNTER\n", 1, "invalid metric type \"COUNTER\""),
        ("# TYPE a\n", 1, "invalid metric type \"\""),
        (
            "# HELP \n",
            1,
            "expected metric name after HELP, got \"\\n\"",
        ),
        (
            "# TYPE #\n",
            1,
            "expected metric name after TYPE, got \"#\"",
        ),
        (
            "  a 1\n",
            1,
            "invalid metric name \"  a\": blanks before it",
        ),
        (
            "a{b=\"1\",b=\"2\"} 1\n",
            1,
            "label name \"b\" is not unique: invalid sample",
        ),
        (
            "a{__name__=\"b\"} 1\n",
            1,
            "label name \"__name__\" is not unique: invalid sample",
        ),
        ("a{,} 1\n", 1, "expected label name, got \",\""),
        ("a{b='c'} 1\n", 1, "expected label value, got \"'\""),
        (
            "a{b=\"c} 1\n",
            1,
            "expected label value, got \"\\\"\": unterminated",
        ),
        ("a\n", 1, "expected value after metric, got \"\\n\""),
        ("{a=\"ok\"} 1", 1, "metric name not set in the label set"),
        ("1a 1\n", 1, "expected a valid start token, got \"1\""),
    ] {
        let e = prom_err(page);
        assert_eq!((e.line, e.message.as_str()), (line, why), "{page:?}");
    }
}

#[test]
fn prom_invalid_utf8_only_in_free_comments() {
    let p = parse(b"# caf\xe9\na 1\n#x\xff", Format::PromText).unwrap();
    assert_eq!(lines(&p), ["a{} 1"]);
    for (page, line, why) in [
        (
            &b"a 1\n# HELP a caf\xe9\n"[..],
            2,
            "help text is not a valid utf8 string",
        ),
        (
            b"# TYPE a \xff\n",
            1,
            "invalid metric type: not a valid utf8 string",
        ),
        (b"a 1\n\nb{x=\"\xff\"} 1\n", 3, "invalid UTF-8 label value"),
    ] {
        let e = parse(page, Format::PromText).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (line, why));
    }
    // Nothing after a NUL line is read.
    assert!(parse(b"a 1\n\0\nb{x=\"\xff\"} 1\n", Format::PromText).is_ok());
}

/// Prometheus 3 rewrites `le`/`quantile` by the type of the last TYPE
/// line, whatever metric it named.
#[test]
fn prom_le_and_quantile_normalized_by_the_last_type_line() {
    let p = prom(concat!(
        "# TYPE h histogram\n",
        "h_bucket{le=\"1\"} 1\n",
        "other{le=\"2\",quantile=\"1\"} 1\n",
        "# TYPE s summary\n",
        "s{quantile=\".3\"} 1\n",
        "h_bucket{le=\"1\"} 1\n",
        "# TYPE g gauge\n",
        "s{quantile=\"1\"} 1\n",
    ))
    .unwrap();
    assert_eq!(
        lines(&p),
        [
            "h_bucket{le=\"1.0\"} 1",
            "other{le=\"2.0\", quantile=\"1\"} 1",
            "s{quantile=\"0.3\"} 1",
            "h_bucket{le=\"1\"} 1",
            "s{quantile=\"1\"} 1",
        ]
    );
}

#[test]
fn prom_quoted_names_inside_braces() {
    let p = prom("{\"my.metric\", \"a.b\"=\"c\"} 1\n# HELP \"my.metric\" dotted\n").unwrap();
    assert_eq!(
        p.samples[0].labels,
        Labels::from_pairs([("__name__", "my.metric"), ("a.b", "c")])
    );
    assert_eq!(p.metadata[0].family, "my.metric");
    prom_err("{\"a\", \"b\"} 1\n");
    prom_err("{a, b=\"c\"} 1\n");
    prom_err("a{\"b\"} 1\n");
    prom_err("{\"\"} 1\n");
}

#[test]
fn strict_basic_syntax_and_whitespace() {
    let got = strict_ok(concat!(
        "\n",
        "  plain 1\n",
        "name {a=\"1\",b=\"2\"} 0.23 1234567890\n",
        "name2{ a = \"x\" , }-Inf\n",
        "name3{a=\"1\"\t,b   =   \"2\"\t\t} +Inf 54321\n",
        "empty{} 3\n",
        "\t\n",
    ));
    assert_eq!(
        got,
        [
            "plain{} 1",
            "name{a=\"1\", b=\"2\"} 0.23 1234567890",
            "name2{a=\"x\"} -inf",
            "name3{a=\"1\", b=\"2\"} inf 54321",
            "empty{} 3",
        ]
    );
}

#[test]
fn strict_timestamps_are_integer_milliseconds() {
    assert_eq!(strict_ok("a 1 -2\nb 1 +3\n"), ["a{} 1 -2", "b{} 1 3"]);
    strict_err("a 1 2.5\n");
    strict_err("a 1 1e3\n");
    strict_err("a 1 2 3\n");
    strict_err("a 1 99999999999999999999\n");
}

#[test]
fn strict_strict_line_ends() {
    // expfmt: the last line needs its line feed; blanks after the value or
    // timestamp are an error; a blank last line is fine.
    strict_err("a 1");
    strict_err("a 1\n# comment");
    strict_err("a 1 \n");
    strict_err("a 1 2 \n");
    assert_eq!(strict_ok("a 1\n  "), ["a{} 1"]);
    assert_eq!(strict_ok(""), Vec::<String>::new());
}

#[test]
fn strict_label_value_escapes() {
    let p = strict("a{b=\"x\\\\y\\\"z\\nw\"} 1\n").unwrap();
    assert_eq!(p.samples[0].labels.get("b"), Some("x\\y\"z\nw"));
    strict_err("a{b=\"\\t\"} 1\n");
    strict_err("a{b=\"new\nline\"} 1\n");
    strict_err("a{b=\"open} 1\n");
}

#[test]
fn strict_label_syntax_errors() {
    for s in [
        "a{@=\"b\"} 1\n",
        "a{b+=\"c\"} 1\n",
        "a{b=c} 1\n",
        "a{b=\"c\"+} 1\n",
        "a{b=\"c\",,d=\"e\"} 1\n",
        "{b=\"c\"} 1\n",
        "@a 1\n",
        "a-b 1\n",
        "a{b=\"c\"}\n",
        "a\n",
    ] {
        strict_err(s);
    }
}

#[test]
fn strict_quoted_names_inside_braces() {
    let p = strict("{\"my.metric\", \"a.b\"=\"c\"} 1\n# HELP \"my.metric\" dotted\n").unwrap();
    assert_eq!(
        p.samples[0].labels,
        Labels::from_pairs([("__name__", "my.metric"), ("a.b", "c")])
    );
    assert_eq!(p.metadata[0].family, "my.metric");
    strict_err("{\"a\", \"b\"} 1\n");
    strict_err("{a, b=\"c\"} 1\n");
}

#[test]
fn strict_metadata() {
    let p = strict(concat!(
        "# A normal comment.\n",
        "#\n",
        "# HELP\n",
        "# HELP only_name\n",
        "# TYPE x counter\n",
        "# HELP x two-line\\n doc  str\\\\ing \"quoted\\\"\n",
        "x 1\n",
        " # HELP  y  \tdoc str\"ing 2\n",
        "  #    TYPE    y gauge\n",
        "y 2\n",
        "# HELP z untyped one\n",
        "# TYPE z untyped\n",
    ))
    .unwrap();
    let md: Vec<_> = p
        .metadata
        .iter()
        .map(|m| (m.family.as_str(), m.kind, m.help.as_str()))
        .collect();
    assert_eq!(
        md,
        [
            (
                "x",
                MetricType::Counter,
                "two-line\n doc  str\\ing \"quoted\""
            ),
            ("y", MetricType::Gauge, "doc str\"ing 2"),
            ("z", MetricType::Unknown, "untyped one"),
        ]
    );
}

#[test]
fn strict_metadata_errors() {
    strict_err("# HELP m one\n# HELP m two\n");
    strict_err("# TYPE m counter\n# TYPE m untyped\n");
    strict_err("m 4.12\n# TYPE m counter\n");
    strict_err("# TYPE m bla\n");
    strict_err("# TYPE m Counter\n");
    strict_err("# TYPE m counter \n");
    strict_err("# TYPE met-ric counter\n");
    strict_err("# TYPE met-ric\n");
    strict_err("# HELP m bad \\t escape\n");
    // A HELP after the samples is fine (expfmt only minds TYPE).
    assert_eq!(
        strict("m 1\n# HELP m late\n").unwrap().metadata[0].help,
        "late"
    );
}

#[test]
fn strict_families_may_be_non_contiguous() {
    assert_eq!(
        strict_ok("# TYPE a gauge\na 1\nb 2\na{x=\"y\"} 3\n").len(),
        3
    );
}

#[test]
fn strict_le_and_quantile_normalized_like_prometheus() {
    let p = strict(concat!(
        "# TYPE h histogram\n",
        "h_bucket{le=\"1\"} 1\n",
        "h_bucket{le=\"2.50\"} 2\n",
        "h_bucket{le=\"1e-04\"} 2\n",
        "h_bucket{le=\"+Inf\"} 3\n",
        "h_count 3\n",
        "# TYPE s summary\n",
        "s{quantile=\"0\"} 1\n",
        "s{quantile=\".3\"} 1\n",
        "s_sum 3\n",
        "u_bucket{le=\"1\"} 1\n",
        "# TYPE g gauge\n",
        "g{le=\"1\",quantile=\"1\"} 1\n",
    ))
    .unwrap();
    let le: Vec<_> = p
        .samples
        .iter()
        .map(|s| {
            s.labels
                .get("le")
                .or(s.labels.get("quantile"))
                .unwrap_or("-")
        })
        .collect();
    assert_eq!(
        le,
        ["1.0", "2.5", "0.0001", "+Inf", "-", "0.0", "0.3", "-", "1", "1"]
    );
}

#[test]
fn strict_le_and_quantile_must_be_numbers() {
    strict_err("# TYPE m histogram\nm_bucket{le=\"bla\"} 3.14\n");
    strict_err("# TYPE m summary\nm{quantile=\"bla\"} 3.14\n");
    strict_err("# TYPE m summary\nm_sum{quantile=\"\"} 3.14\n");
    // Only in their own families.
    strict_ok("m_bucket{le=\"bla\"} 3.14\n");
}

#[test]
fn strict_summary_parts_resolve_to_their_family() {
    let p = strict(concat!(
        "# TYPE s summary\n",
        "s{quantile=\"0.5\"} 1\n",
        "# TYPE t gauge\n",
        "s_count{quantile=\"1\"} 5\n",
    ))
    .unwrap();
    // `s_count` belongs to summary `s`, so its quantile label is normalized.
    assert_eq!(p.samples[1].labels.get("quantile"), Some("1.0"));
}

// --- OpenMetrics -------------------------------------------------------------------

#[test]
fn om_counter_with_created_units_and_timestamps() {
    let p = om(concat!(
        "# TYPE cc_seconds counter\n",
        "# UNIT cc_seconds seconds\n",
        "# HELP cc_seconds A counter \\\"with\\\" \\\\ escapes\\n and \\z\n",
        "cc_seconds_total{a=\"b\"} 1.0 1520879607.789\n",
        "cc_seconds_created{a=\"b\"} 1520430000.123 1520879607.789\n",
        "# EOF\n",
    ))
    .unwrap();
    assert_eq!(
        lines(&p),
        [
            "cc_seconds_total{a=\"b\"} 1 1520879607789",
            "cc_seconds_created{a=\"b\"} 1520430000.123 1520879607789",
        ]
    );
    assert_eq!(
        p.metadata,
        [Metadata {
            family: "cc_seconds".into(),
            kind: MetricType::Counter,
            help: "A counter \"with\" \\ escapes\n and \\z".into(),
            unit: "seconds".into(),
        }]
    );
}

#[test]
fn om_eof_rules() {
    om_err("");
    om_err("a 1\n");
    om_err("a 1\n# EOF\nb 1\n");
    om_err("a 1\n# EOFblah");
    om_err("a 1\n# EOF\n\n");
    om_err("a 1\n# EOF \n");
    assert_eq!(om_ok("a 1\n# EOF"), ["a{} 1"]);
    assert_eq!(om_ok("# EOF\n"), Vec::<String>::new());
}

#[test]
fn om_line_syntax_is_strict() {
    for s in [
        "\na 1\n",
        " a 1\n",
        "# a comment\na 1\n",
        "a  1\n",
        "a 1 \n",
        "a\t1\n",
        "a{b=\"1\",} 1\n",
        "a{b=\"1\" } 1\n",
        "a{ b=\"1\"} 1\n",
        "a{b=\"1\"}1\n",
        "a {b=\"1\"} 1\n",
        "a{b = \"1\"} 1\n",
        "a 1\r\n",
        "# TYPE a gauge \n",
        "# TYPE a untyped\n",
        "# HELP a\n",
        "# HELP\n",
        "# FOO a x\n",
        "a 1 1.1.1\n",
        "a 1 NaN\n",
        "a 1 Inf\n",
    ] {
        om_err(&format!("{s}# EOF\n"));
    }
}

#[test]
fn om_label_escapes_keep_unknown_sequences() {
    let p = om("a{b=\"x\\\\y\\\"z\\nw\\q # \"} 1\n# EOF\n").unwrap();
    assert_eq!(p.samples[0].labels.get("b"), Some("x\\y\"z\nw\\q # "));
}

#[test]
fn om_timestamps_are_float_seconds() {
    assert_eq!(
        om_ok("a{x=\"1\"} 1 1.5e3\na{x=\"2\"} 1 -1.1\na{x=\"3\"} 1 000\n# EOF\n"),
        [
            "a{x=\"1\"} 1 1500000",
            "a{x=\"2\"} 1 -1100",
            "a{x=\"3\"} 1 0"
        ]
    );
}

#[test]
fn om_exemplars_are_checked_and_dropped() {
    let p = om(concat!(
        "# TYPE a counter\n",
        "a_total 0 123 # {trace_id=\"x\"} 0.5 123.4\n",
        "# TYPE h histogram\n",
        "h_bucket{le=\"1\"} 0 # {} 0.5\n",
        "h_bucket{le=\"+Inf\"} 1 # {a=\"# {\"} 4\n",
        "# EOF\n",
    ))
    .unwrap();
    assert_eq!(p.samples.len(), 3);
    for bad in [
        "# TYPE g gauge\ng 1 # {a=\"b\"} 1\n",
        "# TYPE a counter\na_created 1 # {a=\"b\"} 1\n",
        "# TYPE a counter\na_total 1 #{a=\"b\"} 1\n",
        "# TYPE a counter\na_total 1 # {a=\"b\"}1\n",
        "# TYPE a counter\na_total 1 # {a=\"b\"} 1 \n",
        "# TYPE a counter\na_total 1 # {a=\"b\"} 1 NaN\n",
        "# TYPE a counter\na_total 1 # {a=\"b\"}\n",
        "# TYPE a counter\na_total 1 #\n",
    ] {
        om_err(&format!("{bad}# EOF\n"));
    }
    let long = "x".repeat(127);
    om(&format!(
        "# TYPE a counter\na_total 1 # {{a=\"{long}\"}} 1\n# EOF\n"
    ))
    .unwrap();
    om_err(&format!(
        "# TYPE a counter\na_total 1 # {{ab=\"{long}\"}} 1\n# EOF\n"
    ));
}

#[test]
fn om_le_normalized_for_histograms_only() {
    let p = om(concat!(
        "# TYPE h histogram\n",
        "h_bucket{le=\"1\"} 0\n",
        "h_bucket{le=\"1e+05\"} 0\n",
        "h_bucket{le=\"+Inf\"} 0\n",
        "# TYPE g gaugehistogram\n",
        "g_bucket{le=\"1\"} 0\n",
        "g_bucket{le=\"+Inf\"} 0\n",
        "# TYPE s summary\n",
        "s{quantile=\"1\"} 0\n",
        "# EOF\n",
    ))
    .unwrap();
    let le: Vec<_> = p
        .samples
        .iter()
        .map(|s| s.labels.get("le").or(s.labels.get("quantile")).unwrap())
        .collect();
    assert_eq!(le, ["1.0", "100000.0", "+Inf", "1", "+Inf", "1.0"]);
}

#[test]
fn om_histogram_structure() {
    let ok = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\nh_sum 3\nh_created 1\n";
    om(&format!("{ok}# EOF\n")).unwrap();
    for bad in [
        "# TYPE h histogram\nh_sum 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 0\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 0\nh_count 0\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 2\nh_sum 1\n",
        "# TYPE h histogram\nh_bucket{le=\"2\"} 0\nh_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+INF\"} 0\n",
        "# TYPE h histogram\nh_bucket 0\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1.5\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} NaN\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count{le=\"1\"} 1\nh_sum 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum -1\n",
        "# TYPE g gaugehistogram\ng_bucket{le=\"+Inf\"} 1\ng_gcount 1\n",
        "# TYPE g gaugehistogram\ng_bucket{le=\"+Inf\"} 1\ng_gsum -1\ng_gcount 1\n",
    ] {
        om_err(&format!("{bad}# EOF\n"));
    }
    // Negative buckets: gauge histograms may have a negative gsum.
    om("# TYPE g gaugehistogram\ng_bucket{le=\"-1\"} 1\ng_bucket{le=\"+Inf\"} 1\ng_gcount 1\ng_gsum -5\n# EOF\n").unwrap();
}

#[test]
fn om_relaxations_for_client_golang() {
    // Histograms with negative bounds and a (negative) sum, summaries with
    // negative quantile values and sums: against the spec, emitted by
    // client_golang, accepted by Prometheus.
    om(concat!(
        "# TYPE h histogram\n",
        "h_bucket{le=\"-1\"} 1\n",
        "h_bucket{le=\"+Inf\"} 2\n",
        "h_sum -3\n",
        "h_count 2\n",
        "# TYPE s summary\n",
        "s{quantile=\"0.5\"} -1\n",
        "s_sum -2\n",
        "s_count 2\n",
        "# EOF\n",
    ))
    .unwrap();
}

#[test]
fn om_value_rules_per_type() {
    for bad in [
        "# TYPE a counter\na_total -1\n",
        "# TYPE a counter\na_total NaN\n",
        "# TYPE a summary\na_count -1\n",
        "# TYPE a summary\na_count 1.5\n",
        "# TYPE a summary\na_sum NaN\n",
        "# TYPE a summary\na 0\n",
        "# TYPE a summary\na{quantile=\"1.01\"} 0\n",
        "# TYPE a summary\na{quantile=\"NaN\"} 0\n",
        "# TYPE a summary\na_sum{quantile=\"0.5\"} 0\n",
        "# TYPE a info\na_info{foo=\"bar\"} 2\n",
        "# TYPE a stateset\na{a=\"bar\"} 2\n",
        "# TYPE a stateset\na 0\n",
    ] {
        om_err(&format!("{bad}# EOF\n"));
    }
    om_ok("# TYPE a stateset\na{a=\"x\"} 0\na{a=\"y\"} 1.0\n# TYPE b info\nb_info{v=\"1\"} 1\n# EOF\n");
    om_ok("# TYPE a summary\na{quantile=\"0.5\"} NaN\na_count 0\n# EOF\n");
    om_ok("# TYPE a gauge\na NaN\n# TYPE b counter\nb_total 9223372036854775808\n# EOF\n");
}

#[test]
fn om_metadata_rules() {
    for bad in [
        "# TYPE a counter\n# TYPE a counter\n",
        "# HELP a x\n# HELP a x\n",
        "# UNIT a_s s\n# UNIT a_s s\n",
        "# TYPE a gauge\na 1\n# HELP a late\n",
        "# HELP a x\na 1\n# TYPE a gauge\n",
        "# UNIT a seconds\n",
        "# UNIT a_seconds seconds \n",
        "# TYPE x_u info\n# UNIT x_u u\n",
        "# UNIT x_u u\n# TYPE x_u stateset\n",
    ] {
        om_err(&format!("{bad}# EOF\n"));
    }
    let p =
        om("# HELP a \n# UNIT a \n# HELP b help\n# TYPE b counter\nb_total 1\n# EOF\n").unwrap();
    let md: Vec<_> = p
        .metadata
        .iter()
        .map(|m| (m.family.as_str(), m.kind, m.help.as_str(), m.unit.as_str()))
        .collect();
    assert_eq!(
        md,
        [
            ("a", MetricType::Unknown, "", ""),
            ("b", MetricType::Counter, "help", "")
        ]
    );
}

#[test]
fn om_families_must_not_clash_or_interleave() {
    for bad in [
        "# TYPE a_created gauge\n# TYPE a counter\n",
        "# TYPE a counter\na_total 1\n# TYPE b gauge\nb 1\n# HELP a again\n",
        "a 1\nb 1\na 2\n",
        "# TYPE a counter\na 1\n",
        "# TYPE a summary\nquantile{quantile=\"0\"} 0\na_sum{a=\"1\"} 0\n",
    ] {
        om_err(&format!("{bad}# EOF\n"));
    }
    // A family named like another's suffix is fine if it cannot clash.
    om_ok("# TYPE a_bucket gauge\na_bucket 1\n# TYPE a gauge\na 1\n# EOF\n");
}

#[test]
fn om_metrics_and_points_must_not_interleave() {
    for bad in [
        // metric {a="1"} comes back
        "# TYPE a gauge\na{a=\"1\"} 0\na{a=\"2\"} 0\na{a=\"1\"} 0\n",
        "# TYPE h histogram\nh_sum{a=\"1\"} 0\nh_bucket{a=\"2\",le=\"+Inf\"} 0\nh_count{a=\"2\"} 0\nh_sum{a=\"2\"} 0\nh_bucket{a=\"1\",le=\"+Inf\"} 0\nh_count{a=\"1\"} 0\n",
        // timestamps going backwards, mixed, duplicated without timestamps
        "# TYPE a gauge\na 0 1.1\na 0 1\n",
        "# TYPE a gauge\na 0 -1\na 0 -1.1\n",
        "# TYPE a gauge\na 0\na 0 0\n",
        "# TYPE a gauge\na 0 0\na 0\n",
        "# TYPE a gauge\na 0\na 1\n",
        "# TYPE a counter\na_total 1\na_total 2\n",
    ] {
        om_err(&format!("{bad}# EOF\n"));
    }
    // Equal timestamps and several points per metric are fine.
    assert_eq!(
        om_ok("# TYPE a gauge\na 1 0\na 2 0\na 3 0.0000000001\n# EOF\n").len(),
        3
    );
    om_ok(concat!(
        "# TYPE foo_seconds summary\n",
        "foo_seconds_count{a=\"bb\"} 0 123\n",
        "foo_seconds_sum{a=\"bb\"} 0 123\n",
        "foo_seconds_count{a=\"bb\"} 0 456\n",
        "foo_seconds_sum{a=\"bb\"} 0 456\n",
        "foo_seconds_count{a=\"ccc\"} 0 123\n",
        "foo_seconds_sum{a=\"ccc\"} 0 123\n",
        "# EOF\n",
    ));
    om_err(concat!(
        "# TYPE foo_seconds summary\n",
        "foo_seconds_count{a=\"bb\"} 0 123\n",
        "foo_seconds_count{a=\"bb\"} 0 456\n",
        "foo_seconds_sum{a=\"bb\"} 0 123\n",
        "# EOF\n",
    ));
}

#[test]
fn om_samples_without_metadata_form_unknown_families() {
    let p = om("a_total 1\nfoo_bucket{le=\"1\"} 2\n# EOF\n").unwrap();
    assert_eq!(lines(&p), ["a_total{} 1", "foo_bucket{le=\"1\"} 2"]);
    assert!(p.metadata.is_empty());
}

#[test]
fn om_null_bytes_allowed_in_strings() {
    let p = om("# HELP a he\0lp\na{b=\"x\0y\"} 1\n# EOF\n").unwrap();
    assert_eq!(p.metadata[0].help, "he\0lp");
    assert_eq!(p.samples[0].labels.get("b"), Some("x\0y"));
}

// --- robustness -------------------------------------------------------------------

/// Scraped bodies are untrusted: random edits of valid pages must give a
/// result or an error, never a panic (slicing inside a UTF-8 character,
/// overflow, an `expect` that does not hold...).
#[test]
fn mutated_pages_never_panic() {
    let seeds: &[&str] = &[
        concat!(
            "# HELP h_seconds Latency \\\\ \\n \\\"x\\\".\n",
            "# TYPE h_seconds histogram\n",
            "# UNIT h_seconds seconds\n",
            "h_seconds_bucket{a=\"é☃\\\\\",le=\"0.5\"} 1 1.5 # {t=\"x\"} 0.4 1.25\n",
            "h_seconds_bucket{a=\"é☃\\\\\",le=\"+Inf\"} 2 1.5\n",
            "h_seconds_count{a=\"é☃\\\\\"} 2 1.5\n",
            "h_seconds_sum{a=\"é☃\\\\\"} 0.7 1.5\n",
            "# TYPE s summary\n",
            "s{quantile=\"0.9\"} NaN\n",
            "s_count 1\n",
            "# TYPE st stateset\n",
            "st{st=\"a\"} 1\n",
            "# TYPE i info\n",
            "i_info{v=\"1\"} 1\n",
            "# TYPE c counter\n",
            "c_total -0 123\n",
            "c_created 1e9 123\n",
            "# EOF\n",
        ),
        concat!(
            "# HELP m doc \\\\ \\n\n",
            "# TYPE m summary\n",
            "m{quantile=\"0.5\", x = \"y\" ,} 1 -5\n",
            "m_sum 2\n",
            "{\"u.tf8\", \"l.b\"=\"ü\"} +Inf\n",
            "  x_bucket{le=\"1e3\"}\t7\n",
        ),
    ];
    let alphabet: &[&str] = &[
        "\n",
        " ",
        "\t",
        "{",
        "}",
        "\"",
        "\\",
        "=",
        ",",
        "#",
        "e",
        "-",
        "+",
        ".",
        "0",
        "9",
        "_",
        "é",
        "☃",
        "\u{10348}",
        "\0",
        "# EOF",
        "Inf",
        "NaN",
        "le",
        "_total",
        "_bucket",
    ];
    om(seeds[0]).unwrap();
    strict(seeds[1]).unwrap();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for seed in seeds {
        for _ in 0..3000 {
            let mut s = seed.to_string();
            for _ in 0..1 + next(4) {
                let mut at = next(s.len() + 1);
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                match next(3) {
                    0 => s.insert_str(at, alphabet[next(alphabet.len())]),
                    1 => {
                        let mut end = (at + 1 + next(6)).min(s.len());
                        while !s.is_char_boundary(end) {
                            end += 1;
                        }
                        s.replace_range(at..end, "");
                    }
                    _ => {
                        let mut end = (at + 1).min(s.len());
                        while !s.is_char_boundary(end) {
                            end += 1;
                        }
                        s.replace_range(at..end, alphabet[next(alphabet.len())]);
                    }
                }
            }
            for f in [Format::PromText, Format::OpenMetrics] {
                let _ = parse(s.as_bytes(), f);
            }
            let _ = strict(&s);
            // Raw bytes too, cut anywhere (invalid UTF-8 included).
            let cut = next(s.len() + 1);
            for f in [Format::PromText, Format::OpenMetrics] {
                let _ = parse(&s.as_bytes()[..cut], f);
            }
        }
    }
}

// --- lint (`wasmon check metrics`) -------------------------------------------------

#[track_caller]
fn lint_lines(page: &str) -> Vec<String> {
    lint::lint(page.as_bytes())
        .unwrap_or_else(|e| panic!("{page:?}: {e}"))
        .iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn lint_rules_like_promlint() {
    let help = |n: &str, t: &str| format!("# HELP {n} x\n# TYPE {n} {t}\n");
    for (page, want) in [
        (format!("{}a_total 1\n", help("a_total", "counter")), vec![]),
        (
            "a 1\n".to_string(),
            vec!["a no help text"],
        ),
        (
            format!("{}a 1\n", help("a", "counter")),
            vec![r#"a counter metrics should have "_total" suffix"#],
        ),
        (
            format!("{}a_total 1\n", help("a_total", "gauge")),
            vec![r#"a_total non-counter metrics should not have "_total" suffix"#],
        ),
        (
            format!("{}d_milliseconds 1\n", help("d_milliseconds", "gauge")),
            vec![r#"d_milliseconds use base unit "seconds" instead of "milliseconds""#],
        ),
        (
            format!("{}g_ms 1\n", help("g_ms", "gauge")),
            vec!["g_ms metric names should not contain abbreviated units"],
        ),
        (
            format!("{}x_gauge 1\n", help("x_gauge", "gauge")),
            vec!["x_gauge metric name should not include type 'gauge'"],
        ),
        (
            format!("{}a:b 1\n", help("a:b", "gauge")),
            vec!["a:b metric names should not contain ':'"],
        ),
        (
            format!("{}aB{{cD=\"1\"}} 1\n", help("aB", "gauge")),
            vec![
                "aB label names should be written in 'snake_case' not 'camelCase'",
                "aB metric names should be written in 'snake_case' not 'camelCase'",
            ],
        ),
        (
            format!("{}c_count{{le=\"1\"}} 1\n", help("c_count", "gauge")),
            vec![
                r#"c_count non-histogram and non-summary metrics should not have "_count" suffix"#,
                r#"c_count non-histogram metrics should not have "le" label"#,
            ],
        ),
        (
            format!("{}u 1\nu 2\n", help("u", "gauge")),
            vec!["u metric not unique"],
        ),
        // A histogram's parts are one family, keyed without `le`.
        (
            format!(
                "{}h_seconds_bucket{{le=\"1\"}} 1\nh_seconds_bucket{{le=\"+Inf\"}} 1\nh_seconds_sum 1\nh_seconds_count 1\n",
                help("h_seconds", "histogram")
            ),
            vec![],
        ),
    ] {
        assert_eq!(lint_lines(&page), want, "{page:?}");
    }
    // What expfmt refuses is an error, not a lint problem.
    assert_eq!(lint::lint(b"a 1").unwrap_err().line, 1);
}
