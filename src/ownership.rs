//! A command run as root in a service user's state folder (`sudo monitor
//! state import …`, `sudo monitor run daily`) must not leave root-owned
//! files there that the service user's ticks then cannot write: what
//! monitor creates takes the owner of the folder it is in. And when an
//! older build (or a root `sqlite3`) did leave them, the error names the
//! file, its owner and the command that fixes it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// When running as root: gives `path`, if root owns it, the owner of the
/// folder it is in (when that is not root). The link itself, never what a
/// symlink points to. Best effort: a failure leaves the file as it is.
pub fn adopt(path: &Path) {
    if !running_as_root() {
        return;
    }
    let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return;
    };
    let (Ok(meta), Ok(folder)) = (std::fs::symlink_metadata(path), std::fs::metadata(folder))
    else {
        return;
    };
    if meta.uid() != 0 || folder.uid() == 0 {
        return;
    }
    if let Err(e) = std::os::unix::fs::lchown(path, Some(folder.uid()), Some(folder.gid())) {
        log::warn!(
            "giving {} to uid {} (the owner of its folder): {e}",
            path.display(),
            folder.uid()
        );
    }
}

/// [`adopt`] for the database and the sidecar files SQLite made for it.
pub fn adopt_database(db: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        adopt(Path::new(&name));
    }
}

/// What makes the state folder unwritable for this user, with the fix,
/// when that is why a command failed: each file of the folder (and its
/// `locks/`) this user cannot write, with its owner.
pub fn explain(state_dir: &Path, db: &Path) -> Option<String> {
    let mut candidates: Vec<PathBuf> = vec![state_dir.to_path_buf()];
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        candidates.push(PathBuf::from(name));
    }
    let locks = state_dir.join("locks");
    candidates.push(locks.clone());
    if let Ok(entries) = std::fs::read_dir(&locks) {
        candidates.extend(entries.flatten().map(|e| e.path()));
    }
    let blocked: Vec<String> = candidates
        .iter()
        .filter(|path| path.exists() && !writable(path))
        .map(|path| {
            let owner = std::fs::metadata(path)
                .map(|m| user_name(m.uid()))
                .unwrap_or_else(|_| "?".into());
            format!("{} (owned by {owner})", path.display())
        })
        .collect();
    if blocked.is_empty() {
        return None;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let folder = std::fs::metadata(state_dir).ok()?;
    let (uid, gid) = fix_owner(&folder);
    let fix = if uid == me {
        format!(
            "sudo chown -R {}:{} {}",
            owner_arg(uid),
            group_arg(gid),
            state_dir.display()
        )
    } else {
        format!(
            "sudo chown -R {}:{} {} (its owner), then run monitor as {}",
            owner_arg(uid),
            group_arg(gid),
            state_dir.display(),
            user_name(uid)
        )
    };
    Some(format!(
        "{} cannot write {} — a command run as another user (sudo, a root sqlite3) left {}; fix: {fix}",
        user_name(me),
        blocked.join(", "),
        if blocked.len() == 1 { "it" } else { "them" },
    ))
}

/// Who should own what monitor cannot write in `folder`: the folder's
/// owner, or this (the service) user when root owns the folder (one a
/// sudo created).
fn fix_owner(folder: &std::fs::Metadata) -> (u32, u32) {
    // SAFETY: geteuid and getegid have no preconditions and cannot fail.
    let (me, my_group) = unsafe { (libc::geteuid(), libc::getegid()) };
    if folder.uid() == 0 && me != 0 {
        (me, my_group)
    } else {
        (folder.uid(), folder.gid())
    }
}

fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: access only reads the NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// `root`, `monitor (uid 998)`, or `uid 4242` for a uid without a name.
fn user_name(uid: u32) -> String {
    match name_of_uid(uid) {
        Some(name) if uid == 0 => name,
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

fn owner_arg(uid: u32) -> String {
    name_of_uid(uid).unwrap_or_else(|| uid.to_string())
}

fn group_arg(gid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut group: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: getgrgid_r writes into `group` and `buf`, which outlive it.
    let rc = unsafe { libc::getgrgid_r(gid, &mut group, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc == 0 && !found.is_null() {
        // SAFETY: gr_name points into `buf`, NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr(group.gr_name) };
        return name.to_string_lossy().into_owned();
    }
    gid.to_string()
}

fn name_of_uid(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut passwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `passwd` and `buf`, which outlive it.
    let rc = unsafe { libc::getpwuid_r(uid, &mut passwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: pw_name points into `buf`, NUL-terminated.
    let name = unsafe { std::ffi::CStr::from_ptr(passwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// ` (owned by root; fix: sudo chown svc:svc PATH)` for a file (or, when
/// it does not exist yet, its folder) this user cannot write; empty when
/// it can. The fix gives it to the folder's owner, or to this user when
/// root owns the folder (a folder a sudo created).
pub fn whose(path: &Path) -> String {
    let Some(folder) = path.parent() else {
        return String::new();
    };
    let (target, recursive) = if path.exists() {
        (path, "")
    } else {
        (folder, " -R")
    };
    let (Ok(meta), Ok(folder_meta)) = (std::fs::metadata(target), std::fs::metadata(folder)) else {
        return String::new();
    };
    if writable(target) {
        return String::new();
    }
    let (uid, gid) = fix_owner(&folder_meta);
    format!(
        " (owned by {}; fix: sudo chown{recursive} {}:{} {})",
        user_name(meta.uid()),
        owner_arg(uid),
        group_arg(gid),
        target.display()
    )
}
