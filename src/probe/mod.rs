//! Probes observe a task's target and report what they saw as checks,
//! signals and events. They never decide alerts and never write state
//! themselves: what they want remembered goes back in the observation.

pub mod command;
pub mod disk;
pub mod http;
pub mod log;
pub mod process;
pub mod process_group;

use crate::clock::Timestamp;
use crate::config::{Probe, Selector, Severity, Task};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What one probe concluded about its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Warning,
    Critical,
    /// The target answered, but said it does not know (Nagios UNKNOWN).
    Unknown,
    /// The probe could not observe: timeout, refused, bad response.
    Failed,
    /// The probe is configured but this build cannot run it yet.
    Unsupported,
}

impl CheckStatus {
    pub fn is_ok(self) -> bool {
        self == CheckStatus::Ok
    }

    pub fn label(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
            CheckStatus::Unknown => "unknown",
            CheckStatus::Failed => "failed",
            CheckStatus::Unsupported => "unsupported",
        }
    }
}

/// One probe's verdict with a one-line reason a person can act on.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub probe: &'static str,
    pub status: CheckStatus,
    pub summary: String,
}

/// Named numbers a task's probes produced this tick (booleans are 1/0).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Signals(BTreeMap<String, f64>);

impl Signals {
    pub fn set(&mut self, name: impl Into<String>, value: f64) {
        self.0.insert(name.into(), value);
    }

    /// Sets both `name` and `probe.name`, so two probes of one task can be
    /// told apart (`http.up`, `process.up`) while `up` keeps working.
    pub fn set_probe(&mut self, probe: &str, name: &str, value: f64) {
        self.0.insert(format!("{probe}.{name}"), value);
        self.0.insert(name.to_string(), value);
    }

    pub fn get_name(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied()
    }

    /// The value a selector addresses; label selectors match no plain signal.
    pub fn get(&self, selector: &Selector) -> Option<f64> {
        if selector.labels.is_empty() {
            self.get_name(&selector.name)
        } else {
            self.get_name(&selector.to_string())
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &f64)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A notification without a lifecycle (a log line such as "Task Started: 12").
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub name: String,
    pub message: String,
    pub severity: Severity,
}

/// A log pattern that matched this tick (patterns without a match are not listed).
#[derive(Clone, Debug, Serialize)]
pub struct PatternMatch {
    /// The pattern's `name`: its alert key.
    pub name: String,
    pub severity: Severity,
    /// Matching lines this tick.
    pub count: u64,
    /// The last matching line (trimmed to a few hundred bytes, lossy UTF-8).
    pub line: String,
}

/// Everything a task's probes saw in one tick.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Observation {
    pub checks: Vec<Check>,
    pub signals: Signals,
    pub events: Vec<Event>,
    /// Log patterns that matched: each is an alert of its own severity.
    pub matches: Vec<PatternMatch>,
    /// Values to remember for this task's next tick (log offsets…).
    #[serde(skip)]
    pub state: BTreeMap<String, String>,
    pub elapsed_ms: u64,
}

impl Observation {
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.status.is_ok())
    }

    /// A failed observation: the task timed out or could not run.
    pub fn failed(probe: &'static str, summary: String) -> Self {
        Observation {
            checks: vec![Check {
                probe,
                status: CheckStatus::Failed,
                summary,
            }],
            ..Observation::default()
        }
    }
}

/// What one task's probes remember between ticks: key → value.
pub type TaskState = BTreeMap<String, String>;

/// Why the probes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A normal tick: observe, and (for actions) act.
    Tick,
    /// `--dry-run`: observe, but actions only say what they would do.
    DryRun,
    /// After a restart (`wait_healthy`): is the target healthy again? Must
    /// not consume what the tick's own observation will store (log offsets,
    /// events): a log probe only checks that the log has moved since.
    Recheck,
}

/// What a probe needs besides its own config.
pub struct Context<'a> {
    pub now: Timestamp,
    pub mode: Mode,
    /// The task must be done by then.
    pub deadline: Instant,
    /// The task's configured timeout (for messages: "no answer within 10s").
    pub timeout: Duration,
    /// What this task's probes stored last tick.
    pub state: &'a TaskState,
}

impl<'a> Context<'a> {
    /// A context for unit tests: clock at 0, 30 s to go.
    #[cfg(test)]
    pub fn for_test(state: &'a TaskState, mode: Mode) -> Context<'a> {
        Context {
            now: Timestamp(0),
            mode,
            deadline: Instant::now() + Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            state,
        }
    }

    /// The limit a probe runs under, as configured: its own or the task's.
    pub fn limit(&self, probe_timeout: Option<Duration>) -> Duration {
        probe_timeout.unwrap_or(self.timeout).min(self.timeout)
    }

    /// Time left before the deadline, capped by the probe's own timeout.
    pub fn budget(&self, probe_timeout: Option<Duration>) -> Duration {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match probe_timeout {
            Some(timeout) => left.min(timeout),
            None => left,
        }
    }
}

/// Runs every probe of `task` one after another and merges what they saw.
pub fn observe(task: &Task, context: &Context) -> Observation {
    let started = Instant::now();
    let mut observation = Observation::default();
    for probe in &task.probes {
        match probe {
            Probe::Http(http) => http::observe(http, context, &mut observation),
            Probe::Command(command) => command::observe(command, context, &mut observation),
            Probe::Log(log) => log::observe(log, context, &mut observation),
            Probe::Process(process) => process::observe(process, context, &mut observation),
            Probe::Disk(disk) => disk::observe(disk, context, &mut observation),
            other => observation.checks.push(Check {
                probe: other.kind(),
                status: CheckStatus::Unsupported,
                summary: format!("{} probe is not supported yet", other.kind()),
            }),
        }
    }
    if let Some(action) = &task.action {
        crate::action::run(action, context, &mut observation);
    }
    observation.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    observation
}
