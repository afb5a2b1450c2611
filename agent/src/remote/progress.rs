//! A queue's progress: per shard, the WAL position up to which everything
//! was acknowledged, persisted in `DATA/remote_write/<name>.json`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A place in the WAL: just past a record of `segment`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pos {
    pub segment: u32,
    pub offset: u64,
}

/// What `DATA/remote_write/<name>.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct ProgressFile {
    url: String,
    /// Samples older than this (ms) are never sent: a new queue starts at
    /// "now", like Prometheus', instead of replaying the whole WAL.
    min_t: i64,
    /// Per shard: everything of that shard up to here was acknowledged.
    shards: Vec<Pos>,
}

/// The per-shard positions and where they are persisted.
pub(super) struct Tracker {
    pub(super) path: PathBuf,
    pub(super) url: String,
    pub(super) min_t: i64,
    pub(super) shards: Vec<Pos>,
    pub(super) dirty: bool,
}

impl Tracker {
    /// Loads the progress file; a missing or unreadable one starts fresh
    /// at `now_ms`. A different shard count keeps the oldest position for
    /// every shard (more duplicates, never a loss).
    pub(super) fn load(path: PathBuf, url: &str, n: usize, now_ms: i64) -> Tracker {
        let loaded = std::fs::read(&path).ok().and_then(|b| {
            serde_json::from_slice::<ProgressFile>(&b)
                .map_err(|e| {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable remote-write progress file; starting from now")
                })
                .ok()
        });
        let (min_t, shards) = match loaded {
            Some(p) if !p.shards.is_empty() => {
                let shards = if p.shards.len() == n {
                    p.shards
                } else {
                    vec![*p.shards.iter().min().unwrap(); n]
                };
                (p.min_t, shards)
            }
            _ => (now_ms, vec![Pos::default(); n]),
        };
        Tracker {
            path,
            url: url.to_string(),
            min_t,
            shards,
            dirty: true,
        }
    }

    pub(super) fn committed(&self) -> Pos {
        self.shards.iter().copied().min().unwrap_or_default()
    }

    pub(super) fn set(&mut self, shard: usize, pos: Pos) {
        if pos > self.shards[shard] {
            self.shards[shard] = pos;
            self.dirty = true;
        }
    }

    /// Writes the file (temp + rename: a crash leaves the old or the new
    /// one). No fsync: a kill -9 keeps the page cache, and after a power
    /// loss the WAL's own tail is gone too.
    pub(super) fn persist(&mut self) {
        if !self.dirty {
            return;
        }
        let p = ProgressFile {
            url: self.url.clone(),
            min_t: self.min_t,
            shards: self.shards.clone(),
        };
        let tmp = self.path.with_extension("json.tmp");
        let r = serde_json::to_vec(&p)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|_| std::fs::rename(&tmp, &self.path));
        match r {
            Ok(()) => self.dirty = false,
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "writing remote-write progress")
            }
        }
    }
}
