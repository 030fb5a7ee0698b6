//! Is the target really gone after its stop? A wrong tmux session name, a
//! socket folder (`TMUX_TMPDIR`) other than the one that started the
//! service, or a stale pidfile make a stop find "nothing running" while the
//! hung service still runs; starting then makes a second copy beside it.
//! Before a start, the task's own identity is looked up once more.

use super::Restart;
use super::start::Start;
use super::stop::StopMethod;
use crate::config::{CommandLine, Pattern, Probe, Task};
use crate::probe::process::ProcessConfig;
use crate::proc_table::{self, ProcessInfo};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `restart.identity`: how to tell that the target still runs.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// A command-line regex of the target's processes.
    #[serde(default)]
    pub pattern: Option<Pattern>,
    #[serde(default)]
    pub pidfile: Option<PathBuf>,
    /// A TCP port the target listens on (any local address).
    #[serde(default)]
    pub port: Option<u16>,
}

impl Identity {
    /// Whether it names nothing real (and so would check for nothing, or
    /// for everything: an empty pattern matches every process).
    pub fn is_empty(&self) -> bool {
        (self.pattern.is_none() && self.pidfile.is_none() && self.port.is_none())
            || self
                .pattern
                .as_ref()
                .is_some_and(|p| p.0.as_str().is_empty())
            || self
                .pidfile
                .as_ref()
                .is_some_and(|p| p.as_os_str().is_empty())
            || self.port == Some(0)
    }
}

/// One way of recognising the target on this host.
#[derive(Debug, Clone)]
enum Mark {
    Pattern(regex::Regex, &'static str),
    Pidfile(PathBuf, &'static str),
    Port(u16),
    /// The start command as a process shows it: its program (by absolute
    /// path, or by name in the start's folder) and the same arguments.
    Program(Program),
}

#[derive(Debug, Clone, PartialEq)]
struct Program {
    /// As written: `./start2.sh`, `/opt/p/run`.
    word: String,
    args: Vec<String>,
    cwd: Option<PathBuf>,
}

/// What marks the task's target as running: `restart.identity` when the
/// config gives one, else what the task already knows of it.
fn marks(task: &Task, restart: &Restart, stop_found_nothing: bool) -> Vec<Mark> {
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
        match probe {
            Probe::Process(ProcessConfig::Pattern(p)) => {
                marks.push(Mark::Pattern(p.0.clone(), "the task's process pattern"));
            }
            Probe::Process(ProcessConfig::Pidfile(path)) => {
                marks.push(Mark::Pidfile(path.clone(), "the task's process pidfile"));
            }
            _ => {}
        }
    }
    // A stop by session or by command that found nothing may have missed
    // the target (a pattern or pidfile stop is checked by its own mark):
    // the start command still running is the target. (After a stop that
    // did stop something, another copy of the command is another
    // instance.) A bare name with no folder would match any such program
    // on the host: only an absolute path or a folder says it is this one.
    // (A stop by command cannot say what it found: after it the start
    // command still running is always the target.)
    let missed = match restart.stop.method {
        StopMethod::Tmux(_) => stop_found_nothing,
        StopMethod::Command(_) => true,
        _ => false,
    };
    if missed
        && let Start::Tmux { command, cwd, .. } | Start::Command { command, cwd, .. } =
            &restart.start
        && let Some((word, args)) = program(command)
        && (word.starts_with('/') || cwd.is_some())
    {
        marks.push(Mark::Program(Program {
            word,
            args,
            cwd: cwd.clone(),
        }));
    }
    marks
}

/// The program a start command runs and its arguments, as written:
/// `bash /opt/p/start2.sh --x` is `/opt/p/start2.sh` with `--x`; shells,
/// `exec`, `nohup`, `env`, leading options and `VAR=value` words are
/// skipped; of a shell line the last command (`cd /srv && ./node`), before
/// any pipe or redirection.
fn program(command: &CommandLine) -> Option<(String, Vec<String>)> {
    const WRAPPERS: &[&str] = &[
        "sh", "bash", "dash", "zsh", "exec", "nohup", "env", "setsid", "nice", "stdbuf", "sudo",
        "python", "python3",
    ];
    let words: Vec<String> = match command {
        CommandLine::Argv(argv) => argv.clone(),
        CommandLine::Shell(line) => {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            // The last simple command: after the last `&&`, `||`, `;`, `&`.
            let from = tokens
                .iter()
                .rposition(|t| matches!(*t, "&&" | "||" | ";" | "&") || t.ends_with(';'))
                .map_or(0, |i| i + 1);
            tokens[from..]
                .iter()
                .take_while(|w| **w != "|" && !w.contains(['>', '<']))
                .map(|w| w.trim_matches(['"', '\'']).to_string())
                .collect()
        }
    };
    let start = words.iter().position(|w| {
        let base = Path::new(w)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(w);
        !w.is_empty() && !w.starts_with('-') && !w.contains('=') && !WRAPPERS.contains(&base)
    })?;
    Some((words[start].clone(), words[start + 1..].to_vec()))
}

/// Whether a process's argv runs `program`: the program itself (the same
/// absolute path, or the same name when the start gave a relative one), or
/// a shell or interpreter running it (`bash ./start2.sh`, not `vim
/// start2.sh`), then exactly the start's arguments.
fn runs(argv: &[String], program: &Program) -> bool {
    let name = Path::new(&program.word).file_name();
    let interpreter = |word: &String| {
        Path::new(word)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| INTERPRETERS.contains(&n))
    };
    argv.iter().take(3).enumerate().any(|(i, word)| {
        let same = if program.word.starts_with('/') {
            Path::new(word) == Path::new(&program.word)
        } else {
            Path::new(word).file_name() == name
        };
        let run = i == 0
            || argv[..i]
                .iter()
                .all(|w| interpreter(w) || w.starts_with('-'));
        same && run && argv[i + 1..] == program.args[..]
    })
}

/// What runs a script: a process `sh ./start2.sh` runs start2.sh.
const INTERPRETERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "python", "python3", "perl", "node", "ruby", "env",
];

/// What of the target still runs, each with why it counts as the target;
/// empty when nothing does.
pub fn still_running(task: &Task, restart: &Restart, stop_found_nothing: bool) -> Vec<String> {
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
    for mark in marks(task, restart, stop_found_nothing) {
        match mark {
            Mark::Pattern(pattern, whose) => {
                for process in proc_table::by_pattern(&pattern) {
                    note(
                        &process,
                        format!("matches {whose} /{}/", pattern.as_str()),
                        &mut found,
                    );
                }
            }
            Mark::Pidfile(path, whose) => {
                if let Ok(Some(process)) = proc_table::by_pidfile(&path) {
                    note(
                        &process,
                        format!("is named by {whose} {}", path.display()),
                        &mut found,
                    );
                }
            }
            Mark::Port(port) => match proc_table::listening_on(port) {
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
            Mark::Program(program) => {
                let name = Path::new(&program.word)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("");
                let cwd = program
                    .cwd
                    .as_deref()
                    .filter(|_| !program.word.starts_with('/'));
                for process in proc_table::by_program(name, cwd)
                    .into_iter()
                    .filter(|p| runs(&proc_table::argv(p.pid()), &program))
                {
                    let place = cwd
                        .map(|c| format!(" in {}", c.components().collect::<PathBuf>().display()))
                        .unwrap_or_default();
                    note(
                        &process,
                        format!("runs the start command's {}{place}", program.word),
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

    fn shell(line: &str) -> Option<(String, Vec<String>)> {
        program(&CommandLine::Shell(line.into()))
    }

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn the_program_of_a_start_command() {
        assert_eq!(shell("./start2.sh"), Some(("./start2.sh".into(), vec![])));
        assert_eq!(
            shell("bash /root/p/start2.sh --x"),
            Some(("/root/p/start2.sh".into(), words(&["--x"])))
        );
        assert_eq!(
            shell("RUST_LOG=info exec ./prover -c a.toml >> out.log 2>&1"),
            Some(("./prover".into(), words(&["-c", "a.toml"])))
        );
        assert_eq!(
            shell("cd /srv && nohup ./geth | tee x"),
            Some(("./geth".into(), vec![]))
        );
        assert_eq!(
            program(&CommandLine::Argv(words(&[
                "python3",
                "/x/server.py",
                "8080"
            ]))),
            Some(("/x/server.py".into(), words(&["8080"])))
        );
        assert_eq!(shell("sh -c"), None);
    }

    #[test]
    fn another_instance_of_the_same_script_is_not_the_target() {
        let program = Program {
            word: "./start.sh".into(),
            args: words(&["--instance", "2"]),
            cwd: None,
        };
        assert!(runs(
            &words(&["bash", "./start.sh", "--instance", "2"]),
            &program
        ));
        assert!(runs(
            &words(&["/bin/sh", "start.sh", "--instance", "2"]),
            &program
        ));
        assert!(!runs(
            &words(&["bash", "./start.sh", "--instance", "1"]),
            &program
        ));
        assert!(!runs(&words(&["bash", "./start.sh"]), &program));
        assert!(
            !runs(&words(&["vim", "start.sh", "--instance", "2"]), &program),
            "an editor is not the target"
        );
        let absolute = Program {
            word: "/opt/a/run".into(),
            args: vec![],
            cwd: None,
        };
        assert!(runs(&words(&["/opt/a/run"]), &absolute));
        assert!(!runs(&words(&["/opt/b/run"]), &absolute));
    }
}
