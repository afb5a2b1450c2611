//! Sharding and batching: series go to a shard by a stable hash of their
//! labels (so a series' samples stay in order), and each shard gathers
//! batches by count or deadline, hands them to the sender and records the
//! WAL position a batch completes.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use super::progress::{Pos, Tracker};
use super::send::Sender;
use crate::model::Labels;

/// A series as the queue sends it.
pub(super) struct SeriesInfo {
    pub(super) labels: Labels,
    pub(super) shard: usize,
}

pub(super) enum Item {
    Sample(Arc<SeriesInfo>, i64, f64),
    /// Everything this shard has of the WAL up to here has been handed over.
    Mark(Pos),
}

/// A stable 64-bit FNV-1a over the label pairs: shard assignment must not
/// change across restarts (std's hasher makes no such promise).
pub(super) fn stable_hash(l: &Labels) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for l in l.iter() {
        for b in l
            .name
            .bytes()
            .chain([0xff])
            .chain(l.value.bytes())
            .chain([0xff])
        {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

pub(super) async fn run_shard(
    shard: usize,
    mut rx: mpsc::Receiver<Item>,
    sender: Arc<Sender>,
    tracker: Arc<Mutex<Tracker>>,
    mut stop: watch::Receiver<bool>,
) {
    let cfg = &sender.cfg;
    let mut batch: Vec<(Arc<SeriesInfo>, i64, f64)> = Vec::with_capacity(cfg.max_samples_per_send);
    let mut mark: Option<Pos> = None;
    // An item read ahead while looking for marks (see below).
    let mut carry: Option<Item> = None;
    loop {
        let deadline = tokio::time::sleep(cfg.batch_send_deadline);
        tokio::pin!(deadline);
        // Gather a batch: up to max_samples_per_send, or what arrived within
        // batch_send_deadline of the first sample.
        loop {
            let item = match carry.take() {
                Some(it) => Some(it),
                None => tokio::select! {
                    item = rx.recv() => item,
                    _ = &mut deadline, if !batch.is_empty() => break,
                    _ = stop.changed() => {
                        // Marks already queued behind acknowledged batches
                        // still count: fewer re-sends after the restart.
                        if batch.is_empty() {
                            while let Ok(Item::Mark(p)) = rx.try_recv() {
                                tracker.lock().set(shard, p);
                            }
                        }
                        return;
                    }
                },
            };
            match item {
                None => return,
                Some(Item::Sample(s, t, v)) => {
                    if batch.is_empty() {
                        deadline
                            .as_mut()
                            .reset(tokio::time::Instant::now() + cfg.batch_send_deadline);
                    }
                    batch.push((s, t, v));
                    if batch.len() >= cfg.max_samples_per_send {
                        break;
                    }
                }
                Some(Item::Mark(p)) => {
                    if batch.is_empty() {
                        tracker.lock().set(shard, p);
                    } else {
                        mark = Some(p);
                    }
                }
            }
        }
        // The mark closing the batch's last record usually follows right
        // behind its samples: take it along, so that acknowledging the batch
        // records the whole record as sent.
        loop {
            match rx.try_recv() {
                Ok(Item::Mark(p)) => mark = Some(p),
                Ok(other) => {
                    carry = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        if !sender.send_with_retries(&batch, &mut stop).await {
            return;
        }
        sender.metrics.pending.dec_by(batch.len() as i64);
        batch.clear();
        if let Some(p) = mark.take() {
            let mut t = tracker.lock();
            t.set(shard, p);
            t.persist();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_hash_is_stable() {
        // Pinned: shard assignment must survive restarts and upgrades.
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        assert_eq!(stable_hash(&l), stable_hash(&l.clone()));
        assert_eq!(stable_hash(&Labels::new()), 0xcbf29ce484222325);
    }
}
