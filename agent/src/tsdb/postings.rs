//! Postings: sorted lists of series references per label pair, the
//! in-memory inverted index of the head, and the matcher → series-set
//! algorithm shared by the head and the blocks.
//!
//! Lists are plain sorted `Vec<u64>`: series refs grow monotonically, so
//! the head appends at the end, and intersection gallops through the longer
//! list when sizes differ a lot (the common `{__name__="x", job="y"}` case
//! intersects a short list with a long one).

use super::symbols::{SymbolId, Symbols};
use crate::storage::{MatchOp, Matcher};

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
/// labels (pod, instance, path) belong to a single series: those are stored
/// inline, and a longer list is one pointer, so a value's map slot is 16
/// bytes.
#[derive(Debug, Clone)]
enum PostingList {
    One(u64),
    Many(Box<DeltaList>),
}

impl PostingList {
    fn insert(&mut self, r: u64) {
        match self {
            PostingList::One(x) if *x == r => {}
            PostingList::One(x) => {
                let mut v = vec![*x];
                insert_sorted(&mut v, r);
                *self = PostingList::Many(Box::new(DeltaList::from_sorted(&v)));
            }
            PostingList::Many(l) => l.insert(r),
        }
    }

    /// Removes the refs for which `gone` holds; returns whether the list is
    /// now empty.
    fn remove_where(&mut self, gone: impl Fn(u64) -> bool) -> bool {
        match self {
            PostingList::One(x) => gone(*x),
            PostingList::Many(l) => {
                if !l.iter().any(&gone) {
                    return false;
                }
                let keep: Vec<u64> = l.iter().filter(|&r| !gone(r)).collect();
                match keep[..] {
                    [] => true,
                    [one] => {
                        *self = PostingList::One(one);
                        false
                    }
                    _ => {
                        **l = DeltaList::from_sorted(&keep);
                        false
                    }
                }
            }
        }
    }

    fn to_vec(&self) -> Vec<u64> {
        match self {
            PostingList::One(x) => vec![*x],
            PostingList::Many(l) => l.iter().collect(),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            PostingList::One(_) => 0,
            PostingList::Many(l) => std::mem::size_of::<DeltaList>() + l.bytes.capacity(),
        }
    }
}

/// A sorted list of two or more refs as varint deltas. A label value shared
/// by many series (`job`, `namespace`, a status code) has one entry per
/// series, and refs are handed out in increasing order, so new refs go at
/// the end and the gaps are small: a byte or two a series instead of 8.
#[derive(Debug, Clone, Default)]
struct DeltaList {
    bytes: Vec<u8>,
    last: u64,
    len: u32,
}

impl DeltaList {
    fn from_sorted(refs: &[u64]) -> DeltaList {
        let mut l = DeltaList {
            bytes: Vec::with_capacity(refs.len() + 2),
            ..DeltaList::default()
        };
        for &r in refs {
            l.push(r);
        }
        l
    }

    /// Appends `r`, which is above every ref in the list (or the list is
    /// empty).
    fn push(&mut self, r: u64) {
        let d = if self.len == 0 { r } else { r - self.last };
        super::encoding::put_uvarint(&mut self.bytes, d);
        self.last = r;
        self.len += 1;
    }

    fn insert(&mut self, r: u64) {
        if self.len == 0 || r > self.last {
            self.push(r);
            return;
        }
        // Out of order (a WAL replay can create series out of ref order):
        // rare, so re-encode.
        let mut v: Vec<u64> = self.iter().collect();
        if let Err(i) = v.binary_search(&r) {
            v.insert(i, r);
            *self = DeltaList::from_sorted(&v);
        }
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let mut b = &self.bytes[..];
        let mut acc = 0u64;
        std::iter::from_fn(move || {
            let d = super::encoding::take_uvarint(&mut b)?;
            acc = acc.wrapping_add(d);
            Some(acc)
        })
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

type IdMap<V> = hashbrown::HashMap<SymbolId, V, foldhash::fast::FixedState>;

/// The head's inverted index: label name → value → sorted series refs,
/// names and values as ids of the head's [`Symbols`] (which the caller
/// passes in to turn strings into ids and back).
#[derive(Debug, Default)]
pub struct MemPostings {
    m: IdMap<IdMap<PostingList>>,
}

impl MemPostings {
    /// Adds series `r` under each (name, value) id pair.
    pub fn add(&mut self, r: u64, pairs: impl Iterator<Item = (SymbolId, SymbolId)>) {
        for (n, v) in pairs {
            match self.m.entry(n).or_default().entry(v) {
                hashbrown::hash_map::Entry::Occupied(mut e) => e.get_mut().insert(r),
                hashbrown::hash_map::Entry::Vacant(e) => {
                    e.insert(PostingList::One(r));
                }
            }
        }
    }

    /// Removes many series at once: one pass over every list (cheaper than
    /// a lookup per removed label when a truncation drops thousands).
    pub fn delete_many(&mut self, refs: &[u64]) {
        if refs.is_empty() {
            return;
        }
        let mut sorted = refs.to_vec();
        sorted.sort_unstable();
        self.m.retain(|_, values| {
            values.retain(|_, list| !list.remove_where(|r| sorted.binary_search(&r).is_ok()));
            if values.capacity() > values.len() * 4 {
                values.shrink_to_fit();
            }
            !values.is_empty()
        });
    }

    /// Removes a few series, given with their (name, value) id pairs:
    /// only the lists they are in are rewritten (where
    /// [`MemPostings::delete_many`] passes over every list).
    pub fn delete_some(&mut self, series: &[(u64, Vec<(SymbolId, SymbolId)>)]) {
        let mut by_list: hashbrown::HashMap<(SymbolId, SymbolId), Vec<u64>> =
            hashbrown::HashMap::new();
        for (r, pairs) in series {
            for &p in pairs {
                by_list.entry(p).or_default().push(*r);
            }
        }
        for ((n, v), mut refs) in by_list {
            refs.sort_unstable();
            let Some(values) = self.m.get_mut(&n) else {
                continue;
            };
            let empty = values
                .get_mut(&v)
                .is_some_and(|list| list.remove_where(|r| refs.binary_search(&r).is_ok()));
            if empty {
                values.remove(&v);
                if values.is_empty() {
                    self.m.remove(&n);
                }
            }
        }
    }

    pub fn label_names(&self, sym: &Symbols) -> Vec<String> {
        self.m.keys().map(|&k| sym.get(k).to_string()).collect()
    }

    pub fn label_values(&self, sym: &Symbols, name: &str) -> Vec<String> {
        sym.lookup(name)
            .and_then(|n| self.m.get(&n))
            .map(|vs| vs.keys().map(|&v| sym.get(v).to_string()).collect())
            .unwrap_or_default()
    }

    /// Approximate heap bytes (for the head memory estimate): map slots
    /// (id + list, and a control byte) and long lists.
    pub fn memory_estimate(&self) -> usize {
        let mut n = self.m.capacity() * 49;
        for vs in self.m.values() {
            n += vs.capacity() * 21;
            n += vs.values().map(PostingList::heap_bytes).sum::<usize>();
        }
        n
    }

    /// The matcher algorithm's view: strings resolved through `sym`, "all
    /// series" from `all` (sorted refs, computed by the caller only when a
    /// query needs them).
    pub fn view<'a>(
        &'a self,
        sym: &'a Symbols,
        all: &'a dyn Fn() -> Vec<u64>,
    ) -> MemPostingsView<'a> {
        MemPostingsView { p: self, sym, all }
    }
}

/// [`MemPostings`] with its symbol table, as a [`PostingsSource`].
pub struct MemPostingsView<'a> {
    p: &'a MemPostings,
    sym: &'a Symbols,
    all: &'a dyn Fn() -> Vec<u64>,
}

impl MemPostingsView<'_> {
    fn values(&self, name: &str) -> Option<&IdMap<PostingList>> {
        self.p.m.get(&self.sym.lookup(name)?)
    }
}

impl PostingsSource for MemPostingsView<'_> {
    fn postings(&self, name: &str, value: &str) -> Vec<u64> {
        let Some(vs) = self.values(name) else {
            return Vec::new();
        };
        self.sym
            .lookup(value)
            .and_then(|v| vs.get(&v))
            .map(PostingList::to_vec)
            .unwrap_or_default()
    }

    fn all_postings(&self) -> Vec<u64> {
        (self.all)()
    }

    fn postings_matching(&self, name: &str, pred: &dyn Fn(&str) -> bool) -> Vec<u64> {
        let Some(vs) = self.values(name) else {
            return Vec::new();
        };
        union(
            vs.iter()
                .filter(|(&v, _)| pred(self.sym.get(v)))
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
        let mut sym = Symbols::new();
        let mut id = |s: &str| sym.intern(s).unwrap();
        let (a, b, x, y, z) = (id("a"), id("b"), id("x"), id("y"), id("z"));
        let mut p = MemPostings::default();
        p.add(1, [(a, x), (b, y)].into_iter());
        p.add(3, [(a, x)].into_iter());
        p.add(2, [(a, z)].into_iter());
        let all = || vec![1, 2, 3];
        let v = p.view(&sym, &all);
        assert_eq!(v.postings("a", "x"), vec![1, 3]);
        assert_eq!(v.postings("a", "nope"), Vec::<u64>::new());
        assert_eq!(v.postings_matching("a", &|s| s != "z"), vec![1, 3]);
        assert_eq!(v.all_postings(), vec![1, 2, 3]);
        let mut names = p.label_names(&sym);
        names.sort();
        assert_eq!(names, ["a", "b"]);
        p.delete_many(&[1]);
        let v = p.view(&sym, &all);
        assert_eq!(v.postings("a", "x"), vec![3]);
        assert!(p.label_values(&sym, "b").is_empty());
        p.delete_many(&[2, 3]);
        assert!(p.label_names(&sym).is_empty());
    }

    #[test]
    fn delta_lists_keep_every_ref() {
        let mut sym = Symbols::new();
        let (n, v) = (sym.intern("code").unwrap(), sym.intern("200").unwrap());
        let mut p = MemPostings::default();
        let mut want: Vec<u64> = Vec::new();
        // In order with gaps of every size, then out of order and repeated.
        let mut r = 1u64;
        for i in 0..2000u64 {
            r += 1 + (i * i) % 300 + if i % 500 == 0 { 1 << 40 } else { 0 };
            want.push(r);
        }
        for &r in &want {
            p.add(r, [(n, v)].into_iter());
        }
        for r in [3u64, 5, want[10] + 1, want[10]] {
            p.add(r, [(n, v)].into_iter());
            if !want.contains(&r) {
                want.push(r);
            }
        }
        want.sort_unstable();
        let all = Vec::new;
        assert_eq!(p.view(&sym, &all).postings("code", "200"), want);
        p.delete_many(&want[100..1900]);
        want.drain(100..1900);
        assert_eq!(p.view(&sym, &all).postings("code", "200"), want);
        let small_gaps = DeltaList::from_sorted(&(1..=10_000).map(|i| i * 3).collect::<Vec<u64>>());
        assert_eq!(small_gaps.bytes.len(), 10_000, "one byte a ref");
    }

    #[test]
    fn postings_slot_is_small() {
        // A unique label value costs one map slot of id + list.
        assert_eq!(std::mem::size_of::<PostingList>(), 16);
    }
}
