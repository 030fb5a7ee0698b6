//! The jobs.yaml language: typed configuration, loaded and validated once.
//! Owns every key of the file; knows nothing of how tasks run.

pub(crate) mod condition;
mod interpolate;
mod load;
pub(crate) mod selector;
pub(crate) mod tagged;
mod task;
pub(crate) mod values;

pub use condition::{
    Condition, Gate, Guard, Op, Range, ResolveGate, TextCondition, Threshold, Unit, age_seconds,
    format_bytes, format_number, format_value,
};
pub use load::{ConfigError, absolute, check_files, load, load_source, resolve_path};
pub use selector::{MatchOp, Matcher, Selector, Selectors, same};
pub use task::{
    CONFIG_TASK, GIT_SYNC_TASK, HEALTH_RULE, RESERVED_KEYS, RESTART_LOOP_RULE, RESTART_RULE, Task,
};
pub use values::{
    ByteSize, Duration, JsonPointer, Pattern, Ratio, Secret, Severity, StatusRanges, Text,
};

use crate::action::Action;
pub use crate::notify::NotifierKind;
use crate::notify::heartbeat::Heartbeat;
use crate::pre_run::PreRun;
pub use crate::probe::{Probe, ProbeKind};
use crate::remediate::Remediate;
use crate::rule::{Rule, RuleKind};
use crate::schedule::CronSchedule;
use crate::silence::Maintenance;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The whole jobs.yaml, with paths absolute and the environment expanded.
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute path of the file this came from.
    pub path: PathBuf,
    /// Shown in every message: `host:` or the machine's hostname.
    pub host: String,
    /// The SQLite database (`state:`, `$MONITOR_DB` or `--db`).
    pub state: PathBuf,
    /// Log lines go here as well as stderr (always here under `--quiet`).
    pub log_file: Option<PathBuf>,
    pub defaults: Defaults,
    pub notifiers: Vec<Notifier>,
    pub profiles: Vec<Profile>,
    /// Other hosts' `monitor serve`, shown on this one's page.
    pub peers: Vec<Peer>,
    /// The file as written (`${VAR}`s not filled in, so no secret): what
    /// a tick keeps as the last good jobs.yaml.
    pub source: String,
}

impl Config {
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    pub fn notifier(&self, name: &str) -> Option<&Notifier> {
        self.notifiers.iter().find(|n| n.name == name)
    }

    /// jobs.yaml as written, to keep as the last good one — `None` when a
    /// secret is written in it literally (not as `${VAR}`): the database
    /// never holds a secret, so such a file gets no fallback.
    pub fn source_to_keep(&self) -> Option<&str> {
        let mut secrets: Vec<&str> = self
            .notifiers
            .iter()
            .flat_map(|n| n.kind.secrets())
            .collect();
        for profile in &self.profiles {
            secrets.extend(profile.heartbeat.iter().map(|h| h.url.expose()));
            for task in &profile.tasks {
                secrets.extend(task.probes.iter().flat_map(Probe::secrets));
            }
        }
        let literal = secrets
            .iter()
            .any(|s| s.len() >= 4 && self.source.contains(s));
        (!literal).then_some(self.source.as_str())
    }

    /// The folder of the database: locks live under it.
    pub fn state_dir(&self) -> PathBuf {
        self.state
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// The file as written. Turned into [`Config`] by the loader.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub version: u32,
    #[serde(default)]
    pub host: Option<Text>,
    #[serde(default)]
    pub state: Option<Text>,
    #[serde(default)]
    pub log_file: Option<Text>,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub notifiers: Ordered<Notifier>,
    pub profiles: Ordered<Profile>,
    #[serde(default)]
    pub peers: Vec<Peer>,
}

/// `peers:`: another host's `monitor serve`, whose profiles this host's
/// status page shows beside its own.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// How the page names it (`validator-2`).
    pub name: String,
    /// Its `monitor serve` (`http://10.0.0.12:8923`).
    pub url: Text,
    /// Its `MONITOR_API_TOKEN`, when it has one (write `${VAR}`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// How long the page waits for it (default 2s): a peer that does not
    /// answer is shown as unreachable, never holds the page.
    #[serde(default = "peer_timeout")]
    pub timeout: Duration,
}

fn peer_timeout() -> Duration {
    Duration::from_secs(2)
}

/// Settings every task inherits unless it sets its own.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// How long a task may take before it counts as failed.
    pub timeout: Duration,
    /// While an alert keeps firing, remind no more often than this.
    pub cooldown: Duration,
    /// Notifiers used when neither profile nor task names any.
    pub notify: Vec<String>,
    /// Whether a resolution is notified.
    pub notify_resolved: bool,
    /// How many tasks of a profile run at once.
    #[serde(deserialize_with = "tasks_at_once")]
    pub concurrency: usize,
    /// How many requests of a tick go to one host and port at once (a
    /// small server's listen backlog overflows otherwise).
    #[serde(deserialize_with = "at_least_one")]
    pub connections_per_host: usize,
    /// Undelivered notifications older than this are given up.
    #[serde(deserialize_with = "a_minute_or_more")]
    pub max_age: Duration,
    /// History, runs and finished outbox rows older than this are pruned.
    #[serde(deserialize_with = "an_hour_or_more")]
    pub retention: Duration,
    /// How long the signal history keeps every sample, and each hour's
    /// min/avg/max.
    pub history: History,
}

/// `defaults.history`: the signal history's two windows.
#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(deny_unknown_fields, default)]
pub struct History {
    /// Every sample, for this long (default 7d).
    #[serde(deserialize_with = "an_hour_or_more")]
    pub full: Duration,
    /// Each hour's min/avg/max, for this long (default 90d; at least `full`).
    #[serde(deserialize_with = "an_hour_or_more")]
    pub hourly: Duration,
}

impl Default for History {
    fn default() -> Self {
        History {
            full: Duration::from_secs(7 * 24 * 3600),
            hourly: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

impl History {
    /// The windows as the store takes them.
    pub fn windows(&self) -> crate::store::Windows {
        crate::store::Windows {
            full_ms: self.full.as_millis(),
            hourly_ms: self.hourly.as_millis().max(self.full.as_millis()),
        }
    }
}

fn tasks_at_once<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 {
        return Err(de::Error::custom(
            "must be at least 1 (it is how many tasks of a profile run at once)",
        ));
    }
    Ok(n)
}

fn a_minute_or_more<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value = Duration::deserialize(d)?;
    if value.as_millis() < 60_000 {
        return Err(de::Error::custom(format!(
            "{value} is too short: a notification must get at least a minute (a tick) to be delivered; the default is 24h"
        )));
    }
    Ok(value)
}

fn an_hour_or_more<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value = Duration::deserialize(d)?;
    if value.as_millis() < 3_600_000 {
        return Err(de::Error::custom(format!(
            "{value} would delete the history as soon as it is written: keep at least 1h (the default is 90d)"
        )));
    }
    Ok(value)
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            timeout: Duration::from_secs(30),
            cooldown: Duration::from_secs(2 * 3600),
            notify: vec!["console".to_string()],
            notify_resolved: true,
            concurrency: 32,
            connections_per_host: crate::probe::host_limit::DEFAULT_PER_HOST,
            max_age: Duration::from_secs(24 * 3600),
            retention: Duration::from_secs(90 * 24 * 3600),
            history: History::default(),
        }
    }
}

/// A mapping whose entry order is kept (profiles list in file order).
#[derive(Debug, Clone)]
pub struct Ordered<T>(pub Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names to entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<T>, A::Error> {
                let mut entries: Vec<(String, T)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format!("`{key}` is defined twice")));
                    }
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A conversion's complaint about a mapping it read, raised by
/// [`within_mapping`] as the deserializer's own error.
#[derive(Debug)]
pub(crate) struct Why(pub String);

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Why {}

impl de::Error for Why {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Why(message.to_string())
    }
}

/// Marks a complaint about a mapping as a whole (keys that do not go
/// together), not about the key serde_yaml's position falls on: the loader
/// then names the mapping, not its first key.
pub(crate) const ACROSS_KEYS: char = '\u{1f}';

/// `why`, marked as a complaint about the whole mapping.
pub(crate) fn across_keys(why: &str) -> String {
    format!("{ACROSS_KEYS}{why}")
}

/// Marks a complaint found once a mapping was read whole (serde's position
/// is then the mapping) as being about one key under it: the loader finds
/// that key's line and names it.
pub(crate) const AT_KEY: char = '\u{1e}';

/// `why`, about `key` (a dotted path under the mapping being read:
/// `tls.ca_file`, `tasks[1].depends_on`).
pub(crate) fn at_key(key: &str, why: &str) -> String {
    format!("{AT_KEY}{key}{AT_KEY}{why}")
}

/// The key a message of [`at_key`] is about, and the message.
pub(crate) fn split_at_key(message: &str) -> Option<(&str, &str)> {
    message.strip_prefix(AT_KEY)?.split_once(AT_KEY)
}

/// `message` with `key` put in front of the key it is about (a probe's
/// error about `ca_file` becomes one about `tls.ca_file`), or about `key`
/// itself when it names none; `prefix` goes before the words.
pub(crate) fn under_key(key: &str, prefix: &str, message: &str) -> String {
    match split_at_key(message) {
        Some((inner, why)) => at_key(&format!("{key}.{inner}"), &format!("{prefix}{why}")),
        None => at_key(key, &format!("{prefix}{message}")),
    }
}

/// Reads `Raw` from a mapping and converts it with `convert` while still
/// inside that mapping: serde_yaml then places a conversion error at this
/// mapping (its line and key path), not at the first key of its parent
/// (an unknown notifier type was blamed on the first notifier, a `start:`
/// error on `stop:`).
pub(crate) fn within_mapping<'de, D, Raw, T, F>(d: D, convert: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    Raw: Deserialize<'de>,
    F: FnOnce(Raw) -> Result<T, Why>,
{
    struct V<Raw, F>(F, std::marker::PhantomData<Raw>);
    impl<'de, Raw, T, F> Visitor<'de> for V<Raw, F>
    where
        Raw: Deserialize<'de>,
        F: FnOnce(Raw) -> Result<T, Why>,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            let raw = Raw::deserialize(de::value::MapAccessDeserializer::new(map))?;
            (self.0)(raw).map_err(|why| de::Error::custom(across_keys(&why.0)))
        }
    }
    d.deserialize_map(V(convert, std::marker::PhantomData))
}

// ---------------------------------------------------------------- profiles

/// A named set of tasks run together on one schedule.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub cron: CronSchedule,
    pub enabled: bool,
    pub notify: Option<Vec<String>>,
    /// Where events go, when not where alerts go.
    pub notify_events: Option<Vec<String>>,
    /// Whether the first tick, and the first after jobs.yaml changed, tells
    /// what the profile now watches (seed 000's "Monitor script started").
    pub announce: bool,
    /// A fingerprint of the profile as written in jobs.yaml (with `host`,
    /// `defaults` and `notifiers`), `${VAR}`s unfilled, comments aside.
    pub written: String,
    pub concurrency: Option<usize>,
    /// Pinged after every completed tick (healthchecks.io style).
    pub heartbeat: Option<Heartbeat>,
    /// Done before the checks (seed 001's sync_before_run).
    pub pre_run: Option<PreRun>,
    /// Windows during which alerts are held and nothing is restarted.
    pub maintenance: Vec<Maintenance>,
    pub tasks: Vec<Task>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    cron: CronSchedule,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    notify: Option<Vec<String>>,
    #[serde(default)]
    notify_events: Option<Vec<String>>,
    #[serde(default = "yes")]
    announce: bool,
    #[serde(default)]
    concurrency: Option<usize>,
    #[serde(default)]
    heartbeat: Option<Heartbeat>,
    #[serde(default)]
    pre_run: Option<PreRun>,
    #[serde(default)]
    maintenance: Vec<Maintenance>,
    tasks: Vec<Task>,
}

pub(crate) fn yes() -> bool {
    true
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 {
        return Err(de::Error::custom(
            "must be at least 1 (it is how many requests go to one host at once)",
        ));
    }
    Ok(n)
}

/// Why `name` cannot name a `what` (`task`, `rule`, `profile`…): names
/// end up in file names, crontab lines, tmux sessions and URLs, so they are
/// ASCII letters, digits, `_`, `-` and `.` (`dotted`: a first `.` too).
pub(crate) fn name_problem(what: &str, name: &str, dotted: bool) -> Option<String> {
    let bad = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')));
    let why = match bad {
        _ if name.is_empty() => "it is empty".to_string(),
        Some(c) => format!("{c:?} is not one of them"),
        None if !dotted && name.starts_with('.') => "it may not begin with `.`".to_string(),
        None => return None,
    };
    Some(format!(
        "{what} name {name:?} must be ASCII letters, digits, `_`, `-` or `.` (it names files, crontab lines and URLs): {why}"
    ))
}

/// The one of `known` nearest to a misspelt `name`, when one is near
/// (`conect_ms` → `connect_ms`, `depend_on` → `depends_on`).
pub(crate) fn nearest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// `depends_on` names tasks of the same profile, never the task itself,
/// and never in a circle (each would hold the other's alerts for good).
fn check_dependencies(tasks: &[Task]) -> Result<(), String> {
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    for (index, task) in tasks.iter().enumerate() {
        let key = format!("tasks[{index}].depends_on");
        for dependency in &task.depends_on {
            if *dependency == task.name {
                return Err(at_key(
                    &key,
                    &format!("task `{}` depends_on itself", task.name),
                ));
            }
            if !names.contains(&dependency.as_str()) {
                let hint = nearest(dependency, names.iter().copied())
                    .map(|near| format!(": did you mean `{near}`?"))
                    .unwrap_or_default();
                return Err(at_key(
                    &key,
                    &format!(
                        "task `{}` depends_on `{dependency}`, which is not a task of this profile (tasks: {}){hint}",
                        task.name,
                        names.join(", ")
                    ),
                ));
            }
            if task.depends_on.iter().filter(|d| *d == dependency).count() > 1 {
                return Err(at_key(
                    &key,
                    &format!(
                        "task `{}` names `{dependency}` twice in depends_on: once is enough",
                        task.name
                    ),
                ));
            }
        }
    }
    // A circle: following depends_on from a task comes back to it.
    let by_name = |name: &str| tasks.iter().find(|t| t.name == name);
    for task in tasks {
        let mut path = vec![task.name.as_str()];
        let mut frontier: Vec<(&str, Vec<&str>)> = vec![(task.name.as_str(), path.clone())];
        while let Some((at, trail)) = frontier.pop() {
            for next in by_name(at).map(|t| t.depends_on.as_slice()).unwrap_or(&[]) {
                if next == &task.name {
                    path = trail.clone();
                    path.push(next);
                    let index = tasks.iter().position(|t| t.name == task.name).unwrap_or(0);
                    return Err(at_key(
                        &format!("tasks[{index}].depends_on"),
                        &format!(
                            "depends_on goes in a circle: {} (each would hold the other's alerts)",
                            path.join(" → ")
                        ),
                    ));
                }
                if !trail.contains(&next.as_str()) {
                    let mut longer = trail.clone();
                    longer.push(next);
                    frontier.push((next, longer));
                }
            }
        }
    }
    Ok(())
}

impl<'de> Deserialize<'de> for Profile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within_mapping(d, |raw: RawProfile| -> Result<Self, Why> {
            let mut seen = std::collections::BTreeSet::new();
            for task in &raw.tasks {
                if !seen.insert(task.name.as_str()) {
                    return Err(de::Error::custom(format!(
                        "two tasks are named `{}`: task names must be unique in a profile",
                        task.name
                    )));
                }
            }
            check_dependencies(&raw.tasks).map_err(de::Error::custom)?;
            if raw.concurrency == Some(0) {
                return Err(de::Error::custom("`concurrency` must be at least 1"));
            }
            Ok(Profile {
                name: String::new(),
                cron: raw.cron,
                enabled: raw.enabled,
                notify: raw.notify,
                notify_events: raw.notify_events,
                announce: raw.announce,
                written: String::new(),
                concurrency: raw.concurrency,
                heartbeat: raw.heartbeat,
                pre_run: raw.pre_run,
                maintenance: raw.maintenance,
                tasks: raw.tasks,
            })
        })
    }
}

// ---------------------------------------------------------------- probes

/// A program to run: argv as a list, or one string run by `sh -c`.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandLine {
    Argv(Vec<String>),
    Shell(String),
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandLine::Argv(argv) => f.write_str(&argv.join(" ")),
            CommandLine::Shell(line) => f.write_str(line),
        }
    }
}

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CommandLine;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of arguments, or one shell command line")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CommandLine, E> {
                let line = v.to_string();
                if line.trim().is_empty() {
                    return Err(E::custom("the command is empty"));
                }
                Ok(CommandLine::Shell(line))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<CommandLine, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<Text>()? {
                    argv.push(arg.0);
                }
                if argv.is_empty() {
                    return Err(de::Error::custom("the argument list is empty"));
                }
                Ok(CommandLine::Argv(argv))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------- notifiers

/// A named destination for messages.
#[derive(Debug, Clone)]
pub struct Notifier {
    pub name: String,
    pub kind: NotifierKind,
    /// Messages below this severity are not sent here.
    pub min_severity: Severity,
    /// One message per tick summarising every change (seed 001's digest).
    pub digest: bool,
    /// At most this many sends per window; the rest wait in the outbox.
    pub rate_limit: Option<RateLimit>,
}

/// `rate_limit: { messages: 20, per: 1m }`.
#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub messages: u32,
    pub per: Duration,
}

/// The keys every notifier takes beside `type:` and its own.
#[derive(Default)]
struct NotifierShared {
    min_severity: Option<Severity>,
    digest: bool,
    rate_limit: Option<RateLimit>,
}

impl tagged::Shared for NotifierShared {
    const KEYS: &'static [&'static str] = &["min_severity", "digest", "rate_limit"];

    fn read_key<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "min_severity" => self.min_severity = Some(map.next_value()?),
            "digest" => self.digest = map.next_value()?,
            "rate_limit" => self.rate_limit = Some(map.next_value()?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl<'de> Deserialize<'de> for Notifier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tagged::read(d, |shared: NotifierShared, kind: NotifierKind| {
            if shared.rate_limit.is_some_and(|r| r.messages == 0) {
                return Err("`rate_limit.messages` must be at least 1".to_string());
            }
            if shared.digest && !kind.config().takes_digest() {
                return Err(format!(
                    "`digest` bundles messages for people; {} notifier takes each alert on its own",
                    article(kind.type_name())
                ));
            }
            if shared.rate_limit.is_some() && !kind.config().takes_rate_limit() {
                return Err(format!(
                    "`rate_limit` does not apply to {} notifier: each of its URLs gets every tick's alerts in one POST, and holding one back would let firing alerts expire; remove it (Alertmanager groups and throttles notifications itself)",
                    article(kind.type_name())
                ));
            }
            Ok(Notifier {
                name: String::new(),
                kind,
                // Everything by default, info events included.
                min_severity: shared.min_severity.unwrap_or(Severity::Info),
                digest: shared.digest,
                rate_limit: shared.rate_limit,
            })
        })
    }
}

/// `a github`, `an alertmanager`.
fn article(word: &str) -> String {
    let vowel = word.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {word}", if vowel { "an" } else { "a" })
}
