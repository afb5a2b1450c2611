//! Chunk segment files of a block (`<block>/chunks/000001`, ...).
//!
//! A file is an 8-byte header (`WMCH`, version, padding) followed by chunk
//! entries `uvarint len | encoding u8 | data | crc32(encoding, data) u32`
//! (encoding 1 = XOR, 2 = integer, see chunkenc.rs; 3 = packed, see
//! packed.rs, written by compaction).
//! A chunk is addressed by `file index << 32 | byte offset`, so the index
//! needs no per-chunk table. Files are memory-mapped read-only: the kernel
//! pages chunk data in when a query touches it and may drop it again, which
//! keeps the agent's resident memory independent of how much is on disk.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use memmap2::Mmap;

use super::chunkenc::{ENCODING_INT, ENCODING_XOR};
use super::encoding::{put_uvarint, Decbuf};
use super::packed::ENCODING_PACKED;

const MAGIC: &[u8; 4] = b"WMCH";
const VERSION: u8 = 1;
const HEADER_LEN: u64 = 8;
/// Files are cut at this size.
pub const MAX_FILE_SIZE: u64 = 512 << 20;

fn file_name(n: u32) -> String {
    format!("{n:06}")
}

/// Writes chunks to numbered files in a directory.
pub struct ChunkWriter {
    dir: PathBuf,
    file: Option<BufWriter<File>>,
    n: u32,
    off: u64,
    files: Vec<File>,
}

impl ChunkWriter {
    pub fn new(dir: &Path) -> Result<ChunkWriter> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(ChunkWriter {
            dir: dir.to_path_buf(),
            file: None,
            n: 0,
            off: 0,
            files: Vec::new(),
        })
    }

    fn cut(&mut self) -> Result<()> {
        self.finish_file()?;
        self.n += 1;
        let path = self.dir.join(file_name(self.n));
        let f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        w.write_all(MAGIC)?;
        w.write_all(&[VERSION, 0, 0, 0])?;
        self.file = Some(w);
        self.off = HEADER_LEN;
        Ok(())
    }

    fn finish_file(&mut self) -> Result<()> {
        if let Some(w) = self.file.take() {
            let f = w
                .into_inner()
                .map_err(|e| e.into_error())
                .context("writing chunk file")?;
            self.files.push(f);
        }
        Ok(())
    }

    /// Appends one chunk of encoding `enc` and returns its reference.
    pub fn write(&mut self, enc: u8, data: &[u8]) -> Result<u64> {
        let size = 10 + 1 + data.len() as u64 + 4;
        if self.file.is_none() || self.off + size > MAX_FILE_SIZE {
            self.cut()?;
        }
        let r = ((self.n as u64) << 32) | self.off;
        let mut hdr = Vec::with_capacity(11);
        put_uvarint(&mut hdr, data.len() as u64);
        hdr.push(enc);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[enc]);
        crc.update(data);
        let w = self.file.as_mut().context("chunk file not open")?;
        w.write_all(&hdr)?;
        w.write_all(data)?;
        w.write_all(&crc.finalize().to_le_bytes())?;
        self.off += hdr.len() as u64 + data.len() as u64 + 4;
        Ok(r)
    }

    /// Flushes and fsyncs every file.
    pub fn finish(mut self) -> Result<()> {
        self.finish_file()?;
        for f in &self.files {
            f.sync_all().context("syncing chunk file")?;
        }
        Ok(())
    }
}

/// Read access to a block's chunk files.
pub struct ChunkReader {
    files: Vec<Mmap>,
}

impl ChunkReader {
    pub fn open(dir: &Path) -> Result<ChunkReader> {
        let mut names: Vec<(u32, PathBuf)> = Vec::new();
        for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e?;
            if let Some(n) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                names.push((n, e.path()));
            }
        }
        names.sort();
        let mut files = Vec::with_capacity(names.len());
        for (i, (n, path)) in names.iter().enumerate() {
            if *n != i as u32 + 1 {
                bail!(
                    "chunk files in {} are not numbered 1..{}",
                    dir.display(),
                    names.len()
                );
            }
            let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: block files are immutable once renamed into place and
            // only ever deleted (never truncated) while mapped, which keeps
            // the mapping valid on Unix.
            let m =
                unsafe { Mmap::map(&f) }.with_context(|| format!("mapping {}", path.display()))?;
            if m.len() < HEADER_LEN as usize || &m[..4] != MAGIC || m[4] != VERSION {
                bail!("{} is not a chunk file (bad header)", path.display());
            }
            files.push(m);
        }
        Ok(ChunkReader { files })
    }

    /// The encoding and bytes of a chunk, checksum verified.
    pub fn chunk(&self, r: u64) -> Result<(u8, &[u8])> {
        let (n, off) = ((r >> 32) as usize, (r & 0xffff_ffff) as usize);
        let file = n
            .checked_sub(1)
            .and_then(|i| self.files.get(i))
            .with_context(|| format!("chunk ref {r:#x}: no chunk file {n}"))?;
        if off < HEADER_LEN as usize || off >= file.len() {
            bail!("chunk ref {r:#x}: offset out of range");
        }
        let mut d = Decbuf::new(&file[off..]);
        let len = d.read_len(d.remaining())?;
        let enc_and_data = d.bytes(1 + len)?;
        let crc = d.u32_le()?;
        if crc32fast::hash(enc_and_data) != crc {
            bail!("chunk ref {r:#x}: checksum mismatch");
        }
        let enc = enc_and_data[0];
        if enc != ENCODING_XOR && enc != ENCODING_INT && enc != ENCODING_PACKED {
            bail!("chunk ref {r:#x}: unknown encoding {enc}");
        }
        Ok((enc, &enc_and_data[1..]))
    }

    pub fn size_bytes(&self) -> u64 {
        self.files.iter().map(|m| m.len() as u64).sum()
    }
}
