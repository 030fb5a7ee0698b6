//! The `process` probe: is the target alive, who is it (pid + start time),
//! how big is it. Finds and reads processes; never signals them (that is
//! `remediate`'s job).

use super::disk::human_bytes;
use super::kinds::ProbeConfig;
use super::{Check, CheckStatus, Context, Mode, Observation, children};
use crate::config::{Pattern, Text, Why, within_mapping};
use crate::proc_table::{self, ProcessInfo};
use serde::Deserialize;
use serde::de::Deserializer;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// `process`: is the target alive, and how big is it. The target is
/// found by exactly one of a pidfile, a command-line pattern, a unit.
#[derive(Debug, Clone)]
pub enum ProcessConfig {
    Pidfile(PathBuf),
    Pattern(Pattern),
    Systemd(Text),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    #[serde(default)]
    pidfile: Option<PathBuf>,
    #[serde(default)]
    pattern: Option<Pattern>,
    #[serde(default)]
    systemd: Option<Text>,
}

impl<'de> Deserialize<'de> for ProcessConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within_mapping(d, |raw: RawProcess| {
            match (raw.pidfile, raw.pattern, raw.systemd) {
                (Some(path), None, None) => Ok(ProcessConfig::Pidfile(path)),
                (None, Some(pattern), None) => Ok(ProcessConfig::Pattern(pattern)),
                (None, None, Some(unit)) => Ok(ProcessConfig::Systemd(unit)),
                _ => Err(Why(
                    "a `process` probe takes exactly one of `pidfile`, `pattern`, `systemd`".into(),
                )),
            }
        })
    }
}

/// State key: the identity (`pid:start_ticks`) seen at the last tick.
const IDENTITY_KEY: &str = "process.identity";
/// State key: the RSS in bytes seen at the last tick.
const RSS_KEY: &str = "process.rss";

/// What looking for the target found.
enum Found {
    /// The target runs; `matches` processes fit (several only for a pattern).
    Up {
        process: ProcessInfo,
        matches: usize,
    },
    /// Nothing runs: why, for a person.
    Down(String),
}

impl ProbeConfig for ProcessConfig {
    fn signal_names(&self) -> Option<Vec<String>> {
        Some(
            [
                "up",
                "processes",
                "pid",
                "rss_bytes",
                "restarted",
                "rss_growth_bytes",
                "uptime_s",
                "open_fds",
                "fds_ratio",
            ]
            .map(String::from)
            .to_vec(),
        )
    }

    fn observe(&self, context: &Context, out: &mut Observation) {
        observe(self, context, out);
    }

    fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        match self {
            ProcessConfig::Pidfile(path) => vec![path],
            ProcessConfig::Pattern(_) | ProcessConfig::Systemd(_) => Vec::new(),
        }
    }
}

/// Finds the target and records `up`, `pid`, `uptime_s`, `rss_bytes`,
/// `rss_growth_bytes`, `open_fds`, `fds_ratio`, `restarted`, `processes`.
pub fn observe(probe: &ProcessConfig, context: &Context, out: &mut Observation) {
    let found = find(probe, context);
    match found {
        Err(summary) => out.checks.push(Check {
            probe: "process",
            status: CheckStatus::Failed,
            summary,
        }),
        Ok(Found::Down(summary)) => {
            // The last identity stays in state, so the next process seen
            // counts as a restart.
            out.signals.set_probe("process", "up", 0.0);
            out.signals.set_probe("process", "processes", 0.0);
            out.checks.push(Check {
                probe: "process",
                status: CheckStatus::Critical,
                summary,
            });
        }
        Ok(Found::Up { process, matches }) => record_up(&process, matches, context, out),
    }
}

fn find(target: &ProcessConfig, context: &Context) -> Result<Found, String> {
    match target {
        ProcessConfig::Pidfile(path) => by_pidfile(path),
        ProcessConfig::Pattern(Pattern(pattern)) => {
            let all = proc_table::by_pattern(pattern);
            let matches = all.len();
            Ok(match all.into_iter().next() {
                Some(process) => Found::Up { process, matches },
                None => Found::Down(format!("no process matches /{}/", pattern.as_str())),
            })
        }
        ProcessConfig::Systemd(unit) => {
            let unit = unit.as_str();
            let timeout = context.budget(None);
            match main_pid(Path::new("systemctl"), unit, timeout)? {
                0 => Ok(Found::Down(format!(
                    "systemd unit {unit} has no main process (not running)"
                ))),
                pid => Ok(match proc_table::read(pid) {
                    Some(process) => Found::Up {
                        process,
                        matches: 1,
                    },
                    None => Found::Down(format!(
                        "systemd unit {unit} names main pid {pid} which is not running"
                    )),
                }),
            }
        }
    }
}

/// A missing pidfile means the target is down (daemons remove theirs when
/// they stop); a pidfile that cannot be read or holds no pid is a failed
/// observation.
fn by_pidfile(path: &Path) -> Result<Found, String> {
    if let Err(e) = std::fs::metadata(path)
        && e.kind() == std::io::ErrorKind::NotFound
    {
        return Ok(Found::Down(format!(
            "pidfile {} does not exist (not running?)",
            path.display()
        )));
    }
    let pid = proc_table::read_pidfile(path)?;
    Ok(match proc_table::read(pid) {
        Some(process) => Found::Up {
            process,
            matches: 1,
        },
        None => Found::Down(format!(
            "pidfile {} names pid {pid} which is not running",
            path.display()
        )),
    })
}

/// The unit's main pid by `systemctl show -p MainPID --value UNIT`: 0 when
/// it runs no process. `systemctl` is a parameter so tests can stand in.
fn main_pid(systemctl: &Path, unit: &str, timeout: Duration) -> Result<i32, String> {
    let mut command = Command::new(systemctl);
    command.args(["show", "-p", "MainPID", "--value", unit]);
    let finished = children::run(&mut command, timeout, 4096)
        .map_err(|e| format!("cannot run {} for unit {unit}: {e}", systemctl.display()))?;
    let Some(status) = finished.status else {
        return Err(format!(
            "{} show {unit} did not answer within {}",
            systemctl.display(),
            crate::config::Duration(timeout)
        ));
    };
    if !status.success() {
        let stderr = String::from_utf8_lossy(&finished.stderr);
        let reason = stderr.lines().next().unwrap_or("").trim();
        return Err(format!(
            "{} show {unit} failed ({status}): {reason}",
            systemctl.display()
        ));
    }
    let stdout = String::from_utf8_lossy(&finished.stdout);
    stdout.trim().parse::<i32>().map_err(|_| {
        format!(
            "{} show {unit} printed {:?}, not a pid",
            systemctl.display(),
            stdout.trim()
        )
    })
}

fn record_up(process: &ProcessInfo, matches: usize, context: &Context, out: &mut Observation) {
    let signals = &mut out.signals;
    let identity = process.identity.key();
    let previous_identity = context.state.get(IDENTITY_KEY);
    let same_run = previous_identity == Some(&identity);
    signals.set_probe("process", "up", 1.0);
    signals.set_probe("process", "pid", f64::from(process.pid()));
    signals.set_probe("process", "processes", matches as f64);
    signals.set_probe("process", "rss_bytes", process.rss_bytes as f64);
    if previous_identity.is_some() {
        signals.set_probe("process", "restarted", if same_run { 0.0 } else { 1.0 });
    } else {
        out.unavailable.insert(
            "restarted".to_string(),
            "first sight of the process: nothing to compare its identity with".to_string(),
        );
    }
    let previous_rss = context
        .state
        .get(RSS_KEY)
        .and_then(|v| v.parse::<f64>().ok());
    match previous_rss.filter(|_| same_run) {
        Some(previous_rss) => signals.set_probe(
            "process",
            "rss_growth_bytes",
            process.rss_bytes as f64 - previous_rss,
        ),
        None => {
            let why = if previous_identity.is_none() {
                "first sight of the process"
            } else {
                "the process restarted"
            };
            out.unavailable.insert(
                "rss_growth_bytes".to_string(),
                format!("{why}: RSS growth is measured from the next tick"),
            );
        }
    }
    let age = proc_table::age(&process.identity);
    if let Some(age) = age {
        signals.set_probe("process", "uptime_s", age.as_secs_f64().floor());
    }
    let fds = proc_table::fds(process.pid());
    if let Some((open, limit)) = fds {
        signals.set_probe("process", "open_fds", open as f64);
        if let Some(limit) = limit.filter(|l| *l > 0) {
            signals.set_probe("process", "fds_ratio", open as f64 / limit as f64);
        }
    }
    if context.mode != Mode::Recheck {
        out.state.insert(IDENTITY_KEY.to_string(), identity);
        out.state
            .insert(RSS_KEY.to_string(), process.rss_bytes.to_string());
    }
    out.checks.push(Check {
        probe: "process",
        status: CheckStatus::Ok,
        summary: summary(process, matches, age, fds.map(|(open, _)| open)),
    });
}

/// "pid 1234 up 3h 2m, RSS 812 MiB, 37 fds".
fn summary(
    process: &ProcessInfo,
    matches: usize,
    age: Option<Duration>,
    open_fds: Option<u64>,
) -> String {
    let mut text = format!("pid {}", process.pid());
    if let Some(age) = age {
        let millis = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        text.push_str(&format!(" up {}", crate::clock::human_duration(millis)));
    }
    text.push_str(&format!(", RSS {}", human_bytes(process.rss_bytes)));
    if let Some(open) = open_fds {
        text.push_str(&format!(", {open} fds"));
    }
    if matches > 1 {
        text.push_str(&format!(" (oldest of {matches} matching processes)"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pattern;
    use crate::probe::TaskMemory;
    use regex::Regex;

    fn context(state: &TaskMemory, mode: Mode) -> Context<'_> {
        Context::for_test(state, mode)
    }

    fn probe_for(pattern: &str) -> ProcessConfig {
        ProcessConfig::Pattern(Pattern(Regex::new(pattern).unwrap()))
    }

    #[test]
    fn own_process_by_pidfile_reports_identity_size_and_fds() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("me.pid");
        std::fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
        let probe = ProcessConfig::Pidfile(pidfile);
        let state = TaskMemory::new();
        let mut out = Observation::default();
        observe(&probe, &context(&state, Mode::Tick), &mut out);
        assert_eq!(out.checks[0].status, CheckStatus::Ok, "{:?}", out.checks);
        assert!(
            out.checks[0]
                .summary
                .starts_with(&format!("pid {} up ", std::process::id())),
            "{}",
            out.checks[0].summary
        );
        let signals = &out.signals;
        assert_eq!(signals.get_name("up"), Some(1.0));
        assert_eq!(signals.get_name("process.up"), Some(1.0));
        assert!(signals.get_name("rss_bytes").unwrap() > 0.0);
        assert!(signals.get_name("open_fds").unwrap() >= 3.0);
        assert!(signals.get_name("fds_ratio").unwrap() > 0.0);
        assert!(signals.get_name("uptime_s").is_some());
        assert_eq!(signals.get_name("restarted"), None, "first sight");
        assert!(
            out.unavailable.contains_key("restarted"),
            "a rule on it holds, not no data"
        );
        assert_eq!(signals.get_name("rss_growth_bytes"), None, "first sight");

        // The next tick sees the same run: growth against the stored RSS.
        let mut next_state = out.state.clone();
        next_state.insert(RSS_KEY.to_string(), "1000".to_string());
        let mut next = Observation::default();
        observe(&probe, &context(&next_state, Mode::Recheck), &mut next);
        assert_eq!(next.signals.get_name("restarted"), Some(0.0));
        let growth = next.signals.get_name("rss_growth_bytes").unwrap();
        assert_eq!(growth, next.signals.get_name("rss_bytes").unwrap() - 1000.0);
        assert!(next.state.is_empty(), "a recheck stores nothing");

        // Another identity: a restart, and no growth across it.
        let mut other = out.state.clone();
        other.insert(IDENTITY_KEY.to_string(), "1:1".to_string());
        let mut restarted = Observation::default();
        observe(&probe, &context(&other, Mode::Tick), &mut restarted);
        assert_eq!(restarted.signals.get_name("restarted"), Some(1.0));
        assert_eq!(restarted.signals.get_name("rss_growth_bytes"), None);
    }

    #[test]
    fn no_match_is_critical_and_keeps_the_last_identity() {
        let mut state = TaskMemory::new();
        state.insert(IDENTITY_KEY.to_string(), "5:5".to_string());
        let mut out = Observation::default();
        let pattern = "no-such-program-[0-9]{40}";
        observe(&probe_for(pattern), &context(&state, Mode::Tick), &mut out);
        assert_eq!(out.checks[0].status, CheckStatus::Critical);
        assert_eq!(
            out.checks[0].summary,
            format!("no process matches /{pattern}/")
        );
        assert_eq!(out.signals.get_name("up"), Some(0.0));
        assert_eq!(out.signals.get_name("processes"), Some(0.0));
        assert!(out.state.is_empty(), "the old identity is not overwritten");
    }

    #[test]
    fn pidfile_problems_name_the_file_and_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let run = |path: &Path| {
            let probe = ProcessConfig::Pidfile(path.to_path_buf());
            let state = TaskMemory::new();
            let mut out = Observation::default();
            observe(&probe, &context(&state, Mode::Tick), &mut out);
            out.checks.remove(0)
        };
        let missing = dir.path().join("missing.pid");
        let check = run(&missing);
        assert_eq!(check.status, CheckStatus::Critical);
        assert!(
            check.summary.contains("does not exist"),
            "{}",
            check.summary
        );

        let garbage = dir.path().join("garbage.pid");
        std::fs::write(&garbage, "hello").unwrap();
        let check = run(&garbage);
        assert_eq!(check.status, CheckStatus::Failed);
        assert!(
            check.summary.contains(&garbage.display().to_string()),
            "{}",
            check.summary
        );

        // A pid that no longer runs: a reaped child's.
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let stale = dir.path().join("stale.pid");
        std::fs::write(&stale, pid.to_string()).unwrap();
        let check = run(&stale);
        assert_eq!(check.status, CheckStatus::Critical);
        assert_eq!(
            check.summary,
            format!(
                "pidfile {} names pid {pid} which is not running",
                stale.display()
            )
        );
    }

    #[test]
    fn systemctl_missing_or_failing_is_a_failed_observation() {
        let timeout = Duration::from_secs(5);
        let err = main_pid(Path::new("/nonexistent/systemctl"), "x.service", timeout).unwrap_err();
        assert!(
            err.starts_with("cannot run /nonexistent/systemctl for unit x.service: "),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("systemctl");
        let write_fake = |script: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(&fake, format!("#!/bin/sh\n{script}\n")).unwrap();
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        // A parallel test's fork may briefly hold our freshly written script
        // open for writing, and exec then fails with ETXTBSY: ask again.
        let main_pid = |path: &Path, unit: &str, timeout: Duration| {
            for _ in 0..50 {
                match main_pid(path, unit, timeout) {
                    Err(e) if e.contains("Text file busy") => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    other => return other,
                }
            }
            main_pid(path, unit, timeout)
        };
        write_fake("echo 'System has not been booted with systemd' >&2; exit 1");
        let err = main_pid(&fake, "x.service", timeout).unwrap_err();
        assert!(
            err.contains("show x.service failed") && err.contains("not been booted"),
            "{err}"
        );
        write_fake("echo 4242");
        assert_eq!(main_pid(&fake, "x.service", timeout), Ok(4242));
        write_fake("echo 0");
        assert_eq!(main_pid(&fake, "x.service", timeout), Ok(0));
    }
}
