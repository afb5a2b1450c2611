//! The rule manager: loads rule files (globs relative to a base directory),
//! runs one tokio task per group on the group's interval, reloads (a bad
//! file leaves the running groups alone), and exposes the groups for the
//! API.
//!
//! Scheduling follows Prometheus: a group evaluates at multiples of its
//! interval shifted by a per-group offset; missed ticks are skipped; on the
//! first load, `for` state is restored from `ALERTS_FOR_STATE` after the
//! second evaluation (and `ALERTS` is written only from then on). Time comes
//! from a [`Clock`] so tests can drive it by hand.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::group::{Group, RuleOpts};
use super::rulefmt::{self, ParseOpts};
use crate::clock::{Clock, SystemClock};

/// What the manager is built from.
pub struct ManagerOpts {
    pub rule_opts: RuleOpts,
    pub clock: Arc<dyn Clock>,
    /// The global evaluation interval (groups without `interval`).
    pub default_interval_ms: i64,
    /// Restore `for` state from `ALERTS_FOR_STATE` on the first load.
    pub restore_for_state: bool,
    pub parse_opts: ParseOpts,
}

impl ManagerOpts {
    pub fn new(rule_opts: RuleOpts) -> ManagerOpts {
        ManagerOpts {
            rule_opts,
            clock: Arc::new(SystemClock),
            default_interval_ms: 60_000,
            restore_for_state: true,
            parse_opts: ParseOpts::default(),
        }
    }
}

struct Running {
    group: Arc<Group>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

struct Inner {
    opts: ManagerOpts,
    /// The evaluation interval of groups without their own, and the
    /// options every group shares: a reload may change both ([`Globals`]).
    current: parking_lot::Mutex<(i64, Arc<RuleOpts>)>,
    groups: parking_lot::Mutex<Vec<Running>>,
    loaded_once: std::sync::atomic::AtomicBool,
    last_files: parking_lot::Mutex<Vec<PathBuf>>,
}

/// Runs rule groups. Cheap to clone.
#[derive(Clone)]
pub struct RuleManager {
    inner: Arc<Inner>,
}

/// The files `rule_files` patterns name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleFiles {
    /// Sorted within each pattern, deduplicated.
    pub files: Vec<PathBuf>,
    /// Globs that matched no file: not an error (a directory may be filled
    /// later), but worth a warning, since a typo silently loads no rules.
    pub unmatched_globs: Vec<String>,
}

/// Why `rule_files` cannot be resolved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleFilesError {
    #[error("invalid rule file pattern {pattern:?}: {message}")]
    BadPattern { pattern: String, message: String },
    /// A plain path (no glob characters) that names no file: an error, as
    /// in promtool (only a glob may match nothing).
    #[error("rule file {pattern:?} does not point to an existing file")]
    Missing { pattern: String, path: PathBuf },
}

/// Whether a rule file pattern is a glob rather than a plain path.
fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Expands rule file patterns (globs) relative to `base_dir`.
pub fn resolve_rule_files(
    patterns: &[String],
    base_dir: &Path,
) -> Result<RuleFiles, RuleFilesError> {
    let mut out = RuleFiles::default();
    for p in patterns {
        let full = if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base_dir.join(p)
        };
        if !is_glob(p) {
            if !full.is_file() {
                return Err(RuleFilesError::Missing {
                    pattern: p.clone(),
                    path: full,
                });
            }
            out.files.push(full);
            continue;
        }
        let s = full.to_string_lossy().to_string();
        let mut matched: Vec<PathBuf> = glob::glob(&s)
            .map_err(|e| RuleFilesError::BadPattern {
                pattern: p.clone(),
                message: e.to_string(),
            })?
            .filter_map(Result::ok)
            .collect();
        if matched.is_empty() {
            out.unmatched_globs.push(p.clone());
        }
        matched.sort();
        out.files.extend(matched);
    }
    let mut seen = std::collections::HashSet::new();
    out.files.retain(|f| seen.insert(f.clone()));
    Ok(out)
}

/// The warning for a glob that matched no file (`run` logs it, `check
/// config` prints it).
pub fn unmatched_glob_warning(pattern: &str) -> String {
    format!("rule_files pattern {pattern:?} matches no file: no rules loaded from it")
}

/// Reads and validates rule files: what [`RuleManager::update_parsed`]
/// installs. The errors of every file are reported together.
pub fn parse_rule_files(
    files: &[PathBuf],
    opts: &ParseOpts,
) -> anyhow::Result<Vec<(PathBuf, rulefmt::RuleGroups)>> {
    let mut errs = Vec::new();
    let mut out = Vec::new();
    for f in files {
        match rulefmt::parse_file(f, opts) {
            Ok(rg) => out.push((f.clone(), rg)),
            Err(e) => errs.push(e.to_string()),
        }
    }
    if !errs.is_empty() {
        anyhow::bail!("{}", errs.join("\n"));
    }
    Ok(out)
}

/// What a config reload may change for every rule group, as Prometheus'
/// `Manager.Update` takes them: the global evaluation interval (groups
/// without their own `interval`), external labels and the external URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Globals {
    pub default_interval_ms: i64,
    pub external_labels: crate::model::Labels,
    pub external_url: String,
}

impl RuleManager {
    pub fn new(opts: ManagerOpts) -> RuleManager {
        let current = (opts.default_interval_ms, Arc::new(opts.rule_opts.clone()));
        RuleManager {
            inner: Arc::new(Inner {
                opts,
                current: parking_lot::Mutex::new(current),
                groups: parking_lot::Mutex::new(Vec::new()),
                loaded_once: Default::default(),
                last_files: Default::default(),
            }),
        }
    }

    /// Parses every file and builds its groups (no side effects): the
    /// check behind `update`, also usable for `check rules`.
    pub fn load_groups(&self, files: &[PathBuf], restored: bool) -> anyhow::Result<Vec<Group>> {
        let parsed = parse_rule_files(files, &self.inner.opts.parse_opts)?;
        self.build_groups(&parsed, restored, None)
    }

    /// `current`: the interval and options to build with (else the
    /// manager's).
    fn build_groups(
        &self,
        parsed: &[(PathBuf, rulefmt::RuleGroups)],
        restored: bool,
        current: Option<&(i64, Arc<RuleOpts>)>,
    ) -> anyhow::Result<Vec<Group>> {
        let (default_interval_ms, rule_opts) = match current {
            Some(c) => c.clone(),
            None => self.inner.current.lock().clone(),
        };
        let mut errs = Vec::new();
        let mut out = Vec::new();
        for (f, rg) in parsed {
            for g in &rg.groups {
                match Group::new(
                    &f.display().to_string(),
                    g,
                    default_interval_ms,
                    rule_opts.clone(),
                    restored,
                ) {
                    Ok(g) => out.push(g),
                    Err(e) => errs.push(format!("{}: {e}", f.display())),
                }
            }
        }
        if !errs.is_empty() {
            anyhow::bail!("{}", errs.join("\n"));
        }
        Ok(out)
    }

    /// Loads the rule files matching `patterns` (relative to `base_dir`)
    /// and swaps the running groups: unchanged groups keep running, changed
    /// ones take over their predecessor's state, removed ones stop and mark
    /// their series stale. On any error nothing changes. Must be called
    /// within a tokio runtime.
    pub fn update(&self, patterns: &[String], base_dir: &Path) -> anyhow::Result<()> {
        let resolved = resolve_rule_files(patterns, base_dir)?;
        for p in &resolved.unmatched_globs {
            tracing::warn!("{}", unmatched_glob_warning(p));
        }
        self.update_files(&resolved.files)
    }

    /// [`update`](Self::update) with resolved paths.
    pub fn update_files(&self, files: &[PathBuf]) -> anyhow::Result<()> {
        let parsed = parse_rule_files(files, &self.inner.opts.parse_opts)?;
        self.update_parsed(parsed)
    }

    /// [`update`](Self::update) with files already read and validated by
    /// [`parse_rule_files`] (the agent's prepare step).
    pub fn update_parsed(&self, parsed: Vec<(PathBuf, rulefmt::RuleGroups)>) -> anyhow::Result<()> {
        self.update_parsed_with(parsed, None)
    }

    /// [`update_parsed`](Self::update_parsed) with the config's
    /// [`Globals`]: when they changed, every group is rebuilt with them
    /// (a group without its own interval takes the new one) and takes
    /// over its predecessor's state, as a changed group does. On any
    /// error nothing changes, the globals included.
    pub fn update_parsed_with(
        &self,
        parsed: Vec<(PathBuf, rulefmt::RuleGroups)>,
        globals: Option<Globals>,
    ) -> anyhow::Result<()> {
        use std::sync::atomic::Ordering;
        let first = !self.inner.loaded_once.load(Ordering::SeqCst);
        let should_restore = first && self.inner.opts.restore_for_state;
        let (interval, opts) = {
            let (interval, opts) = self.inner.current.lock().clone();
            match globals {
                Some(g)
                    if g.default_interval_ms != interval
                        || g.external_labels != opts.external_labels
                        || g.external_url != opts.external_url =>
                {
                    let mut next = RuleOpts::clone(&opts);
                    next.external_labels = g.external_labels;
                    next.external_url = g.external_url;
                    (g.default_interval_ms, Arc::new(next))
                }
                _ => (interval, opts),
            }
        };
        let current = (interval, opts.clone());
        let new_groups = self.build_groups(&parsed, !should_restore, Some(&current))?;
        *self.inner.current.lock() = current;
        let files: Vec<PathBuf> = parsed.into_iter().map(|(f, _)| f).collect();
        self.inner.loaded_once.store(true, Ordering::SeqCst);
        *self.inner.last_files.lock() = files;
        let mut running = self.inner.groups.lock();
        let mut old: Vec<Running> = std::mem::take(&mut *running);
        let mut next = Vec::with_capacity(new_groups.len());
        for g in new_groups {
            let pos = old
                .iter()
                .position(|r| r.group.name == g.name && r.group.file == g.file);
            // A group built with other options (external labels or URL) is
            // a changed group even when its rules are the same.
            let same_opts = |r: &Running| std::ptr::eq(r.group.opts(), &*opts);
            match pos {
                Some(i) if old[i].group.equals(&g) && same_opts(&old[i]) => {
                    next.push(old.remove(i))
                }
                Some(i) => {
                    let o = old.remove(i);
                    let _ = o.stop.send(true);
                    o.task.abort();
                    g.copy_state_from(&o.group);
                    next.push(self.start(Arc::new(g), false));
                }
                None => next.push(self.start(Arc::new(g), should_restore)),
            }
        }
        let now = self.inner.opts.clock.now_ms();
        for o in old {
            let _ = o.stop.send(true);
            o.task.abort();
            o.group.mark_stale(now);
        }
        *running = next;
        Ok(())
    }

    /// Reloads the files of the last successful update.
    pub fn reload(&self) -> anyhow::Result<()> {
        let files = self.inner.last_files.lock().clone();
        self.update_files(&files)
    }

    fn start(&self, g: Arc<Group>, should_restore: bool) -> Running {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let clock = self.inner.opts.clock.clone();
        // The schedule starts from now, read before the task runs.
        let first = g.eval_timestamp(clock.now_ms()) + g.interval_ms;
        let task = tokio::spawn(run_group(g.clone(), clock, rx, should_restore, first));
        Running {
            group: g,
            stop: tx,
            task,
        }
    }

    /// The running groups, in load order.
    pub fn groups(&self) -> Vec<Arc<Group>> {
        self.inner
            .groups
            .lock()
            .iter()
            .map(|r| r.group.clone())
            .collect()
    }

    /// Stops every group (series are not marked stale, as on shutdown).
    pub fn stop(&self) {
        for r in self.inner.groups.lock().drain(..) {
            let _ = r.stop.send(true);
            r.task.abort();
        }
    }
}

async fn eval_blocking(g: &Arc<Group>, ts: i64) {
    let g2 = g.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || g2.eval(ts)).await {
        tracing::error!(group = %g.name, error = %e, "rule group evaluation panicked");
    }
}

async fn run_group(
    g: Arc<Group>,
    clock: Arc<dyn Clock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    should_restore: bool,
    first: i64,
) {
    let interval = g.interval_ms;
    let mut next = first;
    let mut restore_pending = should_restore;
    let mut evals = 0u64;
    loop {
        tokio::select! {
            _ = clock.sleep_until_ms(next) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let now = clock.now_ms();
        let missed = (now - next) / interval;
        if missed > 0 {
            tracing::warn!(group = %g.name, missed, "rule group missed evaluations");
            next += missed * interval;
        }
        eval_blocking(&g, next).await;
        evals += 1;
        if restore_pending && evals >= 2 {
            // Restore after the second evaluation, when recording rules the
            // alerts depend on have had a chance to run.
            let g2 = g.clone();
            let now = clock.now_ms();
            let _ = tokio::task::spawn_blocking(move || g2.restore_for_state(now)).await;
            restore_pending = false;
        }
        next += interval;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for r in self.groups.lock().drain(..) {
            r.task.abort();
        }
    }
}
