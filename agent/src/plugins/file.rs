//! A plugin file on disk: the stamp that tells one version of it from the
//! next without reading it, and reading it header first under a size cap.
//!
//! Reading and hashing a file is what a directory watcher must not do on
//! every event (a 100 MB file is a second of CPU), so the runtime reads a
//! file only when its stamp changed, and a file that cannot be a component
//! is refused on its first 8 bytes and its size, never read whole.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use wasmon_plugin_tools::format::{self, NotAPlugin};

use super::engine::CompileCache;

/// What identifies a version of a file without reading it. `stat` follows
/// symlinks, so a Kubernetes ConfigMap update (files reached through the
/// `..data` symlink, swapped to a new directory) is a new inode here. The
/// change time catches a rewrite that restores size and mtime (`cp -p`,
/// `touch -r`) and a `chmod` that makes an unreadable file readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The most a read allocates before it has the bytes.
const RESERVE_AT_MOST: u64 = 64 << 20;

/// Why a plugin file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    NotAPlugin(#[from] NotAPlugin),
    #[error(
        "{size} bytes, over the maximum plugin size of {max} bytes \
         (`[plugins] max_plugin_size`): not read"
    )]
    TooLarge { size: u64, max: u64 },
    #[error("not a regular file")]
    NotAFile,
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl FileError {
    /// A verdict on the file's content, which only a new version can change
    /// (an I/O error may pass on its own).
    pub fn is_about_content(&self) -> bool {
        !matches!(self, FileError::Io { .. })
    }
}

/// The current stamp of `path`; `Ok(None)` when nothing is there.
pub fn stamp(path: &Path) -> Result<Option<Stamp>, FileError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(Stamp::of(&meta))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FileError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// What [`read_if_changed`] found.
#[derive(Debug)]
pub enum Change {
    /// Nothing at the path.
    Gone,
    /// The stamp is the one already known: not read.
    Unchanged,
    /// Refused or unreadable; the stamp when the file could be `stat`ed.
    Unreadable {
        stamp: Option<Stamp>,
        error: FileError,
    },
    /// Read whole, with its content hash (the plugin's version).
    Read {
        stamp: Stamp,
        bytes: Vec<u8>,
        hash: String,
    },
}

/// Reads and hashes the file at `path` unless its stamp is `known`.
/// Blocking: hashing tens of megabytes takes a while.
pub fn read_if_changed(path: &Path, max: u64, known: Option<Stamp>) -> Change {
    let stamp = match stamp(path) {
        Ok(None) => return Change::Gone,
        Ok(Some(s)) => s,
        Err(error) => return Change::Unreadable { stamp: None, error },
    };
    if known == Some(stamp) {
        return Change::Unchanged;
    }
    // The stamp is taken before the read: if the file changes in between,
    // the next event finds a newer stamp and reads it again.
    match read(path, max) {
        Ok(bytes) => {
            let hash = CompileCache::content_hash(&bytes);
            Change::Read { stamp, bytes, hash }
        }
        Err(FileError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Change::Gone
        }
        Err(error) => Change::Unreadable {
            stamp: Some(stamp),
            error,
        },
    }
}

/// Reads a plugin file: its header first (refusing what is not a component
/// of this wasmon's binary format), then, when it is at most `max` bytes,
/// the rest. A FIFO or device is refused before it is opened (opening a
/// FIFO would block until someone writes to it).
pub fn read(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let io_err = |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() {
        return Err(FileError::NotAFile);
    }
    let mut file = File::open(path).map_err(io_err)?;
    // The open file's own size: the path may have been replaced since.
    let len = file.metadata().map_err(io_err)?.len();
    let mut head = Vec::with_capacity(format::HEADER_LEN);
    (&mut file)
        .take(format::HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(io_err)?;
    // Some files (procfs) report size 0 and still have bytes.
    let len = len.max(head.len() as u64);
    format::check_header(&head, len)?;
    if len > max {
        return Err(FileError::TooLarge { size: len, max });
    }
    let mut bytes = head;
    // The size `stat` gave, trusted only so far: a file that reports more
    // than it holds must not make us allocate it up front.
    bytes.reserve_exact((len.min(RESERVE_AT_MOST) as usize).saturating_sub(bytes.len()));
    // A file still growing is cut at `max + 1` bytes, enough to refuse it.
    file.take(max.saturating_add(1).saturating_sub(bytes.len() as u64))
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > max {
        return Err(FileError::TooLarge {
            size: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_is_refused_on_its_header_and_size_without_being_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wasm");
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(
            read(&p, 1 << 20),
            Err(FileError::NotAPlugin(NotAPlugin::Empty))
        ));
        std::fs::write(&p, b"\x7fELF\x02\x01\x01\0 and much more").unwrap();
        let e = read(&p, 1 << 20).unwrap_err();
        assert!(
            matches!(e, FileError::NotAPlugin(NotAPlugin::NotWasm { .. })),
            "{e}"
        );
        let mut big = b"\0asm\x0d\0\x01\0".to_vec();
        big.resize(4096, 0);
        std::fs::write(&p, &big).unwrap();
        let e = read(&p, 1000).unwrap_err();
        assert!(
            matches!(
                e,
                FileError::TooLarge {
                    size: 4096,
                    max: 1000
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("max_plugin_size"), "{e}");
        assert_eq!(read(&p, 4096).unwrap(), big);
        assert!(matches!(read(dir.path(), 1000), Err(FileError::NotAFile)));
        let fifo = dir.path().join("f.wasm");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        assert!(matches!(read(&fifo, 1000), Err(FileError::NotAFile)));
    }

    #[test]
    fn a_rewrite_with_the_same_size_and_mtime_is_a_new_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wasm");
        std::fs::write(&p, b"one").unwrap();
        let first = stamp(&p).unwrap().unwrap();
        assert_eq!(stamp(&p).unwrap(), Some(first), "stable when untouched");
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        // Replaced by rename with the old mtime restored, as `cp -p` + `mv` does.
        let tmp = dir.path().join(".x.tmp");
        std::fs::write(&tmp, b"two").unwrap();
        File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        assert_ne!(stamp(&p).unwrap(), Some(first));
        assert_eq!(stamp(&dir.path().join("gone.wasm")).unwrap(), None);
    }
}
