//! The per-profile run lock: a non-blocking flock on
//! `<state dir>/locks/<profile>.lock` with the holder's PID inside, so a
//! slow tick makes the next one skip instead of piling up.

use anyhow::{Context, Result};
use fs2::FileExt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct ProfileLock {
    file: File,
    /// The pid an earlier holder left in the file: it did not end its tick
    /// (killed, or crashed); what it started may still run.
    pub unclean: Option<u32>,
}

impl Drop for ProfileLock {
    /// A tick that ends leaves the file empty: a pid found in it by the
    /// next holder is one that was killed.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

/// The outcome of trying to take the lock.
#[derive(Debug)]
pub enum Lock {
    Acquired(ProfileLock),
    /// Another run holds it; its PID when the file says.
    Busy {
        pid: Option<u32>,
    },
}

/// The lock file of `profile` under the state folder.
pub fn lock_path(state_dir: &Path, profile: &str) -> PathBuf {
    state_dir.join("locks").join(format!("{profile}.lock"))
}

/// Tries once, without waiting, to take the profile's lock.
pub fn acquire(state_dir: &Path, profile: &str) -> Result<Lock> {
    let path = lock_path(state_dir, profile);
    let dir = path.parent().unwrap_or(state_dir);
    crate::store::create_private_dir(dir)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    crate::ownership::adopt(&path);
    match FileExt::try_lock_exclusive(&file) {
        Ok(()) => {
            let mut left = String::new();
            let _ = file.read_to_string(&mut left);
            let unclean = left.trim().parse::<u32>().ok();
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(Lock::Acquired(ProfileLock { file, unclean }))
        }
        Err(e) if e.raw_os_error() == fs2::lock_contended_error().raw_os_error() => {
            Ok(Lock::Busy {
                pid: read_holder_pid(&mut file),
            })
        }
        Err(e) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// The holder writes its PID right after taking the lock; a contender that
/// reads in between sees an empty file or the previous holder's PID, so it
/// looks again a few times and trusts only a PID that is alive.
fn read_holder_pid(file: &mut File) -> Option<u32> {
    for _ in 0..20 {
        let mut text = String::new();
        if file.seek(SeekFrom::Start(0)).is_ok()
            && file.read_to_string(&mut text).is_ok()
            && let Ok(pid) = text.trim().parse::<u32>()
            && is_alive(pid)
        {
            return Some(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    None
}

fn is_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only checks the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_sees_the_holder_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "minutely").unwrap();
        assert!(matches!(first, Lock::Acquired(_)));
        match acquire(dir.path(), "minutely").unwrap() {
            Lock::Busy { pid, .. } => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected busy, got {other:?}"),
        }
        assert!(
            matches!(acquire(dir.path(), "hourly").unwrap(), Lock::Acquired(_)),
            "locks are per profile"
        );
        drop(first);
        match acquire(dir.path(), "minutely").unwrap() {
            Lock::Acquired(lock) => assert_eq!(lock.unclean, None, "the first ended cleanly"),
            other => panic!("expected acquired, got {other:?}"),
        }
        let path = lock_path(dir.path(), "minutely");
        std::fs::write(&path, "4242\n").unwrap();
        match acquire(dir.path(), "minutely").unwrap() {
            Lock::Acquired(lock) => assert_eq!(lock.unclean, Some(4242), "a killed holder"),
            other => panic!("expected acquired, got {other:?}"),
        }
    }
}
