//! File-based discovery (`file_sd_configs`): JSON/YAML files matched by
//! globs, re-read on change and every refresh_interval.
//!
//! A file that fails to parse is reported and its previous targets are kept,
//! so a half-written file never empties a job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::sync::watch;

use super::{publish, Groups, Provider, Status, TargetGroup};
use crate::config::scrape::{FileSdConfig, StaticConfig};

/// The label file SD adds to every target: the file it came from.
pub const FILEPATH_LABEL: &str = "__meta_filepath";

/// The `__address__` label every target has.
const ADDRESS_LABEL: &str = "__address__";

/// Parses a file SD file: a list of `{targets, labels}` groups.
pub fn parse_file(path: &Path, bytes: &[u8]) -> Result<Vec<StaticConfig>> {
    let is_json = path.extension().is_some_and(|e| e == "json");
    let groups: Vec<StaticConfig> = if is_json {
        serde_json::from_slice(bytes)
            .with_context(|| format!("{}: invalid JSON target file", path.display()))?
    } else {
        serde_norway::from_slice(bytes)
            .with_context(|| format!("{}: invalid YAML target file", path.display()))?
    };
    for (i, g) in groups.iter().enumerate() {
        for t in &g.targets {
            if t.is_empty() || t.contains('/') {
                anyhow::bail!(
                    "{}: group {i}: target {t:?} must be host:port",
                    path.display()
                );
            }
        }
    }
    Ok(groups)
}

/// Reads every file the config's globs match. `last_good` keeps each file's
/// last parsable content; the error is the first file that did not parse.
fn read_all(
    base: &Path,
    sd: &FileSdConfig,
    last_good: &mut BTreeMap<PathBuf, Vec<StaticConfig>>,
) -> (Vec<TargetGroup>, Option<String>) {
    let mut error = None;
    let mut present = Vec::new();
    for pattern in &sd.files {
        let full = base.join(pattern);
        let Some(full) = full.to_str() else { continue };
        match glob::glob(full) {
            Ok(paths) => present.extend(paths.filter_map(|p| p.ok())),
            Err(e) => {
                tracing::error!(pattern = %full, error = %e, "bad file_sd pattern");
                error.get_or_insert_with(|| format!("bad pattern {full:?}: {e}"));
            }
        }
    }
    present.sort();
    present.dedup();
    last_good.retain(|p, _| present.contains(p));
    for p in &present {
        match std::fs::read(p)
            .map_err(anyhow::Error::from)
            .and_then(|b| parse_file(p, &b))
        {
            Ok(groups) => {
                last_good.insert(p.clone(), groups);
            }
            Err(e) => {
                tracing::error!(file = %p.display(), error = %format!("{e:#}"), "file_sd: keeping the file's previous targets");
                error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let groups = last_good
        .iter()
        .flat_map(|(p, gs)| {
            let file = p.display().to_string();
            gs.iter()
                .enumerate()
                .map(move |(i, g)| to_group(&file, i, g))
        })
        .collect();
    (groups, error)
}

/// Group `i` of `file`, as Prometheus' file SD makes it: source `file:i`,
/// `__meta_filepath` among the group's labels.
fn to_group(file: &str, i: usize, g: &StaticConfig) -> TargetGroup {
    let mut labels = g.labels.clone();
    labels.insert(FILEPATH_LABEL.into(), file.into());
    TargetGroup {
        source: format!("{file}:{i}"),
        targets: g
            .targets
            .iter()
            .map(|t| BTreeMap::from([(ADDRESS_LABEL.to_string(), t.clone())]))
            .collect(),
        labels,
    }
}

fn report(status: &Status, groups: &[TargetGroup], error: Option<String>) {
    match error {
        Some(e) => status.failed_with(e, groups.iter().map(|g| g.targets.len()).sum()),
        None => status.succeeded(groups.iter().map(|g| g.targets.len()).sum()),
    }
}

/// Watches one file SD config. The task ends when the receiver is dropped.
pub fn start(base: PathBuf, sd: FileSdConfig, status: Arc<Status>) -> Provider {
    let mut last_good = BTreeMap::new();
    let (initial, error) = read_all(&base, &sd, &mut last_good);
    report(&status, &initial, error);
    let (tx, rx) = watch::channel::<Groups>(Arc::new(initial));
    let provider = Provider {
        groups: rx,
        status: status.clone(),
    };
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // Watch the directories holding the patterns (files come and go).
    let mut dirs: Vec<PathBuf> = sd
        .files
        .iter()
        .filter_map(|f| base.join(f).parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    let watcher = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
        let _ = ev_tx.send(());
    });
    let watcher = match watcher {
        Ok(mut w) => {
            for d in &dirs {
                if let Err(e) = w.watch(d, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %d.display(), error = %e, "file_sd: cannot watch; relying on refresh_interval");
                }
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "file_sd: no file watcher; relying on refresh_interval");
            None
        }
    };
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut tick = tokio::time::interval(sd.refresh_interval.max(Duration::from_secs(1)));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                ev = ev_rx.recv() => {
                    if ev.is_none() { return; }
                    // Let a burst of writes settle.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while ev_rx.try_recv().is_ok() {}
                }
                _ = tx.closed() => return,
            }
            let (groups, error) = read_all(&base, &sd, &mut last_good);
            report(&status, &groups, error);
            publish(&tx, groups);
        }
    });
    provider
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_and_yaml() {
        let j = br#"[{"targets": ["a:1", "b:2"], "labels": {"env": "prod"}}]"#;
        let g = parse_file(Path::new("t.json"), j).unwrap();
        assert_eq!(g[0].targets, ["a:1", "b:2"]);
        let y = b"- targets: ['c:3']\n  labels:\n    env: dev\n";
        let g = parse_file(Path::new("t.yml"), y).unwrap();
        assert_eq!(g[0].labels["env"], "dev");
        let err = parse_file(Path::new("t.yaml"), b"- targets: [\n").unwrap_err();
        assert!(format!("{err:#}").contains("t.yaml"), "{err:#}");
        let err = parse_file(Path::new("t.json"), br#"[{"targets": ["http://x/y"]}]"#).unwrap_err();
        assert!(format!("{err:#}").contains("host:port"));
    }
}
