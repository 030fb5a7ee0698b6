//! The jobs.yaml language: typed configuration, loaded and validated once.
//! Owns every key of the file; knows nothing of how tasks run.

mod interpolate;
mod load;
pub mod selector;
pub(crate) mod tagged;
pub mod values;

pub use load::{ConfigError, absolute, load, load_source, resolve_path};
pub use selector::{MatchOp, Matcher, Selector, Selectors};
pub use values::{
    ByteSize, Condition, Duration, Gate, Guard, JsonPointer, Op, Pattern, Ratio, Secret, Severity,
    StatusRanges, Text, Threshold, Unit, format_bytes, format_number, format_value,
};

use crate::action::Action;
use crate::notify::heartbeat::Heartbeat;
pub use crate::notify::kinds::NotifierKind;
use crate::pre_run::PreRun;
pub use crate::probe::kinds::{Probe, ProbeKind};
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
                for probe in &task.probes {
                    let (url, headers) = match probe {
                        Probe::Http(http) => (http.url.as_str(), &http.headers),
                        Probe::Metrics(metrics) => (metrics.url.as_str(), &metrics.headers),
                        _ => continue,
                    };
                    secrets.extend(headers.values().map(Secret::expose));
                    // `https://user:password@host/`: the URL is a secret.
                    let authority = url.split_once("://").map_or("", |(_, rest)| {
                        rest.split(['/', '?', '#']).next().unwrap_or_default()
                    });
                    if authority.contains('@') {
                        secrets.push(url);
                    }
                }
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
            (self.0)(raw).map_err(|why| de::Error::custom(why.0))
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

// ---------------------------------------------------------------- tasks

/// One thing to watch (probes + rules) or to do (an action).
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub probes: Vec<Probe>,
    pub action: Option<Action>,
    pub rules: Vec<Rule>,
    pub remediate: Option<Remediate>,
    pub notify: Option<Vec<String>>,
    pub notify_events: Option<Vec<String>>,
    pub maintenance: Vec<Maintenance>,
    pub severity: Severity,
    pub for_: Gate,
    pub resolve_after: Gate,
    pub timeout: Option<Duration>,
    pub cooldown: Option<Duration>,
    pub enabled: bool,
    pub warmup: Option<u32>,
    pub skip_when: Vec<Guard>,
    pub labels: BTreeMap<String, String>,
}

/// Tasks monitor adds to a profile to watch itself: the pre-run git sync
/// (after 3 failures in a row) and a jobs.yaml rejected for the last good.
pub const GIT_SYNC_TASK: &str = "git-sync";
pub const CONFIG_TASK: &str = "jobs.yaml";

impl Task {
    /// The series selectors this task's rules and guards read, histogram
    /// parts (`_bucket`, `_count`, `_sum`, `_gcount`) included. A scrape
    /// keeps only the series one of them matches: memory follows what the
    /// rules need.
    pub fn series_wanted(&self) -> Vec<Selector> {
        fn guard(guard: &Guard) -> &Selector {
            match guard {
                Guard::Flag(s) | Guard::Compare(s, _) => s,
            }
        }
        let mut wanted: Vec<Selector> = Vec::new();
        for rule in &self.rules {
            match &rule.kind {
                RuleKind::Signal { signal, .. } => wanted.push(signal.clone()),
                RuleKind::Gauge(all) | RuleKind::Counter { series: all, .. } => {
                    wanted.extend(all.0.iter().cloned())
                }
                RuleKind::GaugeRatio {
                    numerator,
                    denominator,
                } => wanted.extend([numerator.clone(), denominator.clone()]),
                RuleKind::Ratio(ratio) => {
                    wanted.extend(ratio.numerator.0.iter().cloned());
                    wanted.extend(ratio.denominator.0.iter().cloned());
                }
                RuleKind::Histogram { metric, .. } => {
                    wanted.push(metric.clone());
                    if let Some(name) = &metric.name {
                        for part in ["_bucket", "_count", "_sum", "_gcount"] {
                            let mut one = metric.clone();
                            one.name = Some(format!("{name}{part}"));
                            wanted.push(one);
                        }
                    }
                }
            }
            wanted.extend(rule.when.iter().chain(&rule.unless).map(guard).cloned());
        }
        wanted.extend(self.skip_when.iter().map(guard).cloned());
        wanted
    }

    /// A task with no probes of its own, judged from an observation the
    /// tick makes (see [`GIT_SYNC_TASK`]): warning, no rules, no repairs.
    pub fn watcher(name: &str) -> Task {
        Task {
            severity: Severity::Warning,
            ..Task::new(name)
        }
    }

    /// A task of that name with nothing set: every key at its default.
    fn new(name: &str) -> Task {
        Task {
            name: name.to_string(),
            probes: Vec::new(),
            action: None,
            rules: Vec::new(),
            remediate: None,
            notify: None,
            notify_events: None,
            maintenance: Vec::new(),
            severity: Severity::default(),
            for_: Gate::default(),
            resolve_after: Gate::default(),
            timeout: None,
            cooldown: None,
            enabled: true,
            warmup: None,
            skip_when: Vec::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// The rule name of a task's implicit "every probe healthy" rule.
pub const HEALTH_RULE: &str = "health";
/// The key under which restarts are recorded in the history.
pub const RESTART_RULE: &str = "restart";
/// The alert raised when `max` restarts are spent.
pub const RESTART_LOOP_RULE: &str = "restart-loop";
/// Alert keys a task uses for itself: the implicit rule, restart records.
pub const RESERVED_KEYS: [&str; 3] = [HEALTH_RULE, RESTART_RULE, RESTART_LOOP_RULE];

/// The keys of a task besides its probes ([`ProbeKind`] lists those).
#[derive(Clone, Copy, PartialEq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
enum TaskField {
    Name,
    Action,
    Rules,
    Remediate,
    Notify,
    NotifyEvents,
    Maintenance,
    Severity,
    #[strum(serialize = "for")]
    For,
    ResolveAfter,
    Timeout,
    Cooldown,
    Enabled,
    Warmup,
    SkipWhen,
    Labels,
}

/// One key of a task mapping: a probe's or one of the task's own.
#[derive(Clone, Copy, PartialEq)]
enum TaskKey {
    Probe(ProbeKind),
    Field(TaskField),
}

impl TaskKey {
    fn name(self) -> &'static str {
        match self {
            TaskKey::Probe(kind) => kind.key(),
            TaskKey::Field(field) => field.into(),
        }
    }
}

/// Every key a task takes, for "unknown field … expected one of".
static TASK_KEYS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    use strum::VariantArray;
    let (name, fields) = TaskField::VARIANTS.split_at(1);
    let field = |f: &TaskField| TaskKey::Field(*f).name();
    let probes = ProbeKind::ALL.iter().map(|kind| kind.key());
    name.iter()
        .map(field)
        .chain(probes)
        .chain(fields.iter().map(field))
        .collect()
});

impl<'de> Deserialize<'de> for TaskKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TaskKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a task key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<TaskKey, E> {
                use strum::VariantArray;
                if let Some(kind) = ProbeKind::from_key(key) {
                    return Ok(TaskKey::Probe(kind));
                }
                TaskField::VARIANTS
                    .iter()
                    .find(|f| <&str>::from(**f) == key)
                    .map(|f| TaskKey::Field(*f))
                    .ok_or_else(|| E::unknown_field(key, TASK_KEYS.as_slice()))
            }
        }
        d.deserialize_identifier(V)
    }
}

/// A task as written, before the checks that span its keys.
struct RawTask(Task);

impl<'de> Deserialize<'de> for RawTask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTask;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a task: a mapping with `name` and a probe or an action")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTask, A::Error> {
                let mut name = None;
                let mut raw = Task::new("");
                let mut seen: Vec<TaskKey> = Vec::new();
                while let Some(key) = map.next_key::<TaskKey>()? {
                    if seen.contains(&key) {
                        return Err(de::Error::duplicate_field(key.name()));
                    }
                    seen.push(key);
                    let field = match key {
                        TaskKey::Probe(kind) => {
                            raw.probes.push(kind.read(&mut map)?);
                            continue;
                        }
                        TaskKey::Field(field) => field,
                    };
                    match field {
                        TaskField::Name => name = Some(map.next_value()?),
                        TaskField::Action => raw.action = map.next_value()?,
                        TaskField::Rules => raw.rules = map.next_value()?,
                        TaskField::Remediate => raw.remediate = map.next_value()?,
                        TaskField::Notify => raw.notify = map.next_value()?,
                        TaskField::NotifyEvents => raw.notify_events = map.next_value()?,
                        TaskField::Maintenance => raw.maintenance = map.next_value()?,
                        TaskField::Severity => raw.severity = map.next_value()?,
                        TaskField::For => raw.for_ = map.next_value()?,
                        TaskField::ResolveAfter => raw.resolve_after = map.next_value()?,
                        TaskField::Timeout => raw.timeout = map.next_value()?,
                        TaskField::Cooldown => raw.cooldown = map.next_value()?,
                        TaskField::Enabled => raw.enabled = map.next_value()?,
                        TaskField::Warmup => raw.warmup = map.next_value()?,
                        TaskField::SkipWhen => raw.skip_when = map.next_value()?,
                        TaskField::Labels => raw.labels = map.next_value()?,
                    }
                }
                raw.name = name.ok_or_else(|| de::Error::missing_field("name"))?;
                raw.probes.sort_by_key(Probe::kind_of);
                Ok(RawTask(raw))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Task {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within_mapping(d, |RawTask(raw)| -> Result<Self, Why> {
            let name = &raw.name;
            let err = |why: String| de::Error::custom(format!("task `{name}`: {why}"));
            let name_ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !name_ok {
                return Err(de::Error::custom(format!(
                    "task name {name:?} must be letters, digits, `_`, `-` or `.`"
                )));
            }
            let probes = &raw.probes;
            match (&raw.action, probes.is_empty()) {
                (None, true) => {
                    return Err(err(format!(
                        "needs a probe ({}) or an action",
                        crate::probe::kinds::keys()
                    )));
                }
                (Some(_), false) => {
                    return Err(err(
                        "has both probes and an action: split it into two tasks".into(),
                    ));
                }
                _ => {}
            }
            if raw.action.is_some() && (!raw.rules.is_empty() || raw.remediate.is_some()) {
                return Err(err("an action task takes no rules and no remediate".into()));
            }
            // Rules and log patterns share the task's alert keys with the
            // implicit health rule and the restart records.
            let mut keys: std::collections::BTreeSet<&str> =
                RESERVED_KEYS.iter().copied().collect();
            let patterns = probes.iter().filter_map(|p| match p {
                Probe::Log(log) => Some(log.patterns.iter().map(|p| p.name.as_str())),
                _ => None,
            });
            for name in raw
                .rules
                .iter()
                .map(|r| r.name.as_str())
                .chain(patterns.flatten())
            {
                if !keys.insert(name) {
                    return Err(err(format!(
                        "the name `{name}` is used twice among rules and log patterns, or is reserved ({})",
                        RESERVED_KEYS.join(", ")
                    )));
                }
            }
            for probe in probes {
                probe.check().map_err(err)?;
            }
            let scrapes = probes.iter().any(|p| matches!(p, Probe::Metrics(_)));
            if let Some((rule, signal)) = raw.rules.iter().find_map(|r| match &r.kind {
                RuleKind::Signal { signal, .. } if !scrapes && signal.signal_name().is_none() => {
                    Some((r, signal))
                }
                _ => None,
            }) {
                return Err(err(format!(
                    "rule `{}`: `{signal}` names scraped series (braces), and this task has no `metrics` probe; a probe's own signal is a bare name, e.g. signal: latency_ms",
                    rule.name
                )));
            }
            if let Some(rule) = raw
                .rules
                .iter()
                .find(|r| !scrapes && !matches!(r.kind, RuleKind::Signal { .. }))
            {
                return Err(err(format!(
                    "rule `{}`: `{}:` reads scraped series, and this task has no `metrics` probe; for a probe's own signal (rss_bytes, lag, a perfdata label) write `signal: NAME`",
                    rule.name,
                    rule.kind.key()
                )));
            }
            Ok(raw)
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

// ---------------------------------------------------------------- actions

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
                    "`digest` bundles messages for people; a {} notifier takes each alert on its own",
                    kind.type_name()
                ));
            }
            if shared.rate_limit.is_some() && !kind.config().takes_rate_limit() {
                return Err(format!(
                    "`rate_limit` does not apply to an {} notifier: each of its URLs gets every tick's alerts in one POST, and holding one back would let firing alerts expire; remove it (Alertmanager groups and throttles notifications itself)",
                    kind.type_name()
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
