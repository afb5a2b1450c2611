//! The WAL reader of a queue (its own thread): loads series from the
//! checkpoint and segments, tails segments as the store writes them
//! (through `wal::read_file_from` + `record::decode`, never the byte
//! layout), maps series refs to the labels sent (external labels, write
//! relabeling) and hands samples and position marks to the shards,
//! blocking while a shard is full.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::progress::Pos;
use super::queue::RemoteMetricsRef;
use super::shard::{stable_hash, Item, SeriesInfo};
use crate::model::relabel::{self, Relabeler};
use crate::model::Labels;
use crate::tsdb::record::{self, Record};
use crate::tsdb::wal;

pub(super) struct Reader {
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) txs: Vec<mpsc::Sender<Item>>,
    /// Per shard: samples in records ending at or before this were sent by
    /// an earlier run.
    pub(super) start: Vec<Pos>,
    pub(super) min_t: i64,
    pub(super) external: Labels,
    pub(super) relabelers: Vec<Relabeler>,
    /// Series ref → the series as sent (None: dropped by relabeling).
    pub(super) refs: HashMap<u64, Option<Arc<SeriesInfo>>>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) metrics: Arc<RemoteMetricsRef>,
}

/// Why the reader stopped handing out records.
enum Halt {
    Stop,
}

impl Reader {
    pub(super) fn run(mut self) {
        if let Err(Halt::Stop) = self.run_inner() {
            tracing::debug!(remote_name = %self.name, "remote write reader stopped");
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn series(&mut self, list: Vec<(u64, Labels)>) {
        for (r, l) in list {
            let mut lb = l.to_builder();
            for e in self.external.iter() {
                if l.get(&e.name).is_none() {
                    lb.set(e.name.clone(), e.value.clone());
                }
            }
            let info = relabel::process(&lb.build(), &self.relabelers)
                .filter(|l| !l.is_empty())
                .map(|labels| {
                    let shard = (stable_hash(&labels) % self.txs.len() as u64) as usize;
                    Arc::new(SeriesInfo { labels, shard })
                });
            self.refs.insert(r, info);
        }
    }

    /// Reads only the series records of a file up to `upto` (or the end).
    fn load_series(&mut self, path: &Path, upto: Option<u64>) {
        let mut found = Vec::new();
        let r = wal::read_file_from(path, 0, &mut |p, end| {
            if upto.is_some_and(|u| end > u) {
                return false;
            }
            if let Ok(Record::Series(list)) = record::decode(p) {
                found.push(list);
            }
            true
        });
        if let Err(e) = r {
            tracing::warn!(remote_name = %self.name, path = %path.display(), error = %e, "reading WAL series for remote write");
        }
        for list in found {
            self.series(list);
        }
    }

    /// Series from the checkpoint (if any) and the segments in `range`.
    fn load_history(&mut self, listing: &wal::Listing, before: Pos) {
        if let Some(cp) = listing.checkpoint {
            self.load_series(&self.dir.join(wal::checkpoint_name(cp)), None);
        }
        let first = listing.checkpoint.map_or(0, |c| c + 1);
        for &s in listing
            .segments
            .iter()
            .filter(|&&s| s >= first && s <= before.segment)
        {
            let upto = (s == before.segment).then_some(before.offset);
            self.load_series(&self.dir.join(wal::segment_name(s)), upto);
        }
    }

    fn run_inner(&mut self) -> Result<(), Halt> {
        let start = self.start.iter().copied().min().unwrap_or_default();
        let listing = wal::list(&self.dir).unwrap_or_default();
        self.load_history(&listing, start);
        let first = listing.checkpoint.map_or(0, |c| c + 1);
        let first = listing.segments.iter().copied().find(|&s| s >= first);
        let mut pos = start;
        if let Some(f) = first {
            if pos.segment < f {
                if pos != Pos::default() {
                    self.gap(pos.segment, f);
                }
                pos = Pos {
                    segment: f,
                    offset: 0,
                };
            }
        }
        let mut buf: Vec<Vec<u8>> = Vec::new();
        loop {
            if self.stopping() {
                return Err(Halt::Stop);
            }
            // List before reading: the writer creates the next segment only
            // after flushing this one, so "nothing new here and a next one
            // was listed" means this one is complete.
            let listing = wal::list(&self.dir).unwrap_or_default();
            let next = listing.segments.iter().copied().find(|&s| s > pos.segment);
            let path = self.dir.join(wal::segment_name(pos.segment));
            buf.clear();
            let mut ends = Vec::new();
            let r = wal::read_file_from(&path, pos.offset, &mut |p, end| {
                buf.push(p.to_vec());
                ends.push(end);
                buf.len() < 256
            });
            let (end, err) = match r {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match next {
                        // Removed under us by a checkpoint: the series of the
                        // lost segments are in that checkpoint.
                        Some(n) => {
                            self.gap(pos.segment, n);
                            if let Some(cp) = listing.checkpoint {
                                self.load_series(&self.dir.join(wal::checkpoint_name(cp)), None);
                            }
                            pos = Pos {
                                segment: n,
                                offset: 0,
                            };
                        }
                        None => std::thread::sleep(Duration::from_millis(100)),
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(remote_name = %self.name, path = %path.display(), error = %e, "reading the WAL for remote write");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            let records = std::mem::take(&mut buf);
            let got = !records.is_empty();
            for (p, rec_end) in records.iter().zip(ends) {
                let here = Pos {
                    segment: pos.segment,
                    offset: rec_end,
                };
                self.handle(p, here)?;
            }
            buf = records;
            pos.offset = end.max(pos.offset);
            if !got {
                match next {
                    Some(n) => {
                        if let Some(err) = err {
                            tracing::warn!(remote_name = %self.name, segment = pos.segment, offset = pos.offset, %err, "WAL segment ends in a bad record; remote write goes on with the next");
                        }
                        pos = Pos {
                            segment: n,
                            offset: 0,
                        };
                    }
                    None => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }

    fn gap(&self, from: u32, to: u32) {
        self.metrics.wal_gaps.inc();
        tracing::warn!(remote_name = %self.name, from_segment = from, to_segment = to,
            "WAL segments were checkpointed away before remote write read them: their samples are not sent");
    }

    fn handle(&mut self, payload: &[u8], here: Pos) -> Result<(), Halt> {
        match record::decode(payload) {
            Ok(Record::Series(list)) => self.series(list),
            Ok(Record::Samples(list)) => {
                for s in list {
                    if s.t < self.min_t {
                        continue;
                    }
                    let Some(info) = self.refs.get(&s.r) else {
                        tracing::debug!(remote_name = %self.name, r = s.r, "sample of an unknown series ref in the WAL");
                        continue;
                    };
                    let Some(info) = info else {
                        self.metrics.dropped.inc();
                        continue;
                    };
                    if here <= self.start[info.shard] {
                        continue;
                    }
                    self.metrics.pending.inc();
                    self.send(info.shard, Item::Sample(info.clone(), s.t, s.v))?;
                }
                for i in 0..self.txs.len() {
                    self.send(i, Item::Mark(here))?;
                }
            }
            Err(e) => {
                tracing::warn!(remote_name = %self.name, ?here, error = %e, "undecodable WAL record skipped by remote write")
            }
        }
        Ok(())
    }

    /// Blocks while the shard is full (the WAL is the buffer), but wakes up
    /// to notice a stop.
    fn send(&self, shard: usize, mut item: Item) -> Result<(), Halt> {
        loop {
            match self.txs[shard].try_send(item) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Halt::Stop),
                Err(mpsc::error::TrySendError::Full(it)) => {
                    if self.stopping() {
                        return Err(Halt::Stop);
                    }
                    item = it;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}
