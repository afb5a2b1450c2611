//! The head's symbol table: every distinct label name and value string once,
//! referred to by a `u32` id from series labels and the postings index.
//!
//! Why: at 100k series the same strings (`__name__`, `job`, `namespace`,
//! status codes, ...) would otherwise be stored in every series' label set
//! and again as postings keys. With the table a series' labels are a few
//! bytes of varint ids (see [`SymLabels`]), and a string is stored once
//! however many series and postings use it.
//!
//! Strings live back to back in one arena; an entry is (offset, length,
//! reference count). The count is the number of times live series refer to
//! the string (a name and a value equal to it count twice); at zero the
//! string leaves the index, its id is reused, and its bytes count as dead
//! until [`Symbols::compact`] rewrites the arena (ids stay the same, so
//! nothing referring to them changes). Series churn — pods coming and going
//! — therefore cannot grow the table without bound.
//!
//! Not thread-safe by itself: the head keeps it inside its index lock.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::encoding::{put_uvarint, take_uvarint};

pub type SymbolId = u32;

#[derive(Debug, Clone, Copy)]
struct Entry {
    off: u32,
    len: u32,
    /// 0 = free slot (its id is on the free list).
    refs: u32,
}

/// Why a string could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    /// More than 4 GiB of live label text, or 2^32 distinct strings.
    #[error("symbol table full ({0} bytes of label text)")]
    Full(usize),
}

/// Interned strings with reference counts.
pub struct Symbols {
    /// A `String`, so that a symbol is a range of it (only a char-boundary
    /// check per lookup, no UTF-8 validation).
    arena: String,
    entries: Vec<Entry>,
    free: Vec<SymbolId>,
    /// Ids of live entries, found by the hash of their string.
    index: HashTable<SymbolId>,
    hasher: foldhash::fast::FixedState,
    /// Arena bytes of released strings, reclaimed by [`Symbols::compact`].
    dead: usize,
}

impl Default for Symbols {
    fn default() -> Self {
        Symbols::new()
    }
}

impl std::fmt::Debug for Symbols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbols")
            .field("live", &self.len())
            .field("arena", &self.arena.len())
            .field("dead", &self.dead)
            .finish()
    }
}

impl Symbols {
    pub fn new() -> Symbols {
        Symbols {
            arena: String::new(),
            entries: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x005e_ed1a_be15),
            dead: 0,
        }
    }

    fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    fn str_of(arena: &str, e: Entry) -> &str {
        arena
            .get(e.off as usize..e.off as usize + e.len as usize)
            .unwrap_or_default()
    }

    /// The string of `id` ("" for an id that is not live, which a correct
    /// caller never passes).
    pub fn get(&self, id: SymbolId) -> &str {
        match self.entries.get(id as usize) {
            Some(&e) if e.refs > 0 => Self::str_of(&self.arena, e),
            _ => "",
        }
    }

    /// The id of `s` if it is in the table (no reference is taken).
    pub fn lookup(&self, s: &str) -> Option<SymbolId> {
        let h = self.hash(s);
        let (arena, entries) = (&self.arena, &self.entries);
        self.index
            .find(h, |&id| Self::str_of(arena, entries[id as usize]) == s)
            .copied()
    }

    /// The id of `s`, added if new; takes one reference.
    pub fn intern(&mut self, s: &str) -> Result<SymbolId, SymbolError> {
        let h = self.hash(s);
        let Symbols {
            arena,
            entries,
            index,
            hasher,
            free,
            ..
        } = self;
        if let Some(&id) = index.find(h, |&id| Self::str_of(arena, entries[id as usize]) == s) {
            let e = &mut entries[id as usize];
            e.refs = e.refs.saturating_add(1);
            return Ok(id);
        }
        let off = u32::try_from(arena.len()).map_err(|_| SymbolError::Full(arena.len()))?;
        let len = u32::try_from(s.len()).map_err(|_| SymbolError::Full(arena.len()))?;
        if (off as u64) + (len as u64) > u32::MAX as u64 {
            return Err(SymbolError::Full(arena.len()));
        }
        let entry = Entry { off, len, refs: 1 };
        let id = match free.pop() {
            Some(id) => {
                entries[id as usize] = entry;
                id
            }
            None => {
                let id =
                    u32::try_from(entries.len()).map_err(|_| SymbolError::Full(arena.len()))?;
                entries.push(entry);
                id
            }
        };
        arena.push_str(s);
        index.insert_unique(h, id, |&id| {
            hasher.hash_one(Self::str_of(arena, entries[id as usize]))
        });
        Ok(id)
    }

    /// Gives back one reference taken by [`Symbols::intern`].
    pub fn release(&mut self, id: SymbolId) {
        let Some(e) = self.entries.get_mut(id as usize) else {
            return;
        };
        if e.refs == 0 {
            return;
        }
        e.refs -= 1;
        if e.refs > 0 {
            return;
        }
        let e = *e;
        let h = self.hasher.hash_one(Self::str_of(&self.arena, e));
        if let Ok(slot) = self.index.find_entry(h, |&x| x == id) {
            slot.remove();
        }
        self.dead += e.len as usize;
        self.free.push(id);
    }

    /// Rewrites the arena without released strings when they are at least
    /// half of it (and worth the copy). Ids do not change. Returns whether
    /// it did.
    pub fn compact(&mut self) -> bool {
        if self.dead < 64 << 10 || self.dead * 2 < self.arena.len() {
            return false;
        }
        let mut arena = String::with_capacity(self.arena.len() - self.dead);
        for e in self.entries.iter_mut().filter(|e| e.refs > 0) {
            let text = Self::str_of(&self.arena, *e);
            // The live total is below the old arena's length, so it fits.
            e.off = arena.len() as u32;
            arena.push_str(text);
        }
        self.arena = arena;
        self.dead = 0;
        // Trailing free slots can go; the rest stay on the free list.
        while self.entries.last().is_some_and(|e| e.refs == 0) {
            self.entries.pop();
        }
        let n = self.entries.len() as u32;
        self.free.retain(|&id| id < n);
        self.entries.shrink_to_fit();
        self.free.shrink_to_fit();
        true
    }

    /// Live strings.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Heap bytes held (for the head's memory estimate).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.free.capacity() * 4
            + self.index.capacity() * 5
    }

    /// References held on `id` (tests and consistency checks).
    pub fn refs(&self, id: SymbolId) -> u32 {
        self.entries.get(id as usize).map_or(0, |e| e.refs)
    }
}

/// A series' label set as symbol ids: `uvarint name, uvarint value` pairs,
/// sorted by name string (as [`crate::model::Labels`] are). One allocation
/// of a few bytes a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymLabels(Box<[u8]>);

impl SymLabels {
    /// Interns every name and value of `pairs` (already sorted by name),
    /// taking one reference each. On error nothing stays referenced.
    pub fn intern<'a>(
        symbols: &mut Symbols,
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<SymLabels, SymbolError> {
        let mut b = Vec::with_capacity(16);
        let mut taken: Vec<SymbolId> = Vec::with_capacity(16);
        for (n, v) in pairs {
            for s in [n, v] {
                match symbols.intern(s) {
                    Ok(id) => {
                        taken.push(id);
                        put_uvarint(&mut b, id as u64);
                    }
                    Err(e) => {
                        for id in taken {
                            symbols.release(id);
                        }
                        return Err(e);
                    }
                }
            }
        }
        Ok(SymLabels(b.into_boxed_slice()))
    }

    /// Gives back the references taken by [`SymLabels::intern`].
    pub fn release(&self, symbols: &mut Symbols) {
        for id in self.ids() {
            symbols.release(id);
        }
    }

    /// Every id, names and values alternating.
    pub fn ids(&self) -> SymIds<'_> {
        SymIds { b: &self.0 }
    }

    /// (name id, value id) pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (SymbolId, SymbolId)> + '_ {
        let mut ids = self.ids();
        std::iter::from_fn(move || Some((ids.next()?, ids.next()?)))
    }

    /// (name, value) strings.
    pub fn resolve<'s>(
        &'s self,
        symbols: &'s Symbols,
    ) -> impl Iterator<Item = (&'s str, &'s str)> + 's {
        self.pairs()
            .map(move |(n, v)| (symbols.get(n), symbols.get(v)))
    }

    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }
}

pub struct SymIds<'a> {
    b: &'a [u8],
}

impl Iterator for SymIds<'_> {
    type Item = SymbolId;

    fn next(&mut self) -> Option<SymbolId> {
        take_uvarint(&mut self.b).and_then(|v| SymbolId::try_from(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_lookup_release_reuse() {
        let mut s = Symbols::new();
        let a = s.intern("job").unwrap();
        let b = s.intern("node").unwrap();
        assert_eq!(s.intern("job").unwrap(), a);
        assert_eq!(s.refs(a), 2);
        assert_eq!((s.get(a), s.get(b)), ("job", "node"));
        assert_eq!(s.lookup("node"), Some(b));
        assert_eq!(s.lookup("nope"), None);
        s.release(b);
        assert_eq!(s.lookup("node"), None);
        assert_eq!(s.get(b), "");
        // The freed id is reused for the next new string.
        let c = s.intern("other").unwrap();
        assert_eq!(c, b);
        assert_eq!(s.get(c), "other");
        s.release(a);
        assert_eq!(s.lookup("job"), Some(a), "one reference left");
        s.release(a);
        assert_eq!(s.lookup("job"), None);
        assert_eq!(s.len(), 1);
        // Releasing a free or unknown id is harmless.
        s.release(a);
        s.release(9999);
        assert_eq!(s.get(c), "other");
    }

    #[test]
    fn compaction_keeps_ids_and_strings() {
        let mut s = Symbols::new();
        let ids: Vec<SymbolId> = (0..20_000)
            .map(|i| s.intern(&format!("pod-{i:08}")).unwrap())
            .collect();
        // Release all but every tenth: most of the arena is dead.
        for (i, &id) in ids.iter().enumerate() {
            if i % 10 != 0 {
                s.release(id);
            }
        }
        let before = s.arena.len();
        assert!(s.compact());
        assert!(s.arena.len() * 5 < before, "{} of {before}", s.arena.len());
        for (i, &id) in ids.iter().enumerate().filter(|(i, _)| i % 10 == 0) {
            assert_eq!(s.get(id), format!("pod-{i:08}"));
            assert_eq!(s.lookup(&format!("pod-{i:08}")), Some(id));
        }
        assert_eq!(s.lookup("pod-00000001"), None);
        // New strings after compaction land in reused ids and stay findable.
        let n = s.intern("new").unwrap();
        assert_eq!(s.get(n), "new");
        assert!(!s.compact(), "nothing dead");
    }

    #[test]
    fn sym_labels_round_trip_and_release() {
        let mut s = Symbols::new();
        let pairs = [("__name__", "up"), ("instance", "a:1"), ("job", "up")];
        let l = SymLabels::intern(&mut s, pairs.iter().copied()).unwrap();
        assert_eq!(l.resolve(&s).collect::<Vec<_>>(), pairs);
        assert_eq!(s.refs(s.lookup("up").unwrap()), 2);
        let big: Vec<(String, String)> = (0..300)
            .map(|i| (format!("n{i:03}"), format!("v{i}")))
            .collect();
        let l2 = SymLabels::intern(&mut s, big.iter().map(|(a, b)| (&a[..], &b[..]))).unwrap();
        assert_eq!(l2.pairs().count(), 300, "ids beyond one varint byte");
        l.release(&mut s);
        l2.release(&mut s);
        assert!(s.is_empty());
    }
}
