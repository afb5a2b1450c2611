//! The notification log (Alertmanager's `nflog/`): per aggregation group and
//! receiver, which alerts the last successful notification reported firing
//! and resolved, and when. Persisted as a JSON snapshot and loaded on start,
//! so a restart neither resends within repeat_interval nor forgets what a
//! receiver was told. [`needs_update`] is the dedup decision.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::types::Fingerprint;
use crate::fsutil::StateFile;

/// Default time an entry is kept after its notification.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(120 * 3600);

/// One logged notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub group_key: String,
    pub receiver: String,
    pub firing_alerts: BTreeSet<Fingerprint>,
    pub resolved_alerts: BTreeSet<Fingerprint>,
    pub timestamp: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The log.
pub struct NotificationLog {
    entries: Mutex<HashMap<(String, String), Entry>>,
    file: Option<StateFile>,
    retention: Duration,
}

impl NotificationLog {
    pub fn in_memory(retention: Duration) -> NotificationLog {
        NotificationLog {
            entries: Mutex::new(HashMap::new()),
            file: None,
            retention,
        }
    }

    /// A log persisted at `path`, loading the snapshot there if any.
    pub fn open(path: impl Into<PathBuf>, retention: Duration) -> anyhow::Result<NotificationLog> {
        let path = path.into();
        let mut map = HashMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<Entry> = serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                for e in list {
                    map.insert((e.group_key.clone(), e.receiver.clone()), e);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
        Ok(NotificationLog {
            entries: Mutex::new(map),
            file: Some(StateFile::new(path, "the notification log")),
            retention,
        })
    }

    /// Record a successful notification and, when persisted, write the
    /// snapshot at once: a crash right after a notification must not make
    /// the restarted agent send it again (Alertmanager only snapshots every
    /// 15 minutes, so it may repeat after a crash; we don't).
    pub fn log(
        &self,
        group_key: &str,
        receiver: &str,
        firing: BTreeSet<Fingerprint>,
        resolved: BTreeSet<Fingerprint>,
        now: DateTime<Utc>,
    ) {
        let e = Entry {
            group_key: group_key.to_string(),
            receiver: receiver.to_string(),
            firing_alerts: firing,
            resolved_alerts: resolved,
            timestamp: now,
            expires_at: now
                + chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX),
        };
        self.entries
            .lock()
            .insert((group_key.to_string(), receiver.to_string()), e);
        // A failure is logged (rate-limited) and the file stays behind:
        // the dispatcher writes it again (`is_behind`).
        let _ = self.snapshot();
    }

    pub fn query(&self, group_key: &str, receiver: &str) -> Option<Entry> {
        self.entries
            .lock()
            .get(&(group_key.to_string(), receiver.to_string()))
            .cloned()
    }

    /// Drop expired entries; returns how many.
    pub fn gc(&self, now: DateTime<Utc>) -> usize {
        let mut m = self.entries.lock();
        let before = m.len();
        m.retain(|_, e| e.expires_at > now);
        before - m.len()
    }

    pub fn snapshot(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        // Copied under the file's lock: concurrent flushes then land in
        // order (the last write has every entry).
        file.write(|| {
            let mut list: Vec<Entry> = self.entries.lock().values().cloned().collect();
            list.sort_by(|a, b| (&a.group_key, &a.receiver).cmp(&(&b.group_key, &b.receiver)));
            Ok(serde_json::to_vec_pretty(&list)?)
        })
    }

    /// The last snapshot failed: the file lacks entries.
    pub fn is_behind(&self) -> bool {
        self.file.as_ref().is_some_and(StateFile::is_behind)
    }

    /// GC then snapshot.
    pub fn maintenance(&self, now: DateTime<Utc>) -> std::io::Result<()> {
        self.gc(now);
        self.snapshot()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Alertmanager's `DedupStage.needsUpdate`: notify when new alerts fire,
/// when everything resolved after a firing notification, when the resolved
/// set grew and the receiver wants resolved notifications, or when the
/// last notification is older than `repeat`.
pub fn needs_update(
    entry: Option<&Entry>,
    firing: &BTreeSet<Fingerprint>,
    resolved: &BTreeSet<Fingerprint>,
    send_resolved: bool,
    repeat: Duration,
    now: DateTime<Utc>,
) -> bool {
    let Some(e) = entry else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&e.firing_alerts) {
        return true;
    }
    if firing.is_empty() {
        return !e.firing_alerts.is_empty();
    }
    if send_resolved && !resolved.is_subset(&e.resolved_alerts) {
        return true;
    }
    // `<=`: with exact timers a repeat_interval that is a multiple of the
    // group_interval repeats exactly on time, as documented upstream.
    e.timestamp <= now - chrono::Duration::from_std(repeat).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }
    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn dedup_rules() {
        let h4 = Duration::from_secs(4 * 3600);
        assert!(needs_update(None, &set(&[1]), &set(&[]), true, h4, t(0)));
        assert!(!needs_update(None, &set(&[]), &set(&[1]), true, h4, t(0)));
        let log = NotificationLog::in_memory(DEFAULT_RETENTION);
        log.log("g", "r", set(&[1, 2]), set(&[]), t(0));
        let e = log.query("g", "r").unwrap();
        // Same firing set: only after repeat_interval.
        assert!(!needs_update(
            Some(&e),
            &set(&[1, 2]),
            &set(&[]),
            true,
            h4,
            t(3600)
        ));
        assert!(needs_update(
            Some(&e),
            &set(&[1, 2]),
            &set(&[]),
            true,
            h4,
            t(4 * 3600 + 1)
        ));
        // A new firing alert.
        assert!(needs_update(
            Some(&e),
            &set(&[1, 2, 3]),
            &set(&[]),
            true,
            h4,
            t(60)
        ));
        // One resolved: only with send_resolved.
        assert!(needs_update(
            Some(&e),
            &set(&[1]),
            &set(&[2]),
            true,
            h4,
            t(60)
        ));
        assert!(!needs_update(
            Some(&e),
            &set(&[1]),
            &set(&[2]),
            false,
            h4,
            t(60)
        ));
        // All resolved: always (clears the log).
        assert!(needs_update(
            Some(&e),
            &set(&[]),
            &set(&[1, 2]),
            false,
            h4,
            t(60)
        ));
    }

    #[test]
    fn every_logged_notification_is_on_disk_at_once() {
        // No snapshot() call: a kill -9 right after `log` must not lose it.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nflog.json");
        let log = NotificationLog::open(&p, Duration::from_secs(3600)).unwrap();
        log.log("g", "r", set(&[1]), set(&[]), t(0));
        log.log("g2", "r", set(&[2]), set(&[]), t(1));
        let reopened = NotificationLog::open(&p, Duration::from_secs(3600)).unwrap();
        assert_eq!(reopened.query("g", "r").unwrap().firing_alerts, set(&[1]));
        assert_eq!(reopened.query("g2", "r").unwrap().firing_alerts, set(&[2]));
        assert!(!dir.path().join("nflog.json.tmp").exists());
    }

    #[test]
    fn persisted_and_gc() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nflog.json");
        let log = NotificationLog::open(&p, Duration::from_secs(3600)).unwrap();
        log.log("g", "r", set(&[1]), set(&[]), t(0));
        log.snapshot().unwrap();
        let log2 = NotificationLog::open(&p, Duration::from_secs(3600)).unwrap();
        assert_eq!(log2.query("g", "r").unwrap().firing_alerts, set(&[1]));
        assert_eq!(log2.gc(t(3600)), 1);
    }
}
