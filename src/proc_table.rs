//! The host's process table, read from /proc: finding processes by pidfile
//! or command line, their identity (pid + start time) and their resource
//! use. Reads only; signalling belongs to `remediate`.

use crate::clock::Timestamp;
use procfs::WithCurrentSystemInfo;
use procfs::process::{Process, Stat};
use regex::Regex;
use std::path::Path;

/// What identifies one run of a program: a restarted target has a new
/// pid or a new start time, even when the pid is reused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub pid: i32,
    /// Start time in clock ticks since boot (field 22 of /proc/PID/stat).
    pub start_ticks: u64,
}

impl Identity {
    /// `pid:start_ticks`, as stored in state.
    pub fn key(&self) -> String {
        format!("{}:{}", self.pid, self.start_ticks)
    }
}

/// One process as seen now.
#[derive(Clone, Debug)]
pub struct ProcessInfo {
    pub identity: Identity,
    /// When it started (wall clock).
    pub started_at: Timestamp,
    /// The full command line, arguments joined by spaces.
    pub command_line: String,
    pub rss_bytes: u64,
}

impl ProcessInfo {
    pub fn pid(&self) -> i32 {
        self.identity.pid
    }
}

fn started_at(stat: &Stat) -> Timestamp {
    let boot_secs = procfs::boot_time_secs().unwrap_or(0);
    let ticks = procfs::ticks_per_second().max(1);
    Timestamp(i64::try_from(boot_secs * 1000 + stat.starttime * 1000 / ticks).unwrap_or(i64::MAX))
}

/// Reads one process; `None` if it does not exist or has exited (zombie).
pub fn read(pid: i32) -> Option<ProcessInfo> {
    let process = Process::new(pid).ok()?;
    let stat = process.stat().ok()?;
    if stat.state == 'Z' || stat.state == 'X' {
        return None;
    }
    let command_line = process
        .cmdline()
        .map(|args| args.join(" "))
        .unwrap_or_default();
    Some(ProcessInfo {
        identity: Identity {
            pid,
            start_ticks: stat.starttime,
        },
        started_at: started_at(&stat),
        command_line,
        rss_bytes: stat.rss_bytes().get(),
    })
}

/// How long `identity` has been running, by the boot clock (/proc/uptime),
/// so neither a pinned tick clock nor a wall-clock jump distorts it.
pub fn age(identity: &Identity) -> Option<std::time::Duration> {
    use procfs::Current;
    let uptime = procfs::Uptime::current().ok()?.uptime;
    let started = identity.start_ticks as f64 / procfs::ticks_per_second().max(1) as f64;
    Some(std::time::Duration::from_secs_f64(
        (uptime - started).max(0.0),
    ))
}

/// Whether `identity` still runs (same pid and same start time, not a zombie).
pub fn is_running(identity: &Identity) -> bool {
    read(identity.pid).is_some_and(|p| p.identity == *identity)
}

/// The pid written in a pidfile, if the file holds one.
pub fn read_pidfile(path: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading pidfile {}: {e}", path.display()))?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| {
            format!(
                "pidfile {} holds {:?}, not a pid",
                path.display(),
                text.trim()
            )
        })
}

/// The process a pidfile names, if it runs.
pub fn by_pidfile(path: &Path) -> Result<Option<ProcessInfo>, String> {
    read_pidfile(path).map(read)
}

/// Every running process whose full command line matches `pattern`, oldest
/// first (see [`others`] for the exclusions).
pub fn by_pattern(pattern: &Regex) -> Vec<ProcessInfo> {
    others(|_, info| !info.command_line.is_empty() && pattern.is_match(&info.command_line))
}

/// Every running process whose program (its first command-line words, a
/// script's interpreter skipped) is named `program`, and whose working
/// folder is `cwd` when one is given; the same exclusions as
/// [`by_pattern`].
pub fn by_program(program: &str, cwd: Option<&Path>) -> Vec<ProcessInfo> {
    others(|process, _| {
        let Ok(argv) = process.cmdline() else {
            return false;
        };
        let named = argv.iter().take(3).any(|word| {
            Path::new(word)
                .file_name()
                .is_some_and(|name| name == std::ffi::OsStr::new(program))
        });
        named && cwd.is_none_or(|dir| process.cwd().is_ok_and(|c| c == dir))
    })
}

/// The command-line words of `pid` (empty when it is gone).
pub fn argv(pid: i32) -> Vec<String> {
    Process::new(pid)
        .and_then(|p| p.cmdline())
        .unwrap_or_default()
}

/// Who listens on TCP `port` (any local address, IPv4 or IPv6): `None`
/// when nobody does; the owners we may see otherwise (none when the
/// socket belongs to a user whose files we cannot read).
pub fn listening_on(port: u16) -> Option<Vec<ProcessInfo>> {
    let listen = |entries: procfs::ProcResult<Vec<procfs::net::TcpNetEntry>>| {
        entries
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.state == procfs::net::TcpState::Listen && e.local_address.port() == port)
            .map(|e| e.inode)
            .collect::<Vec<u64>>()
    };
    let mut inodes = listen(procfs::net::tcp());
    inodes.extend(listen(procfs::net::tcp6()));
    if inodes.is_empty() {
        return None;
    }
    Some(others(|process, _| {
        process.fd().is_ok_and(|fds| {
            fds.filter_map(Result::ok).any(|fd| {
                matches!(fd.target, procfs::process::FDTarget::Socket(inode) if inodes.contains(&inode))
            })
        })
    }))
}

/// Running processes `keep` accepts, oldest first: never this process or
/// its ancestors (the shell or cron job that runs monitor may carry the
/// pattern in its own command line), and never another monitor.
fn others(keep: impl Fn(&Process, &ProcessInfo) -> bool) -> Vec<ProcessInfo> {
    let excluded = own_lineage();
    let own_exe = std::env::current_exe().ok();
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let mut found: Vec<ProcessInfo> = all
        .filter_map(Result::ok)
        .filter(|p| !excluded.contains(&p.pid))
        .filter(|p| own_exe.is_none() || p.exe().ok() != own_exe)
        .filter_map(|p| read(p.pid).filter(|info| keep(&p, info)))
        .collect();
    found.sort_by_key(|p| (p.identity.start_ticks, p.identity.pid));
    found
}

/// This process and its ancestors up to init.
fn own_lineage() -> Vec<i32> {
    let mut lineage = Vec::new();
    let mut pid = std::process::id() as i32;
    while pid > 1 && lineage.len() < 64 {
        lineage.push(pid);
        match Process::new(pid).and_then(|p| p.stat()) {
            Ok(stat) => pid = stat.ppid,
            Err(_) => break,
        }
    }
    lineage
}

/// Open file descriptors and the soft limit on them.
pub fn fds(pid: i32) -> Option<(u64, Option<u64>)> {
    let process = Process::new(pid).ok()?;
    let open = process.fd_count().ok()? as u64;
    let limit = process
        .limits()
        .ok()
        .and_then(|l| match l.max_open_files.soft_limit {
            procfs::process::LimitValue::Value(v) => Some(v),
            procfs::process::LimitValue::Unlimited => None,
        });
    Some((open, limit))
}

/// Every process of session `sid` (a tmux pane's shell leads its own
/// session, so this is what runs in the pane).
pub fn in_session(sid: i32) -> Vec<ProcessInfo> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(Result::ok)
        .filter(|p| p.stat().is_ok_and(|s| s.session == sid))
        .filter_map(|p| read(p.pid))
        .collect()
}

/// The direct children of `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(Result::ok)
        .filter_map(|p| p.stat().ok())
        .filter(|s| s.ppid == pid)
        .map(|s| s.pid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_child_by_pattern_but_never_itself() {
        let marker = format!("sleep-marker-{}", std::process::id());
        // `sh -c 'read x' MARKER` waits on its stdin, with MARKER as $0.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x", &marker])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pattern = Regex::new(&marker).unwrap();
        let mut found = Vec::new();
        for _ in 0..100 {
            found = by_pattern(&pattern);
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pid(), child.id() as i32);
        let me = Regex::new(&regex::escape(&std::env::args().next().unwrap())).unwrap();
        assert!(
            by_pattern(&me)
                .iter()
                .all(|p| p.pid() != std::process::id() as i32)
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(read(found[0].pid()).is_none(), "reaped: gone");
    }

    #[test]
    fn identity_tells_a_restart_from_the_same_run() {
        let me = read(std::process::id() as i32).unwrap();
        assert!(is_running(&me.identity));
        let other = Identity {
            pid: me.identity.pid,
            start_ticks: me.identity.start_ticks + 1,
        };
        assert!(!is_running(&other));
        assert!(me.rss_bytes > 0);
        let (open, limit) = fds(me.pid()).unwrap();
        assert!(open >= 3 && limit.unwrap_or(u64::MAX) >= open);
    }
}
