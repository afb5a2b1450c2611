//! The agent's `templates = [globs]` (Alertmanager's `templates:`): the
//! files are read when a config is loaded (start, reload, `check config`),
//! checked for syntax, and handed to every receiver instance in its config
//! JSON under the reserved key `__templates` (`[{"name", "text"}]`), which
//! the Rust SDK's `template::Set::configured` reads and its `config()`
//! leaves out of the plugin's own settings.
//!
//! The config JSON is the channel because it already reaches every call
//! of every receiver, is replaced on reload with the rest of the config,
//! and needs no change to the WIT contract (plugins built before keep
//! working; a plugin in another language sees one more key it may use).
//! Only receivers get it, and only when `templates` is set.

use std::path::{Path, PathBuf};

use wasmon_template::{FuncError, Funcs, Library, Template, Value};

/// The reserved key of a receiver's config JSON (the SDK's
/// `template::CONFIG_KEY`).
pub const CONFIG_KEY: &str = "__templates";

/// The most template text handed to receivers, all files together: it
/// travels with every call of every receiver and lives in the plugin's
/// memory (Alertmanager's own defaults are 15 kB).
pub const MAX_TOTAL_BYTES: u64 = 1 << 20;

/// Why the template files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TemplatesError {
    #[error("templates: bad pattern {pattern:?}: {message}")]
    BadPattern { pattern: String, message: String },
    #[error("templates: reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("templates: {path}: the template files would pass {MAX_TOTAL_BYTES} bytes together")]
    TooLarge { path: PathBuf },
    /// Go's text (`template: FILE:LINE: ...`).
    #[error("templates: {0}")]
    Parse(wasmon_template::Error),
}

/// One template file: its path (as the errors name it) and text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TemplateFile {
    pub name: String,
    pub text: String,
}

/// Every name is a function at load time: the receivers' libraries are in
/// the plugins; here only the syntax is checked.
struct AnyFunction;

impl Library for AnyFunction {
    fn has(&self, _name: &str) -> bool {
        true
    }
    fn call(&self, name: &str, _args: Vec<Value>) -> Result<Value, FuncError> {
        Err(FuncError::Undefined(name.to_string()))
    }
}

/// Reads the files `patterns` match (relative to `base`), in pattern order
/// and sorted within a pattern, as Alertmanager's `ParseGlob` (a pattern
/// matching nothing is no error there, nor here); each must parse.
pub fn load(patterns: &[String], base: &Path) -> Result<Vec<TemplateFile>, TemplatesError> {
    let mut out: Vec<TemplateFile> = Vec::new();
    let mut total = 0;
    for p in patterns {
        let full = if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base.join(p)
        };
        let mut matched: Vec<PathBuf> = glob::glob(&full.to_string_lossy())
            .map_err(|e| TemplatesError::BadPattern {
                pattern: p.clone(),
                message: e.to_string(),
            })?
            .filter_map(Result::ok)
            .filter(|f| f.is_file())
            .collect();
        matched.sort();
        for path in matched {
            let name = path.display().to_string();
            if out.iter().any(|f| f.name == name) {
                continue;
            }
            let read = |source| TemplatesError::Read {
                path: path.clone(),
                source,
            };
            let len = std::fs::metadata(&path).map_err(read)?.len();
            if total + len > MAX_TOTAL_BYTES {
                return Err(TemplatesError::TooLarge { path });
            }
            total += len;
            let text = std::fs::read_to_string(&path).map_err(read)?;
            let any = AnyFunction;
            Template::parse(&name, &text, &[], &Funcs::builtins().with(&any))
                .map_err(TemplatesError::Parse)?;
            out.push(TemplateFile { name, text });
        }
    }
    Ok(out)
}

/// `config_json` (an object) with `files` under [`CONFIG_KEY`]; unchanged
/// when there are none.
pub fn with_templates(config_json: &str, files: &[TemplateFile]) -> anyhow::Result<String> {
    if files.is_empty() {
        return Ok(config_json.to_string());
    }
    let mut value: serde_json::Value = serde_json::from_str(config_json)?;
    let Some(map) = value.as_object_mut() else {
        anyhow::bail!("a receiver's config must be a table to carry templates");
    };
    map.insert(CONFIG_KEY.into(), serde_json::to_value(files)?);
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_globs_checks_syntax_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.tmpl"), "{{ define \"b\" }}B{{ end }}").unwrap();
        std::fs::write(
            dir.path().join("a.tmpl"),
            "{{ define \"a\" }}{{ frob . }}{{ end }}",
        )
        .unwrap();
        let files = load(&["*.tmpl".into(), "none/*.tmpl".into()], dir.path()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names.len(), 2);
        assert!(names[0].ends_with("a.tmpl") && names[1].ends_with("b.tmpl"));
        let json = with_templates(r#"{"url":"u"}"#, &files).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["url"], "u");
        assert_eq!(v[CONFIG_KEY][1]["text"], "{{ define \"b\" }}B{{ end }}");
        assert_eq!(
            with_templates(r#"{"url":"u"}"#, &[]).unwrap(),
            r#"{"url":"u"}"#
        );

        let big = dir.path().join("big");
        std::fs::create_dir(&big).unwrap();
        std::fs::write(big.join("x.tmpl"), vec![b'x'; MAX_TOTAL_BYTES as usize + 1]).unwrap();
        let e = load(&["big/*.tmpl".into()], dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.tmpl") && e.contains("would pass"), "{e}");

        std::fs::write(dir.path().join("c.tmpl"), "x\n{{ define \"c\" }}").unwrap();
        let e = load(&["*.tmpl".into()], dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.tmpl:2"), "{e}");
    }
}
