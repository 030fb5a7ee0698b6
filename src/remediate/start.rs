//! Starting the service again: a detached command (its own session, output
//! appended to a file, so it outlives the tick), a new tmux session, or the
//! service manager (systemd, docker).

use super::stop::{run_tool, shell_line};

use crate::config::{CommandLine, Text, Why, within_mapping};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A tmux session name tmux keeps as written: not empty, no `.` or `:`
/// (tmux turns them into `_`), not an option.
pub(crate) fn tmux_session<E: de::Error>(name: Text) -> Result<String, E> {
    let name = name.0;
    if name.is_empty() || name.starts_with('-') || name.contains(['.', ':']) {
        return Err(E::custom(format!(
            "tmux session name {name:?} cannot be used: tmux renames names with `.` or `:` and refuses empty ones or ones starting with `-`"
        )));
    }
    Ok(name)
}

/// How to start the service again.
#[derive(Debug, Clone)]
pub enum Start {
    Command {
        command: CommandLine,
        cwd: Option<PathBuf>,
        env: BTreeMap<String, Text>,
        output: Option<PathBuf>,
    },
    Tmux {
        session: String,
        command: CommandLine,
        cwd: Option<PathBuf>,
    },
    Systemd(String),
    Docker(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStart {
    #[serde(default)]
    command: Option<CommandLine>,
    #[serde(default)]
    tmux: Option<Text>,
    #[serde(default)]
    systemd: Option<Text>,
    #[serde(default)]
    docker: Option<Text>,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, Text>,
    #[serde(default)]
    output: Option<PathBuf>,
}

impl<'de> Deserialize<'de> for Start {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within_mapping(d, |raw: RawStart| -> Result<Self, Why> {
            let fail = |why: &str| Err(de::Error::custom(why));
            match (raw.command, raw.tmux, raw.systemd, raw.docker) {
                (Some(command), None, None, None) => Ok(Start::Command {
                    command,
                    cwd: raw.cwd,
                    env: raw.env,
                    output: raw.output,
                }),
                (Some(command), Some(session), None, None) => Ok(Start::Tmux {
                    session: tmux_session(session)?,
                    command,
                    cwd: raw.cwd,
                }),
                (None, Some(_), None, None) => {
                    fail("`start: {tmux: …}` needs the `command` to run in the new session")
                }
                (None, None, Some(unit), None) => Ok(Start::Systemd(unit.0)),
                (None, None, None, Some(container)) => Ok(Start::Docker(container.0)),
                _ => fail(
                    "`start` takes one of: command (+ cwd, env, output), tmux + command (+ cwd), systemd, docker",
                ),
            }
        })
    }
}

/// What was started, watched while waiting for health.
#[derive(Debug)]
pub struct Started {
    what: What,
    description: String,
    /// When a service manager or tmux may be asked again (a detached
    /// child is looked at every time: that costs nothing).
    next_look: Instant,
    look_every: Duration,
    seen: Liveness,
}

#[derive(Debug)]
enum What {
    /// A detached child, left running after the tick.
    Process {
        child: Child,
        output: PathBuf,
    },
    Tmux {
        session: String,
    },
    Unit {
        unit: String,
    },
    Container {
        name: String,
    },
}

/// Whether the started thing still runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Liveness {
    Running,
    /// Not running yet, not failed either (`activating`, `restarting`).
    Starting(String),
    /// It died or its manager says it failed: why, with its last output.
    Dead(String),
}

/// What a tmux start's pane prints last: `[monitor] exit status <n>`.
const EXIT_WORD: &str = "[monitor] exit status ";

/// How often tmux, systemctl or docker are asked while waiting.
const LOOK_EVERY: Duration = Duration::from_millis(500);

impl Started {
    fn new(what: What, description: String) -> Started {
        Started {
            what,
            description,
            next_look: Instant::now(),
            look_every: LOOK_EVERY,
            seen: Liveness::Starting("not looked at yet".into()),
        }
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether what was started still runs. A detached child that exited
    /// with status 0 is a start script that put the service in the
    /// background: the health checks decide then. A tmux pane whose
    /// command exited, whatever its status, no longer runs the service.
    pub fn liveness(&mut self) -> Liveness {
        if let What::Process { child, output } = &mut self.what {
            return match child.try_wait() {
                Ok(Some(status)) if !status.success() => Liveness::Dead(format!(
                    "the started process exited ({status}){} (all of its output is in {})",
                    said(&output_tail(output, TAIL_LINES)),
                    output.display()
                )),
                _ => Liveness::Running,
            };
        }
        if matches!(self.seen, Liveness::Dead(_)) || Instant::now() < self.next_look {
            return self.seen.clone();
        }
        // Asked every 0.5 s at first, then less often (up to every 4 s).
        self.next_look = Instant::now() + self.look_every;
        self.look_every = (self.look_every * 2).min(Duration::from_secs(4));
        self.seen = match &self.what {
            What::Process { .. } => Liveness::Running,
            What::Tmux { session } => tmux_liveness(session),
            What::Unit { unit } => unit_liveness(unit),
            What::Container { name } => container_liveness(name),
        };
        self.seen.clone()
    }
}

/// How many of a dead start's last output lines are told.
const TAIL_LINES: usize = 5;

fn said(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; its last lines: {tail}")
    }
}

/// A tmux session started with `remain-on-exit`: a dead pane stays, with
/// its exit status and screen, until it is read here (then the session
/// goes, so the next start can take its name).
fn tmux_liveness(session: &str) -> Liveness {
    let target = format!("={session}");
    let listed = Command::new("tmux")
        .args(["has-session", "-t", &target])
        .output();
    match listed {
        Err(_) => return Liveness::Dead("tmux cannot be run any more".into()),
        Ok(listed) if !listed.status.success() => {
            return Liveness::Dead(format!(
                "tmux session {session} is gone: the command it ran exited (`tmux has-session -t {session}` finds nothing)"
            ));
        }
        Ok(_) => {}
    }
    let Some(why) = tmux_dead_pane(session) else {
        return Liveness::Running;
    };
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &target])
        .output();
    Liveness::Dead(why)
}

/// When a pane of tmux session `session` is dead (it was started with
/// `remain-on-exit`): how its command ended and its last lines. `None`
/// while every pane runs, or when there is no such session.
pub fn tmux_dead_pane(session: &str) -> Option<String> {
    let target = format!("={session}");
    let look = || {
        Command::new("tmux")
            .args([
                "list-panes",
                "-s",
                "-t",
                // `=NAME:` (the trailing colon): tmux takes `-t =NAME` of
                // list-panes as a prefix of other sessions' names.
                &format!("{target}:"),
                "-F",
                "#{pane_dead} #{pane_dead_status} #{pane_dead_signal}",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    };
    // tmux marks a pane dead when its output closes, and learns the exit
    // status a moment later: a dead pane without one is asked again.
    let mut status = String::new();
    for attempt in 0..5 {
        let text = look()?;
        let dead = text.lines().find(|l| l.starts_with('1'))?;
        let words: Vec<&str> = dead.split_whitespace().collect();
        status = match (words.get(1), words.get(2)) {
            (Some(code), _) if code.parse::<i32>().is_ok() => format!("exit status: {code}"),
            (_, Some(signal)) => format!("killed by signal {signal}"),
            _ if attempt == 4 => "its exit status unknown".into(),
            _ => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        break;
    }
    let screen = Command::new("tmux")
        .args([
            "capture-pane",
            "-p",
            "-t",
            &format!("{target}:"),
            "-S",
            "-200",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    // The start's own last word (see `start`), when tmux did not learn it;
    // tmux's own "Pane is dead" line is no line of the command's.
    let mut shown = String::new();
    for line in screen.lines() {
        match line.trim().strip_prefix(EXIT_WORD) {
            Some(code) if status.contains("unknown") => status = format!("exit status: {code}"),
            Some(_) => {}
            None if line.trim_start().starts_with("Pane is dead") => {}
            None => {
                shown.push_str(line);
                shown.push('\n');
            }
        }
    }
    Some(format!(
        "the command in tmux session {session} exited ({status}){}",
        said(&last_lines(&shown, TAIL_LINES))
    ))
}

fn unit_liveness(unit: &str) -> Liveness {
    let state = Command::new("systemctl")
        .args(["is-active", unit])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    match state.as_str() {
        "active" | "reloading" => Liveness::Running,
        "activating" | "deactivating" | "refreshing" => {
            Liveness::Starting(format!("systemd unit {unit} is {state}"))
        }
        _ => {
            let journal = Command::new("journalctl")
                .args(["-u", unit, "-n", "20", "-o", "cat", "--no-pager"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            Liveness::Dead(format!(
                "systemd unit {unit} is {}{} (see `systemctl status {unit}`)",
                if state.is_empty() { "unknown" } else { &state },
                said(&last_lines(&journal, TAIL_LINES))
            ))
        }
    }
}

fn container_liveness(name: &str) -> Liveness {
    let inspected = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            name,
        ])
        .output();
    let text = inspected
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut words = text.split_whitespace();
    let (status, code) = (words.next().unwrap_or(""), words.next().unwrap_or("?"));
    match status {
        "running" => Liveness::Running,
        "created" | "restarting" => {
            Liveness::Starting(format!("docker container {name} is {status}"))
        }
        "" => Liveness::Dead(format!(
            "docker inspect {name} says nothing: is the container there?"
        )),
        _ => {
            let logs = Command::new("docker")
                .args(["logs", "--tail", "20", name])
                .output()
                .map(|o| {
                    let mut text = String::from_utf8_lossy(&o.stdout).to_string();
                    text.push_str(&String::from_utf8_lossy(&o.stderr));
                    text
                })
                .unwrap_or_default();
            Liveness::Dead(format!(
                "docker container {name} is {status} (exit code {code}){}",
                said(&last_lines(&logs, TAIL_LINES))
            ))
        }
    }
}

/// The last `lines` non-blank lines of a start's output file, joined with
/// ` | ` (the error is usually last; a banner can come first).
fn output_tail(path: &Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(size.saturating_sub(8192)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    last_lines(&String::from_utf8_lossy(&bytes), lines)
}

/// The last `lines` non-blank lines of `text`, control characters blanked,
/// each cut at 200 characters, joined with ` | `.
fn last_lines(text: &str, lines: usize) -> String {
    static ANSI: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\x1b\[[0-9;?]*[ -/]*[@-~]").expect("a valid regex")
    });
    let text = ANSI.replace_all(text, "");
    let mut last: Vec<String> = text
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(lines)
        .map(|l| {
            l.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(200)
                .collect()
        })
        .collect();
    last.reverse();
    last.join(" | ")
}

/// How a start is done, in a few words ("tmux cysic", "systemd node").
pub fn plan_short(start: &Start) -> String {
    match start {
        Start::Command { .. } => "a detached command".into(),
        Start::Tmux { session, .. } => format!("tmux {session}"),
        Start::Systemd(unit) => format!("systemd {unit}"),
        Start::Docker(name) => format!("docker {name}"),
    }
}

/// Describes what `start` would do, for `--dry-run`.
pub fn plan(start: &Start, default_output: &Path) -> String {
    match start {
        Start::Command {
            command,
            cwd,
            output,
            ..
        } => format!(
            "start `{command}`{} detached, output to {}",
            cwd.as_ref()
                .map(|c| format!(" in {}", c.display()))
                .unwrap_or_default(),
            output.as_deref().unwrap_or(default_output).display()
        ),
        Start::Tmux {
            session,
            command,
            cwd,
        } => format!(
            "start tmux session {session} running `{command}`{}",
            cwd.as_ref()
                .map(|c| format!(" in {}", c.display()))
                .unwrap_or_default()
        ),
        Start::Systemd(unit) => format!("systemctl start {unit}"),
        Start::Docker(name) => format!("docker start {name}"),
    }
}

/// Starts the service. `default_output` receives a detached command's
/// output when the config names no `output` file.
pub fn start(start: &Start, default_output: &Path) -> Result<Started, String> {
    match start {
        Start::Command {
            command,
            cwd,
            env,
            output,
        } => {
            let output = output
                .clone()
                .unwrap_or_else(|| default_output.to_path_buf());
            spawn_detached(command, cwd.as_deref(), env, &output)
        }
        Start::Tmux {
            session,
            command,
            cwd,
        } => {
            let mut tmux = Command::new("tmux");
            tmux.args(["new-session", "-d", "-s", session]);
            if let Some(cwd) = cwd {
                tmux.arg("-c").arg(cwd);
            }
            // In the same command list (tmux runs it before it notices a
            // child's exit): a pane whose command dies stays, dead, with
            // its status and last screen, for the watch to read.
            // The pane's shell says how the command ended (tmux may learn
            // it too late to tell); a command that `exec`s says nothing.
            // On a line of its own: the command may end in `&` or a
            // `# comment`.
            let line = format!(
                "{}\nstatus=$?; echo \"{EXIT_WORD}$status\"; exit $status",
                shell_line(command)
            );
            tmux.arg(line).args([
                ";",
                "set-option",
                "-w",
                "-t",
                &format!("={session}:"),
                "remain-on-exit",
                "on",
            ]);
            run_tool(&mut tmux, Duration::from_secs(30))?;
            let panes = super::stop::tmux_pane_pids(session)?;
            let pane = panes
                .first()
                .map(|p| format!(" (pane pid {p})"))
                .unwrap_or_default();
            Ok(Started::new(
                What::Tmux {
                    session: session.clone(),
                },
                format!("started tmux session {session}{pane} running `{command}`"),
            ))
        }
        Start::Systemd(unit) => run_tool(
            Command::new("systemctl").args(["start", unit]),
            Duration::from_secs(90),
        )
        .map(|()| {
            Started::new(
                What::Unit { unit: unit.clone() },
                format!("systemctl start {unit}"),
            )
        }),
        Start::Docker(name) => run_tool(
            Command::new("docker").args(["start", name]),
            Duration::from_secs(90),
        )
        .map(|()| {
            Started::new(
                What::Container { name: name.clone() },
                format!("docker start {name}"),
            )
        }),
    }
}

/// `systemctl restart UNIT`: stop and start in one job (the stop's grace
/// plus 90 s to finish).
pub fn restart_unit(unit: &str, grace: Duration) -> Result<Started, String> {
    run_tool(
        Command::new("systemctl").args(["restart", unit]),
        grace + Duration::from_secs(90),
    )?;
    Ok(Started::new(
        What::Unit {
            unit: unit.to_string(),
        },
        format!("systemctl restart {unit}"),
    ))
}

fn spawn_detached(
    line: &CommandLine,
    cwd: Option<&Path>,
    env: &std::collections::BTreeMap<String, crate::config::Text>,
    output: &Path,
) -> Result<Started, String> {
    if let Some(dir) = output.parent() {
        crate::store::create_private_dir(dir).map_err(|e| format!("{e:#}"))?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(output)
        .map_err(|e| format!("opening the output file {}: {e}", output.display()))?;
    crate::ownership::adopt(output);
    let log_err = log
        .try_clone()
        .map_err(|e| format!("{}: {e}", output.display()))?;
    let mut command = crate::probe::command::build(line);
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    for (key, value) in env {
        command.env(key, value.as_str());
    }
    command.stdin(Stdio::null()).stdout(log).stderr(log_err);
    // SAFETY: setsid is async-signal-safe; it detaches the child from our
    // session and controlling terminal so it outlives the tick and cron's
    // or supercronic's process group.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start `{line}`: {e}"))?;
    let description = format!("started `{line}` as pid {}", child.id());
    Ok(Started::new(
        What::Process {
            child,
            output: output.to_path_buf(),
        },
        description,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_command_leads_its_own_session_and_writes_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out/service.log");
        let start = Start::Command {
            command: CommandLine::Shell("echo started; echo oops >&2".into()),
            cwd: Some(dir.path().to_path_buf()),
            env: Default::default(),
            output: None,
        };
        let mut started = super::start(&start, &output).unwrap();
        let What::Process { child, .. } = &mut started.what else {
            panic!("{started:?}")
        };
        let pid = child.id() as i32;
        // SAFETY: getsid only reads the session id of a pid we started.
        let sid = unsafe { libc::getsid(pid) };
        let status = child.wait().unwrap();
        assert!(status.success());
        assert!(
            sid == pid || sid == -1,
            "the child leads its own session (sid {sid}, pid {pid})"
        );
        assert_eq!(std::fs::read_to_string(&output).unwrap(), "started\noops\n");
    }

    #[test]
    fn an_immediate_exit_is_reported_with_the_output_file() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("service.log");
        let start = Start::Command {
            command: CommandLine::Argv(vec!["sh".into(), "-c".into(), "exit 3".into()]),
            cwd: None,
            env: Default::default(),
            output: None,
        };
        let mut started = super::start(&start, &output).unwrap();
        let mut why = None;
        for _ in 0..200 {
            if let Liveness::Dead(dead) = started.liveness() {
                why = Some(dead);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let why = why.expect("exit noticed");
        assert!(
            why.contains("exit status: 3") && why.contains("service.log"),
            "{why}"
        );
    }
}
