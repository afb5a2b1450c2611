//! `config::import` of prometheus.yml over Prometheus' own testdata
//! (`../shared/conformance/prometheus/config/testdata`): every `*.good.yml`
//! imports and passes wasmon's config check, with its unsupported keys
//! listed here so that a regression (a key newly dropped, or newly
//! reported) shows; every `*.bad.yml` is refused, naming the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wasmon::config::import::{import, FindingKind, Sources};

const TESTDATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/prometheus/config/testdata"
);

fn files(suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(TESTDATA)
        .expect("conformance testdata is there")
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Imports `path` as a prometheus.yml and checks the TOML: Ok(the
/// unsupported keys, sorted and unique) or Err(the message).
fn import_and_check(path: &Path) -> Result<Vec<String>, String> {
    let sources = Sources {
        prometheus: Some(path.to_path_buf()),
        ..Default::default()
    };
    let imported = import(&sources).map_err(|e| e.to_string())?;
    imported
        .config(&format!("{} (imported)", path.display()))
        .map_err(|e| format!("{e:#}"))?;
    let mut keys: Vec<String> = imported
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Unsupported)
        .map(|f| f.key.clone())
        .collect();
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// The `*.good.yml` files that carry keys wasmon has no equivalent for,
/// and those keys (every other good file imports with no unsupported key).
const UNSUPPORTED: &[(&str, &[&str])] = &[
    (
        "conf.good.yml",
        &[
            "global.query_log_file",
            "global.scrape_failure_log_file",
            "global.target_limit",
            "otlp",
            "remote_read[0]",
            "remote_read[1]",
            "remote_write[0].oauth2",
            "remote_write[1].protobuf_message",
            "remote_write[1].tls_config",
            "runtime",
            "scrape_configs[0].fallback_scrape_protocol",
            "scrape_configs[0].http_headers",
            "scrape_configs[0].scrape_failure_log_file",
            "scrape_configs[0].tls_config.min_version",
            "scrape_configs[10].lightsail_sd_configs",
            "scrape_configs[11].azure_sd_configs",
            "scrape_configs[12].nerve_sd_configs",
            "scrape_configs[17].triton_sd_configs",
            "scrape_configs[18].digitalocean_sd_configs",
            "scrape_configs[19].docker_sd_configs",
            "scrape_configs[1].scrape_protocols",
            "scrape_configs[1].target_limit",
            "scrape_configs[20].dockerswarm_sd_configs",
            "scrape_configs[21].oci_sd_configs",
            "scrape_configs[22].openstack_sd_configs",
            "scrape_configs[23].puppetdb_sd_configs",
            "scrape_configs[24].hetzner_sd_configs",
            "scrape_configs[24].scrape_native_histograms",
            "scrape_configs[25].eureka_sd_configs",
            "scrape_configs[26].ovhcloud_sd_configs",
            "scrape_configs[27].scaleway_sd_configs",
            "scrape_configs[28].linode_sd_configs",
            "scrape_configs[29].stackit_sd_configs",
            "scrape_configs[2].consul_sd_configs",
            "scrape_configs[30].uyuni_sd_configs",
            "scrape_configs[31].ionos_sd_configs",
            "scrape_configs[32].vultr_sd_configs",
            "scrape_configs[33].outscale_sd_configs",
            "scrape_configs[6].kuma_sd_configs",
            "scrape_configs[7].marathon_sd_configs",
            "scrape_configs[8].nomad_sd_configs",
            "scrape_configs[9].ec2_sd_configs",
            "storage.tsdb.out_of_order_time_window",
            "storage.tsdb.retention.percentage",
            "storage.tsdb.stale_series_compaction_threshold",
            "tracing",
        ],
    ),
    (
        "global_convert_classic_hist_to_nhcb.good.yml",
        &["global.convert_classic_histograms_to_nhcb"],
    ),
    (
        "global_enable_extra_scrape_metrics.good.yml",
        &["global.extra_scrape_metrics"],
    ),
    (
        "global_enable_scrape_native_hist.good.yml",
        &["global.scrape_native_histograms"],
    ),
    (
        "global_enable_scrape_native_hist_and_scrape_protocols.good.yml",
        &["global.scrape_native_histograms", "global.scrape_protocols"],
    ),
    (
        "global_scrape_protocols_and_local_disable_scrape_native_hist.good.yml",
        &["global.scrape_native_histograms", "global.scrape_protocols"],
    ),
    (
        "local_convert_classic_hist_to_nhcb.good.yml",
        &["scrape_configs[0].convert_classic_histograms_to_nhcb"],
    ),
    (
        "local_disable_convert_classic_hist_to_nhcb.good.yml",
        &["global.convert_classic_histograms_to_nhcb"],
    ),
    (
        "local_disable_extra_scrape_metrics.good.yml",
        &["global.extra_scrape_metrics"],
    ),
    (
        "local_disable_scrape_native_hist.good.yml",
        &["global.scrape_native_histograms"],
    ),
    (
        "local_enable_extra_scrape_metrics.good.yml",
        &["scrape_configs[0].extra_scrape_metrics"],
    ),
    (
        "local_enable_scrape_native_hist.good.yml",
        &["scrape_configs[0].scrape_native_histograms"],
    ),
    (
        "local_enable_scrape_native_hist_and_scrape_protocols.good.yml",
        &[
            "scrape_configs[0].scrape_native_histograms",
            "scrape_configs[0].scrape_protocols",
        ],
    ),
    (
        "otlp_allow_keep_identifying_resource_attributes.good.yml",
        &["otlp"],
    ),
    ("otlp_allow_utf8.good.yml", &["otlp"]),
    ("otlp_convert_histograms_to_nhcb.good.yml", &["otlp"]),
    (
        "otlp_label_underscore_sanitization_defaults.good.yml",
        &["otlp"],
    ),
    (
        "otlp_label_underscore_sanitization_disabled.good.yml",
        &["otlp"],
    ),
    (
        "otlp_label_underscore_sanitization_enabled.good.yml",
        &["otlp"],
    ),
    ("otlp_no_translation.good.yml", &["otlp"]),
    ("otlp_promote_scope_metadata.good.yml", &["otlp"]),
    (
        "otlp_sanitize_ignore_resource_attributes.good.yml",
        &["otlp"],
    ),
    (
        "otlp_sanitize_promote_resource_attributes.good.yml",
        &["otlp"],
    ),
    (
        "otlp_sanitize_resource_attributes_promote_all.good.yml",
        &["otlp"],
    ),
    (
        "roundtrip.good.yml",
        &[
            "alerting.alertmanagers[0].file_sd_configs",
            "scrape_configs[1].azure_sd_configs",
            "scrape_configs[1].consul_sd_configs",
            "scrape_configs[1].digitalocean_sd_configs",
            "scrape_configs[1].docker_sd_configs",
            "scrape_configs[1].dockerswarm_sd_configs",
            "scrape_configs[1].ec2_sd_configs",
            "scrape_configs[1].kuma_sd_configs",
            "scrape_configs[1].marathon_sd_configs",
            "scrape_configs[1].nerve_sd_configs",
            "scrape_configs[1].openstack_sd_configs",
            "scrape_configs[1].triton_sd_configs",
        ],
    ),
    (
        "scrape_config_files_glob.good.yml",
        &["scrape_configs[0].vultr_sd_configs"],
    ),
    (
        "tsdb_chunk_encoding_floats_xor.good.yml",
        &["storage.tsdb.chunk_encoding"],
    ),
    (
        "tsdb_chunk_encoding_floats_xor2.good.yml",
        &["storage.tsdb.chunk_encoding"],
    ),
    (
        "tsdb_retention_percentage_float.good.yml",
        &["storage.tsdb.retention.percentage"],
    ),
];

#[test]
fn every_good_file_imports_and_checks_with_its_unsupported_keys_listed() {
    let expected: BTreeMap<&str, Vec<String>> = UNSUPPORTED
        .iter()
        .map(|(f, keys)| (*f, keys.iter().map(|k| k.to_string()).collect()))
        .collect();
    let good = files(".good.yml");
    assert!(good.len() > 40, "the corpus is there: {}", good.len());
    let mut failures = Vec::new();
    for f in &good {
        let n = name(f);
        match import_and_check(f) {
            Err(e) => failures.push(format!("{n}: refused: {e}")),
            Ok(keys) => {
                let want = expected.get(n.as_str()).cloned().unwrap_or_default();
                if keys != want {
                    failures.push(format!("{n}: unsupported keys {keys:?}, expected {want:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_bad_file_is_refused_naming_file_and_line() {
    let bad = files(".bad.yml");
    assert!(bad.len() > 100, "the corpus is there: {}", bad.len());
    let mut failures = Vec::new();
    for f in &bad {
        let n = name(f);
        match import_and_check(f) {
            Ok(keys) => failures.push(format!("{n}: accepted (unsupported: {keys:?})")),
            Err(e) => {
                // `file:line: why`: the file is the one given, or the
                // `scrape_config_files` file the error is in.
                let located = e
                    .split_once(": ")
                    .and_then(|(at, _)| at.rsplit_once(':'))
                    .is_some_and(|(file, line)| {
                        file.ends_with(".yml") && line.parse::<usize>().is_ok_and(|l| l > 0)
                    });
                if !located {
                    failures.push(format!("{n}: error without file:line: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A few messages checked word for word: Prometheus' text, at the line of
/// the key it is about.
#[test]
fn bad_files_name_the_line_with_prometheus_reason() {
    for (file, want) in [
        ("jobname_dup.bad.yml", ":7: found multiple scrape configs with job name \"prometheus\""),
        ("scrape_interval.bad.yml", ":4: scrape timeout greater than scrape interval for scrape config with job name \"prometheus\""),
        ("unknown_global_attr.bad.yml", ":2: field nonexistent_field not found in type config.GlobalConfig"),
        ("regex.bad.yml", ":4: invalid regex \"abc(def\""),
        ("rules.bad.yml", ":3: invalid rule file path \"my/*/rule\""),
        ("remote_write_authorization_header.bad.yml", ":5: authorization header must be changed via the basic_auth"),
        ("lowercase3.bad.yml", ":4: 'replacement' can not be set for lowercase action"),
        ("labelvalue.bad.yml", ":3: \"\u{FFFD}\" is not a valid label value"),
        ("section_key_dup.bad.yml", ":4: "),
    ] {
        let path = Path::new(TESTDATA).join(file);
        let e = import_and_check(&path).expect_err(file);
        let at = format!("{}{want}", path.display());
        assert!(e.starts_with(&at), "{file}: {e}\nwanted: {at}");
    }
}

/// Prometheus' documentation examples import and check.
#[test]
fn documentation_examples_import() {
    let dir = Path::new(TESTDATA).join("../../documentation/examples");
    let none: &[&str] = &[];
    for (file, want) in [
        (
            "prometheus.yml",
            &["scrape_configs[0].scrape_native_histograms"][..],
        ),
        ("prometheus-agent.yml", none),
        (
            "prometheus-kubernetes.yml",
            &["global.keep_dropped_targets"][..],
        ),
    ] {
        let keys = import_and_check(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(keys, want, "{file}");
    }
}

/// What a typical prometheus.yml becomes: the values as wasmon reads them,
/// Prometheus' defaults where they differ, secrets carried but never shown.
#[test]
fn keys_become_wasmon_config() {
    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("prometheus.yml");
    std::fs::write(
        &yml,
        r#"
global:
  scrape_interval: 15s
  evaluation_interval: 1m30s
  external_labels: {cluster: eu1, replica: "1"}
  sample_limit: 1000
rule_files: [rules/*.yml]
scrape_configs:
  - job_name: node
    scrape_interval: 5s
    metrics_path: /m
    params: {module: [a, b]}
    basic_auth: {username: u, password: "hunter2-${NOT_ENV}"}
    static_configs:
      - targets: ["127.0.0.1:9100"]
        labels: {team: x}
    relabel_configs:
      - {source_labels: [__address__], regex: "(.*):.*", target_label: host}
    metric_relabel_configs:
      - {source_labels: [__name__], regex: go_.*, action: drop}
    ec2_sd_configs:
      - region: eu-west-1
alerting:
  alertmanagers:
    - scheme: https
      path_prefix: am/
      static_configs: [{targets: ["am1:9093", "am2:9093"]}]
remote_write:
  - url: http://rw:9090/api/v1/write
    authorization: {credentials: s3cret-token}
    queue_config: {max_shards: 10, min_backoff: 1s}
"#,
    )
    .unwrap();
    let imported = import(&Sources {
        prometheus: Some(yml.clone()),
        ..Default::default()
    })
    .unwrap();
    let c = imported.config("prometheus.yml (imported)").unwrap();
    assert_eq!(c.global.scrape_interval, std::time::Duration::from_secs(15));
    assert_eq!(
        c.global.evaluation_interval,
        std::time::Duration::from_secs(90)
    );
    assert_eq!(
        c.global.external_labels.get("replica").map(String::as_str),
        Some("1")
    );
    assert_eq!(c.rule_files, ["rules/*.yml"]);
    let job = &c.scrape_configs[0];
    assert_eq!(job.scrape_interval, Some(std::time::Duration::from_secs(5)));
    // The global timeout (10s) is capped at the job's 5s, as Prometheus does.
    assert_eq!(job.scrape_timeout, Some(std::time::Duration::from_secs(5)));
    assert_eq!(job.sample_limit, 1000, "global limits apply to jobs");
    assert_eq!(job.metrics_path, "/m");
    assert_eq!(job.params["module"], ["a", "b"]);
    // Prometheus does not expand `${...}`: the password is literal.
    assert_eq!(
        job.basic_auth.as_ref().unwrap().password.expose(),
        "hunter2-${NOT_ENV}"
    );
    assert_eq!(job.static_configs[0].labels["team"], "x");
    assert_eq!(job.relabel_configs[0].target_label, "host");
    assert_eq!(job.metric_relabel_configs.len(), 1);
    let urls: Vec<&str> = c.alertmanagers.iter().map(|a| a.url.as_str()).collect();
    assert_eq!(urls, ["https://am1:9093/am", "https://am2:9093/am"]);
    let rw = &c.remote_write[0];
    assert_eq!(rw.bearer_token.as_ref().unwrap().expose(), "s3cret-token");
    assert_eq!(rw.queue_config.max_shards, 10);
    assert_eq!(
        rw.queue_config.min_backoff,
        std::time::Duration::from_secs(1)
    );

    let lines: Vec<String> = imported.findings.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        lines.len(),
        1,
        "only ec2_sd_configs is not carried: {lines:?}"
    );
    assert!(
        lines[0].starts_with(&format!(
            "{}:21: unsupported: scrape_configs[0].ec2_sd_configs: ",
            yml.display()
        )),
        "{lines:?}"
    );
    let shown = format!("{}{lines:?}", imported.header());
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cret"),
        "{shown}"
    );
}

/// A secret in a bad place is refused without being quoted.
#[test]
fn errors_never_quote_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("prometheus.yml");
    std::fs::write(
        &yml,
        "scrape_configs:\n  - job_name: a\n    bearer_token: hunter2\n    bearer_token_file: /x\n",
    )
    .unwrap();
    let e = import(&Sources {
        prometheus: Some(yml),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("prometheus.yml:2: ") && !e.contains("hunter2"),
        "{e}"
    );
}

/// `run --config` / `check config` on YAML: each file told apart by its
/// content, at most one of each, never mixed with a TOML config.
#[test]
fn load_files_tells_the_yaml_files_apart() {
    use wasmon::config::Config;
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("prometheus.yml");
    let prom2 = dir.path().join("other.yaml");
    let am = dir.path().join("alertmanager.yml");
    let toml = dir.path().join("wasmon.toml");
    std::fs::write(&prom, "scrape_configs:\n  - job_name: a\n").unwrap();
    std::fs::write(&prom2, "global:\n  scrape_interval: 5s\n").unwrap();
    std::fs::write(&am, "route:\n  receiver: x\nreceivers:\n  - name: x\n").unwrap();
    std::fs::write(&toml, "").unwrap();

    assert!(!wasmon::config::import::is_alertmanager_yaml(&prom).unwrap());
    assert!(wasmon::config::import::is_alertmanager_yaml(&am).unwrap());

    let c = Config::load_files(std::slice::from_ref(&prom)).unwrap();
    assert_eq!(c.scrape_configs[0].job_name.get_ref(), "a");
    assert_eq!(c.sources, std::slice::from_ref(&prom));
    assert_eq!(c.source.as_deref(), Some(prom.as_path()));

    let e = format!(
        "{:#}",
        Config::load_files(&[prom.clone(), prom2.clone()]).unwrap_err()
    );
    assert!(e.contains("both are prometheus.yml files"), "{e}");
    let e = format!(
        "{:#}",
        Config::load_files(&[toml.clone(), prom.clone()]).unwrap_err()
    );
    assert!(e.contains("not both"), "{e}");
    // A TOML file alone is loaded as it always was.
    let c = Config::load_files(std::slice::from_ref(&toml)).unwrap();
    assert_eq!(c.sources, [toml]);
}

/// Written elsewhere (`--out`), relative paths stay right: rule files,
/// file SD files and credential files become absolute against the source.
#[test]
fn relative_paths_are_rewritten_for_another_output_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let yml = dir.path().join("prometheus.yml");
    std::fs::write(
        &yml,
        "rule_files: [r.yml]\nscrape_configs:\n  - job_name: a\n    bearer_token_file: tok\n    file_sd_configs: [{files: [sd/*.json]}]\n",
    )
    .unwrap();
    let imported = import(&Sources {
        prometheus: Some(yml),
        out_dir: Some(out.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let c = imported.config("x").unwrap();
    let src = std::path::absolute(dir.path()).unwrap();
    assert_eq!(c.rule_files, [src.join("r.yml").display().to_string()]);
    let job = &c.scrape_configs[0];
    assert_eq!(
        job.bearer_token_file.as_deref(),
        Some(src.join("tok").as_path())
    );
    assert_eq!(
        job.file_sd_configs[0].files,
        [src.join("sd/*.json").display().to_string()]
    );
}
