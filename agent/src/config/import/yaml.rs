//! YAML read into a tree that keeps each node's line, so that every key an
//! import maps or reports can name `file:line`. Go's `gopkg.in/yaml.v2`
//! (what Prometheus and Alertmanager parse with) is the reference: anchors
//! and aliases, merge keys (`<<: *base`, explicit keys win), YAML 1.1
//! booleans (`yes`/`no`/`on`/`off`), a duplicate key is an error.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML node and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null`, an empty value.
    Null,
    /// A scalar as written; `quoted` when it was in quotes or a block
    /// scalar (then it is always a string, never a number or a bool).
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    /// Entries in file order, merge keys applied, keys unique.
    Map(Vec<Entry>),
}

/// One key of a map.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: Node,
    pub value: Node,
    /// Brought in by a merge key (`<<: *base`) rather than written here.
    pub merged: bool,
}

/// A YAML syntax error or a duplicate key, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for YamlError {}

/// Parses the first document of `text`; an empty text is an empty map (as
/// an empty prometheus.yml is a config of defaults).
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    // Events one by one rather than `Parser::load`, which recurses once
    // per level of nesting: a hostile file must meet [`MAX_DEPTH`], not
    // the end of the stack. The first document only.
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| YamlError {
            line: e.marker().line(),
            message: e.info().to_string(),
        })?;
        let last = matches!(ev, Event::StreamEnd | Event::DocumentEnd);
        b.on_event(ev, mark);
        if last || b.error.is_some() {
            break;
        }
    }
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.root.unwrap_or(Node {
        line: 1,
        value: Value::Map(Vec::new()),
    }))
}

impl Node {
    /// The value of `key` in a map (None for other kinds or a missing key).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// A map's entries with their keys as text (keys that are not scalars
    /// read as ""). Empty for other kinds.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.map_entries()
            .iter()
            .map(|e| (e.key.as_str().unwrap_or(""), &e.value))
    }

    /// A map's entries with their key nodes (for the key's line).
    pub fn map_entries(&self) -> &[Entry] {
        match &self.value {
            Value::Map(m) => m,
            _ => &[],
        }
    }

    /// A sequence's items (empty for other kinds, and for null, which is
    /// how YAML writes an empty list as `key:`).
    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(s) => s,
            _ => &[],
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// A scalar's text (None for null, maps, sequences).
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A plain scalar read as yaml.v2 reads a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self.plain()? {
            "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
                Some(true)
            }
            "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n"
            | "N" => Some(false),
            _ => None,
        }
    }

    /// An unquoted scalar's text: the only kind YAML reads as a bool or a
    /// number.
    fn plain(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar {
                text,
                quoted: false,
            } => Some(text),
            _ => None,
        }
    }

    /// A plain scalar read as an integer (decimal, `0x`, `0o`, `_` allowed).
    pub fn as_i64(&self) -> Option<i64> {
        let t = self.plain()?.replace('_', "");
        let (neg, t) = match t.strip_prefix('-') {
            Some(r) => (true, r.to_string()),
            None => (false, t.strip_prefix('+').unwrap_or(&t).to_string()),
        };
        let v = if let Some(h) = t.strip_prefix("0x") {
            i64::from_str_radix(h, 16).ok()?
        } else if let Some(o) = t.strip_prefix("0o") {
            i64::from_str_radix(o, 8).ok()?
        } else {
            t.parse::<i64>().ok()?
        };
        Some(if neg { -v } else { v })
    }

    /// A plain scalar read as a float (also `.inf`, `-.inf`, `.nan`).
    pub fn as_f64(&self) -> Option<f64> {
        match self.plain()? {
            ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Some(f64::INFINITY),
            "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
            ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
            t => self.as_i64().map(|i| i as f64).or_else(|| t.parse().ok()),
        }
    }

    /// What the node is, for messages ("a map", "a list", "a string", "null").
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }
}

/// Deepest nesting of maps and lists read: far beyond any real config,
/// short of what a hostile one would need to exhaust the stack (the tree
/// is dropped and walked recursively).
pub const MAX_DEPTH: usize = 200;

#[derive(Default)]
struct Builder {
    /// Open maps and sequences; a map collects keys and values alternately.
    stack: Vec<(Node, usize, Option<Node>)>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<YamlError>,
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        if self.error.is_some() {
            return;
        }
        let Some((parent, _, pending_key)) = self.stack.last_mut() else {
            if self.root.is_none() {
                self.root = Some(node);
            }
            return;
        };
        match &mut parent.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    if key.as_str() == Some("<<")
                        && !matches!(key.value, Value::Scalar { quoted: true, .. })
                    {
                        merge(entries, node);
                    } else if let Some(dup) = entries
                        .iter()
                        .find(|e| e.key.value == key.value && !e.merged)
                    {
                        self.error = Some(YamlError {
                            line: key.line,
                            message: format!(
                                "mapping key {:?} already defined at line {}",
                                key.as_str().unwrap_or("?"),
                                dup.key.line
                            ),
                        });
                    } else {
                        // A key written out replaces one a merge brought in.
                        entries.retain(|e| e.key.value != key.value);
                        entries.push(Entry {
                            key,
                            value: node,
                            merged: false,
                        });
                    }
                }
            },
            _ => unreachable!("only maps and sequences are pushed"),
        }
    }
}

fn merge(entries: &mut Vec<Entry>, from: Node) {
    let maps = match from.value {
        Value::Map(m) => vec![m],
        // `<<: [*a, *b]`: earlier maps win.
        Value::Seq(s) => s
            .into_iter()
            .filter_map(|n| match n.value {
                Value::Map(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => return,
    };
    for m in maps {
        for e in m {
            if !entries.iter().any(|have| have.key.value == e.key.value) {
                entries.push(Entry { merged: true, ..e });
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        // yaml-rust2's marker lines are 1-based.
        let line = mark.line().max(1);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let quoted = style != TScalarStyle::Plain;
                // `!!binary`: base64 bytes, read as text the way Go's
                // string conversion keeps them (invalid UTF-8 shows as
                // U+FFFD, which label checks then refuse).
                let binary = tag.as_ref().is_some_and(|t| {
                    t.suffix == "binary" && matches!(t.handle.as_str(), "!!" | "tag:yaml.org,2002:")
                });
                let text = if binary {
                    use base64::Engine as _;
                    match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                        Err(_) => {
                            self.error.get_or_insert(YamlError {
                                line,
                                message: "!!binary value is not valid base64".into(),
                            });
                            text
                        }
                    }
                } else {
                    text
                };
                let quoted = quoted || binary;
                let value =
                    if !quoted && matches!(text.as_str(), "~" | "null" | "Null" | "NULL" | "") {
                        Value::Null
                    } else {
                        Value::Scalar { text, quoted }
                    };
                let node = Node { line, value };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(n) => {
                    let mut n = n.clone();
                    n.line = line;
                    self.push_value(n);
                }
                None => {
                    self.error.get_or_insert(YamlError {
                        line,
                        message: "unknown anchor".into(),
                    });
                }
            },
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                self.error.get_or_insert(YamlError {
                    line,
                    message: format!("nested deeper than {MAX_DEPTH} levels"),
                });
            }
            Event::SequenceStart(anchor, _) => self.stack.push((
                Node {
                    line,
                    value: Value::Seq(Vec::new()),
                },
                anchor,
                None,
            )),
            Event::MappingStart(anchor, _) => self.stack.push((
                Node {
                    line,
                    value: Value::Map(Vec::new()),
                },
                anchor,
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, anchor, _)) = self.stack.pop() {
                    if anchor > 0 {
                        self.anchors.insert(anchor, node.clone());
                    }
                    self.push_value(node);
                }
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_anchors_and_merge_keys() {
        let doc =
            parse("base: &b\n  a: 1\n  b: two\nderived:\n  <<: *b\n  b: three\nlist: [x, 'y']\n")
                .unwrap();
        let d = doc.get("derived").unwrap();
        assert_eq!(d.line, 5);
        assert_eq!(d.get("a").unwrap().as_i64(), Some(1));
        assert_eq!(d.get("b").unwrap().as_str(), Some("three"));
        assert_eq!(d.get("b").unwrap().line, 6);
        assert_eq!(doc.get("list").unwrap().items().len(), 2);
        assert_eq!(doc.get("list").unwrap().line, 7);
    }

    #[test]
    fn yaml_1_1_bools_and_quoted_scalars() {
        let doc = parse("a: yes\nb: 'yes'\nc: off\nd: ~\ne:\n").unwrap();
        assert_eq!(doc.get("a").unwrap().as_bool(), Some(true));
        assert_eq!(doc.get("b").unwrap().as_bool(), None);
        assert_eq!(doc.get("c").unwrap().as_bool(), Some(false));
        assert!(doc.get("d").unwrap().is_null());
        assert!(doc.get("e").unwrap().is_null());
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_name_their_line() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("already defined at line 1"), "{e}");
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.line >= 1, "{e}");
    }

    #[test]
    fn empty_text_is_an_empty_map() {
        let doc = parse("").unwrap();
        assert_eq!(doc.entries().count(), 0);
        assert_eq!(doc.kind(), "a map");
    }
}
