//! The `log` probe: a file followed across ticks (by device, inode and byte
//! offset, through rotation and truncation), or a command's output since
//! the last tick. It reads only new lines, never writes to the log, and
//! decides no alert: it reports staleness as a check, and pattern matches,
//! events and signals for the evaluator.

mod command;
mod file;
pub mod scan;

pub use scan::{Findings, Pass, ScanState, Scanner};

use super::kinds::ProbeConfig;
use super::{Check, CheckStatus, Context, Event, Mode, Observation, PatternMatch, TaskMemory};
use crate::config::{
    ByteSize, CommandLine, Duration, Ordered, Pattern, Severity, Text, Why, within_mapping,
};
use serde::Deserialize;
use serde::de::Deserializer;
use std::path::PathBuf;

/// `log`: a file followed across ticks, or a command's output.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub source: LogSource,
    pub stale_after: Option<Duration>,
    pub patterns: Vec<LogPattern>,
    pub events: Vec<LogEvent>,
    pub states: Ordered<LogState>,
    pub session: Option<Pattern>,
    pub counters: Ordered<Pattern>,
    /// Read at most this much new log per tick.
    pub max_read: Option<ByteSize>,
}

/// What a `log` probe reads: exactly one of `path` and `command`.
#[derive(Debug, Clone)]
pub enum LogSource {
    /// A file, followed across ticks (rotation, truncation).
    File(PathBuf),
    /// A command's output (`{since}`/`{until}` filled in).
    Command(CommandLine),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    command: Option<LogCommand>,
    #[serde(default)]
    stale_after: Option<Duration>,
    #[serde(default)]
    patterns: Vec<LogPattern>,
    #[serde(default)]
    events: Vec<LogEvent>,
    #[serde(default)]
    states: Ordered<LogState>,
    #[serde(default)]
    session: Option<Pattern>,
    #[serde(default)]
    counters: Ordered<Pattern>,
    /// Read at most this much new log per tick.
    #[serde(default)]
    max_read: Option<ByteSize>,
}

/// A log command, its `{since}`/`{until}` placeholders checked where it is
/// written.
struct LogCommand(CommandLine);

impl<'de> Deserialize<'de> for LogCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let command = CommandLine::deserialize(d)?;
        if misspelt_placeholder(&command.to_string()) {
            return Err(serde::de::Error::custom(
                "a `log` command has a placeholder that is neither `{since}` nor `{until}` (a typo?): it would be passed on as written",
            ));
        }
        Ok(LogCommand(command))
    }
}

impl<'de> Deserialize<'de> for LogConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within_mapping(d, |raw: RawLog| {
            let source = match (raw.path, raw.command) {
                (Some(path), None) => LogSource::File(path),
                (None, Some(LogCommand(command))) => LogSource::Command(command),
                _ => {
                    return Err(Why(
                        "a `log` probe takes either `path` (a file) or `command` (its output)"
                            .into(),
                    ));
                }
            };
            Ok(LogConfig {
                source,
                stale_after: raw.stale_after,
                patterns: raw.patterns,
                events: raw.events,
                states: raw.states,
                session: raw.session,
                counters: raw.counters,
                max_read: raw.max_read,
            })
        })
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct LogPattern {
    pub name: String,
    pub regex: Pattern,
    #[serde(default)]
    pub severity: Severity,
}

#[derive(Debug, Clone)]
pub struct LogEvent {
    pub name: Option<String>,
    pub regex: Pattern,
    pub message: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogEvent {
    #[serde(default)]
    name: Option<String>,
    regex: Pattern,
    message: Text,
}

impl<'de> Deserialize<'de> for LogEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within_mapping(d, |raw: RawLogEvent| {
            let names: Vec<&str> = raw.regex.0.capture_names().flatten().collect();
            let groups = raw.regex.0.captures_len();
            // `{word}` is a placeholder: a typo would send `{idd}` as is.
            let placeholder =
                regex::Regex::new(r"\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}").expect("a valid regex");
            for found in placeholder.captures_iter(raw.message.as_str()) {
                let key = &found[1];
                let known = key == "line"
                    || names.contains(&key)
                    || key.parse::<usize>().is_ok_and(|n| n < groups);
                if !known {
                    let named = if names.is_empty() {
                        "the regex has no named groups".to_string()
                    } else {
                        format!("its named groups are {}", names.join(", "))
                    };
                    return Err(Why(format!(
                        "`message` uses {{{key}}}, but the regex has no group `{key}`: {named} ({{line}} is the whole line, {{0}}…{{{}}} the groups by number)",
                        groups.saturating_sub(1)
                    )));
                }
            }
            Ok(LogEvent {
                name: raw.name,
                regex: raw.regex,
                message: raw.message,
            })
        })
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct LogState {
    pub enter: Pattern,
    pub leave: Pattern,
}

/// New bytes read per tick unless `max_read` says otherwise; a backlog
/// beyond it is read on the following ticks.
pub const DEFAULT_MAX_READ: u64 = 64 << 20;

/// On first sight of a log, at most this much of its end is read to learn
/// its states, session and counters (nothing in it raises an alert).
pub const PRIME_WINDOW: u64 = 1 << 20;

const PROBE: &str = "log";

/// Whether `line` holds `{sinc}`, `{untill}`, `{Since}` or the like: a
/// word in braces that looks like a placeholder and is not one.
fn misspelt_placeholder(line: &str) -> bool {
    static WORD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\{([A-Za-z_]{3,8})\}").expect("a valid regex")
    });
    WORD.captures_iter(line).any(|c| {
        let word = &c[1];
        let lower = word.to_ascii_lowercase();
        word != "since"
            && word != "until"
            && (lower.starts_with("sin") || lower.starts_with("unt") || lower.starts_with("unti"))
    })
}

impl ProbeConfig for LogConfig {
    fn observe(&self, context: &Context, out: &mut Observation) {
        observe(self, context, out);
    }

    fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        match &mut self.source {
            LogSource::File(path) => vec![path],
            LogSource::Command(_) => Vec::new(),
        }
    }
}

/// Follows the file or runs the command, then reports what the new lines
/// said. Under [`Mode::Recheck`] it only tells whether the log has moved
/// since the tick's saved state, and reads, raises and stores nothing.
pub fn observe(probe: &LogConfig, context: &Context, out: &mut Observation) {
    let check = match &probe.source {
        LogSource::File(path) if context.mode == Mode::Recheck => file::recheck(path, context),
        LogSource::Command(command) if context.mode == Mode::Recheck => {
            command::recheck(command, probe, context)
        }
        LogSource::File(path) => with_scanner(probe, |scanner| {
            file::observe(path, probe, scanner, context, out)
        }),
        LogSource::Command(command) => with_scanner(probe, |scanner| {
            command::observe(command, probe, scanner, context, out)
        }),
    };
    out.checks.push(check);
}

fn with_scanner(probe: &LogConfig, observe: impl FnOnce(&Scanner) -> Check) -> Check {
    match Scanner::new(probe) {
        Ok(scanner) => observe(&scanner),
        Err(e) => failed(e),
    }
}

fn failed(summary: String) -> Check {
    Check {
        probe: PROBE,
        status: CheckStatus::Failed,
        summary,
    }
}

/// The bytes one tick may read.
fn max_read(probe: &LogConfig) -> u64 {
    probe.max_read.map_or(DEFAULT_MAX_READ, |m| m.0).max(1)
}

/// The tick's clock in whole Unix seconds.
fn now_secs(context: &Context) -> i64 {
    context.now.millis().div_euclid(1000)
}

// ------------------------------------------------------------------ state

const STATE_PREFIX: &str = "log.state.";
const COUNTER_PREFIX: &str = "log.counter.";
const SESSION_KEY: &str = "log.session";

/// What earlier ticks learnt from the lines: states, session, counters.
/// Names no longer configured are dropped, new ones start at 0.
fn load_scan_state(scanner: &Scanner, state: &TaskMemory) -> ScanState {
    let mut scan = scanner.initial_state();
    for (flag, name) in scan.states.iter_mut().zip(scanner.state_names()) {
        *flag = state
            .get(&format!("{STATE_PREFIX}{name}"))
            .map(String::as_str)
            == Some("1");
    }
    for (count, name) in scan.counters.iter_mut().zip(scanner.counter_names()) {
        *count = state
            .get(&format!("{COUNTER_PREFIX}{name}"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    if scanner.has_session() {
        scan.session = state.get(SESSION_KEY).cloned();
    }
    scan
}

fn save_scan_state(scanner: &Scanner, scan: &ScanState, out: &mut Observation) {
    for (flag, name) in scan.states.iter().zip(scanner.state_names()) {
        let value = if *flag { "1" } else { "0" };
        out.state
            .insert(format!("{STATE_PREFIX}{name}"), value.to_string());
    }
    for (count, name) in scan.counters.iter().zip(scanner.counter_names()) {
        out.state
            .insert(format!("{COUNTER_PREFIX}{name}"), count.to_string());
    }
    if let Some(session) = &scan.session {
        out.state.insert(SESSION_KEY.to_string(), session.clone());
    }
}

/// Signals of the states, session and counters, and (when lines were read)
/// each pattern's count, its match and the events.
fn report(scanner: &Scanner, scan: &ScanState, findings: Option<Findings>, out: &mut Observation) {
    for (flag, name) in scan.states.iter().zip(scanner.state_names()) {
        out.signals
            .set_probe(PROBE, name, f64::from(u8::from(*flag)));
    }
    if scanner.has_session() {
        out.signals
            .set_probe(PROBE, "session", scan.session_number());
    }
    for (count, name) in scan.counters.iter().zip(scanner.counter_names()) {
        out.signals.set_probe(PROBE, name, *count as f64);
    }
    let Some(findings) = findings else {
        return;
    };
    for (rule, hits) in scanner.pattern_rules().iter().zip(findings.patterns) {
        out.signals.set_probe(PROBE, &rule.name, hits.count as f64);
        if hits.count > 0 {
            out.matches.push(PatternMatch {
                name: rule.name.clone(),
                severity: rule.severity,
                count: hits.count,
                line: hits.last_line,
            });
        }
    }
    out.events.extend(findings.events);
    for (name, count) in findings.events_dropped {
        out.events.push(Event {
            name: name.clone(),
            message: format!(
                "{count} more `{name}` events this tick not sent (at most {} per tick)",
                scan::EVENT_CAP
            ),
            severity: Severity::Info,
        });
    }
}

// ------------------------------------------------------------- freshness

/// The check of a log that was read: Critical when no line came for longer
/// than `stale_after`, else Ok with what was read.
fn freshness(source: &str, probe: &LogConfig, new_lines: u64, age_s: i64) -> Check {
    let age_s = age_s.max(0);
    if let Some(limit) = probe.stale_after
        && u128::from(age_s.unsigned_abs()) * 1000 > limit.std().as_millis()
    {
        return Check {
            probe: PROBE,
            status: CheckStatus::Critical,
            summary: format!(
                "{source}: no new line for {} (stale_after {})",
                human(age_s),
                shown_limit(limit)
            ),
        };
    }
    let plural = if new_lines == 1 { "" } else { "s" };
    Check {
        probe: PROBE,
        status: CheckStatus::Ok,
        summary: format!(
            "{source}: {new_lines} new line{plural}, last {} ago",
            human(age_s)
        ),
    }
}

/// `stale_after` as [`human`] writes durations, unless it has milliseconds.
fn shown_limit(limit: crate::config::Duration) -> String {
    let millis = limit.std().as_millis();
    match i64::try_from(millis / 1000) {
        Ok(secs) if millis.is_multiple_of(1000) => human(secs),
        _ => limit.to_string(),
    }
}

/// Whole seconds for a person: `6m 40s`, `2h 5m`, `0s`.
fn human(secs: i64) -> String {
    if secs <= 0 {
        return "0s".to_string();
    }
    let mut parts = Vec::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= size {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    parts.join(" ")
}

/// FNV-1a: a small stable hash for fingerprints kept in state (the std
/// hasher may change between Rust releases).
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        for (secs, text) in [
            (0, "0s"),
            (-5, "0s"),
            (3, "3s"),
            (400, "6m 40s"),
            (3600, "1h"),
            (7500, "2h 5m"),
            (90061, "1d 1h 1m 1s"),
        ] {
            assert_eq!(human(secs), text, "{secs}");
        }
    }

    fn probe(yaml: &str) -> LogConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn scan_state_round_trips_through_task_state() {
        let probe = probe(
            "command: [x]\nstates: { sync: { enter: a, leave: b }, other: { enter: c, leave: d } }\nsession: 'session (\\d+)'\ncounters: { producing: p }\n",
        );
        let scanner = Scanner::new(&probe).unwrap();
        let scan = ScanState {
            states: vec![true, false],
            session: Some("42".into()),
            counters: vec![7],
        };
        let mut out = Observation::default();
        save_scan_state(&scanner, &scan, &mut out);
        assert_eq!(
            out.state.get("log.state.sync").map(String::as_str),
            Some("1")
        );
        assert_eq!(
            out.state.get("log.counter.producing").map(String::as_str),
            Some("7")
        );
        assert_eq!(load_scan_state(&scanner, &out.state), scan);
        assert_eq!(
            load_scan_state(&scanner, &TaskMemory::new()),
            scanner.initial_state()
        );
    }

    #[test]
    fn stale_check_names_the_age_and_the_limit() {
        let probe = probe("path: /var/log/prover.log\nstale_after: 300s\n");
        let check = freshness("/var/log/prover.log", &probe, 0, 400);
        assert_eq!(check.status, CheckStatus::Critical);
        assert_eq!(
            check.summary,
            "/var/log/prover.log: no new line for 6m 40s (stale_after 5m)"
        );
        let check = freshness("/var/log/prover.log", &probe, 12, 3);
        assert_eq!(check.status, CheckStatus::Ok);
        assert_eq!(
            check.summary,
            "/var/log/prover.log: 12 new lines, last 3s ago"
        );
        assert_eq!(freshness("x", &probe, 1, 300).status, CheckStatus::Ok);
    }
}
