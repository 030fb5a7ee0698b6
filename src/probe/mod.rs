//! Probes observe a task's target and report what they saw as checks,
//! signals and events. They never decide alerts and never write state
//! themselves: what they want remembered goes back in the observation.

pub mod command;
pub mod disk;
pub mod http;
pub mod lag;
pub mod log;
pub mod metrics;
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

/// A series' labels, sorted by name.
pub type Labels = Vec<(String, String)>;

/// What a task's probes produced this tick: named numbers (booleans are
/// 1/0) and, from a metrics scrape, series addressed by name and labels.
#[derive(Clone, Debug, Default)]
pub struct Signals {
    named: BTreeMap<String, f64>,
    /// Scraped series by name.
    series: BTreeMap<String, Vec<(Labels, f64)>>,
}

impl Signals {
    pub fn set(&mut self, name: impl Into<String>, value: f64) {
        self.named.insert(name.into(), value);
    }

    /// Sets both `name` and `probe.name`, so two probes of one task can be
    /// told apart (`http.up`, `process.up`) while `up` keeps working.
    pub fn set_probe(&mut self, probe: &str, name: &str, value: f64) {
        self.named.insert(format!("{probe}.{name}"), value);
        self.named.insert(name.to_string(), value);
    }

    /// Adds one scraped series (`labels` sorted by name).
    pub fn add_series(&mut self, name: &str, labels: Labels, value: f64) {
        match self.series.get_mut(name) {
            Some(all) => all.push((labels, value)),
            None => {
                self.series.insert(name.to_string(), vec![(labels, value)]);
            }
        }
    }

    pub fn get_name(&self, name: &str) -> Option<f64> {
        self.named.get(name).copied()
    }

    /// Every value `selector` addresses: a named signal, or each scraped
    /// series of that name whose labels include the selector's.
    pub fn matching<'a>(&'a self, selector: &Selector) -> Vec<(&'a [(String, String)], f64)> {
        if selector.labels.is_empty()
            && let Some(value) = self.named.get(&selector.name)
        {
            return vec![(&[], *value)];
        }
        self.series
            .get(&selector.name)
            .map(|all| {
                all.iter()
                    .filter(|(labels, _)| {
                        selector.labels.iter().all(|wanted| labels.contains(wanted))
                    })
                    .map(|(labels, value)| (labels.as_slice(), *value))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value `selector` addresses: a named signal, or the sum of the
    /// matching series; `None` when nothing matches.
    pub fn get(&self, selector: &Selector) -> Option<f64> {
        let matching = self.matching(selector);
        (!matching.is_empty()).then(|| matching.iter().map(|(_, v)| v).sum())
    }

    /// Up to `limit` named signals as `name = value` lines (without the
    /// `probe.` duplicates), for the evidence part of a message.
    pub fn evidence(&self, limit: usize) -> Vec<String> {
        self.named
            .iter()
            .filter(|(name, _)| !name.contains('.'))
            .take(limit)
            .map(|(name, value)| format!("{name} = {}", crate::config::format_number(*value)))
            .collect()
    }

    /// How many scraped series there are.
    pub fn series_count(&self) -> usize {
        self.series.values().map(Vec::len).sum()
    }
}

/// Reports show the named signals and how many series were scraped (a
/// scrape can hold thousands).
impl Serialize for Signals {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let count = self.series_count();
        let mut map = serializer.serialize_map(Some(self.named.len() + usize::from(count > 0)))?;
        for (name, value) in &self.named {
            map.serialize_entry(name, value)?;
        }
        if count > 0 {
            map.serialize_entry("scraped_series", &count)?;
        }
        map.end()
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
    /// Signals a probe cannot give this tick, by design rather than by
    /// failure (`progress` needs a previous reading; `eta_s` needs a lag):
    /// rules on them hold instead of raising no data.
    #[serde(skip)]
    pub unavailable: BTreeMap<String, String>,
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
            Probe::Metrics(metrics) => metrics::observe(metrics, context, &mut observation),
            Probe::Lag(lag) => lag::observe(lag, context, &mut observation),
        }
    }
    if let Some(action) = &task.action {
        crate::action::run(action, context, &mut observation);
    }
    observation.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    observation
}
