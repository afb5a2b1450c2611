//! Postings: sorted lists of series references per label pair, the
//! in-memory inverted index of the head, and the matcher → series-set
//! algorithm shared by the head and the blocks.
//!
//! Lists are plain sorted `Vec<u64>`: series refs grow monotonically, so
//! the head appends at the end, and intersection gallops through the longer
//! list when sizes differ a lot (the common `{__name__="x", job="y"}` case
//! intersects a short list with a long one).

use std::collections::HashMap;

use super::matcher::{MatchOp, Matcher};

/// What the matcher algorithm needs from an index (head or block).
pub trait PostingsSource {
    /// Sorted refs of series with `name="value"` (value non-empty).
    fn postings(&self, name: &str, value: &str) -> Vec<u64>;
    /// Sorted refs of every series.
    fn all_postings(&self) -> Vec<u64>;
    /// Union of the postings of every value of `name` for which `pred` holds.
    fn postings_matching(&self, name: &str, pred: &dyn Fn(&str) -> bool) -> Vec<u64>;
}

/// Sorted series refs selected by `matchers` (all must hold), with
/// Prometheus' semantics: a matcher that matches the empty string also
/// selects series without the label, so it is applied by subtracting the
/// series whose value it rejects.
pub fn postings_for_matchers(ix: &dyn PostingsSource, matchers: &[Matcher]) -> Vec<u64> {
    let mut its: Vec<Vec<u64>> = Vec::new();
    let mut nots: Vec<Vec<u64>> = Vec::new();
    for m in matchers {
        if m.matches("") {
            // Subtract series having a value the matcher rejects.
            let p = match m.op {
                MatchOp::NotEqual => ix.postings(&m.name, &m.value),
                MatchOp::Equal => ix.postings_matching(&m.name, &|_| true),
                _ => ix.postings_matching(&m.name, &|v| !m.matches(v)),
            };
            if !p.is_empty() {
                nots.push(p);
            }
        } else {
            let p = match (m.op, m.set_matches()) {
                (MatchOp::Equal, _) => ix.postings(&m.name, &m.value),
                (MatchOp::Regex, Some(values)) => {
                    union(values.iter().map(|v| ix.postings(&m.name, v)).collect())
                }
                _ => ix.postings_matching(&m.name, &|v| m.matches(v)),
            };
            if p.is_empty() {
                return Vec::new();
            }
            its.push(p);
        }
    }
    let base = if its.is_empty() {
        ix.all_postings()
    } else {
        its.sort_by_key(Vec::len);
        let mut it = its.into_iter();
        let mut acc = it.next().unwrap_or_default();
        for p in it {
            if acc.is_empty() {
                break;
            }
            acc = intersect(&acc, &p);
        }
        acc
    };
    if nots.is_empty() {
        base
    } else {
        subtract(&base, &union(nots))
    }
}

/// Refs in both sorted lists.
pub fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(short.len());
    if short.len() * 16 < long.len() {
        // Gallop: binary-search each short element in the rest of `long`.
        let mut rest = long;
        for &x in short {
            match rest.binary_search(&x) {
                Ok(i) => {
                    out.push(x);
                    rest = &rest[i + 1..];
                }
                Err(i) => rest = &rest[i..],
            }
            if rest.is_empty() {
                break;
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < short.len() && j < long.len() {
        match short[i].cmp(&long[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(short[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Refs of `a` not in `b` (both sorted).
pub fn subtract(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j < b.len() && b[j] == x {
            continue;
        }
        out.push(x);
    }
    out
}

/// Sorted union of sorted lists.
pub fn union(mut lists: Vec<Vec<u64>>) -> Vec<u64> {
    match lists.len() {
        0 => Vec::new(),
        1 => lists.pop().unwrap_or_default(),
        _ => {
            let mut all: Vec<u64> = lists.concat();
            all.sort_unstable();
            all.dedup();
            all
        }
    }
}

/// A postings list in the head. Most label values of high-cardinality
/// labels (pod, instance) belong to a single series: those are stored
/// inline, saving a heap allocation per value.
#[derive(Debug, Clone)]
enum PostingList {
    One(u64),
    Many(Vec<u64>),
}

impl PostingList {
    fn insert(&mut self, r: u64) {
        match self {
            PostingList::One(x) if *x == r => {}
            PostingList::One(x) => {
                let mut v = vec![*x];
                insert_sorted(&mut v, r);
                *self = PostingList::Many(v);
            }
            PostingList::Many(v) => insert_sorted(v, r),
        }
    }

    /// Removes `r`; returns whether the list is now empty.
    fn remove_where(&mut self, gone: impl Fn(u64) -> bool) -> bool {
        match self {
            PostingList::One(x) => gone(*x),
            PostingList::Many(v) => {
                v.retain(|&r| !gone(r));
                match v.len() {
                    0 => true,
                    1 => {
                        *self = PostingList::One(v[0]);
                        false
                    }
                    _ => false,
                }
            }
        }
    }

    fn to_vec(&self) -> Vec<u64> {
        match self {
            PostingList::One(x) => vec![*x],
            PostingList::Many(v) => v.clone(),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            PostingList::One(_) => 0,
            PostingList::Many(v) => v.capacity() * 8 + 16,
        }
    }
}

/// Inserts `r` into a sorted list (at the end in the common case).
fn insert_sorted(list: &mut Vec<u64>, r: u64) {
    match list.last() {
        None => list.push(r),
        Some(&last) if last < r => list.push(r),
        _ => {
            if let Err(i) = list.binary_search(&r) {
                list.insert(i, r);
            }
        }
    }
}

/// The head's inverted index: label name → value → sorted series refs.
#[derive(Debug, Default)]
pub struct MemPostings {
    m: HashMap<Box<str>, HashMap<Box<str>, PostingList>>,
    all: Vec<u64>,
}

impl MemPostings {
    pub fn add<'a>(&mut self, r: u64, labels: impl Iterator<Item = (&'a str, &'a str)>) {
        for (n, v) in labels {
            let values = match self.m.get_mut(n) {
                Some(values) => values,
                None => self.m.entry(n.into()).or_default(),
            };
            match values.get_mut(v) {
                Some(list) => list.insert(r),
                None => {
                    values.insert(v.into(), PostingList::One(r));
                }
            }
        }
        insert_sorted(&mut self.all, r);
    }

    /// Removes a series given the labels it was added with.
    pub fn delete<'a>(&mut self, r: u64, labels: impl Iterator<Item = (&'a str, &'a str)>) {
        for (n, v) in labels {
            let Some(values) = self.m.get_mut(n) else {
                continue;
            };
            if let Some(list) = values.get_mut(v) {
                if list.remove_where(|x| x == r) {
                    values.remove(v);
                }
            }
            if values.is_empty() {
                self.m.remove(n);
            }
        }
        if let Ok(i) = self.all.binary_search(&r) {
            self.all.remove(i);
        }
    }

    /// Removes many series at once: one pass per touched list.
    pub fn delete_many(&mut self, refs: &[u64]) {
        if refs.is_empty() {
            return;
        }
        let mut sorted = refs.to_vec();
        sorted.sort_unstable();
        self.m.retain(|_, values| {
            values.retain(|_, list| !list.remove_where(|r| sorted.binary_search(&r).is_ok()));
            values.shrink_to_fit();
            !values.is_empty()
        });
        self.all = subtract(&self.all, &sorted);
    }

    pub fn label_names(&self) -> Vec<String> {
        self.m.keys().map(|k| k.to_string()).collect()
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.m
            .get(name)
            .map(|vs| vs.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default()
    }

    /// Approximate heap bytes (for the head memory estimate).
    pub fn memory_estimate(&self) -> usize {
        let mut n = self.all.capacity() * 8;
        for (k, vs) in &self.m {
            n += k.len() + 64;
            // Map slot (key + list + control byte) and the key's heap bytes.
            n += vs.capacity() * 41;
            for (v, list) in vs {
                n += v.len() + 16 + list.heap_bytes();
            }
        }
        n
    }
}

impl PostingsSource for MemPostings {
    fn postings(&self, name: &str, value: &str) -> Vec<u64> {
        self.m
            .get(name)
            .and_then(|vs| vs.get(value))
            .map(PostingList::to_vec)
            .unwrap_or_default()
    }

    fn all_postings(&self) -> Vec<u64> {
        self.all.clone()
    }

    fn postings_matching(&self, name: &str, pred: &dyn Fn(&str) -> bool) -> Vec<u64> {
        let Some(vs) = self.m.get(name) else {
            return Vec::new();
        };
        union(
            vs.iter()
                .filter(|(v, _)| pred(v))
                .map(|(_, l)| l.to_vec())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let a: Vec<u64> = (0..1000).step_by(3).collect();
        let b: Vec<u64> = (0..1000).step_by(5).collect();
        let both: Vec<u64> = (0..1000).step_by(15).collect();
        assert_eq!(intersect(&a, &b), both);
        assert_eq!(intersect(&[15, 30, 999], &a), vec![15, 30, 999]);
        assert_eq!(intersect(&[1, 2], &a), Vec::<u64>::new());
        let only_a: Vec<u64> = a.iter().copied().filter(|x| x % 5 != 0).collect();
        assert_eq!(subtract(&a, &b), only_a);
        let mut u: Vec<u64> = a.iter().chain(b.iter()).copied().collect();
        u.sort();
        u.dedup();
        assert_eq!(union(vec![a, b]), u);
    }

    #[test]
    fn mem_postings_add_delete() {
        let mut p = MemPostings::default();
        p.add(1, [("a", "x"), ("b", "y")].into_iter());
        p.add(3, [("a", "x")].into_iter());
        p.add(2, [("a", "z")].into_iter());
        assert_eq!(p.postings("a", "x"), vec![1, 3]);
        assert_eq!(p.all_postings(), vec![1, 2, 3]);
        p.delete(1, [("a", "x"), ("b", "y")].into_iter());
        assert_eq!(p.postings("a", "x"), vec![3]);
        assert!(p.label_values("b").is_empty());
        p.delete_many(&[2, 3]);
        assert!(p.all_postings().is_empty());
        assert!(p.label_names().is_empty());
    }
}
