//! `${VAR}` references to the environment, the one way the config takes a
//! credential from outside the file. Expanded in every credential the config
//! holds: each [`Secret`](super::Secret) (passwords, tokens, bcrypt hashes,
//! header values) when it is read, and the string values of plugin instance
//! configs when they are handed to the plugin. `$${` is a literal `${`; a `$`
//! not followed by `{` is kept as it is (bcrypt hashes are full of them).
//!
//! Plugin instance configs also take `${file:PATH}`: the content of the
//! file (surrounding whitespace trimmed, as Prometheus and Alertmanager
//! trim their `*_file` secrets), read each time the instance is prepared —
//! at start and on every reload — so a rotated secret is picked up by a
//! reload and never copied into the config. A relative PATH is relative to
//! the config file's directory.
//!
//! Errors never quote the text being expanded: it is a credential. A file
//! reference's error names the file, never its content.

use std::io::Read;
use std::path::Path;

/// Largest file a `${file:PATH}` reference reads: a secret, a URL or a CA
/// bundle, never more (a reference to a device or a log must not take the
/// agent's memory).
pub const MAX_FILE_REFERENCE: u64 = 1 << 20;

/// Why a `${...}` reference could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {0} is not set")]
    Unset(String),
    #[error("environment variable {0} is not valid UTF-8")]
    NotUnicode(String),
    #[error("`${{` without a closing `}}` (write `$${{` for a literal `${{`)")]
    Unterminated,
    #[error("`${{{0}}}` is not an environment variable name (letters, digits and `_`, not starting with a digit)")]
    BadName(String),
    /// A `${file:PATH}` reference that could not be read.
    #[error("file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Expands every `${VAR}` in `s` from the process environment.
pub fn expand(s: &str) -> Result<String, EnvError> {
    expand_with(s, None, |var| std::env::var(var))
}

/// What `${file:PATH}` does where it is allowed (plugin configs).
#[derive(Debug, Clone, Copy)]
pub enum FileRefs<'a> {
    /// Read the file; a relative PATH is relative to the directory given
    /// (None: the working directory).
    Read(Option<&'a Path>),
    /// Check the reference's syntax only, reading nothing (the config's
    /// own checks: the file is read when the instance is prepared, so a
    /// config can be checked away from the machine holding its secrets).
    Check,
}

/// [`expand`] with the environment given by `lookup` (tests). With
/// `files`, `${file:PATH}` is expanded too (None: such a reference is not
/// a variable name).
fn expand_with(
    s: &str,
    files: Option<FileRefs>,
    lookup: impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<String, EnvError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = t;
        } else if let Some(t) = tail.strip_prefix("${") {
            let end = t.find('}').ok_or(EnvError::Unterminated)?;
            let var = &t[..end];
            if let (Some(file), Some(files)) = (var.strip_prefix("file:"), files) {
                match files {
                    FileRefs::Read(dir) => {
                        out.push_str(&read_reference(dir.unwrap_or(Path::new("")), file)?)
                    }
                    FileRefs::Check if file.is_empty() => {
                        return Err(EnvError::File {
                            path: String::new(),
                            reason: "empty path".into(),
                        })
                    }
                    FileRefs::Check => {}
                }
                rest = &t[end + 1..];
                continue;
            }
            if !valid_name(var) {
                // Only the name goes in the error, and only when it looks
                // like one: a mangled reference may be half a token.
                let shown = if var.len() <= 64 && !var.contains(char::is_whitespace) {
                    var.to_string()
                } else {
                    "...".to_string()
                };
                return Err(EnvError::BadName(shown));
            }
            match lookup(var) {
                Ok(v) => out.push_str(&v),
                Err(std::env::VarError::NotPresent) => return Err(EnvError::Unset(var.into())),
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(EnvError::NotUnicode(var.into()))
                }
            }
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The content of a `${file:PATH}` reference, trimmed.
fn read_reference(dir: &Path, file: &str) -> Result<String, EnvError> {
    let err = |reason: String| EnvError::File {
        path: file.to_string(),
        reason,
    };
    if file.is_empty() {
        return Err(err("empty path".into()));
    }
    let path = dir.join(file);
    let f = std::fs::File::open(&path).map_err(|e| err(e.to_string()))?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_REFERENCE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_REFERENCE {
        return Err(err(format!(
            "larger than {MAX_FILE_REFERENCE} bytes (a secret, URL or certificate is expected)"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| err("not valid UTF-8".into()))?;
    Ok(text.trim().to_string())
}

fn valid_name(v: &str) -> bool {
    let mut c = v.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// Expands `${VAR}` and `${file:PATH}` in every string of a JSON value (a
/// plugin instance's config). The error names the key path, e.g.
/// `config.headers.Authorization`.
pub fn expand_json(
    value: &mut serde_json::Value,
    path: &str,
    files: FileRefs,
) -> Result<(), ExpandError> {
    match value {
        serde_json::Value::String(s) => {
            *s = expand_with(s, Some(files), |var| std::env::var(var)).map_err(|error| {
                ExpandError {
                    path: path.to_string(),
                    error,
                }
            })?
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                expand_json(v, &format!("{path}[{i}]"), files)?;
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                expand_json(v, &format!("{path}.{k}"), files)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// An [`EnvError`] at a key of a structured value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {error}")]
pub struct ExpandError {
    pub path: String,
    pub error: EnvError,
}

/// For `#[serde(deserialize_with = "...")]` on a plain string that may hold
/// a credential but is not secret (a basic auth user name).
pub fn deserialize_expanded<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = <String as serde::Deserialize>::deserialize(d)?;
    expand(&raw).map_err(serde::de::Error::custom)
}

/// [`deserialize_expanded`] for an optional string.
pub fn deserialize_expanded_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let raw = <Option<String> as serde::Deserialize>::deserialize(d)?;
    raw.map(|r| expand(&r).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::env::VarError;

    fn env(var: &str) -> Result<String, VarError> {
        match var {
            "TOKEN" => Ok("s3cret".into()),
            "EMPTY" => Ok(String::new()),
            _ => Err(VarError::NotPresent),
        }
    }

    #[test]
    fn expands_and_escapes() {
        let x = |s: &str| expand_with(s, None, env);
        assert_eq!(x("Bearer ${TOKEN}").unwrap(), "Bearer s3cret");
        assert_eq!(x("${TOKEN}${TOKEN}").unwrap(), "s3crets3cret");
        assert_eq!(x("a${EMPTY}b").unwrap(), "ab");
        assert_eq!(x("$${X} $5 $").unwrap(), "${X} $5 $");
        // A bcrypt hash is left alone.
        let h = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";
        assert_eq!(x(h).unwrap(), h);
        // No second round: a value holding `${` stays as it is.
        assert_eq!(
            expand_with("${V}", None, |_| Ok("${TOKEN}".into())).unwrap(),
            "${TOKEN}"
        );
    }

    #[test]
    fn errors_name_the_variable_never_the_text() {
        let x = |s: &str| expand_with(s, None, env).unwrap_err();
        assert_eq!(x("pre-${NOPE}"), EnvError::Unset("NOPE".into()));
        assert_eq!(x("hunter2${TOKEN"), EnvError::Unterminated);
        assert_eq!(x("${}"), EnvError::BadName(String::new()));
        assert_eq!(x("${0X}"), EnvError::BadName("0X".into()));
        let msg = x("${hunter2 secret}").to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(!x("hunter2${TOKEN").to_string().contains("hunter2"));
    }

    #[test]
    fn json_errors_name_the_key_path() {
        std::env::remove_var("WASMON_TEST_SURELY_UNSET");
        let mut v = serde_json::json!({"url": "x", "headers": {"Authorization": "Bearer ${WASMON_TEST_SURELY_UNSET}"}});
        let e = expand_json(&mut v, "config", FileRefs::Read(None)).unwrap_err();
        assert_eq!(e.path, "config.headers.Authorization");
        assert_eq!(e.error, EnvError::Unset("WASMON_TEST_SURELY_UNSET".into()));
    }

    #[test]
    fn file_references_read_the_file_relative_to_the_config_and_never_quote_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hook"), "https://hooks.example/T0/s3cret\n").unwrap();
        let mut v = serde_json::json!({"url": "${file:hook}", "n": 1, "keep": "$${file:hook}"});
        expand_json(&mut v, "config", FileRefs::Read(Some(dir.path()))).unwrap();
        assert_eq!(v["url"], "https://hooks.example/T0/s3cret");
        assert_eq!(v["keep"], "${file:hook}");

        let mut v = serde_json::json!({"a": {"key": "${file:missing}"}});
        let e = expand_json(&mut v, "config", FileRefs::Read(Some(dir.path()))).unwrap_err();
        assert_eq!(e.path, "config.a.key");
        assert!(
            matches!(&e.error, EnvError::File { path, .. } if path == "missing"),
            "{e}"
        );

        // Too large: refused without reading it all, naming the file only.
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_FILE_REFERENCE as usize + 10]).unwrap();
        let mut v = serde_json::json!({"k": "${file:big}"});
        let msg = expand_json(&mut v, "config", FileRefs::Read(Some(dir.path())))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("config.k: file big: larger than"), "{msg}");
        assert!(!msg.contains("xxxx"), "{msg}");

        // Checking reads nothing.
        let mut v = serde_json::json!({"k": "${file:big}", "m": "${file:missing}"});
        expand_json(&mut v, "config", FileRefs::Check).unwrap();
        let mut v = serde_json::json!({"k": "${file:}"});
        assert!(expand_json(&mut v, "config", FileRefs::Check).is_err());

        // Elsewhere (secrets), `file:` is not a variable name.
        assert!(matches!(expand("${file:hook}"), Err(EnvError::BadName(_))));
    }
}
