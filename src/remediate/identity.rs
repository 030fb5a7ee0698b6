//! Is the target really gone after its stop? A wrong tmux session name, a
//! socket folder (`TMUX_TMPDIR`) other than the one that started the
//! service, or a stale pidfile make a stop find "nothing running" while the
//! hung service still runs; starting then makes a second copy beside it.
//! Before a start, the task's own identity is looked up once more.

use crate::config::{CommandLine, Probe, Restart, Start, StopMethod, Task};
use crate::processes::{self, ProcessInfo};
use std::path::{Path, PathBuf};

/// One way of recognising the target on this host.
#[derive(Debug, Clone)]
enum Mark {
    Pattern(regex::Regex, &'static str),
    Pidfile(PathBuf, &'static str),
    Port(u16),
    /// The start command's program: by its absolute path, or by its name
    /// in the start's folder.
    Program {
        name: String,
        cwd: Option<PathBuf>,
    },
    ProgramPath(PathBuf),
}

/// What marks the task's target as running: `restart.identity` when the
/// config gives one, else what the task already knows of it.
fn marks(task: &Task, restart: &Restart) -> Vec<Mark> {
    let mut marks = Vec::new();
    match &restart.stop.method {
        StopMethod::Pattern(p) => marks.push(Mark::Pattern(p.0.clone(), "the stop's pattern")),
        StopMethod::Pidfile(path) => marks.push(Mark::Pidfile(path.clone(), "the stop's pidfile")),
        _ => {}
    }
    if let Some(identity) = &restart.identity {
        if let Some(p) = &identity.pattern {
            marks.push(Mark::Pattern(p.0.clone(), "restart.identity.pattern"));
        }
        if let Some(path) = &identity.pidfile {
            marks.push(Mark::Pidfile(path.clone(), "restart.identity.pidfile"));
        }
        if let Some(port) = identity.port {
            marks.push(Mark::Port(port));
        }
        return marks;
    }
    for probe in &task.probes {
        if let Probe::Process(process) = probe {
            if let Some(p) = &process.pattern {
                marks.push(Mark::Pattern(p.0.clone(), "the task's process pattern"));
            }
            if let Some(path) = &process.pidfile {
                marks.push(Mark::Pidfile(path.clone(), "the task's process pidfile"));
            }
        }
    }
    match &restart.start {
        Start::Tmux { command, cwd, .. } | Start::Command { command, cwd, .. } => {
            // A bare name with no folder would match any such program on
            // the host: only a path or a folder says it is this target.
            match (program(command), cwd) {
                (Some(word), _) if word.starts_with('/') => {
                    marks.push(Mark::ProgramPath(PathBuf::from(word)));
                }
                (Some(word), Some(cwd)) => {
                    if let Some(name) = Path::new(&word).file_name().and_then(|n| n.to_str()) {
                        marks.push(Mark::Program {
                            name: name.to_string(),
                            cwd: Some(cwd.clone()),
                        });
                    }
                }
                _ => {}
            }
        }
        Start::Systemd(_) | Start::Docker(_) => {}
    }
    marks
}

/// The program a start command runs, as written: `./start2.sh`,
/// `bash /opt/p/start2.sh` is `/opt/p/start2.sh`; shells, `exec`, `nohup`,
/// `env`, options and `VAR=value` words are skipped, and of a shell line
/// the last command (`cd /srv && ./node`), before any pipe.
fn program(command: &CommandLine) -> Option<String> {
    const WRAPPERS: &[&str] = &[
        "sh", "bash", "dash", "zsh", "exec", "nohup", "env", "setsid", "nice", "stdbuf", "sudo",
        "python", "python3",
    ];
    let words: Vec<String> = match command {
        CommandLine::Argv(argv) => argv.clone(),
        CommandLine::Shell(line) => {
            let last = line.rsplit(['&', ';']).next().unwrap_or(line);
            let command = last.split('|').next().unwrap_or(last);
            command.split_whitespace().map(str::to_string).collect()
        }
    };
    words
        .iter()
        .map(|w| w.trim_matches(['"', '\'']))
        .find(|w| {
            !w.starts_with('-') && !w.contains('=') && !w.is_empty() && {
                let base = Path::new(w)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or(w);
                !WRAPPERS.contains(&base)
            }
        })
        .map(str::to_string)
}

/// What of the target still runs, each with why it counts as the target;
/// empty when nothing does.
pub fn still_running(task: &Task, restart: &Restart) -> Vec<String> {
    let mut found = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut note = |process: &ProcessInfo, why: String, found: &mut Vec<String>| {
        if seen.insert(process.pid()) {
            found.push(format!(
                "pid {} (`{}`) {why}",
                process.pid(),
                shown(&process.command_line)
            ));
        }
    };
    for mark in marks(task, restart) {
        match mark {
            Mark::Pattern(pattern, whose) => {
                for process in processes::by_pattern(&pattern) {
                    note(
                        &process,
                        format!("matches {whose} /{}/", pattern.as_str()),
                        &mut found,
                    );
                }
            }
            Mark::Pidfile(path, whose) => {
                if let Ok(Some(process)) = processes::by_pidfile(&path) {
                    note(
                        &process,
                        format!("is named by {whose} {}", path.display()),
                        &mut found,
                    );
                }
            }
            Mark::Port(port) => match processes::listening_on(port) {
                None => {}
                Some(owners) if owners.is_empty() => found.push(format!(
                    "port {port} is still listened on (by a process of another user)"
                )),
                Some(owners) => {
                    for process in owners {
                        note(&process, format!("listens on port {port}"), &mut found);
                    }
                }
            },
            Mark::ProgramPath(path) => {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                for process in processes::by_program(name, None).into_iter().filter(|p| {
                    p.command_line
                        .split(' ')
                        .take(3)
                        .any(|w| Path::new(w) == path)
                }) {
                    note(
                        &process,
                        format!("runs the start command's {}", path.display()),
                        &mut found,
                    );
                }
            }
            Mark::Program { name, cwd } => {
                for process in processes::by_program(&name, cwd.as_deref()) {
                    let place = cwd
                        .as_ref()
                        .map(|c| format!(" in {}", c.components().collect::<PathBuf>().display()))
                        .unwrap_or_default();
                    note(
                        &process,
                        format!("runs the start command's {name}{place}"),
                        &mut found,
                    );
                }
            }
        }
    }
    found
}

fn shown(command_line: &str) -> String {
    let mut text: String = command_line.chars().take(120).collect();
    if command_line.chars().count() > 120 {
        text.push('…');
    }
    text
}

/// Why no start follows a stop that left the target running, and what to
/// check.
pub fn refusal(stopped: &str, running: &[String], stop: &StopMethod) -> String {
    let hint = match stop {
        StopMethod::Tmux(session) => format!(
            "is it in another tmux session than {session}, or under another tmux socket (TMUX_TMPDIR, user)? "
        ),
        StopMethod::Pidfile(path) => format!("is the pidfile {} stale? ", path.display()),
        _ => String::new(),
    };
    format!(
        "not starting a second copy: {stopped}, but the target still runs: {}; {hint}stop it by hand or fix `stop:` (or `restart.identity`) in jobs.yaml",
        running.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_of_a_start_command() {
        let shell = |s: &str| program(&CommandLine::Shell(s.into()));
        assert_eq!(shell("./start2.sh").as_deref(), Some("./start2.sh"));
        assert_eq!(
            shell("bash /root/p/start2.sh --x").as_deref(),
            Some("/root/p/start2.sh")
        );
        assert_eq!(
            shell("RUST_LOG=info exec ./prover -c a.toml").as_deref(),
            Some("./prover")
        );
        assert_eq!(
            shell("cd /srv && nohup ./geth | tee x").as_deref(),
            Some("./geth")
        );
        assert_eq!(
            program(&CommandLine::Argv(vec![
                "python3".into(),
                "/x/server.py".into()
            ]))
            .as_deref(),
            Some("/x/server.py")
        );
        assert_eq!(shell("sh -c").as_deref(), None);
    }
}
