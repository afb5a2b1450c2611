//! Hot reload: watch the plugins directory and reload what changes.
//!
//! Events are debounced briefly because copying a file produces several
//! (create, modify, modify...); reading a half-written file would fail to
//! compile and be reported, and the next event would load it, but a short
//! pause avoids the noise. Writers should still prefer an atomic rename.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};

use super::runtime::PluginRuntime;

/// How long to wait for a burst of events on one file to settle.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// Keeps the watcher alive; dropping it stops hot reload.
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `rt.dir()`; must be called inside a tokio runtime.
pub fn watch(rt: Arc<PluginRuntime>) -> Result<WatchHandle> {
    let dir = rt.dir().to_path_buf();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) => {
                for p in ev.paths {
                    let _ = tx.send(p);
                }
            }
            Err(e) => tracing::warn!(error = %e, "plugin directory watch error"),
        })
        .context("creating the plugin directory watcher")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching plugin directory {}", dir.display()))?;
    let task = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = BTreeSet::from([first]);
            tokio::time::sleep(DEBOUNCE).await;
            while let Ok(p) = rx.try_recv() {
                batch.insert(p);
            }
            for p in batch {
                rt.reload_path(&p).await;
            }
        }
    });
    tracing::info!(dir = %dir.display(), "watching plugin directory for changes");
    Ok(WatchHandle {
        _watcher: watcher,
        task,
    })
}
