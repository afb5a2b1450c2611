//! The module graph of `agent/src` points downward (issue 19): which
//! `crate::X` each top-level module names in code (comments aside), the
//! way `imports.sh` measures it. A new upward import fails here with the
//! edge that closes the loop, before it tangles two modules' changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::NAME`s a text names outside `//` comment lines.
fn crate_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && !line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                names.insert(name);
            }
        }
    }
    names
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g = Graph::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_str().unwrap().to_string();
        let mut files = Vec::new();
        if p.is_dir() {
            rust_files(&p, &mut files);
        } else if p.extension().is_some_and(|x| x == "rs") && name != "lib" && name != "main" {
            files.push(p.clone());
        } else {
            continue;
        }
        let deps = g.entry(name.clone()).or_default();
        for f in files {
            deps.extend(crate_names(&std::fs::read_to_string(&f).unwrap()));
        }
        deps.remove(&name);
    }
    g
}

fn reaches(g: &Graph, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        if m == to {
            return true;
        }
        if seen.insert(m.clone()) {
            stack.extend(g.get(&m).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn no_module_imports_back_up_the_graph() {
    let g = graph();
    assert!(g.contains_key("web") && g.contains_key("tsdb"), "{g:?}");
    // Every edge that lies on a loop (b reaches a back).
    let looped: BTreeSet<(String, String)> = g
        .iter()
        .flat_map(|(a, deps)| deps.iter().map(move |b| (a.clone(), b.clone())))
        .filter(|(a, b)| reaches(&g, b, a))
        .collect();
    assert!(looped.is_empty(), "imports that close a loop: {looped:?}");
    // Nothing below the agent names it, and no domain module names the
    // HTTP API (its handlers live in web/).
    for (m, deps) in &g {
        if m != "app" {
            assert!(!deps.contains("app"), "{m} imports app");
        }
        if m != "app" && m != "web" {
            assert!(!deps.contains("web"), "{m} imports web");
        }
    }
}
