//! Probes observe a task's target and report what they saw as checks,
//! signals and events. They never decide alerts and never write state
//! themselves: what they want remembered goes back in the observation.

#[macro_use]
pub(crate) mod kinds;

pub(crate) mod children;
pub(crate) mod command;
pub(crate) mod disk;
pub(crate) mod dns;
pub(crate) mod host_limit;
pub(crate) mod http;
pub mod lag;
pub mod log;
pub mod metrics;
pub(crate) mod ping;
pub(crate) mod pool;
pub(crate) mod process;
pub(crate) mod self_check;
pub(crate) mod tcp;

// Every probe kind, by its config key: the one list. A new probe is a
// `mod` line above and a line here (see `kinds.rs`).
probe_kinds! {
    http => Http(http::HttpConfig),
    command => Command(command::CommandConfig),
    log => Log(log::LogConfig),
    metrics => Metrics(metrics::MetricsConfig),
    lag => Lag(lag::LagConfig),
    process => Process(process::ProcessConfig),
    disk => Disk(disk::DiskConfig),
    tcp => Tcp(tcp::TcpConfig),
    tls => Tls(tcp::TlsConfig),
    ping => Ping(ping::PingConfig),
    dns => Dns(dns::DnsConfig),
    self_check => SelfCheck(self_check::SelfCheckConfig),
}

use crate::clock::Timestamp;
use crate::config::{Selector, Severity, Task};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
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

/// What a task's probes produced this tick, in two namespaces that never
/// shadow each other: the probes' own signals (`up`, `lag`, `http.status`,
/// perfdata labels…; booleans are 1/0) and, from a metrics scrape, series
/// addressed by name and labels.
#[derive(Clone, Debug, Default)]
pub struct Signals {
    named: BTreeMap<String, f64>,
    /// Scraped series by name.
    series: BTreeMap<String, Vec<(Labels, f64)>>,
    /// Metric families the scrape declared (`# TYPE`, `# HELP`, `# UNIT`).
    families: BTreeSet<String>,
    /// Names the scrape had samples of, kept or not, with the label names
    /// those samples carried (`metrics::parse::Exposition::sampled`).
    sampled: BTreeMap<String, Vec<String>>,
    /// Hashes of the scraped series, to keep only the first of duplicates.
    seen: HashSet<u64>,
    /// Which probe a bare name belongs to (the first that set it).
    owners: BTreeMap<String, String>,
    /// Text a probe extracted (`status: "healthy"`, an RFC 3339 time), by
    /// name and `probe.name`, for text conditions and `age_s(…)`.
    texts: BTreeMap<String, String>,
    /// The unit a plugin gave a perfdata value (`ms`, `%`, `MB`; empty for
    /// none), by name and `probe.name`: a rule written with a unit is
    /// compared in it.
    units: BTreeMap<String, String>,
}

/// One scraped series a selector matched.
pub type SeriesRef<'a> = (&'a str, &'a [(String, String)], f64);

/// Suffixes a sample's name adds to its family's (OpenMetrics names a
/// counter family `x` and its sample `x_total`).
const FAMILY_SUFFIXES: [&str; 8] = [
    "_total", "_created", "_bucket", "_count", "_sum", "_gcount", "_gsum", "_info",
];

impl Signals {
    pub fn set(&mut self, name: impl Into<String>, value: f64) {
        self.named.insert(name.into(), value);
    }

    /// Sets `probe.name` and, unless another probe of the task set it
    /// first, the bare `name`: `http.latency_ms` and a command's perfdata
    /// `command.latency_ms` are both there, and `latency_ms` is the first
    /// probe's (in the order http, command, log, metrics, lag, process,
    /// disk), never silently replaced by a later one's.
    pub fn set_probe(&mut self, probe: &str, name: &str, value: f64) {
        self.named.insert(format!("{probe}.{name}"), value);
        let owner = self
            .owners
            .entry(name.to_string())
            .or_insert_with(|| probe.to_string());
        if owner == probe {
            self.named.insert(name.to_string(), value);
        }
    }

    /// Adds one scraped series (`labels` sorted by name). A series already
    /// seen in this scrape is not added (Prometheus keeps the first sample
    /// of a duplicated series): returns false.
    pub fn add_series(&mut self, name: &str, labels: Labels, value: f64) -> bool {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (name, &labels).hash(&mut hasher);
        let hash = hasher.finish();
        let all = self.series.entry(name.to_string()).or_default();
        if !self.seen.insert(hash) && all.iter().any(|(l, _)| *l == labels) {
            return false;
        }
        all.push((labels, value));
        true
    }

    /// Records a metric family the scrape declared, with or without samples.
    pub fn declare_family(&mut self, name: &str) {
        if !self.families.contains(name) {
            self.families.insert(name.to_string());
        }
    }

    /// Records that the scrape had samples of `name` carrying
    /// `label_names`, whether or not they were kept.
    pub fn note_sampled(&mut self, name: String, label_names: Vec<String>) {
        self.sampled.entry(name).or_default().extend(label_names);
    }

    /// Every probe signal, by name (`up`, `tcp.up`…).
    pub fn named(&self) -> impl Iterator<Item = (&str, f64)> {
        self.named
            .iter()
            .map(|(name, value)| (name.as_str(), *value))
    }

    /// A probe's own signal.
    pub fn get_name(&self, name: &str) -> Option<f64> {
        self.named.get(name).copied()
    }

    /// Sets the text `probe.name` and, as [`Signals::set_probe`] does, the
    /// bare `name` unless another probe owns it.
    pub fn set_probe_text(&mut self, probe: &str, name: &str, text: &str) {
        self.texts
            .insert(format!("{probe}.{name}"), text.to_string());
        let owner = self
            .owners
            .entry(name.to_string())
            .or_insert_with(|| probe.to_string());
        if owner == probe {
            self.texts.insert(name.to_string(), text.to_string());
        }
    }

    /// [`Signals::set_probe`] for a value the probe gave in `unit`.
    pub fn set_probe_with_unit(&mut self, probe: &str, name: &str, value: f64, unit: &str) {
        self.set_probe(probe, name, value);
        self.units
            .insert(format!("{probe}.{name}"), unit.to_string());
        if self.owners.get(name).is_some_and(|owner| owner == probe) {
            self.units.insert(name.to_string(), unit.to_string());
        }
    }

    /// The unit a probe gave `name` in, when it gave one (perfdata).
    pub fn unit_of(&self, name: &str) -> Option<&str> {
        self.units.get(name).map(String::as_str)
    }

    /// A probe's text by name; a numeric signal reads as its number.
    pub fn get_text(&self, name: &str) -> Option<String> {
        self.texts
            .get(name)
            .cloned()
            .or_else(|| self.get_name(name).map(crate::config::format_number))
    }

    /// Every scraped series `selector` matches (never a probe's signal).
    pub fn series_matching<'a>(&'a self, selector: &Selector) -> Vec<SeriesRef<'a>> {
        let matching = |(name, all): (&'a String, &'a Vec<(Labels, f64)>)| {
            all.iter()
                .filter(move |(labels, _)| selector.matches(name, labels))
                .map(move |(labels, value)| (name.as_str(), labels.as_slice(), *value))
        };
        match &selector.name {
            Some(name) => self
                .series
                .get_key_value(name)
                .into_iter()
                .flat_map(matching)
                .collect(),
            None => self
                .series
                .iter()
                .filter(|(name, _)| selector.matches_names(name))
                .flat_map(matching)
                .collect(),
        }
    }

    /// Whether the scrape has the metric family `selector` reads, even with
    /// none of its series: a labelled counter a client creates on first
    /// use is absent until then, while its family is present.
    pub fn family_present(&self, selector: &Selector) -> bool {
        let declared = |name: &str| {
            self.families.contains(name)
                || self.series.contains_key(name)
                || self.sampled.contains_key(name)
                || FAMILY_SUFFIXES.iter().any(|suffix| {
                    name.strip_suffix(suffix)
                        .is_some_and(|family| self.families.contains(family))
                })
        };
        match &selector.name {
            Some(name) => declared(name),
            None => self
                .families
                .iter()
                .chain(self.series.keys())
                .chain(self.sampled.keys())
                .any(|name| selector.matches_names(name)),
        }
    }

    /// Label names the scraped series of the selector's family carry, when
    /// it has any series (`None`: only declared, or not there).
    pub fn family_labels(&self, selector: &Selector) -> Option<BTreeSet<&str>> {
        let name = selector.name.as_deref()?;
        let all = self.series.get(name);
        let sampled = self.sampled.get(name);
        if all.is_none() && sampled.is_none() {
            return None;
        }
        let kept = all
            .into_iter()
            .flatten()
            .flat_map(|(labels, _)| labels.iter().map(|(k, _)| k.as_str()));
        Some(
            kept.chain(sampled.into_iter().flatten().map(String::as_str))
                .collect(),
        )
    }

    /// The value `selector` reads for a `signal:` rule or a condition: a
    /// bare name is the probe's own signal when there is one; otherwise
    /// (or with braces) the sum of the matching scraped series. `None`
    /// when nothing matches.
    pub fn get(&self, selector: &Selector) -> Option<f64> {
        if let Some(value) = selector.signal_name().and_then(|name| self.get_name(name)) {
            return Some(value);
        }
        self.series_sum(selector)
    }

    /// The sum of the scraped series `selector` matches (`None`: none).
    pub fn series_sum(&self, selector: &Selector) -> Option<f64> {
        let matching = self.series_matching(selector);
        (!matching.is_empty()).then(|| matching.iter().map(|(_, _, v)| v).sum())
    }

    /// Up to `limit` named signals as `name = value` lines (without the
    /// `probe.` duplicates), for the evidence part of a message.
    pub fn evidence(&self, limit: usize) -> Vec<String> {
        self.named
            .iter()
            .filter(|(name, _)| !name.contains('.'))
            .take(limit)
            .map(|(name, value)| format!("{name} = {}", crate::config::format_value(name, *value)))
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
        // What the scrape held (`series`), and of it what the rules read.
        let kept = self.series_count();
        let scraped = self.get_name("metrics.series").map_or(kept, |n| n as usize);
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in &self.named {
            map.serialize_entry(name, value)?;
        }
        if scraped > 0 {
            map.serialize_entry("scraped_series", &scraped)?;
            map.serialize_entry("kept_series", &kept)?;
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
    /// For signals that measure an interval, since when their current value
    /// has held (`progress` 0 since the last reading that saw progress).
    #[serde(skip)]
    pub since: BTreeMap<String, Timestamp>,
    /// Probes whose failure lies outside the target (the lag probe's
    /// reference node): a restart cannot fix it.
    #[serde(skip)]
    pub outside: BTreeSet<&'static str>,
    /// Values to remember for this task's next tick (log offsets…).
    #[serde(skip)]
    pub state: BTreeMap<String, String>,
    pub elapsed_ms: u64,
}

impl Observation {
    /// `observed in 12 ms: http ok, metrics failed`, for the debug log.
    pub fn describe(&self) -> String {
        let checks: Vec<String> = self
            .checks
            .iter()
            .map(|c| format!("{} {}", c.probe, c.status.label()))
            .collect();
        format!("observed in {} ms: {}", self.elapsed_ms, checks.join(", "))
    }

    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.status.is_ok())
    }

    /// A check failed, was critical or unknown: a warning is not failing
    /// (what `depends_on` holds for).
    pub fn failing(&self) -> bool {
        self.checks
            .iter()
            .any(|c| !matches!(c.status, CheckStatus::Ok | CheckStatus::Warning))
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
pub type TaskMemory = BTreeMap<String, String>;

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
    pub state: &'a TaskMemory,
}

impl<'a> Context<'a> {
    /// A context for unit tests: clock at 0, 30 s to go.
    #[cfg(test)]
    pub fn for_test(state: &'a TaskMemory, mode: Mode) -> Context<'a> {
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
        probe.observe(context, &mut observation);
    }
    if let Some(action) = &task.action {
        crate::action::run(action, context, &mut observation);
    }
    // What a restart started in tmux keeps its dead pane (remain-on-exit):
    // a prover that died after its restart's watch is a failure now, not
    // only when its log goes stale minutes later.
    if context.mode != Mode::Recheck
        && let Some(crate::remediate::Start::Tmux { session, .. }) = task
            .remediate
            .as_ref()
            .and_then(|r| r.restart())
            .map(|r| &r.start)
        && let Some(why) = crate::remediate::start::tmux_dead_pane(session)
    {
        observation.checks.push(Check {
            probe: "tmux",
            status: CheckStatus::Critical,
            summary: why,
        });
    }
    // Each probe's health, for `when:` / `unless:` (`unless: [lag.healthy]`
    // reads 1 while the lag probe reads both heights).
    let health: Vec<(String, f64)> = observation
        .checks
        .iter()
        .map(|c| {
            (
                format!("{}.healthy", c.probe),
                f64::from(u8::from(c.status.is_ok())),
            )
        })
        .collect();
    for (name, value) in health {
        let previous = observation.signals.get_name(&name).unwrap_or(1.0);
        observation.signals.set(name, value.min(previous));
    }
    // What a target printed reaches terminals, the database and chats:
    // control characters (terminal escapes, NUL) are shown, not obeyed,
    // and a line is capped.
    for check in &mut observation.checks {
        check.summary = mask_credentials(&inert(&check.summary));
    }
    for event in &mut observation.events {
        event.message = inert(&event.message);
    }
    for found in &mut observation.matches {
        found.line = inert(&found.line);
    }
    observation.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    observation
}

/// `text` with the credentials of any URL in it masked: the password of
/// `user:password@` and the values of secret-looking query parameters
/// (`token`, `key`, `secret`, `password`, `sig`…) become `***`. A probe's
/// summary names its URL; it reaches the terminal, the database and every
/// notifier.
/// Values of secret-named variables (`${INFURA_KEY}`…) from the jobs.yaml
/// loaded in this process, longest first, with the name shown instead.
static HIDDEN: std::sync::RwLock<Vec<(String, String)>> = std::sync::RwLock::new(Vec::new());

/// Adds `(name, value)` pairs [`mask_credentials`] replaces by `${name}`.
pub fn hide_values(values: Vec<(String, String)>) {
    if values.is_empty() {
        return;
    }
    if let Ok(mut hidden) = HIDDEN.write() {
        for pair in values {
            if !hidden.contains(&pair) {
                hidden.push(pair);
            }
        }
        hidden.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
    }
}

pub fn mask_credentials(text: &str) -> String {
    static USERINFO: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/@\s:]*):([^/@\s]*)@")
            .expect("a valid regex")
    });
    static QUERY: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)([?&](?:access_token|api_?key|apikey|auth|key|password|passwd|pwd|secret|sig|signature|token|private_token)=)[^&#\s]*",
        )
        .expect("a valid regex")
    });
    static TOKEN_USERINFO: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s:]+@").expect("a valid regex")
    });
    let mut masked = text.to_string();
    if let Ok(hidden) = HIDDEN.read() {
        for (name, value) in hidden.iter() {
            if masked.contains(value.as_str()) {
                masked = masked.replace(value.as_str(), &format!("${{{name}}}"));
            }
        }
    }
    // Most summaries hold neither: no regex is built for them (a tick is
    // a short process; building these costs about half a millisecond).
    if masked.contains('@') {
        masked = USERINFO.replace_all(&masked, "${1}${2}:***@").into_owned();
        // `https://TOKEN@host/`: the whole userinfo is the secret.
        masked = TOKEN_USERINFO.replace_all(&masked, "${1}***@").into_owned();
    }
    if masked.contains('=') {
        masked = QUERY.replace_all(&masked, "${1}***").into_owned();
    }
    masked
}

/// Longest summary, event or matched line kept, in characters.
const MAX_SHOWN: usize = 2000;

/// `text` with each control character written as `\u{1b}` (newlines and
/// tabs as spaces), cut at [`MAX_SHOWN`] characters with a note.
pub fn inert(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_SHOWN + 32));
    for (shown, c) in text.chars().enumerate() {
        if shown >= MAX_SHOWN {
            out.push_str(&format!(" … (cut at {MAX_SHOWN} characters)"));
            break;
        }
        match c {
            '\n' | '\t' | '\r' => out.push(' '),
            c if hidden_or_control(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A control character, or one that reorders or hides text where it is
/// shown (bidirectional overrides and isolates, zero-width characters).
pub fn hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_reorders_or_hides_itself_is_shown_escaped() {
        assert_eq!(
            inert("ok\u{202e}gnp.exe\u{200b}!\u{1b}[2J"),
            "ok\\u{202e}gnp.exe\\u{200b}!\\u{1b}[2J"
        );
        assert_eq!(inert("café ✓"), "café ✓");
    }

    #[test]
    fn credentials_are_masked_wherever_they_sit_in_a_url() {
        hide_values(vec![("RPC_KEY".into(), "k3y-0f-the-rpc-provider".into())]);
        for (shown, masked) in [
            (
                "GET https://ops:pa55@host/x failed",
                "GET https://ops:***@host/x failed",
            ),
            (
                "https://ghp_abcdef@github.com/org/repo",
                "https://***@github.com/org/repo",
            ),
            ("http://h/x?token=abc&page=2", "http://h/x?token=***&page=2"),
            (
                "https://eth.example/v2/k3y-0f-the-rpc-provider: timed out",
                "https://eth.example/v2/${RPC_KEY}: timed out",
            ),
            ("mail me at ops@example.com", "mail me at ops@example.com"),
        ] {
            assert_eq!(mask_credentials(shown), masked);
        }
    }

    fn task(yaml: &str) -> Task {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_later_probe_never_replaces_an_earlier_ones_bare_name() {
        let mut signals = Signals::default();
        signals.set_probe("http", "latency_ms", 3.0);
        signals.set_probe("command", "latency_ms", 777.0);
        signals.set_probe("http", "latency_ms", 4.0);
        assert_eq!(signals.get_name("latency_ms"), Some(4.0));
        assert_eq!(signals.get_name("http.latency_ms"), Some(4.0));
        assert_eq!(signals.get_name("command.latency_ms"), Some(777.0));
    }

    #[test]
    fn each_probes_health_is_a_signal() {
        let state = TaskMemory::new();
        let context = Context::for_test(&state, Mode::Tick);
        let ok = observe(&task("name: t\ncommand: { argv: [\"true\"] }\n"), &context);
        assert_eq!(ok.signals.get_name("command.healthy"), Some(1.0));
        let failing = observe(
            &task("name: t\ncommand: { argv: [\"sh\", \"-c\", \"echo CRITICAL; exit 2\"] }\n"),
            &context,
        );
        assert_eq!(failing.signals.get_name("command.healthy"), Some(0.0));
        let selector: Selector = "command.healthy".parse().unwrap();
        assert_eq!(failing.signals.get(&selector), Some(0.0));
    }
}
