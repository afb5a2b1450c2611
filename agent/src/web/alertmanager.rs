//! Alertmanager API v2 (the subset amtool and Grafana use): alerts,
//! silences, receivers, status. Shapes, validation texts and status codes
//! follow Alertmanager 0.25 and
//! `../shared/conformance/alertmanager/api/v2/openapi.yaml`.
//!
//! Listings walk every alert (or silence): they run as heavy work
//! ([`super::work`]), off the async workers, cancellable and deadlined, in
//! one pass linear in the alerts (inhibitions are indexed once, not looked
//! up by a scan per alert).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};

use super::api::Params;
use super::response::{bare, AmError, SpecError};
use super::work::{Stopped, Work, DEFAULT_TIMEOUT};
use super::Api;
use crate::alerting::dispatch::{AlertMarks, Dispatcher, GroupInfo, Shared};
use crate::alerting::matcher::{
    go_regex_error, parse_matcher, parse_matcher_classic, ApiMatcher, Matcher,
};
use crate::alerting::silence::{Silence, SilenceError, SilenceStatus, SilenceWithState};
use crate::alerting::types::{
    alert_order, fingerprint_hex, labelset_order, rfc3339_millis, Alert, Fingerprint, PostableAlert,
};
use crate::model::Labels;

/// What the Alertmanager API serves from (Alertmanager's `api.Options`:
/// alerts, silences, the groups' state).
#[derive(Clone)]
pub struct Alerts {
    /// The running config's dispatcher (None without a route).
    pub dispatcher: Arc<ArcSwap<Option<Dispatcher>>>,
    /// Alerts, silences and the clock: they outlive reloads.
    pub state: Shared,
    /// Acks, shown on alert groups.
    pub incidents: Arc<crate::incident::Incidents>,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// Alertmanager's plain-text errors (the v2 API answers errors as a JSON string).
fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    AmError(status, msg.into()).into_response()
}

fn dispatcher(alerts: &Alerts) -> Result<Dispatcher, AmError> {
    Option::clone(&alerts.dispatcher.load()).ok_or_else(|| {
        AmError(
            StatusCode::SERVICE_UNAVAILABLE,
            "alerting is off: the config has no route".into(),
        )
    })
}

fn bool_param(p: &Params, name: &str, default: bool) -> bool {
    p.get(name).map(|v| v == "true").unwrap_or(default)
}

/// The `filter` parameters: one matcher each, in the classic syntax with
/// Alertmanager 0.25's errors; what only the UTF-8 syntax of later
/// releases parses (`{a="b"}`, quoted names) is taken too.
fn filters(p: &Params) -> Result<Vec<Matcher>, AmError> {
    p.all("filter")
        .into_iter()
        .map(|f| {
            parse_matcher_classic(f)
                .or_else(|e| parse_matcher(f).map_err(|_| e))
                .map_err(|e| AmError(StatusCode::BAD_REQUEST, e.to_string()))
        })
        .collect()
}

/// A label set as a JSON object, serialized in place.
struct LabelsMap<'a>(&'a Labels);

impl Serialize for LabelsMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for l in self.0.iter() {
            m.serialize_entry(&l.name, &l.value)?;
        }
        m.end()
    }
}

#[derive(serde::Serialize)]
struct ReceiverRef<'a> {
    name: &'a str,
}

/// `alertStatus`: why an alert is not notified now.
#[derive(serde::Serialize, Clone, Default)]
#[serde(rename_all = "camelCase")]
struct AlertStatus {
    state: &'static str,
    silenced_by: Vec<String>,
    inhibited_by: Vec<String>,
    /// Time intervals muting a route the alert is on (Alertmanager 0.27+;
    /// the spec requires the field).
    muted_by: Vec<String>,
}

impl AlertStatus {
    fn new(marks: AlertMarks, muted_by: Vec<String>) -> AlertStatus {
        let active =
            marks.silenced_by.is_empty() && marks.inhibited_by.is_empty() && muted_by.is_empty();
        AlertStatus {
            state: if active { "active" } else { "suppressed" },
            silenced_by: marks.silenced_by,
            inhibited_by: marks.inhibited_by,
            muted_by,
        }
    }
}

/// `gettableAlert`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct GettableAlert<'a> {
    labels: LabelsMap<'a>,
    annotations: &'a BTreeMap<String, String>,
    starts_at: String,
    ends_at: String,
    updated_at: String,
    /// Alertmanager omits an empty one.
    #[serde(rename = "generatorURL", skip_serializing_if = "str::is_empty")]
    generator_url: &'a str,
    fingerprint: String,
    receivers: Vec<ReceiverRef<'a>>,
    status: &'a AlertStatus,
}

impl<'a> GettableAlert<'a> {
    fn new(a: &'a Alert, fp: Fingerprint, receivers: &[&'a str], status: &'a AlertStatus) -> Self {
        GettableAlert {
            labels: LabelsMap(&a.labels),
            annotations: &a.annotations,
            starts_at: rfc3339_millis(a.starts_at),
            ends_at: rfc3339_millis(a.ends_at),
            updated_at: rfc3339_millis(a.updated_at),
            generator_url: &a.generator_url,
            fingerprint: fingerprint_hex(fp),
            receivers: receivers.iter().map(|name| ReceiverRef { name }).collect(),
            status,
        }
    }
}

/// The alert filters of `GET /api/v2/alerts` and `/alerts/groups`.
struct AlertFilter {
    matchers: Vec<Matcher>,
    active: bool,
    silenced: bool,
    inhibited: bool,
    receiver: Option<regex::Regex>,
}

impl AlertFilter {
    fn parse(p: &Params) -> Result<AlertFilter, AmError> {
        let receiver = match p.get("receiver") {
            None => None,
            Some(r) => {
                let anchored = format!("^(?:{r})$");
                Some(regex::Regex::new(&anchored).map_err(|e| {
                    AmError(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "failed to parse receiver param: {}",
                            go_regex_error(&anchored, &e)
                        ),
                    )
                })?)
            }
        };
        Ok(AlertFilter {
            matchers: filters(p)?,
            active: bool_param(p, "active", true),
            silenced: bool_param(p, "silenced", true),
            inhibited: bool_param(p, "inhibited", true),
            receiver,
        })
    }

    fn receiver_ok(&self, name: &str) -> bool {
        self.receiver.as_ref().is_none_or(|re| re.is_match(name))
    }

    /// Alertmanager's `alertFilter`: not resolved, matching every filter
    /// matcher, and in a state the parameters ask for.
    fn keeps(&self, a: &Alert, now: chrono::DateTime<chrono::Utc>, st: &AlertStatus) -> bool {
        !a.resolved_at(now)
            && (self.active || st.state != "active")
            && (self.silenced || st.silenced_by.is_empty())
            && (self.inhibited || st.inhibited_by.is_empty())
            && self.matchers.iter().all(|m| m.matches(&a.labels))
    }
}

/// A JSON array written item by item, checking for a stop between items
/// (the response of a listing is built on the blocking thread).
struct JsonArray(Vec<u8>);

impl JsonArray {
    fn new() -> JsonArray {
        JsonArray(vec![b'['])
    }

    fn push(&mut self, item: &impl Serialize) -> Result<(), Stopped> {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        serde_json::to_writer(&mut self.0, item).map_err(|e| {
            tracing::error!(error = %e, "serializing an API listing");
            Stopped::Internal
        })
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.push(b']');
        self.0
    }
}

fn json_response(r: Result<Vec<u8>, Stopped>) -> Response {
    match r {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => AmError::from(e).into_response(),
    }
}

/// Runs a listing as heavy work.
async fn listing(
    api: &Api,
    f: impl FnOnce(&Work) -> Result<Vec<u8>, Stopped> + Send + 'static,
) -> Response {
    json_response(api.work.run(DEFAULT_TIMEOUT, f).await)
}

/// The store's alerts at one instant with their fingerprints (sorted by
/// them), and the marker of that instant.
struct Snapshot {
    now: chrono::DateTime<chrono::Utc>,
    alerts: Vec<Alert>,
    fps: Vec<Fingerprint>,
}

impl Snapshot {
    fn take(d: &Dispatcher, w: &Work) -> Result<Snapshot, Stopped> {
        let now = d.shared().clock.now();
        let alerts = d.shared().alerts.list();
        w.check()?;
        let fps = alerts.iter().map(Alert::fingerprint).collect();
        Ok(Snapshot { now, alerts, fps })
    }

    fn get(&self, fp: Fingerprint) -> Option<&Alert> {
        self.fps.binary_search(&fp).ok().map(|i| &self.alerts[i])
    }
}

/// GET /api/v2/alerts
pub async fn get_alerts(State(api): State<Api>, RawQuery(q): RawQuery) -> Response {
    let p = Params::from_request(q, &HeaderMap::new(), &Bytes::new());
    let (d, f) = match dispatcher(&api.alerts).and_then(|d| Ok((d, AlertFilter::parse(&p)?))) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    listing(&api, move |w| list_alerts(&d, &f, w)).await
}

fn list_alerts(d: &Dispatcher, f: &AlertFilter, w: &Work) -> Result<Vec<u8>, Stopped> {
    let snap = Snapshot::take(d, w)?;
    let now = snap.now;
    let marker = d.marker(&snap.alerts, now);
    let mut muted_by_route: HashMap<&str, Vec<String>> = HashMap::new();
    let mut out = JsonArray::new();
    // In fingerprint order, as Alertmanager sorts this listing.
    for (a, &fp) in snap.alerts.iter().zip(&snap.fps) {
        w.check()?;
        if a.resolved_at(now) || !f.matchers.iter().all(|m| m.matches(&a.labels)) {
            continue;
        }
        let routes = d.route().match_labels(&a.labels);
        let receivers: Vec<&str> = routes.iter().map(|r| r.opts.receiver.as_str()).collect();
        if f.receiver.is_some() && !receivers.iter().any(|r| f.receiver_ok(r)) {
            continue;
        }
        let mut muted_by: Vec<String> = Vec::new();
        for r in &routes {
            let names = muted_by_route
                .entry(r.id())
                .or_insert_with(|| d.muted_by(&r.opts, now));
            muted_by.extend(names.iter().cloned());
        }
        muted_by.sort();
        muted_by.dedup();
        let status = AlertStatus::new(marker.marks(&a.labels), muted_by);
        if !f.keeps(a, now, &status) {
            continue;
        }
        out.push(&GettableAlert::new(a, fp, &receivers, &status))?;
    }
    Ok(out.finish())
}

/// POST /api/v2/alerts
pub async fn post_alerts(State(api): State<Api>, body: Bytes) -> Response {
    let d = match dispatcher(&api.alerts) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    // Parsing and routing a large batch is CPU work: off the async workers,
    // and run to the end even if the client leaves (what was accepted is
    // not half taken).
    tokio::task::spawn_blocking(move || {
        let alerts = match parse_alerts(&body) {
            Ok(a) => a,
            Err(e) => return e.into_response(),
        };
        match d.put_alerts(alerts) {
            Ok(()) => StatusCode::OK.into_response(),
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    })
    .await
    .unwrap_or_else(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("posting alerts failed: {e}"),
        )
    })
}

/// The body of `POST /api/v2/alerts`, with Alertmanager's answers to one
/// that does not parse or lacks `labels`.
fn parse_alerts(body: &[u8]) -> Result<Vec<PostableAlert>, SpecError> {
    let typed_err = match serde_json::from_slice::<Vec<PostableAlert>>(body) {
        Ok(a) => return Ok(a),
        Err(e) => e,
    };
    // Only a failed parse pays for the generic one, to tell a missing field
    // (422) from a malformed body (400).
    match serde_json::from_slice::<Value>(body) {
        Err(e) => Err(SpecError::parse("alerts", e)),
        Ok(Value::Null) => Ok(Vec::new()),
        Ok(Value::Array(items)) => {
            for (i, a) in items.iter().enumerate() {
                if a.is_object() && a.get("labels").is_none_or(Value::is_null) {
                    return Err(SpecError::required(&format!("{i}.labels")));
                }
            }
            Err(SpecError::parse("alerts", typed_err))
        }
        Ok(_) => Err(SpecError::parse("alerts", typed_err)),
    }
}

/// GET /api/v2/alerts/groups
pub async fn get_groups(State(api): State<Api>, RawQuery(q): RawQuery) -> Response {
    let p = Params::from_request(q, &HeaderMap::new(), &Bytes::new());
    let (d, f) = match dispatcher(&api.alerts).and_then(|d| Ok((d, AlertFilter::parse(&p)?))) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let incidents = api.alerts.incidents.clone();
    listing(&api, move |w| list_groups(&incidents, &d, &f, w)).await
}

/// `alertGroup`, with wasmon's `groupKey` and `ack` beside Alertmanager's fields.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertGroup<'a> {
    labels: LabelsMap<'a>,
    receiver: ReceiverRef<'a>,
    alerts: Vec<GettableAlert<'a>>,
    group_key: &'a str,
    ack: Option<&'a crate::incident::Ack>,
}

/// Alertmanager's `Dispatcher.Groups` and `getAlertGroupsHandler`: groups
/// of the receivers asked for, each with its alerts that pass the filter
/// (groups left empty are not listed); an alert's `receivers` are those of
/// the listed groups it is in. Groups in label-set then receiver order,
/// alerts in Alertmanager's alert order.
fn list_groups(
    incidents: &crate::incident::Incidents,
    d: &Dispatcher,
    f: &AlertFilter,
    w: &Work,
) -> Result<Vec<u8>, Stopped> {
    let snap = Snapshot::take(d, w)?;
    let now = snap.now;
    let marker = d.marker(&snap.alerts, now);
    let groups: Vec<GroupInfo> = d
        .groups()
        .into_iter()
        .filter(|g| f.receiver_ok(&g.receiver))
        .collect();
    // An alert is muted by the time intervals of every group it is in.
    let mut muted_by: HashMap<Fingerprint, Vec<&str>> = HashMap::new();
    for g in groups.iter().filter(|g| !g.muted_by.is_empty()) {
        for fp in &g.alerts {
            muted_by
                .entry(*fp)
                .or_default()
                .extend(g.muted_by.iter().map(String::as_str));
        }
    }
    // Per alert: its status, or None when the filter drops it.
    let mut statuses: HashMap<Fingerprint, Option<AlertStatus>> = HashMap::new();
    let mut receivers: HashMap<Fingerprint, Vec<&str>> = HashMap::new();
    let mut listed: Vec<(&GroupInfo, Vec<(&Alert, Fingerprint)>)> = Vec::new();
    for g in &groups {
        let mut members = Vec::new();
        for &fp in &g.alerts {
            w.check()?;
            let Some(a) = snap.get(fp) else { continue };
            let status = statuses.entry(fp).or_insert_with(|| {
                let mut m: Vec<String> = muted_by
                    .get(&fp)
                    .map(|v| v.iter().map(|s| s.to_string()).collect())
                    .unwrap_or_default();
                m.sort();
                m.dedup();
                let st = AlertStatus::new(marker.marks(&a.labels), m);
                f.keeps(a, now, &st).then_some(st)
            });
            if status.is_some() {
                receivers.entry(fp).or_default().push(&g.receiver);
                members.push((a, fp));
            }
        }
        if !members.is_empty() {
            listed.push((g, members));
        }
    }
    w.check()?;
    for r in receivers.values_mut() {
        r.sort_unstable();
    }
    listed.sort_by(|(a, _), (b, _)| {
        labelset_order(&a.labels, &b.labels).then_with(|| a.receiver.cmp(&b.receiver))
    });
    let acks: HashMap<String, crate::incident::Ack> = incidents
        .acks(now)
        .into_iter()
        .map(|a| (a.group_key.clone(), a))
        .collect();
    let mut out = JsonArray::new();
    for (g, mut members) in listed {
        w.check()?;
        members.sort_by(|(a, _), (b, _)| alert_order(a, b));
        let alerts = members
            .iter()
            .filter_map(|&(a, fp)| {
                let status = statuses.get(&fp)?.as_ref()?;
                Some(GettableAlert::new(a, fp, receivers.get(&fp)?, status))
            })
            .collect();
        out.push(&AlertGroup {
            labels: LabelsMap(&g.labels),
            receiver: ReceiverRef { name: &g.receiver },
            alerts,
            group_key: &g.key,
            ack: acks.get(&g.key),
        })?;
    }
    Ok(out.finish())
}

/// `gettableSilence`, times as Alertmanager prints them.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct GettableSilence<'a> {
    id: &'a str,
    status: &'a SilenceStatus,
    updated_at: String,
    comment: &'a str,
    created_by: &'a str,
    ends_at: String,
    matchers: &'a [ApiMatcher],
    starts_at: String,
}

impl<'a> From<&'a SilenceWithState> for GettableSilence<'a> {
    fn from(s: &'a SilenceWithState) -> Self {
        let sil = &s.silence;
        GettableSilence {
            id: &sil.id,
            status: &s.status,
            updated_at: rfc3339_millis(sil.updated_at),
            comment: &sil.comment,
            created_by: &sil.created_by,
            ends_at: rfc3339_millis(sil.ends_at),
            matchers: &sil.matchers,
            starts_at: rfc3339_millis(sil.starts_at),
        }
    }
}

/// GET /api/v2/silences
pub async fn get_silences(State(api): State<Api>, RawQuery(q): RawQuery) -> Response {
    let p = Params::from_request(q, &HeaderMap::new(), &Bytes::new());
    let fs = match filters(&p) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let state = api.alerts.state.clone();
    listing(&api, move |w| {
        let now = state.clock.now();
        let mut out = JsonArray::new();
        for s in state.silences.list(now) {
            w.check()?;
            // A filter selects silences that have a matcher equal to it, as amtool does.
            let selected = fs.iter().all(|f| {
                s.silence.matchers.iter().any(|m| {
                    m.name == f.name
                        && m.value == f.value
                        && m.is_regex == f.op.is_regex()
                        && m.is_equal == f.op.is_equal()
                })
            });
            if selected {
                out.push(&GettableSilence::from(&s))?;
            }
        }
        Ok(out.finish())
    })
    .await
}

/// The body of `POST /api/v2/silences` as Alertmanager's API layer checks
/// it: JSON that parses (400), the fields the spec requires (422, first
/// missing one in the spec's field order), then the types (400).
fn parse_silence(body: &[u8]) -> Result<Silence, SpecError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| SpecError::parse("silence", e))?;
    let Some(obj) = v.as_object() else {
        return Err(SpecError::parse("silence", "the body is not a JSON object"));
    };
    let missing = |o: &serde_json::Map<String, Value>, k: &str| o.get(k).is_none_or(Value::is_null);
    for field in ["comment", "createdBy", "endsAt", "matchers", "startsAt"] {
        if missing(obj, field) {
            return Err(SpecError::required(field));
        }
        if field == "matchers" {
            let Some(ms) = obj[field].as_array() else {
                continue;
            };
            if ms.is_empty() {
                return Err(SpecError::min_items(field, 1));
            }
            for (i, m) in ms.iter().enumerate() {
                let Some(m) = m.as_object() else { continue };
                for k in ["isRegex", "name", "value"] {
                    if missing(m, k) {
                        return Err(SpecError::required(&format!("matchers.{i}.{k}")));
                    }
                }
            }
        }
    }
    serde_json::from_value(v).map_err(|e| SpecError::parse("silence", e))
}

/// POST /api/v2/silences: create, or update when the body has an id.
pub async fn post_silence(State(api): State<Api>, body: Bytes) -> Response {
    let s = match parse_silence(&body) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let now = api.alerts.state.clock.now();
    // Alertmanager's handler checks these before the store does, with
    // its own texts.
    if s.starts_at >= s.ends_at {
        return error(
            StatusCode::BAD_REQUEST,
            "Failed to create silence: start time must be before end time",
        );
    }
    if s.ends_at < now {
        return error(
            StatusCode::BAD_REQUEST,
            "Failed to create silence: end time can't be in the past",
        );
    }
    match api.alerts.state.silences.set(s, now) {
        Ok(id) => {
            persist_silences(&api.alerts.state).await;
            tracing::info!(silence = %id, "silence set");
            bare(json!({"silenceID": id}))
        }
        Err(SilenceError::NotFound) => error(StatusCode::NOT_FOUND, "silence not found"),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// GET /api/v2/silence/ID
pub async fn get_silence(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let now = api.alerts.state.clock.now();
    match api.alerts.state.silences.get(&id, now) {
        Some(s) => bare(GettableSilence::from(&s)),
        None => error(StatusCode::NOT_FOUND, "silence not found"),
    }
}

/// DELETE /api/v2/silence/ID
pub async fn delete_silence(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let now = api.alerts.state.clock.now();
    match api.alerts.state.silences.expire(&id, now) {
        Ok(()) => {
            persist_silences(&api.alerts.state).await;
            tracing::info!(silence = %id, "silence expired");
            StatusCode::OK.into_response()
        }
        Err(SilenceError::NotFound) => error(StatusCode::NOT_FOUND, "silence not found"),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Silences are few and precious: write them at every change, so a crash
/// right after `amtool silence add` loses nothing. The write fsyncs: it
/// runs on the blocking pool. A failed write is logged by the store (at
/// most once a minute while the disk refuses writes) and retried by the
/// dispatcher until it succeeds.
async fn persist_silences(state: &Shared) {
    let silences = state.silences.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || silences.snapshot()).await {
        tracing::error!(error = %e, "writing the silences snapshot");
    }
}

/// GET /api/v2/receivers
pub async fn get_receivers(State(api): State<Api>) -> Response {
    let names: Vec<Value> = api
        .lifecycle
        .config()
        .receivers
        .iter()
        // The names routes use, in the config's order, once each (a
        // receiver of several instances is one name).
        .map(|r| r.receiver.as_deref().unwrap_or(r.name()))
        .scan(std::collections::HashSet::new(), |seen, name| {
            Some(seen.insert(name).then(|| json!({"name": name})))
        })
        .flatten()
        .collect();
    bare(names)
}

/// GET /api/v2/status
pub async fn get_status(State(api): State<Api>) -> Response {
    let cfg = api.lifecycle.config();
    let original = cfg
        .source
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|| crate::config::DEFAULT_CONFIG.to_string());
    bare(json!({
        "cluster": {"status": "disabled", "peers": [], "name": ""},
        "versionInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "", "branch": "", "buildUser": "", "buildDate": "", "goVersion": "",
        },
        "config": {"original": original},
        "uptime": rfc3339_millis(api.alerts.started_at),
    }))
}
