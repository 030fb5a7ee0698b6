//! Child processes that run under a deadline in their own process group, so
//! a timed-out check can be killed with everything it started.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Process groups started by this tick and not yet reaped.
static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn live_groups() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends SIGKILL to every process of group `pgid`.
pub fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: killpg only sends a signal; a stale pgid yields ESRCH.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// Kills every process group a probe started and left running (called at
/// the end of a tick, when a task was abandoned at its deadline).
pub fn kill_leftovers() {
    let groups: Vec<i32> = live_groups().iter().copied().collect();
    for pgid in groups {
        kill_group(pgid);
    }
}

/// How a child run under a deadline ended.
#[derive(Debug)]
pub struct Finished {
    /// `None` when it was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

/// Runs `command` in a new process group with stdin closed, capturing up to
/// `cap` bytes of each output stream. At `timeout` the whole group is killed.
/// When the child exits, whatever it left behind in its group is killed too.
pub fn run(command: &mut Command, timeout: Duration, cap: usize) -> std::io::Result<Finished> {
    use std::os::unix::process::CommandExt;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child: Child = command.spawn()?;
    let pgid = i32::try_from(child.id()).unwrap_or(0);
    live_groups().insert(pgid);
    let stdout = child.stdout.take().map(|s| read_capped(s, cap));
    let stderr = child.stderr.take().map(|s| read_capped(s, cap));
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait());
    });
    let status = match receiver.recv_timeout(timeout) {
        Ok(result) => Some(result?),
        Err(_) => {
            kill_group(pgid);
            let _ = receiver.recv_timeout(Duration::from_secs(5));
            None
        }
    };
    // A check's leftovers (background children holding its pipes) go too.
    kill_group(pgid);
    live_groups().remove(&pgid);
    let collect = |reader: Option<mpsc::Receiver<Vec<u8>>>| {
        reader
            .and_then(|r| r.recv_timeout(Duration::from_secs(1)).ok())
            .unwrap_or_default()
    };
    Ok(Finished {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
        elapsed: started.elapsed(),
    })
}

/// Reads a stream to its end on a thread, keeping the first `cap` bytes.
fn read_capped(mut stream: impl Read + Send + 'static, cap: usize) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        let _ = sender.send(kept);
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let finished = run(
            Command::new("sh").args(["-c", "echo hi; echo err >&2; exit 3"]),
            Duration::from_secs(5),
            1024,
        )
        .unwrap();
        assert_eq!(finished.status.and_then(|s| s.code()), Some(3));
        assert_eq!(finished.stdout, b"hi\n");
        assert_eq!(finished.stderr, b"err\n");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", marker.display());
        let finished = run(
            Command::new("sh").args(["-c", &script]),
            Duration::from_millis(300),
            1024,
        )
        .unwrap();
        assert!(finished.status.is_none(), "it should have been killed");
        assert!(
            finished.elapsed < Duration::from_secs(3),
            "{:?}",
            finished.elapsed
        );
        let pid: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(
            !alive || is_zombie(pid),
            "grandchild {pid} survived the timeout"
        );
    }

    fn is_zombie(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
    }

    #[test]
    fn output_is_capped() {
        let finished = run(
            Command::new("sh").args(["-c", "yes | head -c 100000"]),
            Duration::from_secs(5),
            1000,
        )
        .unwrap();
        assert_eq!(finished.stdout.len(), 1000);
    }
}
