//! Every key of Prometheus' config sections (`config/config.go`, the SD
//! configs, `prometheus/common`'s HTTP client), 2.42 and 3.x: what it
//! becomes in wasmon's TOML, or why it is not carried.

/// One section's keys.
pub type Spec = &'static [(&'static str, K)];

/// What a key's value becomes.
pub enum K {
    /// A string, same key.
    Str,
    /// A credential: carried, never printed; `${` escaped (wasmon expands
    /// `${VAR}` there, Prometheus does not).
    Secret,
    /// A string wasmon expands `${VAR}` in (usernames, selectors).
    Expanded,
    /// A file path, made right from the output's directory.
    Path,
    Bool,
    Uint,
    /// A Prometheus duration, written for a humantime field.
    Dur,
    /// A Prometheus duration, written for a field that reads Prometheus' syntax.
    PromDur,
    /// `units.Base2Bytes` (`10MB` = 10 MiB), written as bytes.
    Bytes,
    StrList,
    /// A list of file paths or globs, each made right from the output's directory.
    PathList,
    /// Label names to values, names checked.
    LabelMap,
    /// A string map; `true`: its values are credentials.
    StrMap(bool),
    /// `params`: names to lists of values.
    Params,
    /// A relabel rule list; the text for a null rule.
    Relabels(&'static str),
    Table(&'static [Spec], &'static str),
    /// A list of tables; the text for a null item.
    Tables(&'static [Spec], &'static str, &'static str),
    /// `TLS10`..`TLS13`: wasmon (rustls) has 1.2 and 1.3 only.
    TlsVersion,
    /// Checked by the caller, not written as it is.
    Checked,
    Unsupported(&'static str),
    /// Unsupported, but the value given (as written) is what wasmon does
    /// anyway: reported only for another value.
    UnsupportedUnless(&'static str, &'static str),
}

use K::*;

pub const ROOT: Spec = &[
    ("global", Checked),
    (
        "runtime",
        Unsupported("Go runtime settings (GOGC) have no meaning for wasmon"),
    ),
    ("alerting", Checked),
    ("rule_files", Checked),
    ("scrape_config_files", Checked),
    ("scrape_configs", Checked),
    ("storage", Checked),
    ("tracing", Checked),
    ("remote_write", Checked),
    ("remote_read", Checked),
    ("otlp", Checked),
];

pub const GLOBAL: Spec = &[
    ("scrape_interval", Dur),
    ("scrape_timeout", Dur),
    (
        "scrape_protocols",
        Unsupported(
            "wasmon negotiates OpenMetrics and the text format itself and has no protobuf parser",
        ),
    ),
    ("evaluation_interval", Dur),
    (
        "rule_query_offset",
        Unsupported("wasmon evaluates rules at the evaluation time, with no offset"),
    ),
    ("query_log_file", Unsupported("wasmon has no query log")),
    (
        "scrape_failure_log_file",
        Unsupported("wasmon logs failed scrapes through its own log and /api/v1/targets"),
    ),
    ("external_labels", LabelMap),
    ("body_size_limit", Bytes),
    ("sample_limit", Uint),
    (
        "target_limit",
        Unsupported("wasmon has no per-job target limit"),
    ),
    ("label_limit", Uint),
    ("label_name_length_limit", Uint),
    ("label_value_length_limit", Uint),
    (
        "keep_dropped_targets",
        Unsupported("wasmon does not keep dropped targets for the API"),
    ),
    (
        "metric_name_validation_scheme",
        UnsupportedUnless(
            "legacy",
            "wasmon accepts legacy metric and label names only",
        ),
    ),
    (
        "metric_name_escaping_scheme",
        Unsupported("wasmon accepts legacy metric and label names only"),
    ),
    (
        "scrape_native_histograms",
        Unsupported("wasmon stores no native histograms"),
    ),
    (
        "convert_classic_histograms_to_nhcb",
        Unsupported("wasmon stores no native histograms"),
    ),
    (
        "always_scrape_classic_histograms",
        UnsupportedUnless(
            "true",
            "wasmon always scrapes classic histograms (it has no native ones)",
        ),
    ),
    (
        "extra_scrape_metrics",
        Unsupported("wasmon writes the standard scrape_* series only"),
    ),
];

/// The limits a job takes from `global` when it sets none.
pub const JOB_LIMITS: &[&str] = &[
    "body_size_limit",
    "sample_limit",
    "label_limit",
    "label_name_length_limit",
    "label_value_length_limit",
];

const RELABEL_NULL_TARGET: &str = "empty or null target relabeling rule in scrape config";
const RELABEL_NULL_METRIC: &str = "empty or null metric relabeling rule in scrape config";

pub const JOB: Spec = &[
    ("job_name", Str),
    ("honor_labels", Bool),
    ("honor_timestamps", Bool),
    (
        "track_timestamps_staleness",
        Unsupported("wasmon does not mark explicit-timestamp series stale when they disappear"),
    ),
    ("params", Params),
    ("scrape_interval", Dur),
    ("scrape_timeout", Dur),
    (
        "scrape_protocols",
        Unsupported(
            "wasmon negotiates OpenMetrics and the text format itself and has no protobuf parser",
        ),
    ),
    (
        "fallback_scrape_protocol",
        Unsupported("wasmon reads an unknown Content-Type as the text format"),
    ),
    (
        "scrape_native_histograms",
        Unsupported("wasmon stores no native histograms"),
    ),
    (
        "always_scrape_classic_histograms",
        UnsupportedUnless(
            "true",
            "wasmon always scrapes classic histograms (it has no native ones)",
        ),
    ),
    (
        "convert_classic_histograms_to_nhcb",
        Unsupported("wasmon stores no native histograms"),
    ),
    (
        "scrape_classic_histograms",
        Unsupported("wasmon always scrapes classic histograms (it has no native ones)"),
    ),
    (
        "scrape_failure_log_file",
        Unsupported("wasmon logs failed scrapes through its own log and /api/v1/targets"),
    ),
    ("metrics_path", Str),
    ("scheme", Str),
    (
        "enable_compression",
        UnsupportedUnless("true", "wasmon always asks targets for gzip"),
    ),
    ("body_size_limit", Bytes),
    ("sample_limit", Uint),
    (
        "target_limit",
        Unsupported("wasmon has no per-job target limit"),
    ),
    ("label_limit", Uint),
    ("label_name_length_limit", Uint),
    ("label_value_length_limit", Uint),
    (
        "native_histogram_bucket_limit",
        Unsupported("wasmon stores no native histograms"),
    ),
    (
        "native_histogram_min_bucket_factor",
        Unsupported("wasmon stores no native histograms"),
    ),
    (
        "keep_dropped_targets",
        Unsupported("wasmon does not keep dropped targets for the API"),
    ),
    (
        "metric_name_validation_scheme",
        UnsupportedUnless(
            "legacy",
            "wasmon accepts legacy metric and label names only",
        ),
    ),
    (
        "metric_name_escaping_scheme",
        Unsupported("wasmon accepts legacy metric and label names only"),
    ),
    (
        "extra_scrape_metrics",
        Unsupported("wasmon writes the standard scrape_* series only"),
    ),
    ("relabel_configs", Relabels(RELABEL_NULL_TARGET)),
    ("metric_relabel_configs", Relabels(RELABEL_NULL_METRIC)),
    (
        "static_configs",
        Tables(
            &[STATIC],
            "targetgroup.Group",
            "empty or null section in static_configs",
        ),
    ),
    (
        "file_sd_configs",
        Tables(
            &[FILE_SD],
            "file.SDConfig",
            "empty or null section in file_sd_configs",
        ),
    ),
    (
        "http_sd_configs",
        Tables(
            &[HTTP_SD, HTTP_CLIENT],
            "http.SDConfig",
            "empty or null section in http_sd_configs",
        ),
    ),
    (
        "dns_sd_configs",
        Tables(
            &[DNS_SD],
            "dns.SDConfig",
            "empty or null section in dns_sd_configs",
        ),
    ),
    (
        "kubernetes_sd_configs",
        Tables(
            &[K8S_SD, HTTP_CLIENT],
            "kubernetes.SDConfig",
            "empty or null section in kubernetes_sd_configs",
        ),
    ),
];

pub const STATIC: Spec = &[("targets", StrList), ("labels", LabelMap)];

pub const FILE_SD: Spec = &[("files", PathList), ("refresh_interval", Dur)];

pub const HTTP_SD: Spec = &[("url", Str), ("refresh_interval", PromDur)];

pub const DNS_SD: Spec = &[
    ("names", StrList),
    ("type", Str),
    ("port", Uint),
    ("refresh_interval", PromDur),
];

pub const K8S_SD: Spec = &[
    ("role", Str),
    ("api_server", Str),
    ("kubeconfig_file", Path),
    (
        "namespaces",
        Table(&[K8S_NAMESPACES], "kubernetes.NamespaceDiscovery"),
    ),
    (
        "selectors",
        Tables(
            &[K8S_SELECTOR],
            "kubernetes.SelectorConfig",
            "empty or null section in selectors",
        ),
    ),
    (
        "attach_metadata",
        Table(&[K8S_ATTACH], "kubernetes.AttachMetadataConfig"),
    ),
];

const K8S_NAMESPACES: Spec = &[("own_namespace", Bool), ("names", StrList)];
const K8S_SELECTOR: Spec = &[("role", Str), ("label", Expanded), ("field", Expanded)];
const K8S_ATTACH: Spec = &[("node", Bool), ("namespace", Bool)];

/// `prometheus/common` `HTTPClientConfig`, inline in a job and the HTTP SDs.
pub const HTTP_CLIENT: Spec = &[
    ("basic_auth", Table(&[BASIC_AUTH], "config.BasicAuth")),
    (
        "authorization",
        Table(&[AUTHORIZATION], "config.Authorization"),
    ),
    ("bearer_token", Secret),
    ("bearer_token_file", Path),
    ("tls_config", Table(&[TLS], "config.TLSConfig")),
    ("proxy_url", Str),
    ("no_proxy", Str),
    ("proxy_from_environment", Bool),
    (
        "proxy_connect_header",
        Unsupported("wasmon sends no extra headers on proxy CONNECT"),
    ),
    ("follow_redirects", Bool),
    ("enable_http2", Bool),
    (
        "oauth2",
        Unsupported(
            "wasmon has no OAuth 2.0 client credentials flow: use authorization with a token",
        ),
    ),
    (
        "http_headers",
        Unsupported("wasmon sends no custom headers to scrape targets"),
    ),
];

/// Is `k` one of the HTTP client keys?
pub fn is_http_client_key(k: &str) -> bool {
    HTTP_CLIENT.iter().any(|(n, _)| *n == k)
}

const BASIC_AUTH: Spec = &[
    ("username", Expanded),
    (
        "username_file",
        Unsupported("wasmon reads the username from the config only"),
    ),
    (
        "username_ref",
        Unsupported("secret references are not supported"),
    ),
    ("password", Secret),
    ("password_file", Path),
    (
        "password_ref",
        Unsupported("secret references are not supported"),
    ),
];

const AUTHORIZATION: Spec = &[
    ("type", Str),
    ("credentials", Secret),
    ("credentials_file", Path),
    (
        "credentials_ref",
        Unsupported("secret references are not supported"),
    ),
];

const TLS: Spec = &[
    ("ca", Str),
    ("ca_file", Path),
    ("ca_ref", Unsupported("secret references are not supported")),
    ("cert", Str),
    ("cert_file", Path),
    (
        "cert_ref",
        Unsupported("secret references are not supported"),
    ),
    ("key", Secret),
    ("key_file", Path),
    (
        "key_ref",
        Unsupported("secret references are not supported"),
    ),
    ("server_name", Str),
    ("insecure_skip_verify", Bool),
    ("min_version", TlsVersion),
    ("max_version", TlsVersion),
];

pub const RELABEL: Spec = &[
    ("source_labels", StrList),
    ("separator", Str),
    ("regex", Str),
    ("modulus", Uint),
    ("target_label", Str),
    ("replacement", Str),
    ("action", Str),
];

pub const ALERTING: Spec = &[
    ("alert_relabel_configs", Checked),
    ("alertmanagers", Checked),
];

pub const ALERTMANAGER: Spec = &[
    ("scheme", Str),
    ("path_prefix", Str),
    ("timeout", Dur),
    ("api_version", Checked),
    ("relabel_configs", Checked),
    ("alert_relabel_configs", Checked),
    ("static_configs", Checked),
    ("sigv4", Unsupported("wasmon has no AWS SigV4 signing")),
    (
        "file_sd_configs",
        Unsupported(
            "wasmon's Alertmanager list is static: list the Alertmanagers in static_configs",
        ),
    ),
    (
        "http_sd_configs",
        Unsupported(
            "wasmon's Alertmanager list is static: list the Alertmanagers in static_configs",
        ),
    ),
    (
        "dns_sd_configs",
        Unsupported(
            "wasmon's Alertmanager list is static: list the Alertmanagers in static_configs",
        ),
    ),
    (
        "kubernetes_sd_configs",
        Unsupported(
            "wasmon's Alertmanager list is static: list the Alertmanagers in static_configs",
        ),
    ),
];

pub const REMOTE_WRITE: Spec = &[
    ("url", Str),
    ("remote_timeout", Dur),
    ("headers", StrMap(true)),
    (
        "write_relabel_configs",
        Relabels("empty or null relabeling rule in remote write config"),
    ),
    ("name", Str),
    ("send_exemplars", Unsupported("wasmon stores no exemplars")),
    (
        "send_native_histograms",
        Unsupported("wasmon stores no native histograms"),
    ),
    (
        "round_robin_dns",
        Unsupported("wasmon resolves the receiver's name as the system does"),
    ),
    ("protobuf_message", Checked),
    (
        "failed_request_logging",
        Unsupported("wasmon logs failed sends through its own log"),
    ),
    ("queue_config", Table(&[QUEUE], "config.QueueConfig")),
    (
        "metadata_config",
        Unsupported("wasmon sends no metric metadata"),
    ),
    ("sigv4", Unsupported("wasmon has no AWS SigV4 signing")),
    (
        "azuread",
        Unsupported("wasmon has no Azure AD authentication"),
    ),
    (
        "google_iam",
        Unsupported("wasmon has no Google IAM authentication"),
    ),
];

const QUEUE: Spec = &[
    ("capacity", Uint),
    ("max_shards", Uint),
    ("min_shards", Uint),
    ("max_samples_per_send", Uint),
    ("batch_send_deadline", Dur),
    ("min_backoff", Dur),
    ("max_backoff", Dur),
    ("retry_on_http_429", Bool),
    (
        "sample_age_limit",
        Unsupported("wasmon sends samples of any age the WAL holds"),
    ),
];

pub const REMOTE_READ: Spec = &[
    ("url", Str),
    ("remote_timeout", Dur),
    ("chunked_read_limit", Uint),
    ("headers", StrMap(true)),
    ("read_recent", Bool),
    ("name", Str),
    ("required_matchers", StrMap(false)),
    ("filter_external_labels", Bool),
];

pub const STORAGE: Spec = &[
    ("tsdb", Table(&[TSDB], "config.TSDBConfig")),
    ("exemplars", Unsupported("wasmon stores no exemplars")),
];

const TSDB: Spec = &[
    (
        "out_of_order_time_window",
        Unsupported("wasmon's head takes samples in order only (within its window)"),
    ),
    (
        "stale_series_compaction_threshold",
        Unsupported("wasmon compacts on block boundaries only"),
    ),
    (
        "chunk_encoding",
        Unsupported("wasmon's chunks are Gorilla XOR only"),
    ),
    (
        "retention",
        Table(&[RETENTION], "config.TSDBRetentionConfig"),
    ),
];

const RETENTION: Spec = &[
    ("time", Dur),
    ("size", Bytes),
    (
        "percentage",
        Unsupported("wasmon's retention is by time and size only"),
    ),
];

/// The service discoveries wasmon does not have: each reported as a whole
/// (their own keys are checked in `checks::other_sds` where Prometheus
/// refuses them).
pub const OTHER_SD: Spec = &[
    ("aws_sd_configs", Unsupported(NO_SD)),
    ("azure_sd_configs", Unsupported(NO_SD)),
    ("consul_sd_configs", Unsupported(NO_SD)),
    ("digitalocean_sd_configs", Unsupported(NO_SD)),
    ("docker_sd_configs", Unsupported(NO_SD)),
    ("dockerswarm_sd_configs", Unsupported(NO_SD)),
    ("ec2_sd_configs", Unsupported(NO_SD)),
    ("ecs_sd_configs", Unsupported(NO_SD)),
    ("elasticache_sd_configs", Unsupported(NO_SD)),
    ("eureka_sd_configs", Unsupported(NO_SD)),
    ("gce_sd_configs", Unsupported(NO_SD)),
    ("hetzner_sd_configs", Unsupported(NO_SD)),
    ("ionos_sd_configs", Unsupported(NO_SD)),
    ("kuma_sd_configs", Unsupported(NO_SD)),
    ("lightsail_sd_configs", Unsupported(NO_SD)),
    ("linode_sd_configs", Unsupported(NO_SD)),
    ("marathon_sd_configs", Unsupported(NO_SD)),
    ("msk_sd_configs", Unsupported(NO_SD)),
    ("nerve_sd_configs", Unsupported(NO_SD)),
    ("nomad_sd_configs", Unsupported(NO_SD)),
    ("oci_sd_configs", Unsupported(NO_SD)),
    ("openstack_sd_configs", Unsupported(NO_SD)),
    ("outscale_sd_configs", Unsupported(NO_SD)),
    ("ovhcloud_sd_configs", Unsupported(NO_SD)),
    ("puppetdb_sd_configs", Unsupported(NO_SD)),
    ("rds_sd_configs", Unsupported(NO_SD)),
    ("scaleway_sd_configs", Unsupported(NO_SD)),
    ("serverset_sd_configs", Unsupported(NO_SD)),
    ("stackit_sd_configs", Unsupported(NO_SD)),
    ("triton_sd_configs", Unsupported(NO_SD)),
    ("uyuni_sd_configs", Unsupported(NO_SD)),
    ("vultr_sd_configs", Unsupported(NO_SD)),
];

const NO_SD: &str = "wasmon has no such service discovery (it has static, file, http, dns and kubernetes): the job gets no targets from it";
