//! List + watch of every kind a role needs, into one [`Store`], and the
//! groups recomputed from it after each burst of events.
//!
//! Each (kind, namespace) is one stream: list (paged), then watch from the
//! list's resourceVersion with bookmarks; 410 Gone (an expired
//! resourceVersion) re-lists; any other error waits a bounded backoff and
//! re-lists. The store keeps what it had meanwhile: a failing API never
//! empties the groups, and the [`Status`] says why.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use tokio::sync::{mpsc, watch};

use super::store::{key, Store, Stored};
use crate::config::discovery::{AttachMetadata, KubernetesRole, SelectorConfig};
use crate::discovery::{publish, Groups, Status, TargetGroup};

/// Timings of the watches; tests shorten them.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Events within this window after the first are one publish.
    pub debounce: Duration,
    /// First wait after an error; doubled per failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// The server ends each watch after this long (then it is resumed).
    pub watch_timeout: Duration,
    /// Objects per list page.
    pub page_size: u32,
    /// A list page not answered in this long is a failure (the client has
    /// no read timeout: watches are long-lived).
    pub request_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            debounce: Duration::from_secs(1),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            watch_timeout: Duration::from_secs(290),
            page_size: 500,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// What a role watches: the kinds, in which namespaces, with which selectors.
#[derive(Debug, Clone)]
pub struct Plan {
    pub role: KubernetesRole,
    /// Empty: all namespaces.
    pub namespaces: Vec<String>,
    pub selectors: Vec<SelectorConfig>,
    pub attach: AttachMetadata,
}

type Apply = Box<dyn FnOnce(&mut Store) + Send>;

enum Event {
    /// A stream's (re)list: replaces its part of the store.
    Listed {
        stream: usize,
        apply: Apply,
    },
    Changed(Apply),
    Failed {
        stream: usize,
        why: String,
    },
}

/// Aborts the stream tasks when the watch ends.
struct Streams(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Streams {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Starts the streams of `plan` and the task publishing its groups.
pub fn spawn(
    client: kube::Client,
    plan: Plan,
    tuning: Tuning,
    tx: watch::Sender<Groups>,
    status: Arc<Status>,
) {
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let mut s = Spawner {
        client,
        plan: &plan,
        tuning: &tuning,
        tx: ev_tx,
        handles: Vec::new(),
    };
    let (role, attach) = (plan.role, &plan.attach);
    use KubernetesRole as R;
    match role {
        R::Pod => s.namespaced::<Pod>(R::Pod),
        R::Node => s.cluster::<Node>(Some(R::Node)),
        R::Service => s.namespaced::<Service>(R::Service),
        R::Endpoints => {
            s.namespaced::<Endpoints>(R::Endpoints);
            s.namespaced::<Service>(R::Service);
            s.namespaced::<Pod>(R::Pod);
        }
        R::EndpointSlice => {
            s.namespaced::<EndpointSlice>(R::EndpointSlice);
            s.namespaced::<Service>(R::Service);
            s.namespaced::<Pod>(R::Pod);
        }
        R::Ingress => s.namespaced::<Ingress>(R::Ingress),
    }
    let node_meta = matches!(role, R::Pod | R::Endpoints | R::EndpointSlice);
    if attach.node && node_meta {
        s.cluster::<Node>(Some(R::Node));
    }
    if attach.namespace && role != R::Node {
        s.cluster::<Namespace>(None);
    }
    let streams = Streams(s.handles);
    tokio::spawn(aggregate(plan, tuning, ev_rx, tx, status, streams));
}

struct Spawner<'a> {
    client: kube::Client,
    plan: &'a Plan,
    tuning: &'a Tuning,
    tx: mpsc::Sender<Event>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Spawner<'_> {
    fn selector(&self, role: Option<KubernetesRole>) -> (Option<String>, Option<String>) {
        let s = role.and_then(|r| self.plan.selectors.iter().find(|s| s.role == r));
        (
            s.and_then(|s| s.label.clone()),
            s.and_then(|s| s.field.clone()),
        )
    }

    fn namespaced<K>(&mut self, role: KubernetesRole)
    where
        K: Stored + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        let (label, field) = self.selector(Some(role));
        if self.plan.namespaces.is_empty() {
            let api = Api::<K>::all(self.client.clone());
            self.stream(api, None, label, field);
        } else {
            for ns in self.plan.namespaces.clone() {
                let api = Api::<K>::namespaced(self.client.clone(), &ns);
                self.stream(api, Some(ns), label.clone(), field.clone());
            }
        }
    }

    fn cluster<K>(&mut self, role: Option<KubernetesRole>)
    where
        K: Stored + kube::Resource<Scope = k8s_openapi::ClusterResourceScope>,
    {
        let (label, field) = self.selector(role);
        let api = Api::<K>::all(self.client.clone());
        self.stream(api, None, label, field);
    }

    fn stream<K: Stored>(
        &mut self,
        api: Api<K>,
        namespace: Option<String>,
        label: Option<String>,
        field: Option<String>,
    ) {
        let stream = Stream {
            id: self.handles.len(),
            api,
            namespace,
            label,
            field,
            tx: self.tx.clone(),
            tuning: self.tuning.clone(),
        };
        self.handles.push(tokio::spawn(stream.run()));
    }
}

struct Stream<K: Stored> {
    id: usize,
    api: Api<K>,
    /// The namespace this stream covers; None: all (or cluster-scoped).
    namespace: Option<String>,
    label: Option<String>,
    field: Option<String>,
    tx: mpsc::Sender<Event>,
    tuning: Tuning,
}

/// Why a list or watch ended.
enum End {
    /// The resourceVersion expired (410 Gone): re-list at once.
    Gone,
    Failed(String),
}

impl<K: Stored> Stream<K> {
    fn plural() -> String {
        K::plural(&()).into_owned()
    }

    async fn run(self) {
        let mut backoff = self.tuning.backoff_min;
        loop {
            let end = match self.list().await {
                Ok(rv) => {
                    backoff = self.tuning.backoff_min;
                    self.watch(rv).await
                }
                Err(e) => e,
            };
            match end {
                End::Gone => {
                    tracing::debug!(kind = %Self::plural(), "kubernetes_sd: resourceVersion expired, re-listing");
                }
                End::Failed(why) => {
                    tracing::warn!(kind = %Self::plural(), error = %why, "kubernetes_sd");
                    let failed = Event::Failed {
                        stream: self.id,
                        why,
                    };
                    if self.tx.send(failed).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.tuning.backoff_max);
                }
            }
            if self.tx.is_closed() {
                return;
            }
        }
    }

    fn no_answer(&self, verb: &str) -> String {
        format!(
            "{verb} {}: no answer from the API server within {:?}",
            Self::plural(),
            self.tuning.request_timeout
        )
    }

    /// Lists every page; sends the whole list as one replacement.
    async fn list(&self) -> Result<String, End> {
        let mut items = Vec::new();
        let mut lp = ListParams {
            label_selector: self.label.clone(),
            field_selector: self.field.clone(),
            limit: Some(self.tuning.page_size),
            ..Default::default()
        };
        let rv = loop {
            let page = tokio::time::timeout(self.tuning.request_timeout, self.api.list(&lp))
                .await
                .map_err(|_| End::Failed(self.no_answer("list")))?
                .map_err(|e| end_of(&e, "list", &Self::plural()))?;
            items.extend(page.items.into_iter().map(|mut o| {
                o.slim();
                o
            }));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp.continue_token = Some(c),
                None => break page.metadata.resource_version.unwrap_or_default(),
            }
        };
        let ns = self.namespace.clone();
        let apply: Apply = Box::new(move |store: &mut Store| {
            let map = K::map(store);
            match &ns {
                Some(ns) => map.retain(|(n, _), _| n != ns),
                None => map.clear(),
            }
            for o in items {
                map.insert(key(o.meta()), o);
            }
        });
        self.tx
            .send(Event::Listed {
                stream: self.id,
                apply,
            })
            .await
            .map_err(|_| End::Failed("discovery stopped".into()))?;
        Ok(rv)
    }

    /// Watches from `rv` until an error; resumes after the server's timeout.
    async fn watch(&self, mut rv: String) -> End {
        loop {
            let wp = WatchParams {
                label_selector: self.label.clone(),
                field_selector: self.field.clone(),
                timeout: Some(self.tuning.watch_timeout.as_secs().max(1) as u32),
                bookmarks: true,
                ..Default::default()
            };
            let events =
                match tokio::time::timeout(self.tuning.request_timeout, self.api.watch(&wp, &rv))
                    .await
                {
                    Err(_) => return End::Failed(self.no_answer("watch")),
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return end_of(&e, "watch", &Self::plural()),
                };
            let mut events = std::pin::pin!(events);
            // The server ends the watch at its timeout; silence well past it
            // is a dead connection.
            let idle = self.tuning.watch_timeout + self.tuning.request_timeout;
            loop {
                let ev = match tokio::time::timeout(idle, events.next()).await {
                    Err(_) => return End::Failed(self.no_answer("watch")),
                    Ok(None) => break,
                    Ok(Some(ev)) => ev,
                };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => return end_of(&e, "watch", &Self::plural()),
                };
                let change: Apply = match ev {
                    WatchEvent::Added(mut o) | WatchEvent::Modified(mut o) => {
                        rv = o.meta().resource_version.clone().unwrap_or(rv);
                        o.slim();
                        Box::new(move |s: &mut Store| {
                            K::map(s).insert(key(o.meta()), o);
                        })
                    }
                    WatchEvent::Deleted(o) => {
                        rv = o.meta().resource_version.clone().unwrap_or(rv);
                        let k = key(o.meta());
                        Box::new(move |s: &mut Store| {
                            K::map(s).remove(&k);
                        })
                    }
                    WatchEvent::Bookmark(b) => {
                        rv = b.metadata.resource_version;
                        continue;
                    }
                    WatchEvent::Error(s) if s.code == 410 => return End::Gone,
                    WatchEvent::Error(s) => {
                        return End::Failed(explain(s.code, &s.message, "watch", &Self::plural()))
                    }
                };
                if self.tx.send(Event::Changed(change)).await.is_err() {
                    return End::Failed("discovery stopped".into());
                }
            }
        }
    }
}

fn end_of(e: &kube::Error, verb: &str, plural: &str) -> End {
    match e {
        kube::Error::Api(s) if s.code == 410 => End::Gone,
        kube::Error::Api(s) => End::Failed(explain(s.code, &s.message, verb, plural)),
        other => End::Failed(format!("{verb} {plural}: {other}")),
    }
}

/// A failed request as the fix it needs.
fn explain(code: u16, message: &str, verb: &str, plural: &str) -> String {
    match code {
        401 => format!(
            "{verb} {plural}: 401 Unauthorized: {message}: check the token or credentials (a service-account token file must be readable and current)"
        ),
        403 => format!(
            "{verb} {plural}: 403 Forbidden: {message}: give the ServiceAccount get/list/watch on {plural}"
        ),
        code => format!("{verb} {plural}: {code}: {message}"),
    }
}

/// The groups of `role` from the store, one per object of the role.
pub fn groups(role: KubernetesRole, store: &Store, attach: &AttachMetadata) -> Vec<TargetGroup> {
    use super::{endpoints, endpointslice, ingress, node, pod, service};
    use KubernetesRole as R;
    fn each<T>(
        objects: &BTreeMap<super::store::Key, T>,
        store: &Store,
        attach: &AttachMetadata,
        f: fn(&T, &dyn super::Lookup, &AttachMetadata) -> TargetGroup,
    ) -> Vec<TargetGroup> {
        objects.values().map(|o| f(o, store, attach)).collect()
    }
    match role {
        R::Pod => each(&store.pods, store, attach, pod::group),
        R::Node => each(&store.nodes, store, attach, node::group),
        R::Service => each(&store.services, store, attach, service::group),
        R::Endpoints => each(&store.endpoints, store, attach, endpoints::group),
        R::EndpointSlice => each(&store.endpointslices, store, attach, endpointslice::group),
        R::Ingress => each(&store.ingresses, store, attach, ingress::group),
    }
}

async fn aggregate(
    plan: Plan,
    tuning: Tuning,
    mut rx: mpsc::Receiver<Event>,
    tx: watch::Sender<Groups>,
    status: Arc<Status>,
    streams: Streams,
) {
    let mut store = Store::default();
    let mut listed = vec![false; streams.0.len()];
    let mut errors: BTreeMap<usize, String> = BTreeMap::new();
    loop {
        let first = tokio::select! {
            ev = rx.recv() => ev,
            _ = tx.closed() => None,
        };
        let Some(first) = first else { break };
        handle(first, &mut store, &mut listed, &mut errors);
        // A burst of events is one recompute.
        let until = tokio::time::Instant::now() + tuning.debounce;
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => handle(ev, &mut store, &mut listed, &mut errors),
                    None => break,
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        let all_listed = listed.iter().all(|l| *l);
        if all_listed {
            let g = groups(plan.role, &store, &plan.attach);
            let n = g.iter().map(|g| g.targets.len()).sum();
            publish(&tx, g);
            if errors.is_empty() {
                status.succeeded(n);
            }
        }
        if let Some(why) = errors.values().next() {
            status.failed(why);
        }
    }
    drop(streams);
}

fn handle(ev: Event, store: &mut Store, listed: &mut [bool], errors: &mut BTreeMap<usize, String>) {
    match ev {
        Event::Listed { stream, apply } => {
            apply(store);
            listed[stream] = true;
            errors.remove(&stream);
        }
        Event::Changed(apply) => apply(store),
        Event::Failed { stream, why } => {
            errors.insert(stream, why);
        }
    }
}
