//! Small state files (lease ledger, key state, baselines) replaced
//! atomically: written to a temporary file with the final mode, synced, then
//! renamed over the old one, so a crash leaves either the old or the new
//! contents, never a mix. `mode` is the file's access in unix permission
//! bits, as [`crate::platform::create_new`] takes it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::platform;

pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_and_rename(path, bytes, mode)?;
    let _ = platform::sync_dir(path);
    Ok(())
}

/// [`replace`], failing also when the directory cannot be synced: once it
/// returns, the new contents survive a crash.
pub fn replace_durably(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_and_rename(path, bytes, mode)?;
    platform::sync_dir(path)
}

fn write_and_rename(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = platform::create_new(&tmp, mode)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_leaves_the_new_contents_with_the_mode_and_no_temporary() {
        let dir = std::env::temp_dir().join(format!("botward-state-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        replace(&path, b"old", 0o600).unwrap();
        replace_durably(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        assert!(!Path::new(&tmp).exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
