//! Label sets: sorted by name, names unique, as in Prometheus.

use std::fmt;
use std::hash::{Hash, Hasher};

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// A classic label name, `[a-zA-Z_][a-zA-Z0-9_]*`: what Prometheus before
/// 3.0 and Alertmanager before 0.28 accept (UTF-8 names came later).
pub fn is_legacy_label_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: String,
    pub value: String,
}

/// A set of labels, kept sorted by name with no duplicates and no empty
/// values (an empty value means "label absent", as in Prometheus).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Labels(Vec<Label>);

impl Labels {
    pub fn new() -> Labels {
        Labels(Vec::new())
    }

    /// From (name, value) pairs in any order; later duplicates win, empty
    /// values are dropped.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Labels {
        let mut b = LabelsBuilder::default();
        for (n, v) in pairs {
            b.set(n.into(), v.into());
        }
        b.build()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    pub fn name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// A builder starting from these labels.
    pub fn to_builder(&self) -> LabelsBuilder {
        LabelsBuilder(self.clone())
    }

    /// A 64-bit hash of the label set, the same in every process of one
    /// build: for spreading work (scrape offsets), never for identity (see
    /// [`hash_labels`]).
    pub fn hash64(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    /// The labels without the metric name.
    pub fn without_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| l.name != METRIC_NAME)
                .cloned()
                .collect(),
        )
    }
}

/// The hash every in-memory map of label sets uses: foldhash (quality)
/// over (name, 0xff, value, 0xfe) — bytes UTF-8 never holds, so `a="bc"`
/// and `ab="c"` differ — with a seed drawn once per process, so that label
/// values chosen from outside cannot be made to collide on purpose.
///
/// A hash is never a label set's identity: every map keyed by it compares
/// the labels when hashes are equal (`tsdb::head`, `promql::grouping`).
/// The word-at-a-time multiply-xor hashes used before (FxHash) collided on
/// values one character apart, e.g. `/api/e104` and `/api/e189`.
pub fn hash_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = foldhash::quality::FoldHasher::with_seed(
        LABEL_HASH_SEED,
        foldhash::SharedSeed::global_random(),
    );
    for (n, v) in pairs {
        h.write(n.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xfe);
    }
    h.finish()
}

/// [`hash_pairs`] of a whole label set.
pub fn hash_labels(l: &Labels) -> u64 {
    hash_pairs(l.iter().map(|l| (l.name.as_str(), l.value.as_str())))
}

/// foldhash's per-hasher seed; the process-wide random seed is
/// foldhash's global one.
const LABEL_HASH_SEED: u64 = 0x5157_a5e1_7ab1_e5ed;

impl fmt::Display for Labels {
    /// Prometheus' notation: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.name() {
            f.write_str(n)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

/// Builds a [`Labels`] by setting and deleting labels. Its content is a
/// valid label set at every step (see [`LabelsBuilder::labels`]), so a
/// builder kept across uses is a reusable buffer: the hot paths (parsing,
/// the scrape loop) edit one in place instead of allocating a label set
/// per sample.
#[derive(Debug, Clone, Default)]
pub struct LabelsBuilder(Labels);

impl LabelsBuilder {
    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let (name, value) = (name.into(), value.into());
        let v = &mut self.0 .0;
        match v.binary_search_by(|l| l.name.cmp(&name)) {
            Ok(i) if value.is_empty() => {
                v.remove(i);
            }
            Ok(i) => v[i].value = value,
            Err(_) if value.is_empty() => {}
            Err(i) => v.insert(i, Label { name, value }),
        }
        self
    }

    /// As [`LabelsBuilder::set`] from borrowed text: an existing label's
    /// value is overwritten in its own buffer, without allocating.
    pub fn set_str(&mut self, name: &str, value: &str) -> &mut Self {
        let v = &mut self.0 .0;
        match v.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                v.remove(i);
            }
            Ok(i) => value.clone_into(&mut v[i].value),
            Err(_) if value.is_empty() => {}
            Err(i) => v.insert(
                i,
                Label {
                    name: name.to_owned(),
                    value: value.to_owned(),
                },
            ),
        }
        self
    }

    pub fn del(&mut self, name: &str) -> &mut Self {
        let v = &mut self.0 .0;
        if let Ok(i) = v.binary_search_by(|l| l.name.as_str().cmp(name)) {
            v.remove(i);
        }
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name)
    }

    /// Keeps only labels for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Label) -> bool) -> &mut Self {
        self.0 .0.retain(|l| keep(l));
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    /// The label set as built so far.
    pub fn labels(&self) -> &Labels {
        &self.0
    }

    /// Makes the builder hold exactly the union of `a` and `b`, reusing its
    /// buffers (no allocation once they are large enough). Returns false,
    /// leaving the builder unspecified, when a name is in both: the caller
    /// decides how such a conflict resolves.
    pub fn assign_union(&mut self, a: &Labels, b: &Labels) -> bool {
        let v = &mut self.0 .0;
        let (mut i, mut j, mut k) = (0, 0, 0);
        loop {
            let next = match (a.0.get(i), b.0.get(j)) {
                (Some(x), Some(y)) => match x.name.cmp(&y.name) {
                    std::cmp::Ordering::Less => {
                        i += 1;
                        x
                    }
                    std::cmp::Ordering::Greater => {
                        j += 1;
                        y
                    }
                    std::cmp::Ordering::Equal => return false,
                },
                (Some(x), None) => {
                    i += 1;
                    x
                }
                (None, Some(y)) => {
                    j += 1;
                    y
                }
                (None, None) => break,
            };
            match v.get_mut(k) {
                Some(slot) => {
                    next.name.clone_into(&mut slot.name);
                    next.value.clone_into(&mut slot.value);
                }
                None => v.push(next.clone()),
            }
            k += 1;
        }
        v.truncate(k);
        true
    }

    pub fn build(&self) -> Labels {
        self.0.clone()
    }

    /// Like [`build`](Self::build) without copying: for hot paths (parsing)
    /// that are done with the builder.
    pub fn into_labels(self) -> Labels {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_reuse_union_and_set_str() {
        let a = Labels::from_pairs([("__name__", "m"), ("path", "/a"), ("z", "1")]);
        let b = Labels::from_pairs([("instance", "h:1"), ("job", "j")]);
        let mut lb = LabelsBuilder::default();
        assert!(lb.assign_union(&a, &b));
        let want = Labels::from_pairs([
            ("__name__", "m"),
            ("instance", "h:1"),
            ("job", "j"),
            ("path", "/a"),
            ("z", "1"),
        ]);
        assert_eq!(lb.labels(), &want);
        // A smaller union into the same builder drops the rest.
        assert!(lb.assign_union(&b, &Labels::new()));
        assert_eq!(lb.labels(), &b);
        // A name on both sides is the caller's to resolve.
        assert!(!lb.assign_union(&a, &Labels::from_pairs([("path", "x")])));
        lb.assign_union(&a, &Labels::new());
        lb.set_str("path", "/b")
            .set_str("new", "v")
            .set_str("z", "");
        assert_eq!(
            lb.labels(),
            &Labels::from_pairs([("__name__", "m"), ("new", "v"), ("path", "/b")])
        );
    }

    #[test]
    fn sorted_unique_and_empty_dropped() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        let names: Vec<_> = l
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(names, [("a", "1"), ("b", "3")]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn display() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a\"b")]);
        assert_eq!(l.to_string(), r#"up{job="a\"b"}"#);
    }

    #[test]
    fn builder_set_del() {
        let mut b = Labels::from_pairs([("a", "1")]).to_builder();
        b.set("z", "9").set("a", "").del("nope");
        assert_eq!(b.build(), Labels::from_pairs([("z", "9")]));
    }
}
