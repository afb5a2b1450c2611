//! The scrape manager: one pool per job, one loop per target; applies config
//! reloads by restarting only the jobs whose config changed, and follows
//! discovery by starting and stopping loops as targets come and go.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::scrape_loop::{Health, ScrapeLoop, ScrapeStats, TargetState};
use super::target::{group_labels, Job, Target};
use crate::discovery;
use crate::model::labels::Labels;
use crate::storage::Appendable;

struct LoopHandle {
    target: Arc<Target>,
    state: Arc<Mutex<TargetState>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// What makes a target one: its labels and scrape URL.
type TargetKey = (Labels, String);

#[derive(Default)]
struct PoolState {
    loops: HashMap<TargetKey, LoopHandle>,
    dropped: Vec<Labels>,
}

struct Pool {
    job: Arc<Job>,
    state: Arc<Mutex<PoolState>>,
    /// How each discovery mechanism of the job last went.
    discovery: Vec<Arc<discovery::Status>>,
    sync_task: JoinHandle<()>,
}

/// One scrape pool as [`ScrapeManager::pool_views`] saw it.
pub struct PoolView {
    name: String,
    job: Arc<Job>,
    state: Arc<Mutex<PoolState>>,
    discovery: Vec<Arc<discovery::Status>>,
}

impl PoolView {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job's discovery mechanisms and how each last went.
    pub fn discovery(&self) -> &[Arc<discovery::Status>] {
        &self.discovery
    }

    /// Targets the job's `static_configs` list (Prometheus counts them
    /// among the job's discovered targets).
    pub fn static_targets(&self) -> usize {
        self.job
            .config
            .static_configs
            .iter()
            .map(|g| g.targets.len())
            .sum()
    }

    /// Adds the pool's active targets to `active` and its dropped ones to
    /// `dropped`.
    pub fn targets(&self, active: &mut Vec<TargetStatus>, dropped: &mut Vec<(String, Labels)>) {
        let st = self.state.lock().unwrap();
        for h in st.loops.values() {
            let s = h.state.lock().unwrap().clone();
            active.push(TargetStatus {
                discovered_labels: to_map(&h.target.discovered),
                labels: to_map(&h.target.labels),
                scrape_pool: self.name.clone(),
                scrape_url: h.target.url.clone(),
                global_url: h.target.url.clone(),
                last_error: s.last_error,
                last_scrape: s
                    .last_scrape
                    .map(|t| humantime::format_rfc3339_millis(t).to_string())
                    .unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                last_scrape_duration: s.last_duration.as_secs_f64(),
                health: s.health,
                scrape_interval: crate::model::duration::format(self.job.interval),
                scrape_timeout: crate::model::duration::format(self.job.timeout),
            });
        }
        dropped.extend(st.dropped.iter().map(|l| (self.name.clone(), l.clone())));
    }

    /// Each active target's labels with the metadata of its last good page.
    pub fn metadata(&self, out: &mut Vec<(Labels, Arc<Vec<crate::textparse::Metadata>>)>) {
        let st = self.state.lock().unwrap();
        for h in st.loops.values() {
            let m = h.state.lock().unwrap().metadata.clone();
            out.push((h.target.labels.clone(), m));
        }
    }
}

/// `/api/v1/targets`' order: by pool, then URL.
pub fn sort_targets(active: &mut [TargetStatus]) {
    active.sort_by(|a, b| (&a.scrape_pool, &a.scrape_url).cmp(&(&b.scrape_pool, &b.scrape_url)));
}

/// One row of `/api/v1/targets`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    pub discovered_labels: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub scrape_pool: String,
    pub scrape_url: String,
    pub global_url: String,
    pub last_error: String,
    pub last_scrape: String,
    pub last_scrape_duration: f64,
    pub health: Health,
    pub scrape_interval: String,
    pub scrape_timeout: String,
}

pub struct ScrapeManager {
    store: Arc<dyn Appendable>,
    pub stats: Arc<ScrapeStats>,
    pools: tokio::sync::Mutex<BTreeMap<String, Pool>>,
}

impl ScrapeManager {
    pub fn new(store: Arc<dyn Appendable>) -> anyhow::Result<ScrapeManager> {
        Ok(ScrapeManager {
            store,
            stats: Arc::default(),
            pools: tokio::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// Makes the running jobs match `jobs`. `base` resolves file SD paths.
    pub async fn apply(&self, jobs: Vec<Job>, base: PathBuf) {
        let mut pools = self.pools.lock().await;
        let wanted: BTreeMap<String, Job> = jobs.into_iter().map(|j| (j.name.clone(), j)).collect();
        let stale: Vec<String> = pools
            .iter()
            .filter(|(name, p)| {
                // The client keys are part of the config: changing them
                // restarts the pool with the new client.
                wanted.get(*name).is_none_or(|j| j.config != p.job.config)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in stale {
            if let Some(p) = pools.remove(&name) {
                stop_pool(p).await;
                tracing::info!(job = %name, "scrape pool stopped");
            }
        }
        for (name, job) in wanted {
            if pools.contains_key(&name) {
                continue;
            }
            let pool = self.start_pool(Arc::new(job), base.clone());
            pools.insert(name.clone(), pool);
            tracing::info!(job = %name, "scrape pool started");
        }
    }

    /// Stops every pool (staleness markers are written).
    pub async fn stop(&self) {
        let mut pools = self.pools.lock().await;
        for (_, p) in std::mem::take(&mut *pools) {
            stop_pool(p).await;
        }
    }

    fn start_pool(&self, job: Arc<Job>, base: PathBuf) -> Pool {
        let state: Arc<Mutex<PoolState>> = Arc::default();
        let providers = discovery::start(&job.config, &base);
        let mut sd: Vec<watch::Receiver<discovery::Groups>> =
            providers.iter().map(|p| p.groups.clone()).collect();
        let (store, stats) = (self.store.clone(), self.stats.clone());
        let (job2, state2) = (job.clone(), state.clone());
        let sync_task = tokio::spawn(async move {
            loop {
                let mut discovered: Vec<Labels> = job2
                    .static_groups()
                    .iter()
                    .flat_map(|g| group_labels(g, &[]))
                    .collect();
                for rx in &mut sd {
                    let groups = rx.borrow_and_update().clone();
                    for g in groups.iter() {
                        discovered.extend(g.label_sets().map(Labels::from_pairs));
                    }
                }
                sync(&job2, &state2, discovered, &store, &stats);
                if sd.is_empty() {
                    return;
                }
                // Wait for any discovery source to change.
                let changed =
                    futures::future::select_all(sd.iter_mut().map(|rx| Box::pin(rx.changed())))
                        .await;
                if changed.0.is_err() {
                    return;
                }
            }
        });
        Pool {
            job,
            state,
            discovery: providers.iter().map(|p| p.status.clone()).collect(),
            sync_task,
        }
    }

    /// The pools as they are now, to walk off the async workers: listing
    /// every target is per target (a file-SD job can have thousands), and
    /// the API runs it on the blocking pool ([`crate::web::work`]).
    pub async fn pool_views(&self) -> Vec<PoolView> {
        let pools = self.pools.lock().await;
        pools
            .iter()
            .map(|(name, p)| PoolView {
                name: name.clone(),
                job: p.job.clone(),
                state: p.state.clone(),
                discovery: p.discovery.clone(),
            })
            .collect()
    }

    /// The running job of a pool (its config and compiled rules): what
    /// tracing a label set through its relabeling needs.
    pub async fn job(&self, pool: &str) -> Option<Arc<Job>> {
        self.pools.lock().await.get(pool).map(|p| p.job.clone())
    }

    /// The active targets (sorted by pool and URL) and the dropped ones of
    /// every job.
    pub async fn targets(&self) -> (Vec<TargetStatus>, Vec<(String, Labels)>) {
        let (mut active, mut dropped) = (Vec::new(), Vec::new());
        for v in self.pool_views().await {
            v.targets(&mut active, &mut dropped);
        }
        sort_targets(&mut active);
        (active, dropped)
    }

    /// Last scrape time of every target (tests wait on it).
    pub async fn last_scrapes(&self) -> Vec<Option<SystemTime>> {
        self.targets()
            .await
            .0
            .iter()
            .map(|t| humantime::parse_rfc3339(&t.last_scrape).ok())
            .collect()
    }
}

fn to_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

/// Starts loops for new targets and stops the ones that disappeared.
fn sync(
    job: &Arc<Job>,
    state: &Mutex<PoolState>,
    discovered: Vec<Labels>,
    store: &Arc<dyn Appendable>,
    stats: &Arc<ScrapeStats>,
) {
    // Keyed by what makes a target (its labels and URL, as Prometheus'
    // target hash): two discovered sets yielding the same target scrape
    // once, and a pool of thousands of targets syncs in linear time.
    let mut targets: HashMap<TargetKey, Arc<Target>> = HashMap::with_capacity(discovered.len());
    let mut dropped = Vec::new();
    for d in discovered {
        match Target::populate(job, d.clone()) {
            Ok(Some(t)) => {
                targets
                    .entry((t.labels.clone(), t.url.clone()))
                    .or_insert_with(|| Arc::new(t));
            }
            Ok(None) => dropped.push(d),
            Err(e) => {
                tracing::warn!(job = %job.name, labels = %d, error = %e, "dropping invalid target")
            }
        }
    }
    let mut st = state.lock().unwrap();
    st.dropped = dropped;
    let gone: Vec<TargetKey> = st
        .loops
        .keys()
        .filter(|k| !targets.contains_key(*k))
        .cloned()
        .collect();
    for key in gone {
        if let Some(h) = st.loops.remove(&key) {
            // The loop writes staleness markers as it ends.
            let _ = h.stop.send(());
            drop(h.task);
            tracing::debug!(job = %job.name, target = %key.1, "target removed");
        }
    }
    for (key, t) in targets {
        if st.loops.contains_key(&key) {
            continue;
        }
        let sl = ScrapeLoop::new(job.clone(), t.clone(), store.clone(), stats.clone());
        let state = sl.state.clone();
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(sl.run(rx));
        tracing::debug!(job = %job.name, target = %t.url, "target added");
        st.loops.insert(
            key,
            LoopHandle {
                target: t,
                state,
                stop,
                task,
            },
        );
    }
}

/// One pool's target set run outside a manager, for the discovery bench:
/// [`DetachedPool::sync`] is what a pool does on every discovery publish.
#[doc(hidden)]
pub struct DetachedPool {
    job: Arc<Job>,
    state: Mutex<PoolState>,
    store: Arc<dyn Appendable>,
    stats: Arc<ScrapeStats>,
}

impl DetachedPool {
    pub fn new(job: Arc<Job>, store: Arc<dyn Appendable>) -> DetachedPool {
        DetachedPool {
            job,
            state: Mutex::default(),
            store,
            stats: Arc::default(),
        }
    }

    /// Syncs the loops to `discovered`; the number of targets kept.
    pub fn sync(&self, discovered: Vec<Labels>) -> usize {
        sync(&self.job, &self.state, discovered, &self.store, &self.stats);
        self.state.lock().unwrap().loops.len()
    }

    /// Stops every loop (on the current runtime).
    pub fn stop(&self) {
        for (_, h) in self.state.lock().unwrap().loops.drain() {
            let _ = h.stop.send(());
            h.task.abort();
        }
    }
}

async fn stop_pool(p: Pool) {
    p.sync_task.abort();
    let loops: Vec<LoopHandle> = {
        let mut st = p.state.lock().unwrap();
        st.loops.drain().map(|(_, h)| h).collect()
    };
    for h in loops {
        let _ = h.stop.send(());
        // Bounded: a loop stuck in a scrape is abandoned after its timeout.
        let _ = tokio::time::timeout(p.job.timeout + Duration::from_secs(1), h.task).await;
    }
}
