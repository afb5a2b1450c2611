//! Group identity by labels: which series share an aggregation group
//! (`by`/`without`), a binary operator's match group (`on`/`ignoring`), or
//! a classic histogram (all labels but `le`).
//!
//! A group is looked up by a hash of the labels that identify it and
//! confirmed by comparing those labels, so two groups whose hashes collide
//! stay two groups. (With the hash alone, `sum by (endpoint)` over 5,000
//! endpoints silently merged 228 pairs such as `/api/e104` and
//! `/api/e189`: issue #17.)

use std::sync::Arc;

use hashbrown::HashTable;
use promql_parser::parser::LabelModifier;

use super::value::is_name_label;
use crate::model::{hash_pairs, Labels, METRIC_NAME};

/// The labels that identify a group.
#[derive(Clone, Copy)]
pub(crate) enum Proj<'a> {
    /// Only these (`by`, `on`); an absent label counts as the empty value,
    /// and a dropped metric name as absent.
    Only(&'a [String]),
    /// Every label but the metric name and these (`without`, `ignoring`, a
    /// histogram's `le`).
    AllBut(&'a [String]),
}

impl<'a> Proj<'a> {
    /// An aggregation's grouping: no modifier is one group for all.
    pub fn grouping(m: &'a Option<LabelModifier>) -> Proj<'a> {
        match m {
            None => Proj::Only(&[]),
            Some(LabelModifier::Include(by)) => Proj::Only(&by.labels),
            Some(LabelModifier::Exclude(without)) => Proj::AllBut(&without.labels),
        }
    }

    /// A binary operator's matching: no modifier matches on every label
    /// but the name.
    pub fn matching(m: &'a Option<LabelModifier>) -> Proj<'a> {
        match m {
            None => Proj::AllBut(&[]),
            Some(LabelModifier::Include(on)) => Proj::Only(&on.labels),
            Some(LabelModifier::Exclude(ign)) => Proj::AllBut(&ign.labels),
        }
    }

    /// The identifying (name, value) pairs of a series.
    fn pairs<'s>(
        self,
        metric: &'s Labels,
        drop_name: bool,
    ) -> impl Iterator<Item = (&'s str, &'s str)> + 's
    where
        'a: 's,
    {
        let (only, all_but) = match self {
            Proj::Only(names) => (Some(names), None),
            Proj::AllBut(names) => (None, Some(names)),
        };
        let only = only.into_iter().flatten().map(move |n| {
            let v = if drop_name && is_name_label(n) {
                None
            } else {
                metric.get(n)
            };
            (n.as_str(), v.unwrap_or(""))
        });
        let all_but = all_but.into_iter().flat_map(move |names| {
            metric
                .iter()
                .filter(move |l| l.name != METRIC_NAME && !names.contains(&l.name))
                .map(|l| (l.name.as_str(), l.value.as_str()))
        });
        only.chain(all_but)
    }

    /// The hash of a series' identifying labels.
    pub fn hash(self, metric: &Labels, drop_name: bool) -> u64 {
        #[cfg(test)]
        if tests::COLLIDE.get() {
            return 0;
        }
        hash_pairs(self.pairs(metric, drop_name))
    }

    /// Whether two series are in one group.
    pub fn same(self, a: &Labels, a_drop: bool, b: &Labels, b_drop: bool) -> bool {
        (std::ptr::eq(a, b) && a_drop == b_drop) || self.pairs(a, a_drop).eq(self.pairs(b, b_drop))
    }
}

/// Groups numbered in order of first appearance, found by [`Proj::hash`]
/// and confirmed by [`Proj::same`] against one member kept per group.
#[derive(Default)]
pub(crate) struct GroupIndex {
    table: HashTable<u32>,
    hashes: Vec<u64>,
    members: Vec<(Arc<Labels>, bool)>,
}

impl GroupIndex {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// The group of a series, and whether it is new.
    pub fn get_or_insert(
        &mut self,
        p: Proj,
        metric: &Arc<Labels>,
        drop_name: bool,
    ) -> (usize, bool) {
        let hash = p.hash(metric, drop_name);
        let GroupIndex {
            table,
            hashes,
            members,
        } = self;
        if let Some(&g) = table.find(hash, |&g| {
            let (m, d) = &members[g as usize];
            p.same(m, *d, metric, drop_name)
        }) {
            return (g as usize, false);
        }
        let g = members.len();
        members.push((metric.clone(), drop_name));
        hashes.push(hash);
        table.insert_unique(hash, g as u32, |&g| hashes[g as usize]);
        (g, true)
    }

    /// The group of a series if there is one.
    pub fn get(&self, p: Proj, metric: &Labels, drop_name: bool) -> Option<usize> {
        let hash = p.hash(metric, drop_name);
        self.table
            .find(hash, |&g| {
                let (m, d) = &self.members[g as usize];
                p.same(m, *d, metric, drop_name)
            })
            .map(|&g| g as usize)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::promql::{Engine, Value};
    use crate::storage::MemStorage;

    thread_local! {
        /// Every group hash is 0 while set: each lookup is a collision
        /// that only comparing labels resolves.
        pub(crate) static COLLIDE: Cell<bool> = const { Cell::new(false) };
    }

    /// Runs `f` with every group hash colliding.
    pub(crate) fn colliding<R>(f: impl FnOnce() -> R) -> R {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                COLLIDE.set(false);
            }
        }
        COLLIDE.set(true);
        let _reset = Reset;
        f()
    }

    fn l(pairs: &[(&str, &str)]) -> Arc<Labels> {
        Arc::new(Labels::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn colliding_hashes_stay_separate_groups() {
        let by = vec!["endpoint".to_string()];
        let p = Proj::Only(&by);
        let a = l(&[("__name__", "x"), ("endpoint", "/api/e104"), ("i", "1")]);
        let b = l(&[("__name__", "x"), ("endpoint", "/api/e189"), ("i", "1")]);
        let a2 = l(&[("__name__", "y"), ("endpoint", "/api/e104"), ("i", "2")]);
        colliding(|| {
            let mut ix = GroupIndex::default();
            assert_eq!(ix.get_or_insert(p, &a, false), (0, true));
            assert_eq!(ix.get_or_insert(p, &b, false), (1, true));
            assert_eq!(ix.get_or_insert(p, &a2, false), (0, false));
            assert_eq!(ix.get(p, &b, false), Some(1));
            assert_eq!(ix.get(p, &l(&[("endpoint", "/api/e1")]), false), None);
            assert_eq!(ix.len(), 2);
        });
    }

    #[test]
    fn projections() {
        let ign = vec!["i".to_string()];
        let a = l(&[("__name__", "x"), ("e", "1"), ("i", "1")]);
        let b = l(&[("__name__", "y"), ("e", "1"), ("i", "2")]);
        let c = l(&[("__name__", "x"), ("e", "2"), ("i", "1")]);
        let p = Proj::AllBut(&ign);
        assert!(p.same(&a, false, &b, false));
        assert!(!p.same(&a, false, &c, false));
        assert_eq!(p.hash(&a, false), p.hash(&b, true));
        // `on(__name__)`: a dropped name is an absent one.
        let on = vec!["__name__".to_string()];
        let p = Proj::Only(&on);
        assert!(p.same(&a, false, &c, false));
        assert!(!p.same(&a, false, &c, true));
        assert!(p.same(&a, true, &b, true));
        // An absent label is the empty value: `a=""` is never a label.
        let on = vec!["zz".to_string()];
        assert!(Proj::Only(&on).same(&a, false, &b, false));
    }

    /// `n` endpoints of 3 series each, and a 2-bucket histogram each.
    fn endpoints(n: usize, t: i64) -> MemStorage {
        let s = MemStorage::new();
        for e in 0..n {
            let ep = format!("/api/e{e}");
            for (i, code) in ["200", "404", "500"].iter().enumerate() {
                let v = (e * 3 + i) as f64;
                s.insert_series(
                    Labels::from_pairs([
                        ("__name__", "http_requests_total"),
                        ("endpoint", ep.as_str()),
                        ("code", code),
                    ]),
                    vec![(0, v), (t, v + 1.0)],
                );
            }
            for (le, v) in [("1", 0.0), ("+Inf", 10.0)] {
                s.insert_series(
                    Labels::from_pairs([
                        ("__name__", "lat_bucket"),
                        ("endpoint", ep.as_str()),
                        ("le", le),
                    ]),
                    vec![(0, v), (t, v + 10.0)],
                );
            }
        }
        s
    }

    /// Every operator that groups (the first `ops` of them), step-wise
    /// (instant) and column-wise (range), over `n` endpoints.
    fn check_grouping_operators(n: usize, ops: usize) {
        const T: i64 = 60_000;
        let s = endpoints(n, T);
        let e = Engine::default();
        let instant = |q: &str| -> f64 {
            let expr = crate::promql::parse(q).unwrap();
            match e.instant(&s, &expr, T).unwrap().value {
                Value::Vector(v) if v.len() == 1 => v[0].v,
                v => panic!("{q}: {v:?}"),
            }
        };
        let range_last = |q: &str| -> f64 {
            let expr = crate::promql::parse(q).unwrap();
            match e.range(&s, &expr, 0, T, T).unwrap().value {
                Value::Matrix(m) if m.len() == 1 => m[0].points.last().unwrap().1,
                v => panic!("{q}: {v:?}"),
            }
        };
        let nf = n as f64;
        // Endpoints whose number starts with 1.
        let ones = (0..n).filter(|e| e.to_string().starts_with('1')).count() as f64;
        // The 5 largest endpoints' sums: 3 consecutive values, each + 1.
        let top5: f64 = (n - 5..n).map(|e| (9 * e + 6) as f64).sum();
        let cases: &[(&str, f64)] = &[
            ("count(count by (endpoint) (http_requests_total))", nf),
            ("count(sum without (code) (http_requests_total))", nf),
            ("count(topk(1, http_requests_total) by (endpoint))", nf),
            ("count(bottomk by (endpoint) (2, http_requests_total))", 2.0 * nf),
            ("sum(topk(5, sum by (endpoint) (http_requests_total)))", top5),
            (
                "count(http_requests_total * on (endpoint, code) group_left http_requests_total)",
                3.0 * nf,
            ),
            (
                "count(http_requests_total / ignoring (code) group_left sum without (code) (http_requests_total))",
                3.0 * nf,
            ),
            (
                "count(sum by (endpoint) (http_requests_total) + on (endpoint) count by (endpoint) (http_requests_total))",
                nf,
            ),
            ("count(http_requests_total and on (endpoint) lat_bucket)", 3.0 * nf),
            (
                r#"count(http_requests_total{code="200"} unless on (endpoint) lat_bucket{endpoint=~"/api/e1.*"})"#,
                nf - ones,
            ),
            (
                r#"count(http_requests_total{code="200"} or on (endpoint) http_requests_total{code="404"})"#,
                nf,
            ),
            ("count(histogram_quantile(0.5, lat_bucket))", nf),
            (
                r#"count(count_values by (endpoint) ("v", http_requests_total))"#,
                3.0 * nf,
            ),
        ];
        for &(q, want) in &cases[..ops.min(cases.len())] {
            assert_eq!(instant(q), want, "instant {q}");
            assert_eq!(range_last(q), want, "range {q}");
        }
    }

    /// The issue's case (5,000 endpoints, where FxHash merged 228 pairs)
    /// with the real hash: the aggregations.
    #[test]
    fn aggregations_are_exact_at_5000_endpoints() {
        check_grouping_operators(5000, 5);
    }

    /// Every hash colliding (fewer endpoints: each lookup then compares
    /// against every group).
    #[test]
    fn grouping_operators_are_exact_when_every_hash_collides() {
        colliding(|| check_grouping_operators(100, usize::MAX));
    }
}
