//! Hot reload: watch the plugins directory and reload what changed.
//!
//! - **Which events count.** Only those that can mean new content: create,
//!   write, close after writing, rename, remove, attribute change. inotify
//!   also reports every open of a file in the directory, and the runtime
//!   opens a file to read it: forwarding those made each read trigger the
//!   next, a loop that re-read and re-hashed the plugins several times a
//!   second forever.
//! - **What a change costs.** Events are only flags; a burst is merged
//!   until the directory has been quiet for [`DEBOUNCE`] (at most
//!   [`MAX_BATCH_DELAY`] after the first) and no file is still open for
//!   writing (at most [`MAX_WRITE_WAIT`]), then the runtime rescans
//!   ([`PluginRuntime::rescan`]): a `stat` per file, a read and hash only
//!   of files whose stamp changed, a compile only of new content, and a
//!   broken version reported once.
//! - **The directory itself.** Its parent is watched too, so deleting,
//!   renaming or re-creating the directory, or swapping a symlink to it,
//!   re-arms the watch and rescans; a backstop re-arms every
//!   [`REARM_INTERVAL`] when a watch could not be set (the parent missing
//!   too). Kubernetes ConfigMap and Secret volumes update by swapping their
//!   `..data` symlink to a new directory: the plugin files (symlinks through
//!   `..data`) then `stat` as new inodes on the rescan that the swap's
//!   events trigger. While the directory is missing, the plugins loaded from
//!   it keep serving (see [`PluginRuntime::rescan`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;

use super::runtime::PluginRuntime;

/// How long the directory must be quiet before a burst of events (a copy
/// writes many) is acted on.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// A directory that never goes quiet (a slow, continuous writer) is still
/// rescanned this long after the first event of a burst.
pub const MAX_BATCH_DELAY: Duration = Duration::from_secs(1);

/// How long a rescan waits for files being written to be closed. A writer
/// that keeps a file open longer gets it read as it is (and reported if
/// it is broken), then read again when it closes it.
pub const MAX_WRITE_WAIT: Duration = Duration::from_secs(10);

/// How often a watch that could not be set is tried again.
pub const REARM_INTERVAL: Duration = Duration::from_secs(2);

/// Keeps the watcher alive; dropping it stops hot reload.
pub struct WatchHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether an event can mean that a file's content or presence changed.
pub fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        // Opens and reads, ours included.
        EventKind::Access(_) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    }
}

/// What the inotify thread tells the reload task: flags, not a queue, so a
/// storm of events (a 100 MB file being written) costs no memory.
#[derive(Default)]
struct Pending {
    /// Something in the directory changed: rescan.
    contents: AtomicBool,
    /// The directory itself (or its parent) was removed, renamed or
    /// created, or the kernel dropped events: re-arm the watches, rescan.
    dir: AtomicBool,
    /// Files written to and not closed yet (`cp` onto the name, an
    /// in-place rewrite): reading them now would report a half-written
    /// file as broken.
    writing: Mutex<HashSet<PathBuf>>,
    wake: Notify,
}

impl Pending {
    fn writes_in_progress(&self) -> bool {
        !self.writing.lock().unwrap().is_empty()
    }
}

/// The paths watched and whether each watch is set.
struct Watches {
    watcher: notify::RecommendedWatcher,
    dir: PathBuf,
    parent: Option<PathBuf>,
    dir_armed: bool,
    parent_armed: bool,
}

impl Watches {
    /// Sets the watches that are not set, or (`force`) both again. inotify
    /// watches an inode, not a name: after the directory was replaced the
    /// old watch follows the old inode (or is gone), so it is dropped and
    /// set on what the name is now. Events in between are not lost: a
    /// rescan follows every re-arm.
    fn rearm(&mut self, force: bool) {
        if force || !self.dir_armed {
            let _ = self.watcher.unwatch(&self.dir);
            self.dir_armed = self.dir.is_dir()
                && self
                    .watcher
                    .watch(&self.dir, RecursiveMode::NonRecursive)
                    .is_ok();
        }
        if let Some(parent) = &self.parent {
            if force || !self.parent_armed {
                let _ = self.watcher.unwatch(parent);
                self.parent_armed = self
                    .watcher
                    .watch(parent, RecursiveMode::NonRecursive)
                    .is_ok();
            }
        }
    }

    fn fully_armed(&self) -> bool {
        self.dir_armed && (self.parent_armed || self.parent.is_none())
    }
}

/// Starts watching `rt.dir()`; must be called inside a tokio runtime. The
/// directory need not exist: it is loaded when it appears.
pub fn watch(rt: Arc<PluginRuntime>) -> Result<WatchHandle> {
    let dir = std::path::absolute(rt.dir())
        .with_context(|| format!("resolving plugin directory {}", rt.dir().display()))?;
    let parent = dir.parent().map(Path::to_path_buf);
    let pending = Arc::new(Pending::default());
    let watcher = {
        let (pending, dir, parent) = (pending.clone(), dir.clone(), parent.clone());
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) => {
                let (contents, itself) = classify(&ev, &dir, parent.as_deref());
                if contents {
                    track_writes(&mut pending.writing.lock().unwrap(), &ev, &dir);
                }
                if contents {
                    pending.contents.store(true, Ordering::Release);
                }
                if itself {
                    pending.dir.store(true, Ordering::Release);
                }
                if contents || itself {
                    pending.wake.notify_one();
                }
            }
            Err(e) => tracing::warn!(error = %e, "plugin directory watch error"),
        })
        .context("creating the plugin directory watcher")?
    };
    let mut watches = Watches {
        watcher,
        dir: dir.clone(),
        parent,
        dir_armed: false,
        parent_armed: false,
    };
    watches.rearm(true);
    if !watches.dir_armed {
        tracing::warn!(dir = %dir.display(), "plugin directory cannot be watched yet (missing?): it is loaded when it appears");
    }
    // Files may have changed between the initial load and the watch.
    pending.contents.store(true, Ordering::Release);
    pending.wake.notify_one();
    let task = tokio::spawn(reload_loop(rt, watches, pending));
    tracing::info!(dir = %dir.display(), "watching plugin directory for changes");
    Ok(WatchHandle { task })
}

/// Sorts one event into (something in the directory changed, the directory
/// itself did).
fn classify(ev: &notify::Event, dir: &Path, parent: Option<&Path>) -> (bool, bool) {
    // The kernel's queue overflowed: events were lost.
    if ev.need_rescan() {
        return (true, true);
    }
    if !is_change(&ev.kind) {
        return (false, false);
    }
    let (mut contents, mut itself) = (false, false);
    for p in &ev.paths {
        if p == dir || Some(p.as_path()) == parent {
            itself = true;
        } else if p.parent() == Some(dir) {
            contents = true;
        }
        // Anything else is a sibling in the parent: not ours.
    }
    (contents, itself)
}

/// Keeps `writing` up to date with one event: a write opens the entry,
/// the writer's close (or the name going away) ends it.
fn track_writes(writing: &mut HashSet<PathBuf>, ev: &notify::Event, dir: &Path) {
    for p in ev.paths.iter().filter(|p| p.parent() == Some(dir)) {
        match ev.kind {
            EventKind::Modify(ModifyKind::Data(_)) => {
                writing.insert(p.clone());
            }
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_)) => {
                writing.remove(p);
            }
            _ => {}
        }
    }
}

async fn reload_loop(rt: Arc<PluginRuntime>, mut watches: Watches, pending: Arc<Pending>) {
    let mut backstop = tokio::time::interval(REARM_INTERVAL);
    backstop.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = pending.wake.notified() => {}
            _ = backstop.tick() => {
                if watches.fully_armed() {
                    continue;
                }
                let was = watches.dir_armed;
                watches.rearm(false);
                if was || !watches.dir_armed {
                    continue;
                }
                tracing::info!(dir = %watches.dir.display(), "plugin directory watch re-armed");
                pending.contents.store(true, Ordering::Release);
            }
        }
        let first = tokio::time::Instant::now();
        loop {
            let woke = tokio::time::timeout(DEBOUNCE, pending.wake.notified())
                .await
                .is_ok();
            let waited = first.elapsed();
            let busy = woke && waited < MAX_BATCH_DELAY;
            let writing = pending.writes_in_progress() && waited < MAX_WRITE_WAIT;
            if !busy && !writing {
                break;
            }
        }
        let itself = pending.dir.swap(false, Ordering::AcqRel);
        let contents = pending.contents.swap(false, Ordering::AcqRel);
        if itself {
            watches.rearm(true);
        }
        if itself || contents {
            rt.rescan().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

    #[test]
    fn opens_and_reads_are_not_changes() {
        for kind in [
            AccessKind::Open(AccessMode::Any),
            AccessKind::Read,
            AccessKind::Close(AccessMode::Read),
            AccessKind::Any,
        ] {
            assert!(!is_change(&EventKind::Access(kind)), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Other,
        ] {
            assert!(is_change(&kind), "{kind:?}");
        }
    }

    #[test]
    fn a_file_is_being_written_from_its_first_write_to_its_close() {
        let dir = Path::new("/p");
        let mut writing = HashSet::new();
        let ev = |kind| notify::Event::new(kind).add_path(PathBuf::from("/p/a.wasm"));
        track_writes(&mut writing, &ev(EventKind::Create(CreateKind::File)), dir);
        assert!(
            writing.is_empty(),
            "a create alone (a symlink, a hard link) is complete"
        );
        track_writes(
            &mut writing,
            &ev(EventKind::Modify(ModifyKind::Data(DataChange::Any))),
            dir,
        );
        assert_eq!(writing.len(), 1);
        track_writes(
            &mut writing,
            &ev(EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any))),
            dir,
        );
        assert_eq!(writing.len(), 1);
        track_writes(
            &mut writing,
            &ev(EventKind::Access(AccessKind::Close(AccessMode::Write))),
            dir,
        );
        assert!(writing.is_empty());
        track_writes(
            &mut writing,
            &ev(EventKind::Modify(ModifyKind::Data(DataChange::Any))),
            dir,
        );
        track_writes(&mut writing, &ev(EventKind::Remove(RemoveKind::File)), dir);
        assert!(
            writing.is_empty(),
            "a removed file is not being written any more"
        );
    }

    #[test]
    fn events_are_sorted_by_whom_they_concern() {
        let dir = Path::new("/srv/wasmon/plugins");
        let parent = Some(Path::new("/srv/wasmon"));
        let ev = |kind, path: &str| notify::Event::new(kind).add_path(PathBuf::from(path));
        let written = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert_eq!(
            classify(&ev(written, "/srv/wasmon/plugins/a.wasm"), dir, parent),
            (true, false)
        );
        let opened = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert_eq!(
            classify(&ev(opened, "/srv/wasmon/plugins/a.wasm"), dir, parent),
            (false, false)
        );
        let created = EventKind::Create(CreateKind::Folder);
        assert_eq!(
            classify(&ev(created, "/srv/wasmon/plugins"), dir, parent),
            (false, true)
        );
        // A sibling of the plugins dir (the data dir, say) is not ours.
        assert_eq!(
            classify(&ev(created, "/srv/wasmon/data"), dir, parent),
            (false, false)
        );
        let overflow = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert_eq!(classify(&overflow, dir, parent), (true, true));
    }
}
