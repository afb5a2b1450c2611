//! The embedded time-series store, after Prometheus' `tsdb` package.
//!
//! ```text
//! append ──► Appender ──commit──► WAL (wal/, records framed + CRC32) ──► Head
//!                                                                       │ series + chunks (XOR or integer)
//!                                                                       │ postings (label → value → refs)
//!                                                                       │ closed chunks ──► chunks_head/ (offload)
//!                         compact(): oldest block_duration window ◄─────┘
//!                                    ──► re-encoded as packed chunks (one per series and block)
//!                                    ──► DIR/<ULID>/{meta.json,index,chunks/}
//!                                    ──► head truncated, WAL checkpointed, retention applied
//!                                    ──► adjacent blocks merged into 3×, 9×, ... block_duration (levels)
//! select / label_names / label_values ──► merge(head, blocks overlapping the range)
//! ```
//!
//! Module map: [`chunkenc`] (bit-level head chunks: Gorilla XOR and integer
//! encodings, on [`bstream`]), [`packed`] (block chunks, fitted to their
//! data at compaction), [`series`] (one in-memory series), [`symbols`]
//! (the head's interned label strings), [`head`]
//! (the in-memory store) and [`head_chunks`] (closed head chunks offloaded
//! to files), [`postings`] (the inverted index, selected by
//! [`crate::storage::Matcher`]s), [`record`] and [`wal`] (write-ahead log, snappy per record), [`chunks`], [`index`]
//! and [`block`] (the on-disk block format), [`levels`] (which blocks
//! to merge), [`health`] (failed writes: counted, logged rate-limited,
//! readiness), [`analyze`] (where a block's
//! bytes go: `wasmon tsdb analyze`), [`encoding`] (varints and a
//! bounds-checked decoder), [`db`] (the public API, compaction, retention,
//! maintenance).
//!
//! Invariants: appends are in order per series; a block's range is closed
//! to appends before it is written (`OutOfBounds`); a sample is accepted
//! only inside the head's window — no older than half a block behind the
//! head's newest sample, no further ahead of the wall clock than
//! [`Options::max_future`] — so one target's clock cannot move the head's
//! time for everyone; a series reaches the WAL with the first commit that
//! has a sample for it (a rolled-back append leaves no series behind);
//! chunks never straddle a
//! block boundary; every WAL record is either replayed whole or cut off with
//! everything after it; bad on-disk data is logged and skipped, never a
//! panic.

pub mod analyze;
pub mod block;
pub mod bstream;
pub mod chunkenc;
pub mod chunks;
pub mod db;
pub mod encoding;
pub mod head;
pub mod head_chunks;
pub mod health;
pub mod index;
pub mod levels;
pub mod packed;
pub mod postings;
pub mod record;
pub mod series;
mod storage;
pub mod symbols;
pub mod wal;

pub use db::{Appender, Db, Maintenance, Options, Series, Stats};
pub use series::SeriesRef;

/// Why a sample was not accepted. Callers branch on these (the scrape loop
/// counts them per kind, as Prometheus' scrape does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// Older than the series' newest sample.
    #[error("out of order sample")]
    OutOfOrder,
    /// Same timestamp as the series' newest sample, different value.
    #[error("duplicate sample for timestamp")]
    DuplicateSampleForTimestamp,
    /// Older than the head's appendable window: before the range already
    /// persisted in a block, or more than half a block duration behind the
    /// head's newest sample (Prometheus' `ErrOutOfBounds`).
    #[error("out of bounds")]
    OutOfBounds,
    /// Further ahead of the agent's clock than [`Options::max_future`]
    /// allows (what Cortex/Mimir call the creation grace period).
    #[error("too far in the future")]
    TooFarInFuture,
    #[error("empty label set")]
    EmptyLabels,
    /// [`Appender::append_ref`] with a ref the head does not hold (any more).
    #[error("unknown series ref {0}")]
    UnknownSeriesRef(u64),
    /// Logging a new series to the WAL failed.
    #[error("storage error: {0}")]
    Storage(String),
}
