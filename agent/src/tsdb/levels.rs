//! Level compaction: which persisted blocks to merge into a larger one.
//!
//! The head writes blocks of `block_duration`. Left alone, 15 days of 2 h
//! blocks are 180 blocks: every query over the range looks postings up in
//! each, and every block repeats the index (label strings, postings) of
//! series that lived through it, ~0.18 B/sample at 100k series. So, as
//! Prometheus does, adjacent blocks are merged into blocks of 3×, 9×, ...
//! `block_duration`, up to a maximum (Prometheus: 10% of the retention
//! time, at most 31 days), and the planner below follows Prometheus'
//! `LeveledCompactor.selectDirs` so that a user sees the same layout.

/// One block as the planner sees it: `[min, max)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub min: i64,
    pub max: i64,
}

/// The block ranges: `block` × 3^k for k = 0, 1, ..., as long as they do
/// not exceed `max` (the first is kept even when it does).
pub fn ranges(block: i64, max: i64) -> Vec<i64> {
    let mut out = vec![block.max(1)];
    loop {
        let next = out[out.len() - 1].saturating_mul(3);
        if next > max || next == out[out.len() - 1] {
            return out;
        }
        out.push(next);
    }
}

/// Indices (a contiguous run of `blocks`, sorted by `min`) to merge next,
/// or `None`. The newest block is never picked: it was just written, and
/// leaving it alone for a block's time lets an operator back new blocks up
/// piecewise. Of the others, a run is picked when it lies within one
/// aligned window of a larger range and either fills the whole window
/// (gaps allowed) or ends before the newest of them starts: then the
/// window can get no more blocks.
pub fn plan(blocks: &[Span], ranges: &[i64]) -> Option<std::ops::Range<usize>> {
    let (_newest, older) = blocks.split_last()?;
    let high = older.last()?.min;
    for &r in ranges.iter().skip(1) {
        for run in split_by_range(older, r) {
            let (lo, hi) = (older[run.start].min, older[run.end - 1].max);
            if run.len() > 1 && (hi - lo == r || hi <= high) {
                return Some(run);
            }
        }
    }
    None
}

/// Runs of consecutive blocks that fall into the same aligned window of
/// `r`; a block wider than its window belongs to none.
fn split_by_range(blocks: &[Span], r: i64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < blocks.len() {
        let start = blocks[i].min.div_euclid(r).saturating_mul(r);
        let end = start.saturating_add(r);
        if blocks[i].max > end {
            i += 1;
            continue;
        }
        let first = i;
        while i < blocks.len() && blocks[i].min >= start && blocks[i].max <= end {
            i += 1;
        }
        out.push(first..i);
    }
    out
}

/// Indices of blocks another block replaces: a merge writes the new block
/// before it deletes its parents, so after a crash in between both are on
/// disk. A block is superseded when another, of a higher level, lists
/// every one of its sources (the head-written blocks it was made of).
pub fn superseded(blocks: &[(u32, &[String])]) -> Vec<usize> {
    let covers = |big: &[String], small: &[String]| small.iter().all(|s| big.contains(s));
    (0..blocks.len())
        .filter(|&i| {
            let (level, sources) = blocks[i];
            !sources.is_empty()
                && blocks
                    .iter()
                    .any(|&(l, big)| l > level && covers(big, sources))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn spans(hours: &[(i64, i64)]) -> Vec<Span> {
        hours
            .iter()
            .map(|&(a, b)| Span {
                min: a * H,
                max: b * H,
            })
            .collect()
    }

    #[test]
    fn ranges_grow_by_three_up_to_the_maximum() {
        assert_eq!(ranges(2 * H, 36 * H), [2 * H, 6 * H, 18 * H]);
        assert_eq!(ranges(2 * H, 54 * H), [2 * H, 6 * H, 18 * H, 54 * H]);
        // Maximum below the block size: blocks are never merged.
        assert_eq!(ranges(2 * H, H), [2 * H]);
        assert_eq!(ranges(2 * H, 2 * H), [2 * H]);
        assert_eq!(ranges(i64::MAX / 2, i64::MAX).len(), 2);
    }

    #[test]
    fn plans_as_prometheus_does() {
        let r = ranges(2 * H, 36 * H);
        // Nothing, or only the newest block.
        assert_eq!(plan(&[], &r), None);
        assert_eq!(plan(&spans(&[(0, 2)]), &r), None);
        // Three 2 h blocks fill a 6 h window, but the newest is never taken.
        assert_eq!(plan(&spans(&[(0, 2), (2, 4), (4, 6)]), &r), None);
        assert_eq!(
            plan(&spans(&[(0, 2), (2, 4), (4, 6), (6, 8)]), &r),
            Some(0..3)
        );
        // A window with a gap is merged when its span is full ...
        assert_eq!(plan(&spans(&[(0, 2), (4, 6), (6, 8)]), &r), Some(0..2));
        // ... or once a later block (not the newest) follows it.
        assert_eq!(plan(&spans(&[(0, 2), (2, 4), (6, 8)]), &r), None);
        assert_eq!(
            plan(&spans(&[(0, 2), (2, 4), (6, 8), (8, 10)]), &r),
            Some(0..2)
        );
        // Never while the window may still get blocks.
        assert_eq!(plan(&spans(&[(0, 2), (2, 4)]), &r), None);
        // Merged 6 h blocks merge again into 18 h once three are there.
        let l2 = spans(&[(0, 6), (6, 12), (12, 18), (18, 20)]);
        assert_eq!(plan(&l2, &r), Some(0..3));
        // Smaller ranges first: the 2 h blocks of the next window before
        // the 6 h blocks of an 18 h window.
        let mixed = spans(&[(0, 6), (6, 12), (12, 14), (14, 16), (16, 18), (18, 20)]);
        assert_eq!(plan(&mixed, &r), Some(2..5));
        // At the maximum range nothing merges further.
        let top = spans(&[(0, 18), (18, 36), (36, 54), (54, 56)]);
        assert_eq!(plan(&top, &r), None);
        // A single block per window: nothing to merge.
        assert_eq!(plan(&spans(&[(0, 6), (6, 12), (12, 14)]), &r), None);
        // Negative times align like positive ones.
        let neg = spans(&[(-6, -4), (-4, -2), (-2, 0), (0, 2)]);
        assert_eq!(plan(&neg, &r), Some(0..3));
    }

    #[test]
    fn blocks_wider_than_a_window_are_left_out() {
        // A 4 h block across a 6 h boundary (written with another
        // block_duration) fits no 6 h window; its neighbours still merge.
        let r = ranges(2 * H, 36 * H);
        let b = spans(&[(4, 8), (8, 10), (10, 12), (12, 14), (14, 16)]);
        assert_eq!(split_by_range(&b, 6 * H), vec![1..3, 3..5]);
        assert_eq!(plan(&b, &r), Some(1..3));
    }

    #[test]
    fn parents_left_by_an_interrupted_merge_are_superseded() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (a, b, c, d) = (s(&["a"]), s(&["b"]), s(&["c"]), s(&["d"]));
        let abc = s(&["a", "b", "c"]);
        let ab = s(&["a", "b"]);
        // A level-2 block of a, b, c with its three parents still there.
        let blocks = [
            (1, &a[..]),
            (1, &b[..]),
            (1, &c[..]),
            (2, &abc[..]),
            (1, &d[..]),
        ];
        assert_eq!(superseded(&blocks), vec![0, 1, 2]);
        // A level-3 block supersedes a level-2 parent too.
        let blocks = [(2, &ab[..]), (3, &abc[..])];
        assert_eq!(superseded(&blocks), vec![0]);
        // Nothing covers d; a partial overlap supersedes nothing.
        let bd = s(&["b", "d"]);
        let blocks = [(2, &ab[..]), (2, &bd[..]), (1, &d[..])];
        assert_eq!(superseded(&blocks), vec![2]);
        assert!(superseded(&[(1, &a[..]), (1, &b[..])]).is_empty());
    }
}
