//! Child processes that run under a deadline in their own process group, so
//! a timed-out check can be killed with everything it started — and so
//! nothing a probe starts outlives the tick: probe children die with the
//! tick (`PR_SET_PDEATHSIG`), carry a mark in their environment that their
//! descendants inherit (a `setsid` escapes the group, not the mark), are
//! reparented to the tick when orphaned (`PR_SET_CHILD_SUBREAPER`) and
//! killed at its end; a tick that was killed itself leaves its lock file
//! unclean, and the next tick finds its marked leftovers and kills them.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Process groups started by this tick and not yet reaped.
static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn live_groups() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The environment variable that marks what a tick started for a probe.
pub const MARK_VAR: &str = "MONITOR_PROBE_OF";

/// This tick's mark: the profile and the state folder it runs for.
static MARK: OnceLock<String> = OnceLock::new();

/// Whether this tick started a marked process (then its end looks for
/// leftovers).
static SPAWNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Readies this process for a tick of `profile`: sweeps what a killed
/// earlier tick (`unclean`: its pid) left running, names the profile for
/// the stop note, and marks the probes to come. The note for the summary
/// when something was swept.
pub fn begin_tick(
    profile: &str,
    state_dir: &std::path::Path,
    unclean: Option<u32>,
) -> Option<String> {
    let mark = mark_of(profile, state_dir);
    let mut note = None;
    if let Some(pid) = unclean {
        let killed = sweep_marked(&mark);
        if !killed.is_empty() {
            let text = format!(
                "the tick of pid {pid} was killed before it ended; what it started for probes still ran and is now killed: {}",
                killed.join(", ")
            );
            log::warn!("{text}");
            note = Some(text);
        }
    }
    stop_note_for(profile);
    mark_probes(mark);
    note
}

/// The mark of the probes of `profile` under `state_dir`.
pub fn mark_of(profile: &str, state_dir: &std::path::Path) -> String {
    format!("{profile}@{}", state_dir.display())
}

/// Process groups live now, for the signal handler (which may not lock).
static GROUP_SLOTS: [std::sync::atomic::AtomicI32; 256] =
    [const { std::sync::atomic::AtomicI32::new(0) }; 256];

fn hold_slot(pgid: i32) {
    for slot in &GROUP_SLOTS {
        if slot
            .compare_exchange(
                0,
                pgid,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok()
        {
            return;
        }
    }
}

fn free_slot(pgid: i32) {
    for slot in &GROUP_SLOTS {
        let _ = slot.compare_exchange(
            pgid,
            0,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

/// SIGTERM, SIGINT or SIGHUP to the tick (systemd stopping it, a person's
/// Ctrl-C on a dry run): its probes' process groups die with it.
extern "C" fn on_terminate(signal: libc::c_int) {
    for slot in &GROUP_SLOTS {
        let pgid = slot.load(std::sync::atomic::Ordering::Acquire);
        if pgid > 1 {
            // SAFETY: killpg is async-signal-safe.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
    // The rest (finding what left the groups with setsid, by its mark)
    // needs /proc and memory: the stop thread does it, then ends us.
    let pipe = STOP_PIPE.load(std::sync::atomic::Ordering::Acquire);
    if pipe > 0 {
        let byte = signal as u8;
        // SAFETY: write(2) is async-signal-safe; one byte from the stack.
        if unsafe { libc::write(pipe, (&byte as *const u8).cast(), 1) } == 1 {
            return;
        }
    }
    say_stopped(signal);
    // SAFETY: signal and raise are async-signal-safe; the default action
    // then ends the process as the signal meant.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// The write end of the pipe the signal handler wakes the stop thread by.
static STOP_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Starts the thread that finishes a stop: the handler has killed the
/// probes' process groups; this kills every process carrying the tick's
/// mark (a `setsid` child the group kill missed), says the tick was
/// stopped, and ends the process with the signal.
fn start_stop_thread(mark: String) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two descriptors of `fds` on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    let [read, write] = fds;
    let started = std::thread::Builder::new()
        .name("stop".into())
        .spawn(move || {
            let mut byte = 0u8;
            // SAFETY: reads one byte into `byte` from the pipe's read end.
            let got = unsafe { libc::read(read, (&mut byte as *mut u8).cast(), 1) };
            if got != 1 {
                return;
            }
            let signal = libc::c_int::from(byte);
            sweep_marked(&mark);
            kill_leftovers();
            say_stopped(signal);
            // SAFETY: restores the default action and re-raises the signal,
            // which ends the process as the signal meant.
            unsafe {
                libc::signal(signal, libc::SIG_DFL);
                libc::raise(signal);
            }
        });
    if started.is_ok() {
        STOP_PIPE.store(write, std::sync::atomic::Ordering::Release);
    }
}

/// "the tick of PROFILE was stopped by ", prepared before any signal (a
/// handler may not allocate).
static STOP_NOTE: OnceLock<String> = OnceLock::new();

/// The log file's descriptor for the stop note (0: none).
static STOP_LOG_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Names the profile the stop note speaks of.
pub fn stop_note_for(profile: &str) {
    let _ = STOP_NOTE.set(format!("the tick of {profile} was stopped by "));
}

/// Writes the stop note to `file` too (the log file), not only stderr.
pub fn stop_note_to(file: &std::fs::File) {
    use std::os::fd::IntoRawFd;
    if let Ok(copy) = file.try_clone() {
        STOP_LOG_FD.store(copy.into_raw_fd(), std::sync::atomic::Ordering::Release);
    }
}

/// In the signal handler: says on stderr (the journal, cron's mail: it is
/// said under `--quiet` too) and in the log file that the tick was stopped
/// and its probes killed. Only stack buffers and write(2).
fn say_stopped(signal: libc::c_int) {
    let Some(note) = STOP_NOTE.get() else {
        return;
    };
    let name: &[u8] = match signal {
        libc::SIGTERM => b"SIGTERM",
        libc::SIGINT => b"SIGINT",
        libc::SIGHUP => b"SIGHUP",
        _ => b"a signal",
    };
    let mut line = StackLine::default();
    line.push(b"monitor: ");
    line.push(note.as_bytes());
    line.push(name);
    line.push(b"; its probes were killed; the next tick runs as scheduled\n");
    line.write_to(2);
    let fd = STOP_LOG_FD.load(std::sync::atomic::Ordering::Acquire);
    if fd > 2 {
        let mut logged = StackLine::default();
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime is async-signal-safe and writes `now`.
        unsafe {
            libc::clock_gettime(libc::CLOCK_REALTIME, &mut now);
        }
        logged.push(&rfc3339_utc(now.tv_sec));
        logged.push(b" [ERROR] ");
        logged.push(&line.bytes[..line.len]);
        logged.write_to(fd);
    }
}

/// A line built without allocating; what does not fit is cut.
struct StackLine {
    bytes: [u8; 1024],
    len: usize,
}

impl Default for StackLine {
    fn default() -> Self {
        StackLine {
            bytes: [0; 1024],
            len: 0,
        }
    }
}

impl StackLine {
    fn push(&mut self, part: &[u8]) {
        let room = self.bytes.len() - self.len;
        let take = part.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&part[..take]);
        self.len += take;
    }

    fn write_to(&self, fd: libc::c_int) {
        // SAFETY: write(2) is async-signal-safe; the buffer outlives it.
        unsafe {
            libc::write(fd, self.bytes.as_ptr().cast(), self.len);
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time, by arithmetic only (for the
/// signal handler; Howard Hinnant's days-to-civil).
fn rfc3339_utc(secs: i64) -> [u8; 20] {
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, value: i64| {
        let mut value = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3600);
    put(14, 2, of_day % 3600 / 60);
    put(17, 2, of_day % 60);
    out
}

/// Marks every probe child this process starts from now on, and makes the
/// orphans among their descendants this process's children while it runs.
pub fn mark_probes(mark: String) {
    start_stop_thread(mark.clone());
    let _ = MARK.set(mark);
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installs a handler that only uses async-signal-safe calls.
        unsafe {
            libc::signal(
                signal,
                on_terminate as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag of this
    // process; a failure (an old kernel) leaves the next tick's sweep.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
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

/// Kills every process group a probe started and left running (a task
/// abandoned at its deadline), and every marked child of this process (a
/// probe's descendant that left the group with `setsid` and was orphaned
/// to us). Called at the end of a tick.
pub fn kill_leftovers() {
    let groups: Vec<i32> = live_groups().iter().copied().collect();
    for pgid in groups {
        kill_group(pgid);
    }
    if !SPAWNED.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let Some(mark) = MARK.get() else {
        return;
    };
    for pid in own_children() {
        if carries(pid, mark) {
            kill_with_group(pid);
        }
    }
}

/// Finds processes left by an earlier tick of the same mark that was
/// killed before it could clean up, kills them and says which they were.
pub fn sweep_marked(mark: &str) -> Vec<String> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let own = std::process::id() as i32;
    let mut killed = Vec::new();
    for process in all.filter_map(Result::ok) {
        if process.pid == own || !carries(process.pid, mark) {
            continue;
        }
        let line = process
            .cmdline()
            .map(|a| a.join(" "))
            .unwrap_or_default()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(80)
            .collect::<String>();
        kill_with_group(process.pid);
        killed.push(format!("pid {} (`{line}`)", process.pid));
    }
    killed
}

/// Whether `pid` carries `mark` in its environment.
fn carries(pid: i32, mark: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{MARK_VAR}={mark}");
    environ
        .split(|&b| b == 0)
        .any(|entry| entry == wanted.as_bytes())
}

/// The children of every thread of this process.
fn own_children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// SIGKILL to `pid`, and to its group when it leads one (a `setsid`
/// child's own children).
fn kill_with_group(pid: i32) {
    if pid <= 1 {
        return;
    }
    // SAFETY: getpgid reads, kill/killpg only signal a pid just found.
    unsafe {
        if libc::getpgid(pid) == pid {
            libc::killpg(pid, libc::SIGKILL);
        }
        libc::kill(pid, libc::SIGKILL);
    }
}

/// How a child run under a deadline ended.
#[derive(Debug)]
pub struct Finished {
    /// `None` when it was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs a probe's `command` in a new process group with stdin closed,
/// capturing up to `cap` bytes of each output stream. At `timeout` the
/// whole group is killed. When the child exits, whatever it left behind in
/// its group is killed too. It carries the tick's mark and dies with the
/// tick.
pub fn run(command: &mut Command, timeout: Duration, cap: usize) -> std::io::Result<Finished> {
    use std::os::unix::process::CommandExt;
    if let Some(mark) = MARK.get() {
        command.env(MARK_VAR, mark);
        SPAWNED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let parent = std::process::id() as i32;
    // SAFETY: prctl and getppid are async-signal-safe; the child asks to
    // be killed when the thread that started it (the tick) goes, and gives
    // up if the tick is already gone.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the tick is gone"));
            }
            Ok(())
        });
    }
    run_in_group(command, timeout, cap)
}

/// [`run`] for a service manager's or a remediation's command (`systemctl
/// start`, `tmux new-session`): not marked, so what it starts on purpose
/// (a tmux server, a service) is never swept as a leftover.
pub fn run_tool(command: &mut Command, timeout: Duration, cap: usize) -> std::io::Result<Finished> {
    command.env_remove(MARK_VAR);
    run_in_group(command, timeout, cap)
}

fn run_in_group(command: &mut Command, timeout: Duration, cap: usize) -> std::io::Result<Finished> {
    use std::os::unix::process::CommandExt;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child: Child = command.spawn()?;
    let pgid = i32::try_from(child.id()).unwrap_or(0);
    live_groups().insert(pgid);
    hold_slot(pgid);
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
    free_slot(pgid);
    Ok(Finished {
        status,
        stdout: take(stdout),
        stderr: take(stderr),
    })
}

/// What a reader thread has read so far, and whether it reached the end.
type Reading = std::sync::Arc<(Mutex<Vec<u8>>, std::sync::atomic::AtomicBool)>;

/// Reads a stream to its end on a thread, keeping the first `cap` bytes.
fn read_capped(mut stream: impl Read + Send + 'static, cap: usize) -> Reading {
    let reading: Reading = Default::default();
    let shared = reading.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut kept = shared.0.lock().unwrap_or_else(|p| p.into_inner());
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        shared.1.store(true, std::sync::atomic::Ordering::Release);
    });
    reading
}

/// What was read: at once when the stream ended, else after a short wait
/// (a child that left the group with `setsid` may hold the pipe open for
/// ever; what the check itself printed is there already).
fn take(reading: Option<Reading>) -> Vec<u8> {
    let Some(reading) = reading else {
        return Vec::new();
    };
    let deadline = Instant::now() + Duration::from_millis(250);
    while !reading.1.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::mem::take(&mut *reading.0.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Kills every child of this tick that is still there once the probes are
/// done: a probe's descendant orphaned to us (the subreaper) that shed the
/// mark (`env -i`) has no business running on. Called between observing
/// and restarting, when nothing else of ours runs.
pub fn kill_orphans() {
    for pid in own_children() {
        kill_with_group(pid);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signal_handlers_clock_formats_as_rfc3339() {
        assert_eq!(&super::rfc3339_utc(0), b"1970-01-01T00:00:00Z");
        assert_eq!(&super::rfc3339_utc(951_782_400), b"2000-02-29T00:00:00Z");
        assert_eq!(&super::rfc3339_utc(1_796_180_645), b"2026-12-02T03:04:05Z");
    }

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
        let started = Instant::now();
        let finished = run(
            Command::new("sh").args(["-c", &script]),
            Duration::from_millis(300),
            1024,
        )
        .unwrap();
        assert!(finished.status.is_none(), "it should have been killed");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
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
