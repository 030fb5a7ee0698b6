//! A task as written in jobs.yaml: its name, its probes (the keys
//! [`ProbeKind`] lists) or its action, its rules, remediation and gates,
//! read key by key so each error is placed at its line, then checked
//! across keys (names shared by rules and log patterns, rules that need a
//! `metrics` probe).

use super::*;

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
    /// `every: 5m`: the task runs only on ticks when this long has passed
    /// since its last run; in between its alerts hold as they are.
    pub every: Option<Duration>,
    /// `depends_on: [rpc]`: while one of these tasks of the profile is
    /// failing, this one is observed and recorded, but its alerts are held
    /// and its restarts not attempted.
    pub depends_on: Vec<String>,
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
    /// The probe signals (bare or `probe.name`) its rules and guards read.
    pub fn signals_read(&self) -> Vec<&str> {
        self.rules
            .iter()
            .flat_map(|rule| rule.signals_read().into_iter().map(|(_, name)| name))
            .collect()
    }

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
                // Texts and times are a probe's, never scraped series.
                RuleKind::Text { .. } | RuleKind::Age { .. } => {}
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
        // The target's start time tells the judge it restarted (its
        // snapshots are dropped, the warm-up begins), rule or none.
        wanted.push(
            crate::evaluate::START_TIME_SERIES
                .parse()
                .expect("the start-time series is a valid selector"),
        );
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
            every: None,
            depends_on: Vec::new(),
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
    Every,
    DependsOn,
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

/// Reads one task key, refusing one already read (`seen`) while serde_yaml
/// still reads it, so the error is placed at the second one.
struct TaskKeySeed<'a>(&'a [TaskKey]);

impl<'de> de::DeserializeSeed<'de> for TaskKeySeed<'_> {
    type Value = TaskKey;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<TaskKey, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for TaskKeySeed<'_> {
    type Value = TaskKey;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a task key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<TaskKey, E> {
        use strum::VariantArray;
        let found = match ProbeKind::from_key(key) {
            Some(kind) => TaskKey::Probe(kind),
            None => TaskField::VARIANTS
                .iter()
                .find(|f| <&str>::from(**f) == key)
                .map(|f| TaskKey::Field(*f))
                .ok_or_else(|| E::unknown_field(key, TASK_KEYS.as_slice()))?,
        };
        if self.0.contains(&found) {
            return Err(E::duplicate_field(found.name()));
        }
        Ok(found)
    }
}

/// `every`: at least a second between runs, refused where it is written.
struct Every(Duration);

impl<'de> Deserialize<'de> for Every {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::values::parsed(d, |text| {
            let every: Duration = text.parse()?;
            if every.0 < std::time::Duration::from_secs(1) {
                return Err(
                    "`every` is how long between runs of this task, e.g. 5m or 1h".to_string(),
                );
            }
            Ok(Every(every))
        })
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
                while let Some(key) = map.next_key_seed(TaskKeySeed(&seen))? {
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
                        TaskField::ResolveAfter => {
                            raw.resolve_after = map.next_value::<super::ResolveGate>()?.0;
                        }
                        TaskField::Timeout => raw.timeout = map.next_value()?,
                        TaskField::Cooldown => raw.cooldown = map.next_value()?,
                        TaskField::Every => raw.every = Some(map.next_value::<Every>()?.0),
                        TaskField::DependsOn => raw.depends_on = map.next_value()?,
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
            let err = |why: String| {
                de::Error::custom(match super::split_at_key(&why) {
                    Some((key, why)) => super::at_key(key, &format!("task `{name}`: {why}")),
                    None => format!("task `{name}`: {why}"),
                })
            };
            if let Some(problem) = super::name_problem("task", name, true) {
                return Err(de::Error::custom(problem));
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
            if let Some(rule) = raw.rules.iter().find(|r| {
                !scrapes
                    && !matches!(
                        r.kind,
                        RuleKind::Signal { .. } | RuleKind::Text { .. } | RuleKind::Age { .. }
                    )
            }) {
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
