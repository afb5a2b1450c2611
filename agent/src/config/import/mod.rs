//! `wasmon config import`: a Prometheus `prometheus.yml` and/or an
//! Alertmanager `alertmanager.yml` turned into one wasmon TOML config that
//! behaves the same (Grafana Alloy's `alloy convert`, vmagent reading
//! prometheus.yml). `wasmon run --config x.yml` goes through the same code.
//!
//! Each source is read by [`yaml`] into a tree that keeps lines, then
//! walked key by key by its converter ([`prometheus`], [`alertmanager`]),
//! which writes wasmon's keys into a `toml::Table`. A key is either carried
//! or reported as a [`Finding`] with `file:line` and why — never dropped
//! silently. Input the upstream tool itself refuses is an [`ImportError`].
//! The TOML is then parsed and validated as any config file is
//! ([`Imported::config`]).

pub mod alertmanager;
pub mod prometheus;
pub mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

use super::Config;

/// The files to import (at least one).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub prometheus: Option<PathBuf>,
    pub alertmanager: Option<PathBuf>,
    /// Where the TOML will live: relative paths in the sources (rule files,
    /// templates, credentials) are rewritten to stay right from there.
    /// None: next to the sources (as `wasmon run --config x.yml` reads them).
    pub out_dir: Option<PathBuf>,
}

/// The result: TOML text and what was not carried as it was.
#[derive(Debug, Clone)]
pub struct Imported {
    pub toml: String,
    pub findings: Vec<Finding>,
}

/// A key that was not carried (or carried with a difference), where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    /// The key's path, e.g. `scrape_configs[2].ec2_sd_configs`.
    pub key: String,
    pub kind: FindingKind,
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// Not carried: wasmon has no equivalent (the config still works
    /// without it, but not as upstream would).
    Unsupported,
    /// Carried, but wasmon behaves differently in a way worth knowing.
    Note,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FindingKind::Unsupported => "unsupported",
            FindingKind::Note => "note",
        };
        write!(
            f,
            "{}:{}: {kind}: {}: {}",
            self.file, self.line, self.key, self.why
        )
    }
}

/// Input the upstream tool refuses too (a `*.bad.yml`), or a file that
/// cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub file: String,
    /// 0 when the error is about the whole file (it cannot be read).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for ImportError {}

/// What a converter works with: the source's name and directory, where the
/// output goes, and the findings so far.
pub struct Ctx {
    pub file: String,
    source_dir: PathBuf,
    out_dir: Option<PathBuf>,
    pub findings: Vec<Finding>,
}

impl Ctx {
    pub fn new(file: &Path, out_dir: Option<&Path>) -> Ctx {
        Ctx {
            file: file.display().to_string(),
            source_dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            out_dir: out_dir.map(Path::to_path_buf),
            findings: Vec::new(),
        }
    }

    /// Reports `key` (a path like `scrape_configs[0].foo`) as not carried.
    pub fn unsupported(
        &mut self,
        node: &yaml::Node,
        key: impl Into<String>,
        why: impl Into<String>,
    ) {
        self.finding(FindingKind::Unsupported, node, key, why);
    }

    /// Reports `key` as carried with a difference.
    pub fn note(&mut self, node: &yaml::Node, key: impl Into<String>, why: impl Into<String>) {
        self.finding(FindingKind::Note, node, key, why);
    }

    fn finding(
        &mut self,
        kind: FindingKind,
        node: &yaml::Node,
        key: impl Into<String>,
        why: impl Into<String>,
    ) {
        self.findings.push(Finding {
            file: self.file.clone(),
            line: node.line,
            key: key.into(),
            kind,
            why: why.into(),
        });
    }

    /// A path from the source, as the reading process must open it
    /// (relative to the source's directory).
    pub fn source_path(&self, p: &str) -> PathBuf {
        self.source_dir.join(p)
    }

    /// The directory the output's relative paths are relative to.
    pub fn out_dir(&self) -> PathBuf {
        self.out_dir
            .clone()
            .unwrap_or_else(|| self.source_dir.clone())
    }

    /// An error at `node` (what upstream refuses).
    pub fn error(&self, node: &yaml::Node, message: impl Into<String>) -> ImportError {
        ImportError {
            file: self.file.clone(),
            line: node.line,
            message: message.into(),
        }
    }

    /// A path from the source, as the output must spell it: unchanged when
    /// absolute or when the output lives beside the source, else made
    /// absolute against the source's directory.
    pub fn path(&self, p: &str) -> String {
        let path = Path::new(p);
        if path.is_absolute()
            || self
                .out_dir
                .as_deref()
                .is_none_or(|o| same_dir(o, &self.source_dir))
        {
            return p.to_string();
        }
        let abs = std::path::absolute(self.source_dir.join(path))
            .unwrap_or_else(|_| self.source_dir.join(path));
        abs.display().to_string()
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let norm = |p: &Path| {
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
    };
    norm(a) == norm(b)
}

/// Is the YAML file at `path` an alertmanager.yml (a top-level `route` or
/// `receivers`) rather than a prometheus.yml?
pub fn is_alertmanager_yaml(path: &Path) -> Result<bool, ImportError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ImportError {
        file: file.clone(),
        line: 0,
        message: format!("reading: {e}"),
    })?;
    let doc = yaml::parse(&text).map_err(|e| ImportError {
        file,
        line: e.line,
        message: e.message,
    })?;
    Ok(doc.get("route").is_some() || doc.get("receivers").is_some())
}

/// Reads and converts the sources into one TOML config.
pub fn import(sources: &Sources) -> Result<Imported, ImportError> {
    if sources.prometheus.is_none() && sources.alertmanager.is_none() {
        return Err(ImportError {
            file: "config import".into(),
            line: 0,
            message: "nothing to import: give --prometheus FILE and/or --alertmanager FILE".into(),
        });
    }
    let mut out = toml::Table::new();
    let mut findings = Vec::new();
    type Convert = fn(&yaml::Node, &mut Ctx, &mut toml::Table) -> Result<(), ImportError>;
    let steps: [(&Option<PathBuf>, Convert); 2] = [
        (&sources.prometheus, prometheus::convert),
        (&sources.alertmanager, alertmanager::convert),
    ];
    for (path, convert) in steps {
        let Some(path) = path else { continue };
        let mut ctx = Ctx::new(path, sources.out_dir.as_deref());
        let text = std::fs::read_to_string(path).map_err(|e| ImportError {
            file: ctx.file.clone(),
            line: 0,
            message: format!("reading: {e}"),
        })?;
        let doc = yaml::parse(&text).map_err(|e| ImportError {
            file: ctx.file.clone(),
            line: e.line,
            message: e.message,
        })?;
        convert(&doc, &mut ctx, &mut out)?;
        findings.append(&mut ctx.findings);
    }
    let toml = toml::to_string_pretty(&out).map_err(|e| ImportError {
        file: "config import".into(),
        line: 0,
        message: format!("writing TOML: {e}"),
    })?;
    Ok(Imported { toml, findings })
}

impl Imported {
    /// The imported config, parsed and validated as a config file is.
    /// `origin` names it in errors (e.g. "prometheus.yml (imported)").
    pub fn config(&self, origin: &str) -> anyhow::Result<Config> {
        Config::parse(&self.toml, origin)
    }

    /// [`Imported::config`] for a config whose relative paths resolve
    /// against `source`'s directory (`run --config x.yml`).
    pub fn config_in(&self, origin: &str, source: Option<&Path>) -> anyhow::Result<Config> {
        Config::parse_in(&self.toml, origin, source)
    }

    /// The findings as a TOML comment block, to head the written file.
    pub fn header(&self) -> String {
        let mut s = String::from("# Imported by `wasmon config import`.\n");
        if !self.findings.is_empty() {
            s.push_str("# Not carried as it was:\n");
            for f in &self.findings {
                s.push_str(&format!("#   {f}\n"));
            }
        }
        s.push('\n');
        s
    }
}
