//! File helpers shared by the stores that persist small JSON state
//! (silences, notification log, rollouts, acks and incidents).

use std::path::Path;

/// Write `bytes` to `path` so that a crash (kill -9 or power loss) leaves
/// either the old or the new content, never a torn file: a temporary file,
/// fsynced, renamed over `path`, then the directory fsynced so the rename
/// itself is durable. Callers serialise writers of one `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
