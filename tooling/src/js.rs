//! JavaScript plugins: two engines, chosen by `"engine"` in
//! `wasmon-plugin.json`.
//!
//! - `quickjs` (the default): componentize-qjs with its synchronous,
//!   size-optimised runtime. About 1 MB, compiled by the agent in a second or
//!   two. Exports run without an event loop, so there is no `fetch`, no
//!   `await` and no timers; outbound HTTP is the synchronous `http` of the
//!   `wasmon` module (`guest/js/wasmon.js`, over `wasi:http`), which the build
//!   writes to `DIR/node_modules/wasmon/`. The build refuses sources that use
//!   what the engine lacks, rather than letting them fail at the first call.
//! - `starlingmonkey`: `jco componentize` (SpiderMonkey) with the `http`,
//!   `clocks` and `random` features on (`stdio` off: the agent discards it,
//!   `fetch-event` off: plugins serve nothing). Web `fetch`, async functions
//!   and npm-style bundling work; the component is about 12.5 MB and takes
//!   the agent tens of seconds to compile (once: the compile cache keeps it).
//!
//! Either way the component's entry is a small wrapper (`guest/js/entry-*.js`)
//! that exports the world's function from `app.js` and turns an uncaught
//! exception into a retryable failure with its message, where the engines
//! would otherwise trap with nothing but `unreachable`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::build::{on_path, tool};
use crate::contract::Contract;
use crate::guest;

/// A JavaScript engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    QuickJs,
    StarlingMonkey,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::QuickJs => "quickjs",
            Engine::StarlingMonkey => "starlingmonkey",
        })
    }
}

const SDK: &str = include_str!("../guest/js/wasmon.js");
const FAILURE: &str = include_str!("../guest/js/failure.js");
const ENTRY_QUICKJS: &str = include_str!("../guest/js/entry-quickjs.js");
const ENTRY_STARLINGMONKEY: &str = include_str!("../guest/js/entry-starlingmonkey.js");

/// The label the WASI packages carry while componentize-qjs pre-initializes
/// the component, and the real 0.2 releases it may become afterwards.
///
/// Why: componentize-qjs instantiates the component at build time in a
/// linker that defines every unknown import as a trap — including
/// `wasi:http/types`, whose `input-stream` then is a trap's resource type —
/// and links wasi:io from wasmtime-wasi over it, so `wasi:http/types` no
/// longer type-checks ("mismatched resource types") if it shares wasi:io
/// with the runtime's own imports (0.2.12, and semver-compatible labels are
/// merged into it). A pre-release label keeps HTTP's closure apart from
/// them during the build; afterwards its imports are renamed to a real 0.2
/// version that the runtime does not import, and the agent links both to
/// its one WASI implementation. The interfaces are the same text in every
/// release from 0.2.2 to 0.2.12.
const BUILD_LABEL: &str = "0.2.12-wasmon";
const RELEASES: [&str; 10] = [
    "0.2.11", "0.2.10", "0.2.9", "0.2.8", "0.2.7", "0.2.6", "0.2.5", "0.2.4", "0.2.3", "0.2.2",
];

/// Builds `DIR/app.js` for `world` with `engine`.
pub fn build(dir: &Path, scratch: &Path, world: &str, engine: Engine) -> Result<Vec<u8>> {
    let app = dir.join("app.js");
    if !app.is_file() {
        bail!("no app.js in {}", dir.display());
    }
    check_sources(dir, engine)?;
    let export = Contract::embedded()?.export_function(world)?;
    let fill = |template: &str| {
        template
            .replace("{{APP}}", "../app.js")
            .replace("{{APP_NAME}}", "app.js")
            .replace("{{EXPORT}}", &export)
            .replace("{{WORLD}}", world)
    };
    let entry = scratch.join("entry.js");
    write(&scratch.join("failure.js"), FAILURE)?;
    let out = scratch.join("component.wasm");
    match engine {
        Engine::QuickJs => {
            write_sdk(dir)?;
            write(&entry, &fill(ENTRY_QUICKJS))?;
            let wit = guest::write_build_wit(scratch, world, BUILD_LABEL)?;
            let qjs = componentize_qjs(dir)?;
            crate::run(
                Command::new(&qjs)
                    .current_dir(dir)
                    .arg("--wit")
                    .arg(&wit)
                    .args(["--world", world, "--js"])
                    .arg(&entry)
                    .arg("--module-root")
                    .arg(dir)
                    .args(["--sync", "--opt-size", "--output"])
                    .arg(&out),
            )
            .context("componentize-qjs failed (the error above names the file and line)")?;
            let built = fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
            rename_wasi(&built)
        }
        Engine::StarlingMonkey => {
            write(&entry, &fill(ENTRY_STARLINGMONKEY))?;
            let jco = tool(
                "WASMON_JCO",
                &[dir.join("node_modules/.bin/jco"), "jco".into()],
                "jco",
                "npm install -g @bytecodealliance/jco@1.34.0 @bytecodealliance/componentize-js@0.23.0",
            )?;
            // `--bundle` takes app.js's relative (and node_modules) imports
            // along; rolldown reports every WIT import as unresolved, which
            // is what it should do with them, so its output is shown only
            // when the build fails.
            crate::run_quiet(
                Command::new(jco)
                    .current_dir(dir)
                    .arg("componentize")
                    .arg(&entry)
                    .arg("--bundle")
                    .arg("--wit")
                    .arg(dir.join("wit"))
                    .args([
                        "--world-name",
                        world,
                        "--disable",
                        "stdio",
                        "fetch-event",
                        "--enable",
                        "http",
                        "clocks",
                        "random",
                        "-o",
                    ])
                    .arg(&out),
            )?;
            fs::read(&out).with_context(|| format!("reading {}", out.display()))
        }
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Renames the HTTP closure's imports from [`BUILD_LABEL`] to the newest
/// release the component does not already import.
fn rename_wasi(component: &[u8]) -> Result<Vec<u8>> {
    let mut last = None;
    for release in RELEASES {
        match guest::rename_import_versions(component, BUILD_LABEL, release) {
            Ok(renamed) => return Ok(renamed),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("RELEASES is not empty"))
        .context("relabelling the component's wasi:http imports")
}

/// `DIR/node_modules/wasmon/`: the SDK as a package, so `import { http }
/// from 'wasmon'` resolves from any module of the plugin. Rewritten on every
/// build (it must match the agent); a `wasmon` package there that this
/// build did not write is left alone and the build fails.
fn write_sdk(dir: &Path) -> Result<()> {
    let pkg = dir.join("node_modules/wasmon");
    let manifest = pkg.join("package.json");
    if pkg.exists() {
        let ours = fs::read_to_string(&manifest).is_ok_and(|m| m.contains(SDK_MARK));
        if !ours {
            bail!(
                "{} exists and was not written by `wasmon plugin build`: remove it (the build \
                 writes the wasmon JavaScript SDK there)",
                pkg.display()
            );
        }
    }
    fs::create_dir_all(&pkg).with_context(|| format!("creating {}", pkg.display()))?;
    let package = serde_json::json!({
        "name": "wasmon",
        "version": env!("CARGO_PKG_VERSION"),
        "description": SDK_MARK,
        "type": "module",
        "main": "index.js",
    });
    write(&manifest, &(serde_json::to_string_pretty(&package)? + "\n"))?;
    write(
        &pkg.join("index.js"),
        &SDK.replace("{{WASI_VERSION}}", BUILD_LABEL),
    )
}

const SDK_MARK: &str = "the wasmon plugin SDK, written by `wasmon plugin build`: do not edit";

/// componentize-qjs: `$WASMON_COMPONENTIZE_QJS`, the plugin's or PATH's
/// `componentize-qjs`, else the copy jco 1.34 installs for its own
/// `--backend quickjs` (which cannot be used through jco: it never passes
/// the synchronous runtime the agent needs, and names no module root).
fn componentize_qjs(dir: &Path) -> Result<PathBuf> {
    const INSTALL: &str = "npm install -g componentize-qjs@0.4.5";
    if let Ok(found) = tool(
        "WASMON_COMPONENTIZE_QJS",
        &[
            dir.join("node_modules/.bin/componentize-qjs"),
            "componentize-qjs".into(),
        ],
        "componentize-qjs",
        INSTALL,
    ) {
        return Ok(found);
    }
    let jco = std::env::var_os("WASMON_JCO")
        .map(PathBuf::from)
        .or_else(|| on_path(Path::new("jco")))
        .and_then(|j| fs::canonicalize(j).ok());
    // jco's bin is PKG/dist/jco.js: its dependencies are in PKG/node_modules
    // (global install) or beside PKG (a flat node_modules).
    if let Some(pkg) = jco.as_deref().and_then(|j| j.parent()?.parent()) {
        for candidate in [
            pkg.join("node_modules/componentize-qjs/bin/componentize-qjs"),
            pkg.join("../../componentize-qjs/bin/componentize-qjs"),
        ] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!("componentize-qjs not found (set WASMON_COMPONENTIZE_QJS, or install it: {INSTALL})")
}

/// What one engine cannot run, found in the plugin's own sources.
struct Finding {
    file: PathBuf,
    line: usize,
    what: &'static str,
}

/// Refuses sources that use what `engine` lacks. Token-level (comments and
/// string literals skipped), so it sees what the code obviously uses, not
/// what it may compute at run time: an `eval`ed `fetch` still fails at the
/// call, with the entry's Promise check or a ReferenceError as the reason.
fn check_sources(dir: &Path, engine: Engine) -> Result<()> {
    let mut findings = Vec::new();
    for file in sources(dir)? {
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let tokens = tokens(&text);
        for (i, token) in tokens.iter().enumerate() {
            let next = tokens.get(i + 1).map(|t| &t.kind);
            let what = match (engine, &token.kind, next) {
                (Engine::QuickJs, Kind::Word("await"), _) => "uses await",
                (
                    Engine::QuickJs,
                    Kind::Word("async"),
                    Some(Kind::Word("function") | Kind::Punct('(')),
                ) => "declares an async function",
                (Engine::QuickJs, Kind::Word("fetch"), Some(Kind::Punct('('))) => "calls fetch()",
                (
                    Engine::QuickJs,
                    Kind::Word("setTimeout" | "setInterval"),
                    Some(Kind::Punct('(')),
                ) => "uses timers",
                (Engine::StarlingMonkey, Kind::Word("from" | "import"), Some(Kind::Str(m)))
                    if *m == "wasmon" || m.starts_with("wasmon/") =>
                {
                    "imports the wasmon SDK"
                }
                _ => continue,
            };
            findings.push(Finding {
                file: file.strip_prefix(dir).unwrap_or(&file).to_path_buf(),
                line: token.line,
                what,
            });
        }
    }
    if findings.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = findings
        .iter()
        .take(5)
        .map(|f| format!("{}:{}: {}", f.file.display(), f.line, f.what))
        .collect();
    let why = match engine {
        Engine::QuickJs => {
            "the quickjs engine (the default) runs exports synchronously, without an event \
             loop: there is no fetch, await or timer. Use `import { http } from 'wasmon'` \
             (synchronous requests), or set \"engine\": \"starlingmonkey\" in \
             wasmon-plugin.json for fetch and async code (a 12.5 MB component that takes the \
             agent tens of seconds to compile)"
        }
        Engine::StarlingMonkey => {
            "the wasmon SDK module is for the quickjs engine: with starlingmonkey, use fetch"
        }
    };
    bail!("{}\n{why}", listed.join("\n"))
}

/// The plugin's own `.js`/`.mjs` files (not `node_modules/` or `build/`).
fn sources(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                let skip = name == "node_modules"
                    || name == "build"
                    || name.to_string_lossy().starts_with('.');
                if !skip {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|x| x == "js" || x == "mjs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// One token of a JavaScript source, as far as [`check_sources`] cares.
#[derive(Debug, PartialEq)]
enum Kind<'a> {
    /// An identifier or keyword that is not a property name (`x.fetch`).
    Word(&'a str),
    /// A quoted string literal's contents (escapes left as written).
    Str(&'a str),
    /// Any other character that is not blank.
    Punct(char),
}

#[derive(Debug)]
struct Token<'a> {
    line: usize,
    kind: Kind<'a>,
}

/// The tokens of a JavaScript source, with their lines. Comments and
/// template text are skipped (template `${...}` code is not). Regular
/// expression literals are not recognised: one containing a quote may hide
/// what follows it on its line.
fn tokens(text: &str) -> Vec<Token<'_>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    // Open template literals: the `{` depth at which each `${` began.
    let mut templates: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut after_dot = false;
    // Template text from `i` (just past a backtick or a closing `}`) to the
    // closing backtick, or to a `${` (whose depth is pushed).
    let template_text =
        |i: &mut usize, line: &mut usize, templates: &mut Vec<usize>, depth: usize| {
            while *i < bytes.len() {
                match bytes[*i] {
                    b'\\' => *i += 2,
                    b'`' => {
                        *i += 1;
                        return;
                    }
                    b'$' if bytes.get(*i + 1) == Some(&b'{') => {
                        templates.push(depth);
                        *i += 2;
                        return;
                    }
                    b'\n' => {
                        *line += 1;
                        *i += 1;
                    }
                    _ => *i += 1,
                }
            }
        };
    while i < bytes.len() {
        let c = bytes[i];
        let start_line = line;
        match c {
            b'\n' => {
                line += 1;
                i += 1;
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    if bytes[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += 2;
                continue;
            }
            b'\'' | b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != c && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                let end = i.min(bytes.len());
                i += 1;
                out.push(Token {
                    line: start_line,
                    kind: Kind::Str(text.get(start..end).unwrap_or("")),
                });
            }
            b'`' => {
                i += 1;
                template_text(&mut i, &mut line, &mut templates, depth);
                out.push(Token {
                    line: start_line,
                    kind: Kind::Str(""),
                });
            }
            b'{' => {
                depth += 1;
                i += 1;
                out.push(Token {
                    line,
                    kind: Kind::Punct('{'),
                });
            }
            b'}' => {
                i += 1;
                if templates.last() == Some(&depth) {
                    templates.pop();
                    template_text(&mut i, &mut line, &mut templates, depth);
                } else {
                    depth = depth.saturating_sub(1);
                    out.push(Token {
                        line,
                        kind: Kind::Punct('}'),
                    });
                }
            }
            _ if c == b'_' || c == b'$' || c.is_ascii_alphabetic() => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i] == b'_' || bytes[i] == b'$' || bytes[i].is_ascii_alphanumeric())
                {
                    i += 1;
                }
                if !after_dot {
                    out.push(Token {
                        line,
                        kind: Kind::Word(&text[start..i]),
                    });
                }
                after_dot = false;
                continue;
            }
            _ if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => {
                // One character (a whole UTF-8 sequence, so slicing stays valid).
                let ch = text[i..].chars().next().unwrap_or(' ');
                i += ch.len_utf8();
                out.push(Token {
                    line,
                    kind: Kind::Punct(ch),
                });
                after_dot = ch == '.';
                continue;
            }
        }
        after_dot = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<(usize, String)> {
        tokens(text)
            .into_iter()
            .filter_map(|t| match t.kind {
                Kind::Word(w) => Some((t.line, w.to_string())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn tokens_skip_comments_strings_and_properties() {
        let src =
            "// fetch(x)\nconst a = 'fetch(' + \"await\";\n/* async\nfunction */ x.fetch(1);\n\
                   const t = `fetch ${ await(y) } text ${ {a: 1}.a }`;\nfetch(z); // é\n";
        let w = words(src);
        assert!(w.contains(&(2, "const".into())), "{w:?}");
        assert!(w.contains(&(5, "await".into())), "{w:?}");
        assert!(w.contains(&(6, "fetch".into())), "{w:?}");
        assert!(!w.contains(&(1, "fetch".into())), "comment: {w:?}");
        assert!(!w.contains(&(2, "fetch".into())), "string: {w:?}");
        assert!(!w.contains(&(4, "fetch".into())), "property: {w:?}");
        assert!(!w.contains(&(3, "async".into())), "block comment: {w:?}");
        let strs: Vec<_> = tokens("import x from 'wasmon';")
            .into_iter()
            .map(|t| t.kind)
            .collect();
        assert_eq!(
            strs,
            [
                Kind::Word("import"),
                Kind::Word("x"),
                Kind::Word("from"),
                Kind::Str("wasmon"),
                Kind::Punct(';')
            ]
        );
    }

    #[test]
    fn quickjs_refuses_what_it_cannot_run() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("app.js"),
            "import { http } from 'wasmon';\nexport function notify(n) {\n  http.postJson(u, n);\n}\n",
        )
        .unwrap();
        check_sources(dir.path(), Engine::QuickJs).unwrap();
        let err = check_sources(dir.path(), Engine::StarlingMonkey).unwrap_err();
        assert!(
            err.to_string().contains("app.js:1: imports the wasmon SDK"),
            "{err}"
        );

        fs::create_dir(dir.path().join("lib")).unwrap();
        fs::write(
            dir.path().join("lib/post.js"),
            "export async function post(u) {\n  const r = await fetch(u);\n}\n",
        )
        .unwrap();
        let err = check_sources(dir.path(), Engine::QuickJs)
            .unwrap_err()
            .to_string();
        for want in [
            "lib/post.js:1: declares an async function",
            "lib/post.js:2: uses await",
            "lib/post.js:2: calls fetch()",
            "\"engine\": \"starlingmonkey\"",
        ] {
            assert!(err.contains(want), "{want} missing in:\n{err}");
        }
        // node_modules and build/ are not the plugin's own code.
        fs::remove_dir_all(dir.path().join("lib")).unwrap();
        fs::create_dir_all(dir.path().join("node_modules/x")).unwrap();
        fs::write(dir.path().join("node_modules/x/i.js"), "await fetch(1)").unwrap();
        check_sources(dir.path(), Engine::QuickJs).unwrap();
    }

    #[test]
    fn the_sdk_dir_is_ours_or_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        write_sdk(dir.path()).unwrap();
        let index = fs::read_to_string(dir.path().join("node_modules/wasmon/index.js")).unwrap();
        assert!(
            index.contains(&format!("wasi:http/types@{BUILD_LABEL}")),
            "{index}"
        );
        write_sdk(dir.path()).unwrap();
        fs::write(dir.path().join("node_modules/wasmon/package.json"), "{}").unwrap();
        let err = write_sdk(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not written by"), "{err}");
    }
}
