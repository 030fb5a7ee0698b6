//! Starting the service again: a detached command (its own session, output
//! appended to a file, so it outlives the tick), a new tmux session, or the
//! service manager (systemd, docker).

use super::stop::{run_tool, shell_line};
use crate::config::{CommandLine, Start};
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What was started.
#[derive(Debug)]
pub enum Started {
    /// A detached child: watched while waiting for health, then left running.
    Process {
        child: Child,
        output: PathBuf,
        description: String,
    },
    /// Started through tmux or a service manager.
    Other { description: String },
}

impl Started {
    pub fn description(&self) -> &str {
        match self {
            Started::Process { description, .. } | Started::Other { description } => description,
        }
    }

    /// `Some(why)` when a started process has already failed: it exited
    /// with an error. An exit with status 0 is a start script that put the
    /// service in the background; the health checks decide then.
    pub fn exited(&mut self) -> Option<String> {
        let Started::Process { child, output, .. } = self else {
            return None;
        };
        match child.try_wait() {
            Ok(Some(status)) if !status.success() => {
                let tail = output_tail(output, 5);
                let tail = if tail.is_empty() {
                    String::new()
                } else {
                    format!("; its last lines: {tail}")
                };
                Some(format!(
                    "the started process exited ({status}){tail} (all of its output is in {})",
                    output.display()
                ))
            }
            _ => None,
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
    let text = String::from_utf8_lossy(&bytes);
    let mut last: Vec<String> = text
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(lines)
        .map(|l| {
            let shown: String = l
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(200)
                .collect();
            shown
        })
        .collect();
    last.reverse();
    last.join(" | ")
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
            tmux.arg(shell_line(command));
            run_tool(&mut tmux, Duration::from_secs(30))?;
            let panes = super::stop::tmux_pane_pids(session)?;
            let pane = panes
                .first()
                .map(|p| format!(" (pane pid {p})"))
                .unwrap_or_default();
            Ok(Started::Other {
                description: format!("started tmux session {session}{pane} running `{command}`"),
            })
        }
        Start::Systemd(unit) => run_tool(
            Command::new("systemctl").args(["start", unit]),
            Duration::from_secs(90),
        )
        .map(|()| Started::Other {
            description: format!("systemctl start {unit}"),
        }),
        Start::Docker(name) => run_tool(
            Command::new("docker").args(["start", name]),
            Duration::from_secs(90),
        )
        .map(|()| Started::Other {
            description: format!("docker start {name}"),
        }),
    }
}

fn spawn_detached(
    line: &CommandLine,
    cwd: Option<&Path>,
    env: &std::collections::BTreeMap<String, crate::config::Text>,
    output: &Path,
) -> Result<Started, String> {
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(output)
        .map_err(|e| format!("opening the output file {}: {e}", output.display()))?;
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
    Ok(Started::Process {
        child,
        output: output.to_path_buf(),
        description,
    })
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
        let Started::Process { child, .. } = &mut started else {
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
            why = started.exited();
            if why.is_some() {
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
