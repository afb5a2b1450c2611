//! Storage write health: failed writes the store depends on (the WAL,
//! blocks written by compaction, head chunk files), counted per kind for
//! `/metrics`, kept as "failing" until a write of that kind succeeds again
//! (the agent is not ready while the WAL is failing), and logged at most
//! once a minute per kind — a disk that refuses writes would otherwise log
//! an error every second from the WAL sync alone. Each kind is a
//! [`WriteFailures`], as the agent's state files are.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::fsutil::WriteFailures;

/// What kind of write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Appending to or syncing the write-ahead log, or cutting a segment.
    Wal,
    /// Writing a block, a WAL checkpoint, or deleting old ones.
    Compaction,
    /// Moving closed head chunks to `chunks_head/`.
    HeadChunks,
}

impl WriteKind {
    pub const ALL: [WriteKind; 3] = [WriteKind::Wal, WriteKind::Compaction, WriteKind::HeadChunks];

    /// The `kind` label value on `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteKind::Wal => "wal",
            WriteKind::Compaction => "compaction",
            WriteKind::HeadChunks => "head_chunks",
        }
    }

    fn what(self) -> &'static str {
        match self {
            WriteKind::Wal => "writing the WAL",
            WriteKind::Compaction => "tsdb compaction",
            WriteKind::HeadChunks => "moving head chunks to disk",
        }
    }
}

/// See the module docs. One per store, shared by its WAL.
#[derive(Default)]
pub struct WriteHealth {
    kinds: [WriteFailures; 3],
    /// Unix ms of the last failure of any kind; 0 = none.
    last_failure_ms: AtomicI64,
}

impl WriteHealth {
    fn kind(&self, k: WriteKind) -> &WriteFailures {
        &self.kinds[k as usize]
    }

    /// Records a failed write (and logs it, rate-limited).
    pub fn failed(&self, k: WriteKind, error: &anyhow::Error) {
        self.last_failure_ms
            .store(crate::clock::now_ms(), Ordering::Relaxed);
        self.kind(k).failed(k.what(), &format!("{error:#}"));
    }

    /// Records a successful write: a failing kind recovers.
    pub fn succeeded(&self, k: WriteKind) {
        self.kind(k).succeeded(k.what());
    }

    /// The last error of a kind whose last write failed.
    pub fn failing(&self, k: WriteKind) -> Option<String> {
        self.kind(k).failing()
    }

    pub fn failures(&self, k: WriteKind) -> u64 {
        self.kind(k).count()
    }

    /// Unix ms of the last failure of any kind (None: never).
    pub fn last_failure_ms(&self) -> Option<i64> {
        let t = self.last_failure_ms.load(Ordering::Relaxed);
        (t != 0).then_some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_until_a_write_succeeds() {
        let h = WriteHealth::default();
        assert_eq!(h.failing(WriteKind::Wal), None);
        assert_eq!(h.last_failure_ms(), None);
        for _ in 0..3 {
            h.failed(WriteKind::Wal, &anyhow::anyhow!("disk full"));
        }
        assert_eq!(h.failing(WriteKind::Wal).as_deref(), Some("disk full"));
        assert_eq!(h.failing(WriteKind::Compaction), None);
        assert_eq!(h.failures(WriteKind::Wal), 3);
        assert!(h.last_failure_ms().is_some());
        h.succeeded(WriteKind::Wal);
        assert_eq!(h.failing(WriteKind::Wal), None);
        assert_eq!(h.failures(WriteKind::Wal), 3, "the count stays");
    }
}
