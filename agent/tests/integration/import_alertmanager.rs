//! `wasmon config import --alertmanager`: Alertmanager's own config
//! testdata imported file by file (what imports and what it reports, what
//! is refused and why), and the imported route trees checked against
//! Debian's `amtool` 0.25 for generated label sets.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmon::alerting::route::Route;
use wasmon::config::import::{import, FindingKind, Sources};
use wasmon::model::Labels;

fn conformance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/alertmanager")
}

/// What importing one file gives.
enum Want {
    /// Imports and checks; these findings (`line kind key`) are reported.
    Imports(&'static [&'static str]),
    /// Refused with this message (at this line).
    Refused(usize, &'static str),
}

use Want::*;

/// Every config of Alertmanager's testdata (its `config/testdata`, the
/// amtool `cli/testdata`, and the doc examples). Alertmanager 0.25 is the
/// reference: amtool 0.25's `check-config` refuses the same files, except
/// `conf.mattermost-no-webhook-url.yml` (Mattermost is newer than 0.25:
/// its configs are reported rather than refused).
const CORPUS: &[(&str, Want)] = &[
    ("config/testdata/conf.empty-fields.yml", Imports(&[])),
    (
        "config/testdata/conf.good.yml",
        Imports(&[
            "105 unsupported receivers[5].victorops_configs[0]",
            "109 unsupported receivers[6].opsgenie_configs[0]",
            "112 unsupported receivers[7].pushover_configs[0]",
            "117 unsupported receivers[8].slack_configs[0].image_url",
        ]),
    ),
    ("config/testdata/conf.group-by-all.yml", Imports(&[])),
    ("config/testdata/conf.http-config.good.yml", Imports(&[])),
    (
        "config/testdata/conf.mattermost-both-webhook-url-and-file.yml",
        Refused(
            2,
            "field mattermost_webhook_url not found in type config.GlobalConfig",
        ),
    ),
    (
        "config/testdata/conf.mattermost-default-webhook-url-file.yml",
        Refused(2, "field mattermost_webhook_url_file not found"),
    ),
    (
        "config/testdata/conf.mattermost-default-webhook-url.yml",
        Refused(2, "field mattermost_webhook_url not found"),
    ),
    (
        "config/testdata/conf.mattermost-no-webhook-url.yml",
        Imports(&["7 unsupported receivers[0].mattermost_configs[0]"]),
    ),
    (
        "config/testdata/conf.mattermost-valid-receiver-both-webhook-url-and-file.yml",
        Refused(2, "field mattermost_webhook_url not found"),
    ),
    (
        "config/testdata/conf.nil-match_re-route.yml",
        Refused(6, "invalid regexp value for \"invalid_label\""),
    ),
    (
        "config/testdata/conf.nil-source_match_re-inhibition.yml",
        Refused(8, "invalid regexp value for \"invalid_source_label\""),
    ),
    (
        "config/testdata/conf.nil-target_match_re-inhibition.yml",
        Refused(10, "invalid regexp value for \"invalid_target_label\""),
    ),
    (
        "config/testdata/conf.opsgenie-both-file-and-apikey.yml",
        Refused(
            2,
            "at most one of opsgenie_api_key & opsgenie_api_key_file must be configured",
        ),
    ),
    (
        "config/testdata/conf.opsgenie-default-apikey-file.yml",
        Imports(&[
            "2 unsupported global.opsgenie_api_key_file",
            "16 unsupported receivers[0].opsgenie_configs[0]",
            "21 unsupported receivers[1].opsgenie_configs[0]",
        ]),
    ),
    (
        "config/testdata/conf.opsgenie-default-apikey-old-team.yml",
        Refused(
            8,
            "undefined receiver \"escalation-Y-opsgenie\" used in route",
        ),
    ),
    (
        "config/testdata/conf.opsgenie-default-apikey.yml",
        Imports(&[
            "2 unsupported global.opsgenie_api_key",
            "16 unsupported receivers[0].opsgenie_configs[0]",
            "21 unsupported receivers[1].opsgenie_configs[0]",
        ]),
    ),
    (
        "config/testdata/conf.opsgenie-no-apikey.yml",
        Refused(
            14,
            "no global OpsGenie API Key set either inline or in a file",
        ),
    ),
    (
        "config/testdata/conf.rocketchat-both-token-and-tokenfile.yml",
        Refused(2, "not found in type config.GlobalConfig"),
    ),
    (
        "config/testdata/conf.rocketchat-both-tokenid-and-tokenidfile.yml",
        Refused(2, "not found in type config.GlobalConfig"),
    ),
    (
        "config/testdata/conf.rocketchat-default-token-file.yml",
        Refused(2, "not found in type config.GlobalConfig"),
    ),
    (
        "config/testdata/conf.rocketchat-default-token.yml",
        Refused(2, "not found in type config.GlobalConfig"),
    ),
    (
        "config/testdata/conf.rocketchat-no-token.yml",
        Refused(2, "not found in type config.GlobalConfig"),
    ),
    (
        "config/testdata/conf.slack-both-file-and-token.yml",
        Refused(2, "field slack_app_token not found"),
    ),
    (
        "config/testdata/conf.slack-both-file-and-url.yml",
        Refused(
            2,
            "at most one of slack_api_url & slack_api_url_file must be configured",
        ),
    ),
    (
        "config/testdata/conf.slack-both-url-and-token.yml",
        Refused(2, "field slack_app_token not found"),
    ),
    (
        "config/testdata/conf.slack-default-api-url-file.yml",
        Imports(&[
            "2 note global.slack_api_url_file",
            "15 note receivers[0].slack_configs[1].api_url_file",
        ]),
    ),
    (
        "config/testdata/conf.slack-default-app-token.yml",
        Refused(2, "field slack_app_token not found"),
    ),
    (
        "config/testdata/conf.slack-no-api-url-or-token.yml",
        Refused(7, "no global Slack API URL set either inline or in a file"),
    ),
    (
        "config/testdata/conf.slack-update-message-and-webhook.yml",
        Refused(13, "field update_message not found"),
    ),
    (
        "config/testdata/conf.smtp-both-password-and-file.yml",
        Refused(
            2,
            "at most one of smtp_auth_password & smtp_auth_password_file must be configured",
        ),
    ),
    (
        "config/testdata/conf.smtp-no-username-or-password.yml",
        Imports(&[]),
    ),
    (
        "config/testdata/conf.smtp-password-global-and-local.yml",
        Refused(6, "field smtp_auth_secret_file not found"),
    ),
    (
        "config/testdata/conf.sns-invalid.yml",
        Refused(
            7,
            "must provide either a Target ARN, Topic ARN, or Phone Number for SNS config",
        ),
    ),
    (
        "config/testdata/conf.sns-topic-arn.yml",
        Imports(&["7 unsupported receivers[0].sns_configs[0]"]),
    ),
    (
        "config/testdata/conf.telegram-both-bot-token-and-file.yml",
        Refused(2, "field telegram_bot_token not found"),
    ),
    (
        "config/testdata/conf.telegram-default-bot-token-file.yml",
        Refused(2, "field telegram_bot_token_file not found"),
    ),
    (
        "config/testdata/conf.telegram-default-bot-token.yml",
        Refused(2, "field telegram_bot_token not found"),
    ),
    (
        "config/testdata/conf.telegram-no-bot-token.yml",
        Refused(7, "missing bot_token on telegram_config"),
    ),
    (
        "config/testdata/conf.telegram-valid-receiver-both-bot-token-and-file.yml",
        Refused(2, "field telegram_bot_token not found"),
    ),
    (
        "config/testdata/conf.victorops-both-file-and-apikey.yml",
        Refused(
            2,
            "at most one of victorops_api_key & victorops_api_key_file must be configured",
        ),
    ),
    (
        "config/testdata/conf.victorops-default-apikey-file.yml",
        Imports(&[
            "2 unsupported global.victorops_api_key_file",
            "16 unsupported receivers[0].victorops_configs[0]",
            "19 unsupported receivers[1].victorops_configs[0]",
        ]),
    ),
    (
        "config/testdata/conf.victorops-default-apikey.yml",
        Imports(&[
            "2 unsupported global.victorops_api_key",
            "16 unsupported receivers[0].victorops_configs[0]",
            "19 unsupported receivers[1].victorops_configs[0]",
        ]),
    ),
    (
        "config/testdata/conf.victorops-no-apikey.yml",
        Refused(14, "no global VictorOps API Key set"),
    ),
    (
        "config/testdata/conf.wechat-both-file-and-secret.yml",
        Refused(3, "field wechat_api_secret_file not found"),
    ),
    (
        "config/testdata/conf.wechat-default-api-secret-file.yml",
        Refused(2, "field wechat_api_secret_file not found"),
    ),
    (
        "config/testdata/conf.wechat-no-api-secret.yml",
        Refused(7, "no global Wechat ApiSecret set"),
    ),
    (
        "cli/testdata/conf.bad.yml",
        Refused(1, "the document is a scalar, not a map"),
    ),
    ("cli/testdata/conf.good.yml", Imports(&[])),
    ("cli/testdata/conf.routing-reverted.yml", Imports(&[])),
    ("cli/testdata/conf.routing.yml", Imports(&[])),
    (
        "doc/examples/route_labels.yml",
        Refused(22, "field labels not found"),
    ),
    (
        "doc/examples/simple.yml",
        Refused(124, "field tracing not found in type config"),
    ),
];

fn import_one(file: &Path) -> Result<wasmon::config::import::Imported, String> {
    import(&Sources {
        alertmanager: Some(file.to_path_buf()),
        ..Sources::default()
    })
    .map_err(|e| e.to_string())
}

#[test]
fn every_testdata_config_imports_and_checks_or_is_refused_naming_the_file() {
    let root = conformance();
    let mut listed: Vec<String> = CORPUS.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    let mut on_disk = Vec::new();
    for dir in ["config/testdata", "cli/testdata", "doc/examples"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".yml") {
                on_disk.push(format!("{dir}/{name}"));
            }
        }
    }
    on_disk.sort();
    assert_eq!(listed, on_disk, "every testdata config is listed");

    let mut failures = Vec::new();
    for (file, want) in CORPUS {
        let path = root.join(file);
        let shown = path.display().to_string();
        match (import_one(&path), want) {
            (Ok(imported), Imports(findings)) => {
                if let Err(e) = imported.config("imported") {
                    failures.push(format!("{file}: the imported TOML does not check: {e:#}"));
                    continue;
                }
                let got: Vec<String> = imported
                    .findings
                    .iter()
                    .map(|f| {
                        assert_eq!(f.file, shown);
                        let kind = match f.kind {
                            FindingKind::Unsupported => "unsupported",
                            FindingKind::Note => "note",
                        };
                        format!("{} {kind} {}", f.line, f.key)
                    })
                    .collect();
                if got != *findings {
                    failures.push(format!("{file}: findings {got:#?}, want {findings:#?}"));
                }
            }
            (Err(e), Refused(line, message)) => {
                let at = format!("{shown}:{line}: ");
                if !e.starts_with(&at) || !e.contains(message) {
                    failures.push(format!("{file}: refused with {e:?}, want {at}...{message}"));
                }
            }
            (Ok(_), Refused(..)) => failures.push(format!("{file}: imported, want refused")),
            (Err(e), Imports(_)) => failures.push(format!("{file}: refused: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A receiver's integrations, global defaults and `*_file` secrets in the
/// TOML: each integration an instance of its plugin, reachable through
/// the receiver's name; secrets as `${file:...}` references read when
/// the instance is prepared.
#[test]
fn receivers_become_plugin_instances_with_global_defaults_and_file_references() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slack_url"),
        "https://hooks.slack.example/T1/B2/s3cret\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("pd_key"), "pd-s3cret\n").unwrap();
    let yml = dir.path().join("alertmanager.yml");
    std::fs::write(
        &yml,
        r#"global:
  resolve_timeout: 2m
  slack_api_url_file: slack_url
  smtp_smarthost: mail.example:587
  smtp_from: am@example.org
  smtp_auth_username: am
  smtp_auth_password_file: /run/secrets/smtp
  http_config:
    proxy_url: http://proxy.example:3128
route:
  receiver: team
receivers:
  - name: team
    slack_configs:
      - channel: '#ops'
        title: '{{ .CommonLabels.alertname }} ${not-a-var}'
        send_resolved: true
    pagerduty_configs:
      - routing_key_file: pd_key
        url: https://pd.example:8443/v2/enqueue
        http_config:
          bearer_token_file: token
    email_configs:
      - to: ops@example.org
        text: hi
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:9/hook
        max_alerts: 3
"#,
    )
    .unwrap();
    let imported = import_one(&yml).unwrap();
    let toml = &imported.toml;
    for secret in ["s3cret", "pd-s3cret"] {
        assert!(!toml.contains(secret), "{secret} inlined:\n{toml}");
    }
    let out = dir.path().join("wasmon.toml");
    std::fs::write(&out, toml).unwrap();
    let c = wasmon::config::Config::load(&out).unwrap_or_else(|e| panic!("{e:#}\n{toml}"));
    assert_eq!(c.global.resolve_timeout.to_string(), "2m");
    let groups = c.receiver_groups();
    let team: Vec<(&str, &str)> = groups["team"]
        .iter()
        .map(|r| (r.name(), r.plugin.as_str()))
        .collect();
    assert_eq!(
        team,
        [
            ("team/slack[0]", "slack"),
            ("team/pagerduty[0]", "pagerduty"),
            ("team/email[0]", "email")
        ]
    );
    let json = |name: &str| -> serde_json::Value {
        let r = c.receivers.iter().find(|r| r.name() == name).unwrap();
        serde_json::from_str(&r.config_json(&c.plugins).unwrap()).unwrap()
    };
    let r = |name: &str| c.receivers.iter().find(|r| r.name() == name).unwrap();
    // The file is read when the instance is prepared, relative to the config.
    let slack = json("team/slack[0]");
    assert_eq!(slack["url"], "https://hooks.slack.example/T1/B2/s3cret");
    assert_eq!(slack["channel"], "#ops");
    // A `${` of the YAML stays literal.
    assert_eq!(slack["title"], "{{ .CommonLabels.alertname }} ${not-a-var}");
    assert_eq!(r("team/slack[0]").send_resolved, Some(true));
    // What the YAML leaves out is Alertmanager's default: its default.tmpl
    // definition, which the plugins render as Alertmanager does.
    assert_eq!(slack["text"], r#"{{ template "slack.default.text" . }}"#);
    assert_eq!(
        slack["fallback"],
        r#"{{ template "slack.default.fallback" . }}"#
    );
    let pd = json("team/pagerduty[0]");
    assert_eq!(
        pd["summary"],
        r#"{{ template "pagerduty.default.description" .}}"#
    );
    // (Its password file is not on this machine: read the TOML table.)
    let mail = &r("team/email[0]").config;
    let text = |k: &str| mail.get(k).and_then(|v| v.as_str());
    assert_eq!(
        text("html"),
        Some(r#"{{ template "email.default.html" . }}"#)
    );
    assert_eq!(
        text("subject"),
        Some(r#"{{ template "email.default.subject" . }}"#)
    );
    assert_eq!(text("text"), Some("hi"));
    let hosts = |name: &str| -> Vec<String> {
        r(name)
            .allow_hosts
            .iter()
            .map(|h| h.get_ref().clone())
            .collect()
    };
    assert_eq!(hosts("team/slack[0]"), ["hooks.slack.example"]);
    assert!(
        r("team/slack[0]").http_config.is_some(),
        "global http_config applies"
    );
    assert_eq!(json("team/pagerduty[0]")["routing_key"], "pd-s3cret");
    assert_eq!(hosts("team/pagerduty[0]"), ["pd.example:8443"]);
    let pd_http = toml::to_string(r("team/pagerduty[0]").http_config.as_ref().unwrap()).unwrap();
    assert!(
        !pd_http.contains("proxy_url"),
        "its own http_config wins: {pd_http}"
    );
    // The SMTP password file is absent here: referenced, not read at
    // import; preparing the instance names the key and the file.
    let err = r("team/email[0]")
        .config_json(&c.plugins)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "config.auth_password: file /run/secrets/smtp: No such file or directory (os error 2)"
    );
    let email = serde_json::to_value(&r("team/email[0]").config).unwrap();
    assert_eq!(email["auth_password"], "${file:/run/secrets/smtp}");
    assert_eq!(email["smarthost"], "mail.example:587");
    assert_eq!(email["from"], "am@example.org");
    assert_eq!(email["auth_username"], "am");
    assert_eq!(r("team/email[0]").send_resolved, Some(false));
    assert_eq!(hosts("team/email[0]"), ["mail.example:587"]);
    assert!(r("team/email[0]").http_config.is_none());
    let hook = json("hook");
    assert_eq!(hook["max_alerts"], 3);
    assert_eq!(r("hook").send_resolved, Some(true));
    assert_eq!(hosts("hook"), ["127.0.0.1:9"]);
}

/// A rich route tree: nesting, `continue`, regexes, every matcher form.
const RICH: &str = r#"route:
  receiver: default
  group_by: [alertname]
  routes:
    - matchers: ['severity="critical"', 'team=~"db|web"']
      receiver: pager
      continue: true
      routes:
        - match: {team: db}
          receiver: db-pager
    - match_re:
        service: ^(api|auth)$
      receiver: api
      routes:
        - matchers: ['env!="prod"']
          receiver: api-dev
        - matchers: ['region=~"eu-.*"', 'severity!~"info|debug"']
          receiver: api-eu
          continue: true
        - receiver: api-rest
    - matchers: ['team="web"']
      continue: true
      receiver: web
    - match: {team: web, env: prod}
      receiver: web-prod
    - matchers: ['alertname=~"Disk.*"']
      receiver: storage
receivers:
  - name: default
  - name: pager
  - name: db-pager
  - name: api
  - name: api-dev
  - name: api-eu
  - name: api-rest
  - name: web
  - name: web-prod
  - name: storage
"#;

/// Values worth trying for each label the tree's matchers name: the
/// literal values and the alternatives of simple regexes.
fn candidates(
    route: &serde_json::Value,
    out: &mut std::collections::BTreeMap<String, Vec<String>>,
) {
    let mut add = |name: &str, value: &str| {
        let v = value.trim_start_matches('^').trim_end_matches('$');
        let v = v.trim_start_matches('(').trim_end_matches(')');
        for alt in v.split('|') {
            let alt = alt.replace(".*", "-west").replace(".+", "x");
            if !alt.is_empty()
                && alt
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            {
                out.entry(name.to_string()).or_default().push(alt);
            }
        }
    };
    for key in ["match", "match_re"] {
        if let Some(m) = route.get(key).and_then(|m| m.as_object()) {
            for (k, v) in m {
                add(k, v.as_str().unwrap());
            }
        }
    }
    if let Some(ms) = route.get("matchers").and_then(|m| m.as_array()) {
        for line in ms {
            for m in wasmon::alerting::matcher::parse_matchers(line.as_str().unwrap()).unwrap() {
                add(&m.name, &m.value);
            }
        }
    }
    if let Some(children) = route.get("routes").and_then(|r| r.as_array()) {
        for c in children {
            candidates(c, out);
        }
    }
}

/// Label sets from the candidates and misses, drawn by a fixed generator.
fn label_sets(route: &serde_json::Value, n: usize) -> Vec<Vec<(String, String)>> {
    let mut cands = std::collections::BTreeMap::new();
    candidates(route, &mut cands);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |m: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % m as u64) as usize
    };
    let mut sets = Vec::new();
    for _ in 0..n {
        let mut set = Vec::new();
        for (name, values) in &cands {
            match next(values.len() + 2) {
                0 => {}
                1 => set.push((name.clone(), "miss".to_string())),
                i => set.push((name.clone(), values[i - 2].clone())),
            }
        }
        sets.push(set);
    }
    sets
}

fn amtool_receivers(yml: &Path, set: &[(String, String)]) -> String {
    let out = Command::new("/usr/bin/amtool")
        .arg("config")
        .arg("routes")
        .arg("test")
        .arg(format!("--config.file={}", yml.display()))
        .args(set.iter().map(|(k, v)| format!("{k}={v}")))
        .output()
        .expect("running amtool");
    assert!(
        out.status.success(),
        "amtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// For each imported route tree, the receivers `wasmon routes test` finds
/// (the same `Route::match_labels`) are amtool 0.25's, label set by label
/// set.
#[test]
fn imported_route_trees_route_as_amtool_does() {
    if !Path::new("/usr/bin/amtool").exists() {
        eprintln!("skipped: /usr/bin/amtool is not installed");
        return;
    }
    let _heavy = crate::fixtures::heavy();
    let dir = tempfile::tempdir().unwrap();
    let rich = dir.path().join("rich.yml");
    std::fs::write(&rich, RICH).unwrap();
    let root = conformance();
    let files = [
        rich,
        root.join("config/testdata/conf.good.yml"),
        root.join("config/testdata/conf.empty-fields.yml"),
        root.join("cli/testdata/conf.routing.yml"),
        root.join("cli/testdata/conf.routing-reverted.yml"),
    ];
    let mut compared = 0;
    for yml in &files {
        let imported = import_one(yml).unwrap();
        let config = imported.config("imported").unwrap();
        let route = config.route.clone().unwrap();
        let tree = Route::new(&route).unwrap();
        let route_json = serde_json::to_value(&route).unwrap();
        let per_file = if yml == &files[0] { 200 } else { 60 };
        for set in label_sets(&route_json, per_file) {
            let ours: Vec<String> = tree
                .match_labels(&Labels::from_pairs(set.clone()))
                .iter()
                .map(|r| r.opts.receiver.clone())
                .collect();
            let theirs = amtool_receivers(yml, &set);
            assert_eq!(ours.join(","), theirs, "{}: labels {set:?}", yml.display());
            compared += 1;
        }
    }
    assert_eq!(compared, 440);
}

/// Time intervals (a named location carried as it is), templates (paths
/// kept right from the output's directory), and what Alertmanager refuses,
/// each at its line.
#[test]
fn time_intervals_templates_and_refusals_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("am");
    std::fs::create_dir_all(&src).unwrap();
    let yml = src.join("alertmanager.yml");
    let base = r#"templates:
  - 'tmpl/*.tmpl'
  - /abs/x.tmpl
route:
  receiver: r
  routes:
    - receiver: r
      mute_time_intervals: [nights]
      active_time_intervals: [office]
receivers:
  - name: r
mute_time_intervals:
  - name: nights
    time_intervals:
      - times: [{start_time: '00:00', end_time: '06:00'}]
time_intervals:
  - name: office
    time_intervals:
      - weekdays: ['monday:friday']
        days_of_month: ['1:5', '-3:-1']
        months: ['january:march']
        years: ['2020:2030']
        location: Australia/Sydney
"#;
    std::fs::write(&yml, base).unwrap();
    let out_dir = dir.path().join("out");
    let imported = import(&Sources {
        alertmanager: Some(yml.clone()),
        out_dir: Some(out_dir),
        ..Sources::default()
    })
    .unwrap();
    let t: toml::Table = imported.toml.parse().unwrap();
    let templates: Vec<&str> = t["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        templates,
        [src.join("tmpl/*.tmpl").to_str().unwrap(), "/abs/x.tmpl"]
    );
    let office = &t["time_intervals"][0]["time_intervals"][0];
    assert_eq!(office["location"].as_str(), Some("Australia/Sydney"));
    assert_eq!(office["weekdays"][0].as_str(), Some("monday:friday"));
    assert_eq!(
        t["mute_time_intervals"][0]["time_intervals"][0]["times"][0]["end_time"].as_str(),
        Some("06:00")
    );
    let route = &t["route"]["routes"][0];
    assert_eq!(route["mute_time_intervals"][0].as_str(), Some("nights"));
    // Without the named location, wasmon checks it all today (IANA zones
    // are another part of #21).
    let utc = imported.toml.replace("Australia/Sydney", "UTC");
    wasmon::config::Config::parse(&utc, "imported").unwrap();

    let shown = yml.display().to_string();
    for (from, to, line, message) in [
        (
            "receiver: r\n  routes",
            "receiver: r\n  continue: true\n  routes",
            5,
            "cannot have continue in root route",
        ),
        (
            "  receiver: r\n  routes",
            "  routes",
            5,
            "root route must specify a default receiver",
        ),
        (
            "    - receiver: r\n",
            "    - receiver: nobody\n",
            7,
            "undefined receiver \"nobody\" used in route",
        ),
        (
            "[nights]",
            "[days]",
            8,
            "undefined time interval \"days\" used in route",
        ),
        (
            "  - name: office",
            "  - name: nights",
            17,
            "time interval \"nights\" is not unique",
        ),
        (
            "mute_time_intervals: [nights]",
            "matchers: ['a=~\"(\"']",
            8,
            "route.routes[0].matchers",
        ),
        (
            "mute_time_intervals: [nights]",
            "group_wait: soon",
            8,
            "not a valid duration",
        ),
        (
            "      - weekdays: ['monday:friday']",
            "      - weekdays: ['someday']",
            19,
            "someday is not a valid weekday",
        ),
        (
            "receivers:\n  - name: r\n",
            "receivers:\n  - name: r\n  - name: r\n",
            12,
            "notification config name \"r\" is not unique",
        ),
        (
            "receivers:\n  - name: r\n",
            "receivers:\n  - name: r\n    nosuch_configs: []\n",
            12,
            "field nosuch_configs not found",
        ),
    ] {
        assert!(base.contains(from), "{from}");
        std::fs::write(&yml, base.replacen(from, to, 1)).unwrap();
        let e = import_one(&yml).unwrap_err();
        assert!(
            e.starts_with(&format!("{shown}:{line}: ")) && e.contains(message),
            "{to}: {e}"
        );
    }
    // A tree deeper than the TOML config holds is refused at the first
    // node too deep, never overflowing the stack.
    for (depth, ok) in [(50, true), (51, false), (99, false), (5000, false)] {
        let mut text = String::from("route:\n  receiver: r\n");
        let mut indent = String::from("  ");
        for _ in 0..depth {
            text.push_str(&format!("{indent}routes:\n{indent}  - receiver: r\n"));
            indent.push_str("    ");
        }
        text.push_str("receivers:\n  - name: r\n");
        std::fs::write(&yml, text).unwrap();
        match import_one(&yml) {
            Ok(imported) if ok => {
                imported.config("imported").unwrap();
            }
            Err(e) if !ok && depth < 100 => assert!(
                e.starts_with(&format!("{shown}:104: "))
                    && e.ends_with("route tree nested deeper than 50 levels"),
                "{e}"
            ),
            // Refused as YAML: too deep to read.
            Err(e) if !ok => assert!(
                e.starts_with(&format!("{shown}:")) && e.ends_with("nested deeper than 200 levels"),
                "{e}"
            ),
            other => panic!("depth {depth}: {other:?}"),
        }
    }
}
