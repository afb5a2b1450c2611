//! File helpers shared by the stores that persist small JSON state
//! (silences, notification log, rollouts, acks and incidents).

use std::path::Path;

/// Write `bytes` to `path` so that a crash (kill -9 or power loss) leaves
/// either the old or the new content, never a torn file: a temporary file,
/// fsynced, renamed over `path`, then the directory fsynced so the rename
/// itself is durable. Callers serialise writers of one `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// A failure of one kind of write is logged at once, then at most this
/// often while it lasts.
pub const LOG_FAILURES_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Failed writes of one kind (the store's WAL, one state file): counted,
/// "failing" until a write of that kind succeeds again, logged at the first
/// failure of an episode and then at most every [`LOG_FAILURES_EVERY`]
/// with the count since, and the episode's end logged once. A disk that
/// refuses writes otherwise logs at every attempt: every WAL sync, every
/// incidents flush, every notification.
#[derive(Default)]
pub struct WriteFailures {
    failures: std::sync::atomic::AtomicU64,
    failing: std::sync::atomic::AtomicBool,
    log: parking_lot::Mutex<FailureLog>,
}

#[derive(Default)]
struct FailureLog {
    last_logged: Option<std::time::Instant>,
    /// Failures since the last log line.
    unlogged: u64,
    /// The last failure's message.
    error: String,
}

impl WriteFailures {
    /// Records a failed write; `what` names it ("writing the WAL").
    pub fn failed(&self, what: &str, error: &dyn std::fmt::Display) {
        use std::sync::atomic::Ordering;
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.failing.store(true, Ordering::SeqCst);
        let mut log = self.log.lock();
        log.error = error.to_string();
        log.unlogged += 1;
        if log
            .last_logged
            .is_none_or(|t| t.elapsed() >= LOG_FAILURES_EVERY)
        {
            tracing::error!(
                error = %log.error,
                failures = log.unlogged,
                "{what} failed (logged at most once a minute while it keeps failing)"
            );
            log.last_logged = Some(std::time::Instant::now());
            log.unlogged = 0;
        }
    }

    /// Records a successful write: a failing kind recovers.
    pub fn succeeded(&self, what: &str) {
        if self
            .failing
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            let mut log = self.log.lock();
            tracing::warn!(failures_since_last_log = log.unlogged, "{what} works again");
            *log = FailureLog::default();
        }
    }

    /// The last error, while the last write failed.
    pub fn failing(&self) -> Option<String> {
        if !self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        Some(self.log.lock().error.clone())
    }

    /// Failed writes so far.
    pub fn count(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A small state file written whole at every change (silences, the
/// notification log, acks, incidents, rollouts) with [`write_atomic`].
/// Its failures go through [`WriteFailures`], and a failed write leaves
/// the file *behind* memory until a write succeeds: the owner writes it
/// again ([`StateFile::is_behind`]), so that what the agent accepted while
/// the disk refused writes reaches the disk once it takes them again.
pub struct StateFile {
    path: std::path::PathBuf,
    /// "writing the silences (DIR/silences.json)": the log's subject.
    what: String,
    /// One writer at a time: the last write has the latest state.
    lock: parking_lot::Mutex<()>,
    behind: std::sync::atomic::AtomicBool,
    failures: WriteFailures,
}

impl StateFile {
    /// `name` says what the file holds ("the silences").
    pub fn new(path: impl Into<std::path::PathBuf>, name: &str) -> StateFile {
        let path = path.into();
        StateFile {
            what: format!("writing {name} ({})", path.display()),
            path,
            lock: parking_lot::Mutex::new(()),
            behind: Default::default(),
            failures: WriteFailures::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes what `bytes` returns. `bytes` runs under the file's lock: a
    /// caller that reads its state there (or holds its state's lock) makes
    /// every write land in order. A failure is logged (rate-limited) and
    /// leaves the file behind; the error is returned too.
    pub fn write(&self, bytes: impl FnOnce() -> std::io::Result<Vec<u8>>) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        let _w = self.lock.lock();
        match bytes().and_then(|b| write_atomic(&self.path, &b)) {
            Ok(()) => {
                self.behind.store(false, Ordering::SeqCst);
                self.failures.succeeded(&self.what);
                Ok(())
            }
            Err(e) => {
                self.behind.store(true, Ordering::SeqCst);
                self.failures.failed(&self.what, &e);
                Err(e)
            }
        }
    }

    /// The last write failed: memory has what the file lacks.
    pub fn is_behind(&self) -> bool {
        self.behind.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Failed writes so far.
    pub fn failures(&self) -> u64 {
        self.failures.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_state_write_leaves_the_file_behind_until_one_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the file's place: every write fails.
        let path = dir.path().join("state.json");
        std::fs::create_dir(&path).unwrap();
        let f = StateFile::new(&path, "the state");
        assert!(!f.is_behind());
        for _ in 0..3 {
            assert!(f.write(|| Ok(b"{}".to_vec())).is_err());
        }
        assert!(f.is_behind());
        assert_eq!(f.failures(), 3);
        assert!(f.failures.failing().is_some());
        std::fs::remove_dir(&path).unwrap();
        f.write(|| Ok(b"[1]".to_vec())).unwrap();
        assert!(!f.is_behind());
        assert_eq!(f.failures.failing(), None);
        assert_eq!(std::fs::read(&path).unwrap(), b"[1]");
        assert_eq!(f.failures(), 3, "the count stays");
    }
}
