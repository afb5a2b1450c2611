//! Silences (Alertmanager's `silence/`): create, update, expire, list and
//! query by alert labels; persisted as a JSON snapshot that is loaded on
//! start; expired silences are dropped after a retention period (120h by
//! default).
//!
//! Updates follow Alertmanager: a silence whose matchers are unchanged and
//! whose time change is allowed in its current state (pending: anything in
//! the future; active: only the end, not in the past) is updated in place;
//! otherwise the old silence is expired and a new one with a new id created.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::matcher::{go_quote, go_regex_error, ApiMatcher, Matcher};
use crate::fsutil::StateFile;
use crate::model::Labels;

/// Default time an expired silence is kept (Alertmanager's `--data.retention`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(120 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

/// A silence in the Alertmanager API v2 shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    #[serde(default)]
    pub id: String,
    pub matchers: Vec<ApiMatcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[serde(default = "epoch")]
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

fn epoch() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}

impl Silence {
    pub fn state_at(&self, now: DateTime<Utc>) -> SilenceState {
        if self.ends_at <= now {
            SilenceState::Expired
        } else if self.starts_at > now {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    fn compiled(&self) -> Result<Vec<Matcher>, SilenceError> {
        self.matchers
            .iter()
            .map(|m| {
                m.to_matcher()
                    .map_err(|e| SilenceError::Invalid(e.to_string()))
            })
            .collect()
    }

    /// Alertmanager's `validateSilence` (0.25): matcher names are classic
    /// label names, regular expressions compile, some matcher does not
    /// match the empty string (negative matchers never count as matching
    /// it, as upstream), the end is not before the start.
    fn validate(&self) -> Result<Vec<Matcher>, SilenceError> {
        if self.matchers.is_empty() {
            return Err(SilenceError::Invalid(
                "at least one matcher required".into(),
            ));
        }
        let mut all_match_empty = true;
        for (i, m) in self.matchers.iter().enumerate() {
            let invalid =
                |e: String| SilenceError::Invalid(format!("invalid label matcher {i}: {e}"));
            if !crate::model::is_legacy_label_name(&m.name) {
                return Err(invalid(format!("invalid label name {}", go_quote(&m.name))));
            }
            if m.is_regex {
                regex::Regex::new(&m.value).map_err(|e| {
                    invalid(format!(
                        "invalid regular expression {}: {}",
                        go_quote(&m.value),
                        go_regex_error(&m.value, &e)
                    ))
                })?;
            }
            all_match_empty &= m.is_equal && m.to_matcher().is_ok_and(|c| c.matches_value(""));
        }
        if all_match_empty {
            return Err(SilenceError::Invalid(
                "at least one matcher must not match the empty string".into(),
            ));
        }
        if self.ends_at < self.starts_at {
            return Err(SilenceError::Invalid(
                "end time must not be before start time".into(),
            ));
        }
        self.compiled()
    }
}

/// A silence with its state, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SilenceWithState {
    #[serde(flatten)]
    pub silence: Silence,
    pub status: SilenceStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SilenceStatus {
    pub state: SilenceState,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SilenceError {
    #[error("silence not found")]
    NotFound,
    #[error("silence {0} already expired")]
    AlreadyExpired(String),
    /// Alertmanager's text: `silence invalid: ...`.
    #[error("silence invalid: {0}")]
    Invalid(String),
}

struct Entry {
    silence: Silence,
    matchers: Vec<Matcher>,
}

/// The silence store.
pub struct Silences {
    entries: Mutex<HashMap<String, Entry>>,
    file: Option<StateFile>,
    retention: Duration,
}

/// A new random-looking id in UUID v4 form.
pub fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes(),
    );
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let mut b: [u8; 16] = h.finalize()[..16].try_into().unwrap();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

impl Silences {
    /// An in-memory store (nothing persisted).
    pub fn in_memory(retention: Duration) -> Silences {
        Silences {
            entries: Mutex::new(HashMap::new()),
            file: None,
            retention,
        }
    }

    /// A store persisted at `path`, loading the snapshot there if any.
    pub fn open(path: impl Into<PathBuf>, retention: Duration) -> anyhow::Result<Silences> {
        let path = path.into();
        let s = Silences {
            entries: Mutex::new(HashMap::new()),
            file: Some(StateFile::new(path.clone(), "the silences")),
            retention,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<Silence> = serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                let mut m = s.entries.lock();
                for sil in list {
                    match sil.compiled() {
                        Ok(matchers) => {
                            m.insert(
                                sil.id.clone(),
                                Entry {
                                    silence: sil,
                                    matchers,
                                },
                            );
                        }
                        Err(e) => {
                            tracing::warn!(id = %sil.id, "skipping silence from snapshot: {e}")
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
        Ok(s)
    }

    /// Create (empty id) or update a silence; returns its id, which is new
    /// when the update could not be done in place.
    pub fn set(&self, mut s: Silence, now: DateTime<Utc>) -> Result<String, SilenceError> {
        let matchers = s.validate()?;
        let mut m = self.entries.lock();
        if !s.id.is_empty() {
            let prev = m.get(&s.id).ok_or(SilenceError::NotFound)?;
            if can_update(&prev.silence, &s, now) {
                s.updated_at = now;
                let id = s.id.clone();
                m.insert(
                    id.clone(),
                    Entry {
                        silence: s,
                        matchers,
                    },
                );
                return Ok(id);
            }
            if s.ends_at <= now {
                return Err(SilenceError::Invalid(
                    "end time can't be in the past".into(),
                ));
            }
            // Expire the old one if it is still in effect, then create anew.
            let id = s.id.clone();
            let prev = m.get_mut(&id).unwrap();
            match prev.silence.state_at(now) {
                SilenceState::Active => prev.silence.ends_at = now,
                SilenceState::Pending => {
                    prev.silence.starts_at = now;
                    prev.silence.ends_at = now;
                }
                SilenceState::Expired => {}
            }
            prev.silence.updated_at = now;
        }
        if s.ends_at <= now {
            return Err(SilenceError::Invalid(
                "end time can't be in the past".into(),
            ));
        }
        if s.starts_at < now {
            s.starts_at = now;
        }
        s.id = new_id();
        s.updated_at = now;
        let id = s.id.clone();
        m.insert(
            id.clone(),
            Entry {
                silence: s,
                matchers,
            },
        );
        Ok(id)
    }

    /// Expire a silence now.
    pub fn expire(&self, id: &str, now: DateTime<Utc>) -> Result<(), SilenceError> {
        let mut m = self.entries.lock();
        let e = m.get_mut(id).ok_or(SilenceError::NotFound)?;
        match e.silence.state_at(now) {
            SilenceState::Expired => return Err(SilenceError::AlreadyExpired(id.to_string())),
            SilenceState::Active => e.silence.ends_at = now,
            SilenceState::Pending => {
                e.silence.starts_at = now;
                e.silence.ends_at = now;
            }
        }
        e.silence.updated_at = now;
        Ok(())
    }

    pub fn get(&self, id: &str, now: DateTime<Utc>) -> Option<SilenceWithState> {
        self.entries
            .lock()
            .get(id)
            .map(|e| with_state(&e.silence, now))
    }

    /// All silences in Alertmanager's API order: active, then pending, then expired; by end (active), start
    /// (pending) or end descending (expired).
    pub fn list(&self, now: DateTime<Utc>) -> Vec<SilenceWithState> {
        let mut v: Vec<SilenceWithState> = self
            .entries
            .lock()
            .values()
            .map(|e| with_state(&e.silence, now))
            .collect();
        let rank = |s: SilenceState| match s {
            SilenceState::Active => 0,
            SilenceState::Pending => 1,
            SilenceState::Expired => 2,
        };
        v.sort_by(|a, b| {
            rank(a.status.state)
                .cmp(&rank(b.status.state))
                .then_with(|| match a.status.state {
                    SilenceState::Active => a.silence.ends_at.cmp(&b.silence.ends_at),
                    SilenceState::Pending => a.silence.starts_at.cmp(&b.silence.starts_at),
                    SilenceState::Expired => b.silence.ends_at.cmp(&a.silence.ends_at),
                })
                .then_with(|| a.silence.id.cmp(&b.silence.id))
        });
        v
    }

    /// Ids of the active silences that match `labels` (sorted).
    pub fn mutes(&self, labels: &Labels, now: DateTime<Utc>) -> Vec<String> {
        let mut ids: Vec<String> = self
            .entries
            .lock()
            .values()
            .filter(|e| e.silence.state_at(now) == SilenceState::Active)
            .filter(|e| all_match(&e.matchers, labels))
            .map(|e| e.silence.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The silences active at `now`, for marking many alerts with one look
    /// at the store (the API's listings).
    pub fn active(&self, now: DateTime<Utc>) -> ActiveSilences {
        let mut v: Vec<(String, Vec<Matcher>)> = self
            .entries
            .lock()
            .values()
            .filter(|e| e.silence.state_at(now) == SilenceState::Active)
            .map(|e| (e.silence.id.clone(), e.matchers.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        ActiveSilences(v)
    }

    /// Drop silences expired for longer than the retention; returns how many.
    pub fn gc(&self, now: DateTime<Utc>) -> usize {
        let keep = chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX);
        let mut m = self.entries.lock();
        let before = m.len();
        m.retain(|_, e| e.silence.ends_at + keep > now);
        before - m.len()
    }

    /// Write the snapshot (atomically: temp file + rename). No-op in memory.
    /// A failure is logged (rate-limited) and leaves the file behind
    /// ([`Silences::is_behind`]) for the dispatcher to write again.
    pub fn snapshot(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        // Copied under the file's lock: concurrent writers (API calls,
        // maintenance) then land in order.
        file.write(|| {
            let mut list: Vec<Silence> = self
                .entries
                .lock()
                .values()
                .map(|e| e.silence.clone())
                .collect();
            list.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(serde_json::to_vec_pretty(&list)?)
        })
    }

    /// The last snapshot failed: the file lacks a change.
    pub fn is_behind(&self) -> bool {
        self.file.as_ref().is_some_and(StateFile::is_behind)
    }

    /// GC then snapshot; the host calls this periodically and on shutdown.
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

fn all_match(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// A snapshot of the active silences ([`Silences::active`]), by id.
pub struct ActiveSilences(Vec<(String, Vec<Matcher>)>);

impl ActiveSilences {
    /// Ids of the silences that match `labels` (sorted), as [`Silences::mutes`].
    pub fn mutes(&self, labels: &Labels) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, ms)| all_match(ms, labels))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn with_state(s: &Silence, now: DateTime<Utc>) -> SilenceWithState {
    SilenceWithState {
        silence: s.clone(),
        status: SilenceStatus {
            state: s.state_at(now),
        },
    }
}

fn can_update(a: &Silence, b: &Silence, now: DateTime<Utc>) -> bool {
    if a.matchers != b.matchers {
        return false;
    }
    match a.state_at(now) {
        SilenceState::Active => b.starts_at == a.starts_at && b.ends_at >= now,
        SilenceState::Pending => b.starts_at >= now,
        SilenceState::Expired => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn sil(start: i64, end: i64) -> Silence {
        Silence {
            id: String::new(),
            matchers: vec![ApiMatcher {
                name: "alertname".into(),
                value: "x".into(),
                is_regex: false,
                is_equal: true,
            }],
            starts_at: t(start),
            ends_at: t(end),
            updated_at: t(0),
            created_by: "me".into(),
            comment: "c".into(),
        }
    }

    #[test]
    fn lifecycle() {
        let s = Silences::in_memory(DEFAULT_RETENTION);
        let id = s.set(sil(0, 100), t(10)).unwrap();
        let l = Labels::from_pairs([("alertname", "x")]);
        assert_eq!(s.mutes(&l, t(10)), vec![id.clone()]);
        assert!(s
            .mutes(&Labels::from_pairs([("alertname", "y")]), t(10))
            .is_empty());
        // Extending an active silence keeps its id.
        let mut upd = s.get(&id, t(20)).unwrap().silence;
        upd.ends_at = t(200);
        assert_eq!(s.set(upd.clone(), t(20)).unwrap(), id);
        // Changing matchers makes a new silence and expires the old one.
        upd.matchers[0].value = "y".into();
        let id2 = s.set(upd, t(30)).unwrap();
        assert_ne!(id2, id);
        assert_eq!(
            s.get(&id, t(30)).unwrap().status.state,
            SilenceState::Expired
        );
        s.expire(&id2, t(40)).unwrap();
        assert_eq!(
            s.expire(&id2, t(41)),
            Err(SilenceError::AlreadyExpired(id2.clone()))
        );
        // Pending.
        let id3 = s.set(sil(1000, 2000), t(50)).unwrap();
        assert_eq!(
            s.get(&id3, t(50)).unwrap().status.state,
            SilenceState::Pending
        );
        assert!(s.mutes(&l, t(50)).is_empty());
        // GC after retention.
        assert_eq!(s.gc(t(40) + chrono::Duration::hours(120)), 2);
    }

    #[test]
    fn validation() {
        let s = Silences::in_memory(DEFAULT_RETENTION);
        let mut bad = sil(0, 100);
        bad.matchers[0].value = String::new();
        assert!(matches!(s.set(bad, t(0)), Err(SilenceError::Invalid(_))));
        assert!(matches!(
            s.set(sil(0, 5), t(10)),
            Err(SilenceError::Invalid(_))
        ));
        let mut missing = sil(0, 100);
        missing.id = "nope".into();
        assert_eq!(s.set(missing, t(0)), Err(SilenceError::NotFound));
    }

    #[test]
    fn persisted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silences.json");
        let s = Silences::open(&path, DEFAULT_RETENTION).unwrap();
        let id = s.set(sil(0, 100), t(0)).unwrap();
        s.snapshot().unwrap();
        let s2 = Silences::open(&path, DEFAULT_RETENTION).unwrap();
        assert_eq!(s2.get(&id, t(1)).unwrap().silence.comment, "c");
        assert_eq!(
            s2.mutes(&Labels::from_pairs([("alertname", "x")]), t(1)),
            vec![id]
        );
        assert!(new_id().len() == 36);
    }
}
