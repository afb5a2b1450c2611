//! From the label pairs of one line to a [`Labels`], allocating as little as
//! the shared `Labels` type allows.

use std::borrow::Cow;
use std::collections::HashMap;

use super::lex::LexError;
use super::number;
use crate::model::{Labels, LabelsBuilder};

/// A label as written on the line (unescaped). An empty value means the
/// label is absent, but it still counts for the duplicate-name check.
pub(super) struct RawLabel<'a> {
    pub name: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

/// Sorts `pairs` by name and rejects a name given twice.
pub(super) fn sort_and_check(pairs: &mut [RawLabel<'_>]) -> Result<(), LexError> {
    pairs.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    for w in pairs.windows(2) {
        if w[0].name == w[1].name {
            return Err(LexError::DuplicateLabel(w[0].name.to_string()));
        }
    }
    Ok(())
}

/// Builds label sets, reusing the previous sample's strings: consecutive
/// samples usually share most labels (a histogram's buckets differ only in
/// `le`, its `_sum` only lacks it), so the builder is edited into the new set
/// — labels removed, added or changed — rather than rebuilt, and handed
/// out by reference: in the steady state a sample costs no allocation (a
/// changed value is copied into the old value's buffer).
#[derive(Default)]
pub(super) struct SeriesBuilder {
    builder: LabelsBuilder,
    /// Indices into `pairs` of the labels to set.
    to_set: Vec<usize>,
}

impl SeriesBuilder {
    /// The last label set built.
    pub fn labels(&self) -> &Labels {
        self.builder.labels()
    }

    /// `pairs` must be sorted and unique (see [`sort_and_check`]) and include
    /// the `__name__` pair.
    pub fn build(&mut self, pairs: &mut [RawLabel<'_>]) -> &Labels {
        use std::cmp::Ordering::*;
        self.to_set.clear();
        let mut stale = false; // a label of the builder must go
        {
            let mut cur = self.builder.iter().peekable();
            for (k, p) in pairs.iter().enumerate() {
                if p.value.is_empty() {
                    continue;
                }
                loop {
                    match cur.peek().map(|l| l.name.as_str().cmp(p.name.as_ref())) {
                        Some(Less) => {
                            stale = true;
                            cur.next();
                        }
                        Some(Equal) => {
                            if cur.next().is_some_and(|l| l.value != p.value.as_ref()) {
                                self.to_set.push(k);
                            }
                            break;
                        }
                        Some(Greater) | None => {
                            self.to_set.push(k);
                            break;
                        }
                    }
                }
            }
            stale |= cur.next().is_some();
        }
        if stale {
            // `retain` visits labels in order, so membership is a merge walk.
            let mut wanted = pairs.iter().filter(|p| !p.value.is_empty()).peekable();
            self.builder.retain(|l| {
                while wanted
                    .next_if(|p| p.name.as_ref() < l.name.as_str())
                    .is_some()
                {}
                wanted
                    .peek()
                    .is_some_and(|p| p.name.as_ref() == l.name.as_str())
            });
        }
        for &k in &self.to_set {
            let p = &pairs[k];
            self.builder.set_str(&p.name, &p.value);
        }
        self.builder.labels()
    }
}

/// Memoizes the canonical rendering of `le`/`quantile` values: a page
/// repeats the same few bucket bounds for every series of a histogram.
#[derive(Default)]
pub(super) struct Canonical<'a> {
    cache: HashMap<&'a str, String>,
}

impl<'a> Canonical<'a> {
    /// The canonical text for `raw`, whose parsed value is `v`. Taking the
    /// `Cow` (not a `&str`) is what tells a value borrowed from the page,
    /// which can key the cache, from an unescaped copy, which cannot.
    #[allow(clippy::ptr_arg)]
    pub fn get(&mut self, raw: &Cow<'a, str>, v: f64) -> String {
        match raw {
            Cow::Borrowed(s) => {
                if let Some(c) = self.cache.get(s) {
                    return c.clone();
                }
                let c = number::format_om_float(v);
                self.cache.insert(s, c.clone());
                c
            }
            Cow::Owned(_) => number::format_om_float(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<RawLabel<'a>> {
        pairs
            .iter()
            .map(|&(n, v)| RawLabel {
                name: Cow::Borrowed(n),
                value: Cow::Borrowed(v),
            })
            .collect()
    }

    #[test]
    fn builds_across_changing_shapes() {
        let mut sb = SeriesBuilder::default();
        let cases: &[&[(&str, &str)]] = &[
            &[("__name__", "a"), ("b", "1")],
            &[("__name__", "a"), ("b", "2")],
            &[("__name__", "a"), ("b", "2"), ("c", "")],
            &[("__name__", "x"), ("c", "3")],
            &[("__name__", "x")],
            &[("__name__", "x"), ("a", "0"), ("z", "9")],
            &[("__name__", "x"), ("a", "0"), ("z", "9")],
            &[
                ("__name__", "h_bucket"),
                ("a", "0"),
                ("le", "1"),
                ("z", "9"),
            ],
            &[
                ("__name__", "h_bucket"),
                ("a", "0"),
                ("le", "2"),
                ("z", "9"),
            ],
            &[("__name__", "h_sum"), ("a", "0"), ("z", "9")],
            &[("Upper", "u"), ("__name__", "h_sum"), ("z", "")],
            &[("__name__", "h_sum"), ("a", "1"), ("b", "2"), ("c", "3")],
            &[("__name__", "h_sum"), ("b", "2")],
            &[("__name__", "h_sum"), ("b", "")],
        ];
        for c in cases {
            let mut p = raw(c);
            sort_and_check(&mut p).unwrap();
            let want = Labels::from_pairs(c.iter().copied());
            assert_eq!(sb.build(&mut p), &want);
        }
    }

    #[test]
    fn duplicates_rejected_even_when_empty() {
        let mut p = raw(&[("b", ""), ("a", "1"), ("b", "2")]);
        assert!(sort_and_check(&mut p).is_err());
    }
}
