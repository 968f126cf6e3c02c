//! Lock files: a process holds an exclusive `flock` on a file for as long as it lives, so a
//! second process meant to be the only one (one `glint serve`, one control plane per data
//! directory) can refuse to start. The kernel drops the lock when the holder exits, however it
//! exits, so a crash never leaves a stale lock behind.

use std::fs::File;
use std::io;
use std::path::Path;

/// Creates `path` if missing and locks it; `Ok(None)` when another process holds the lock.
/// Keep the returned file open for as long as the lock must hold.
pub fn lock_exclusive(path: &Path) -> io::Result<Option<File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!("glint-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.lock");
        let first = super::lock_exclusive(&path).unwrap();
        assert!(first.is_some());
        // a second open file description conflicts, even in the same process
        assert!(super::lock_exclusive(&path).unwrap().is_none());
        drop(first);
        assert!(super::lock_exclusive(&path).unwrap().is_some());
        std::fs::remove_dir_all(dir).ok();
    }
}
