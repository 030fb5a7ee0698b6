//! Stopping what runs: find the processes (pidfile, pattern, tmux session)
//! and signal them — SIGTERM, `grace`, SIGKILL, confirm they are gone — or
//! ask the service manager (systemd, docker, a command) to do it.

use super::start::tmux_session;
use crate::config::{self, CommandLine, Pattern, Text, Why, within_mapping};
use crate::proc_table::{self, ProcessInfo};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// How to find and stop what is running.
#[derive(Debug, Clone)]
pub struct Stop {
    pub method: StopMethod,
    pub grace: config::Duration,
}

#[derive(Debug, Clone)]
pub enum StopMethod {
    Pidfile(PathBuf),
    Pattern(Pattern),
    Systemd(String),
    Tmux(String),
    Docker(String),
    Command(CommandLine),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStop {
    #[serde(default)]
    pidfile: Option<PathBuf>,
    #[serde(default)]
    pattern: Option<Pattern>,
    #[serde(default)]
    systemd: Option<Text>,
    #[serde(default)]
    tmux: Option<Text>,
    #[serde(default)]
    docker: Option<Text>,
    #[serde(default)]
    command: Option<CommandLine>,
    #[serde(default)]
    grace: Option<config::Duration>,
}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within_mapping(d, |raw: RawStop| -> Result<Self, Why> {
            let methods: Vec<StopMethod> = [
                raw.pidfile.map(StopMethod::Pidfile),
                raw.pattern.map(StopMethod::Pattern),
                raw.systemd.map(|t| StopMethod::Systemd(t.0)),
                raw.tmux
                    .map(tmux_session)
                    .transpose()?
                    .map(StopMethod::Tmux),
                raw.docker.map(|t| StopMethod::Docker(t.0)),
                raw.command.map(StopMethod::Command),
            ]
            .into_iter()
            .flatten()
            .collect();
            let [method]: [StopMethod; 1] = methods.try_into().map_err(|_| {
                de::Error::custom(
                    "`stop` takes exactly one of pidfile, pattern, systemd, tmux, docker, command",
                )
            })?;
            Ok(Stop {
                method,
                grace: raw.grace.unwrap_or(config::Duration::from_secs(10)),
            })
        })
    }
}

/// How long to wait for processes to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(25);

/// What a stop did, in words for the history and the notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Stopped {
    pub description: String,
    /// The stop found no process to signal (a stop by pidfile, pattern or
    /// tmux session; a service manager's stop always "finds" its target).
    pub found_nothing: bool,
}

/// The processes a stop method would signal (for pidfile, pattern, tmux);
/// empty for methods that go through a service manager.
pub fn targets(method: &StopMethod) -> Result<Vec<ProcessInfo>, String> {
    match method {
        StopMethod::Pidfile(path) => match proc_table::by_pidfile(path) {
            Ok(found) => Ok(found.into_iter().collect()),
            // No pidfile: nothing is running (the usual state after a crash).
            Err(_) if !path.exists() => Ok(Vec::new()),
            Err(e) => Err(e),
        },
        StopMethod::Pattern(pattern) => Ok(proc_table::by_pattern(&pattern.0)),
        StopMethod::Tmux(session) => Ok(tmux_pane_pids(session)?
            .into_iter()
            .flat_map(proc_table::in_session)
            .collect()),
        StopMethod::Systemd(_) | StopMethod::Docker(_) | StopMethod::Command(_) => Ok(Vec::new()),
    }
}

/// Describes what `stop` would do, for `--dry-run`.
pub fn plan(stop: &Stop) -> String {
    let grace = stop.grace;
    match &stop.method {
        StopMethod::Systemd(unit) => format!("systemctl stop {unit}"),
        StopMethod::Docker(name) => format!("docker stop -t {} {name}", grace.0.as_secs()),
        StopMethod::Command(line) => format!("run `{line}`"),
        method => match targets(method) {
            Ok(found) if found.is_empty() => format!("nothing to stop ({})", what(method)),
            Ok(found) => format!(
                "SIGTERM {} ({}), SIGKILL after {grace} what is left",
                describe_pids(&found),
                what(method)
            ),
            Err(e) => format!("cannot find what to stop: {e}"),
        },
    }
}

fn what(method: &StopMethod) -> String {
    match method {
        StopMethod::Pidfile(path) => format!("pidfile {}", path.display()),
        StopMethod::Pattern(pattern) => format!("pattern /{}/", pattern.0.as_str()),
        StopMethod::Tmux(session) => format!("tmux session {session}"),
        StopMethod::Systemd(unit) => format!("systemd unit {unit}"),
        StopMethod::Docker(name) => format!("docker container {name}"),
        StopMethod::Command(line) => format!("command `{line}`"),
    }
}

fn describe_pids(found: &[ProcessInfo]) -> String {
    let pids: Vec<String> = found.iter().map(|p| p.pid().to_string()).collect();
    format!(
        "pid{} {}",
        if pids.len() == 1 { "" } else { "s" },
        pids.join(", ")
    )
}

/// Stops what `stop` names and confirms it is gone.
pub fn stop(stop: &Stop) -> Result<Stopped, String> {
    let grace = stop.grace.std();
    match &stop.method {
        StopMethod::Pidfile(_) | StopMethod::Pattern(_) => {
            let found = targets(&stop.method)?;
            terminate(&found, grace, &what(&stop.method))
        }
        StopMethod::Tmux(session) => {
            let found = targets(&stop.method)?;
            // A session whose pane died (monitor starts them with
            // `remain-on-exit`) holds the name the start needs: it goes too.
            if !found.is_empty() || !tmux_pane_pids(session)?.is_empty() {
                // Killing the session hangs up its panes; what ignores
                // SIGHUP gets SIGTERM and then SIGKILL below.
                let _ = run_tool(
                    Command::new("tmux").args(["kill-session", "-t", &format!("={session}")]),
                    grace,
                );
            }
            terminate(&found, grace, &what(&stop.method))
        }
        StopMethod::Systemd(unit) => run_tool(
            Command::new("systemctl").args(["stop", unit]),
            grace + Duration::from_secs(30),
        )
        .map(|()| Stopped {
            description: format!("systemctl stop {unit}"),
            found_nothing: false,
        }),
        StopMethod::Docker(name) => {
            let seconds = grace.as_secs().to_string();
            run_tool(
                Command::new("docker").args(["stop", "-t", &seconds, name]),
                grace + Duration::from_secs(30),
            )
            .map(|()| Stopped {
                description: format!("docker stop -t {seconds} {name}"),
                found_nothing: false,
            })
        }
        StopMethod::Command(line) => run_tool(
            &mut crate::probe::command::build(line),
            grace + Duration::from_secs(30),
        )
        .map(|()| Stopped {
            description: format!("ran `{line}`"),
            found_nothing: false,
        }),
    }
}

/// SIGTERM, wait up to `grace`, SIGKILL what is left, and confirm.
fn terminate(found: &[ProcessInfo], grace: Duration, what: &str) -> Result<Stopped, String> {
    if found.is_empty() {
        return Ok(Stopped {
            description: format!("nothing was running ({what})"),
            found_nothing: true,
        });
    }
    let started = Instant::now();
    for process in found {
        signal(process.pid(), libc::SIGTERM);
    }
    let alive = wait_gone(found, grace);
    let termed_in = started.elapsed();
    if alive.is_empty() {
        return Ok(Stopped {
            description: format!(
                "stopped {} with SIGTERM in {:.1} s",
                describe_pids(found),
                termed_in.as_secs_f64()
            ),
            found_nothing: false,
        });
    }
    for process in &alive {
        signal(process.pid(), libc::SIGKILL);
    }
    let survivors = wait_gone(&alive, KILL_WAIT);
    if survivors.is_empty() {
        Ok(Stopped {
            description: format!(
                "stopped {}: SIGKILL to {} still running {} after SIGTERM",
                describe_pids(found),
                describe_pids(&alive),
                crate::config::Duration(grace)
            ),
            found_nothing: false,
        })
    } else {
        Err(format!(
            "{} still running after SIGTERM and SIGKILL ({what}); is it in uninterruptible I/O, or owned by another user?",
            describe_pids(&survivors)
        ))
    }
}

fn signal(pid: i32, signal: libc::c_int) {
    if pid > 1 {
        // SAFETY: kill only sends a signal to a pid we just read from /proc.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Waits until every process is gone (or restarted under another identity);
/// returns those still running at the deadline.
fn wait_gone(found: &[ProcessInfo], limit: Duration) -> Vec<ProcessInfo> {
    let deadline = Instant::now() + limit;
    loop {
        let alive: Vec<ProcessInfo> = found
            .iter()
            .filter(|p| proc_table::is_running(&p.identity))
            .cloned()
            .collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// The pids of a tmux session's panes; none when the session does not exist.
pub fn tmux_pane_pids(session: &str) -> Result<Vec<i32>, String> {
    let output = Command::new("tmux")
        .args([
            "list-panes",
            "-s",
            "-t",
            // `=NAME:` (the trailing colon): `-t =NAME` of list-panes
            // matches `NAME-gpu1` too when NAME itself does not exist.
            &format!("={session}:"),
            "-F",
            "#{pane_pid}",
        ])
        .output()
        .map_err(|e| format!("running tmux: {e} (is tmux installed?)"))?;
    if !output.status.success() {
        return Ok(Vec::new());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

/// Runs a service-manager command under a time limit; its stderr is the
/// error when it fails.
pub(crate) fn run_tool(command: &mut Command, limit: Duration) -> Result<(), String> {
    let shown = format!("{command:?}").replace('"', "");
    let finished = crate::probe::children::run_tool(command, limit, 16 * 1024)
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    match finished.status {
        Some(status) if status.success() => Ok(()),
        Some(status) => {
            let stderr = String::from_utf8_lossy(&finished.stderr);
            let why = stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            Err(format!(
                "{shown} failed ({status}){}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            ))
        }
        None => Err(format!(
            "{shown} did not finish within {}",
            crate::config::Duration(limit)
        )),
    }
}

/// A command line as one shell string (argv words quoted), for tmux.
pub(crate) fn shell_line(line: &CommandLine) -> String {
    match line {
        CommandLine::Shell(text) => text.clone(),
        CommandLine::Argv(argv) => argv
            .iter()
            .map(|word| crate::schedule::shell_quote(word))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pattern;

    fn spawn(marker: &str, script: &str) -> std::process::Child {
        std::process::Command::new("sh")
            .args(["-c", script, marker])
            .spawn()
            .unwrap()
    }

    fn pattern_stop(marker: &str, grace_ms: u64) -> Stop {
        Stop {
            method: StopMethod::Pattern(Pattern(
                regex::Regex::new(&regex::escape(marker)).unwrap(),
            )),
            grace: crate::config::Duration(Duration::from_millis(grace_ms)),
        }
    }

    fn wait_found(stop: &Stop) {
        for _ in 0..200 {
            if !targets(&stop.method).unwrap().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the child never showed up");
    }

    #[test]
    fn sigterm_is_enough_for_a_polite_process() {
        let marker = format!("polite-{}", std::process::id());
        let mut child = spawn(&marker, "while :; do sleep 0.05; done");
        let stop = pattern_stop(&marker, 5_000);
        wait_found(&stop);
        // Reap the child in the background so it does not linger as a zombie.
        let reaper = std::thread::spawn(move || child.wait());
        let stopped = stop_and_check(&stop);
        assert!(stopped.description.contains("with SIGTERM"), "{stopped:?}");
        reaper.join().unwrap().unwrap();
    }

    #[test]
    fn a_process_ignoring_sigterm_is_killed_after_grace() {
        let marker = format!("stubborn-{}", std::process::id());
        // It says when its trap is set: a SIGTERM before that would kill
        // it at once (a race a busy machine loses).
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "trap '' TERM; echo ready; while :; do sleep 0.05; done",
                &marker,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready.trim(), "ready");
        let stop = pattern_stop(&marker, 300);
        wait_found(&stop);
        let reaper = std::thread::spawn(move || child.wait());
        let started = Instant::now();
        let stopped = stop_and_check(&stop);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "waited out the grace"
        );
        assert!(stopped.description.contains("SIGKILL"), "{stopped:?}");
        reaper.join().unwrap().unwrap();
    }

    fn stop_and_check(stop: &Stop) -> Stopped {
        let stopped = super::stop(stop).unwrap();
        assert!(
            targets(&stop.method).unwrap().is_empty(),
            "nothing matches afterwards"
        );
        stopped
    }

    #[test]
    fn nothing_running_is_not_an_error() {
        let stop = pattern_stop("no-such-process-anywhere-xyz", 100);
        assert!(
            super::stop(&stop)
                .unwrap()
                .description
                .starts_with("nothing was running")
        );
    }

    #[test]
    fn argv_is_quoted_for_a_shell() {
        let line = CommandLine::Argv(vec!["./start.sh".into(), "a b".into(), "it's".into()]);
        assert_eq!(shell_line(&line), "./start.sh 'a b' 'it'\\''s'");
    }
}
