//! Closed head chunks moved out of the heap into files in
//! `DIR/chunks_head/`, in the spirit of Prometheus' memory-mapped head
//! chunks.
//!
//! Why: a series keeps 1.5–3 block durations of samples in the head, and
//! with 100k series the closed chunks would dominate the agent's resident
//! memory. A maintenance pass appends every closed in-memory chunk to the
//! current file with one write and then swaps each series' copy for a
//! (file, offset, length) reference; reads are `pread`s served from the
//! page cache, which the kernel can reclaim.
//!
//! The files are only an offload, never a source of truth: the WAL (and
//! its checkpoint) still holds every sample of the head, so the directory is
//! wiped at startup and rebuilt as chunks close again. That keeps this
//! format free of any recovery logic. A file is deleted once every chunk in
//! it ends before the head's minimum time (its data is in a block then).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use parking_lot::{Mutex, RwLock};

use super::series::{ChunkData, DiskRef, MemBytes, MemSeries};

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

/// A chunk being moved: (series, its in-memory bytes, offset in the file,
/// the chunk's maxt).
type Pending = (Arc<MemSeries>, MemBytes, u64, i64);

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

    /// Reads a chunk written by [`HeadChunks::offload`].
    pub fn read(&self, file: u32, off: u64, len: u32) -> Result<Vec<u8>> {
        let f = self
            .files
            .read()
            .get(&file)
            .map(|i| i.file.clone())
            .with_context(|| format!("head chunk file {file} is gone"))?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, off)
            .with_context(|| format!("reading head chunk {file}:{off}"))?;
        Ok(buf)
    }

    /// Moves the closed in-memory chunks of `series` to disk. Returns the
    /// number of chunks moved.
    pub fn offload(&self, series: &[Arc<MemSeries>]) -> Result<usize> {
        let mut w = self.w.lock();
        let mut moved = 0;
        let mut buf: Vec<u8> = Vec::with_capacity(BATCH + 4096);
        let mut pending: Vec<Pending> = Vec::new();
        for s in series {
            {
                let st = s.state.lock();
                for c in st.mem_chunks() {
                    if let ChunkData::Mem(_, data) = &c.data {
                        pending.push((s.clone(), data.clone(), w.off + buf.len() as u64, c.maxt));
                        buf.extend_from_slice(data);
                    }
                }
            }
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
        (&*w.file).write_all(buf).context("writing head chunks")?;
        let n = w.n;
        let maxt = pending.iter().map(|p| p.3).max().unwrap_or(i64::MIN);
        if let Some(info) = self.files.write().get_mut(&n) {
            info.maxt = info.maxt.max(maxt);
        }
        let mut moved = 0;
        for (s, data, off, _) in pending.drain(..) {
            // Out of range only after 65535 files of 128 MiB: then the
            // chunk simply stays in memory.
            let Some(disk) = DiskRef::new(n, off, data.len()) else {
                continue;
            };
            if s.state.lock().chunk_moved(&data, disk) {
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
