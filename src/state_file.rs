//! Small state files (lease ledger, key state, baselines) replaced
//! atomically: written to a temporary file with the final mode, synced, then
//! renamed over the old one, so a crash leaves either the old or the new
//! contents, never a mix.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_and_rename(path, bytes, mode)?;
    let _ = sync_dir(path);
    Ok(())
}

/// [`replace`], failing also when the directory cannot be synced: once it
/// returns, the new contents survive a crash.
pub fn replace_durably(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_and_rename(path, bytes, mode)?;
    sync_dir(path)
}

fn write_and_rename(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Syncs the directory holding `path`, which makes a rename in it durable.
/// Windows cannot open a directory as a file; NTFS journals the rename.
fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}
