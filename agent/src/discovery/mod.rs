//! Service discovery (Prometheus' `discovery/` package): each mechanism of
//! a scrape job publishes the job's current target groups, and says how its
//! last look went, through a [`Provider`]. The scrape manager turns groups
//! into targets; discovery knows nothing of scraping.
//!
//! Every mechanism keeps its last good groups when a look fails (an API
//! outage, a file that does not parse, a DNS timeout): a failed refresh
//! never empties a job. It records why in its [`Status`] instead.
//!
//! Mechanisms: `file` (file_sd_configs), `dns` (dns_sd_configs),
//! `kubernetes` (kubernetes_sd_configs). Each is a file of this module.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::config::ScrapeConfig;

pub mod dns;
pub mod file;
pub mod http;
pub mod kubernetes;

/// A label set of a discovered target, `__address__` included.
pub type LabelSet = BTreeMap<String, String>;

/// A target group, as Prometheus' `targetgroup.Group`: targets with their
/// own labels, labels common to all of them, and a source naming the group
/// uniquely within its mechanism (a file, a pod, `namespace/name`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TargetGroup {
    pub source: String,
    pub targets: Vec<LabelSet>,
    pub labels: LabelSet,
}

impl TargetGroup {
    /// Each target's labels merged with the group's (a target's own win).
    pub fn label_sets(&self) -> impl Iterator<Item = LabelSet> + '_ {
        self.targets.iter().map(|t| {
            let mut set = self.labels.clone();
            set.extend(t.iter().map(|(k, v)| (k.clone(), v.clone())));
            set
        })
    }
}

/// How a mechanism's last look went, for `/api/v1/targets` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusState {
    /// Why the last look failed (None: it succeeded or none was made yet).
    pub last_error: Option<String>,
    /// When the groups were last refreshed successfully.
    pub last_success: Option<SystemTime>,
    /// How many targets the published groups hold.
    pub targets: usize,
    /// Looks made (each refresh, watch event or re-list), failed or not.
    pub refreshes: u64,
    /// Looks that failed.
    pub failures: u64,
}

/// One mechanism of one job: `kubernetes_sd_configs[0]` of job `pods`.
#[derive(Debug)]
pub struct Status {
    /// `file`, `http`, `dns`, `kubernetes`, as the config key's prefix.
    pub mechanism: &'static str,
    /// Index in the job's list of that mechanism's configs.
    pub index: usize,
    state: Mutex<StatusState>,
}

impl Status {
    pub fn new(mechanism: &'static str, index: usize) -> Arc<Status> {
        Arc::new(Status {
            mechanism,
            index,
            state: Mutex::new(StatusState::default()),
        })
    }

    /// `kubernetes_sd_configs[0]`: where in the job's config this is.
    pub fn name(&self) -> String {
        format!("{}_sd_configs[{}]", self.mechanism, self.index)
    }

    pub fn get(&self) -> StatusState {
        self.state.lock().unwrap().clone()
    }

    /// Records a successful look that published `targets` targets.
    pub fn succeeded(&self, targets: usize) {
        let mut s = self.state.lock().unwrap();
        s.last_error = None;
        s.last_success = Some(SystemTime::now());
        s.targets = targets;
        s.refreshes += 1;
    }

    /// Records a failed look; the published groups stay as they were.
    pub fn failed(&self, error: impl std::fmt::Display) {
        let mut s = self.state.lock().unwrap();
        s.last_error = Some(error.to_string());
        s.refreshes += 1;
        s.failures += 1;
    }

    /// Records a look that failed in part (some DNS names, some files): the
    /// failed parts kept their last good targets, the rest were refreshed,
    /// and the groups now published hold `targets` targets.
    pub fn failed_with(&self, error: impl std::fmt::Display, targets: usize) {
        self.failed(error);
        self.state.lock().unwrap().targets = targets;
    }
}

/// The groups one mechanism publishes: the whole current set, replaced as
/// a unit (the scrape manager diffs targets, not groups).
pub type Groups = Arc<Vec<TargetGroup>>;

/// A running discovery mechanism. Its task ends when every receiver of
/// `groups` is dropped.
pub struct Provider {
    pub groups: watch::Receiver<Groups>,
    pub status: Arc<Status>,
}

/// Starts every discovery mechanism of a job. `base` resolves relative
/// paths (file SD globs, credential files, kubeconfig files).
pub fn start(job: &ScrapeConfig, base: &Path) -> Vec<Provider> {
    let mut providers = Vec::new();
    for (i, c) in job.file_sd_configs.iter().enumerate() {
        providers.push(file::start(
            base.to_path_buf(),
            c.clone(),
            Status::new("file", i),
        ));
    }
    for (i, c) in job.http_sd_configs.iter().enumerate() {
        providers.push(http::start(
            base.to_path_buf(),
            c.clone(),
            Status::new("http", i),
        ));
    }
    for (i, c) in job.kubernetes_sd_configs.iter().enumerate() {
        providers.push(kubernetes::start(
            job.job_name.get_ref(),
            c.clone(),
            base.to_path_buf(),
            Status::new("kubernetes", i),
            kubernetes::client::InCluster::from_env(),
            kubernetes::watch::Tuning::default(),
        ));
    }
    for (i, c) in job.dns_sd_configs.iter().enumerate() {
        providers.push(dns::start(
            c.clone(),
            dns::Resolver::System,
            Status::new("dns", i),
        ));
    }
    providers
}

/// `host:port`, an IPv6 host in brackets (Go's `net.JoinHostPort`), as
/// every mechanism forms `__address__`.
pub fn join_host_port(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Publishes `groups` if they differ from what `tx` holds; true if they did.
pub fn publish(tx: &watch::Sender<Groups>, groups: Vec<TargetGroup>) -> bool {
    tx.send_if_modified(|cur| {
        if **cur != groups {
            *cur = Arc::new(groups);
            true
        } else {
            false
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_host_port_brackets_ipv6() {
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("10.0.0.1", "80"), "10.0.0.1:80");
        assert_eq!(join_host_port("db", 5432u16), "db:5432");
    }
}
