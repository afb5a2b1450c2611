//! Closed head chunks moved out of the heap into files in
//! `DIR/chunks_head/`, in the spirit of Prometheus' memory-mapped head
//! chunks.
//!
//! Why: a series keeps 1.5–3 block durations of samples in the head, and
//! with 100k series the closed chunks would dominate the agent's resident
//! memory. A maintenance pass appends every closed in-memory chunk to the
//! current file with one write and then drops each series' copy; reads are
//! `pread`s served from the page cache, which the kernel can reclaim.
//!
//! A record is `prev u64 | mint i64 | maxt i64 | encoding u8 | chunk`
//! (little endian), `prev` being the [`DiskRef`] of the same series'
//! previous record (0 for none). The records of a series thus form a chain
//! from its newest, which is all the series keeps ([`DiskChain`]: a ref
//! and a count); a query walks it back until its range is covered.
//!
//! The files are only an offload, never a source of truth: the WAL (and
//! its checkpoint) still holds every sample of the head, so the directory is
//! wiped at startup and rebuilt as chunks close again. That keeps this
//! format free of any recovery logic. A file is deleted once every chunk in
//! it ends before the head's minimum time (its data is in a block then).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use parking_lot::{Mutex, RwLock};

use super::series::{ClosedChunk, DiskChunk, DiskRef, MemBytes, MemSeries};

/// Files are cut at this size.
const FILE_SIZE: u64 = 128 << 20;
/// A pass writes in batches of about this many bytes.
const BATCH: usize = 4 << 20;

struct Writer {
    n: u32,
    file: Arc<File>,
    off: u64,
}

struct FileInfo {
    file: Arc<File>,
    /// Newest sample time of any chunk in the file.
    maxt: i64,
}

pub struct HeadChunks {
    dir: PathBuf,
    w: Mutex<Writer>,
    files: RwLock<BTreeMap<u32, FileInfo>>,
}

/// Bytes of a record before the chunk.
pub const RECORD_HEADER: usize = 25;

/// A chunk being moved: (series, its in-memory bytes, the record it
/// follows, its record, the chunk's maxt).
type Pending = (Arc<MemSeries>, MemBytes, DiskRef, DiskRef, i64);

fn file_name(n: u32) -> String {
    format!("{n:06}")
}

impl HeadChunks {
    /// Starts afresh in `dir`, deleting what a previous run left.
    pub fn open(dir: &Path) -> Result<HeadChunks> {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = Arc::new(Self::create(dir, 1)?);
        let mut files = BTreeMap::new();
        files.insert(
            1,
            FileInfo {
                file: file.clone(),
                maxt: i64::MIN,
            },
        );
        Ok(HeadChunks {
            dir: dir.to_path_buf(),
            w: Mutex::new(Writer { n: 1, file, off: 0 }),
            files: RwLock::new(files),
        })
    }

    fn create(dir: &Path, n: u32) -> Result<File> {
        let path = dir.join(file_name(n));
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))
    }

    /// Reads the record `r` (written by [`HeadChunks::offload`]); None when
    /// it cannot be read (its file was deleted by a truncation, or the read
    /// failed, which is logged).
    pub fn read_record(&self, r: DiskRef) -> Option<DiskChunk> {
        let f = self.files.read().get(&r.file()).map(|i| i.file.clone())?;
        let len = r.byte_len() as usize;
        if len < RECORD_HEADER {
            return None;
        }
        let mut buf = vec![0u8; len];
        if let Err(e) = f.read_exact_at(&mut buf, r.off()) {
            tracing::warn!(file = r.file(), off = r.off(), error = %e, "reading a head chunk");
            return None;
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&buf[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let (prev, mint, maxt, enc) = (word(0), word(8) as i64, word(16) as i64, buf[24]);
        buf.drain(..RECORD_HEADER);
        Some(DiskChunk {
            prev: DiskRef::from_raw(prev),
            chunk: ClosedChunk {
                mint,
                maxt,
                enc,
                data: Arc::new(buf.into_boxed_slice()),
            },
        })
    }

    /// Moves the closed in-memory chunks of `series` to disk. Returns the
    /// number of chunks moved.
    pub fn offload(&self, series: &[Arc<MemSeries>]) -> Result<usize> {
        let mut w = self.w.lock();
        let mut moved = 0;
        let mut buf: Vec<u8> = Vec::with_capacity(BATCH + 4096);
        let mut pending: Vec<Pending> = Vec::new();
        for s in series {
            let (chain, chunks): (_, Vec<ClosedChunk>) = {
                let st = s.state.lock();
                let (chain, mem) = st.offload_state();
                (chain, mem.to_vec())
            };
            let mut prev = chain.newest;
            for c in chunks {
                let off = w.off + buf.len() as u64;
                // Out of range only after 65535 files of 128 MiB (or for a
                // chunk over 64 KiB): the chunk simply stays in memory.
                let Some(r) = DiskRef::new(w.n, off, RECORD_HEADER + c.data.len()) else {
                    break;
                };
                buf.extend_from_slice(&prev.raw().to_le_bytes());
                buf.extend_from_slice(&c.mint.to_le_bytes());
                buf.extend_from_slice(&c.maxt.to_le_bytes());
                buf.push(c.enc);
                buf.extend_from_slice(&c.data);
                pending.push((s.clone(), c.data, prev, r, c.maxt));
                prev = r;
            }
            // Between series, so that a series' records share a batch (and
            // a file, which is cut only after a batch).
            if buf.len() >= BATCH {
                moved += self.flush(&mut w, &mut buf, &mut pending)?;
            }
        }
        moved += self.flush(&mut w, &mut buf, &mut pending)?;
        Ok(moved)
    }

    fn flush(
        &self,
        w: &mut Writer,
        buf: &mut Vec<u8>,
        pending: &mut Vec<Pending>,
    ) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // At the writer's offset, not the file cursor: after a failed
        // (possibly partial) write the batch is written again over the
        // same place, so the refs computed from `w.off` stay right.
        w.file
            .write_all_at(buf, w.off)
            .context("writing head chunks")?;
        let n = w.n;
        let maxt = pending.iter().map(|p| p.4).max().unwrap_or(i64::MIN);
        if let Some(info) = self.files.write().get_mut(&n) {
            info.maxt = info.maxt.max(maxt);
        }
        let mut moved = 0;
        for (s, data, prev, r, _) in pending.drain(..) {
            if s.state.lock().chunk_moved(&data, prev, r) {
                moved += 1;
            }
        }
        w.off += buf.len() as u64;
        buf.clear();
        if w.off >= FILE_SIZE {
            let next = w.n + 1;
            let file = Arc::new(Self::create(&self.dir, next)?);
            self.files.write().insert(
                next,
                FileInfo {
                    file: file.clone(),
                    maxt: i64::MIN,
                },
            );
            *w = Writer {
                n: next,
                file,
                off: 0,
            };
        }
        Ok(moved)
    }

    /// Deletes files (other than the one being written) whose chunks all
    /// end before `mint`.
    pub fn truncate(&self, mint: i64) {
        let current = self.w.lock().n;
        let mut files = self.files.write();
        let doomed: Vec<u32> = files
            .iter()
            .filter(|(&n, i)| n != current && i.maxt < mint)
            .map(|(&n, _)| n)
            .collect();
        for n in doomed {
            files.remove(&n);
            let path = self.dir.join(file_name(n));
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "removing head chunk file");
            }
        }
    }

    pub fn size_bytes(&self) -> u64 {
        super::wal::dir_size(&self.dir)
    }
}
