//! Reading jobs.yaml from disk: YAML parsing, error locations, path
//! resolution and cross-references. The only place that touches YAML, so a
//! maintained serde_yaml fork is a one-file swap.

use super::{Config, Notifier, NotifierKind, Probe, RawConfig, values};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration error: which file, where in it, which key, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted path of the offending key, e.g. `profiles.minutely.tasks[0].timeout`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message: message.into(),
        }
    }

    /// Points at the key `path` (`profiles.p.tasks[1].tls.ca_file`) of
    /// `source`, for errors found after parsing.
    fn at_path(file: &Path, source: &str, path: String, message: String) -> Self {
        let (line, column) = locate(source, (1, 1), &path).unzip();
        ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            key: Some(path),
            message,
        }
    }

    /// Points at the first line of `source` that `matches`, for errors found
    /// after parsing (serde has no positions by then).
    fn at_line(
        file: &Path,
        source: &str,
        key: String,
        message: String,
        matches: impl Fn(&str) -> bool,
    ) -> Self {
        let line = source.lines().position(matches).map(|i| i + 1);
        let column = line.and_then(|l| {
            source
                .lines()
                .nth(l - 1)
                .map(|text| text.len() - text.trim_start().len() + 1)
        });
        ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            key: Some(key),
            message,
        }
    }
}

/// Finds the config file: `--config`, then `$MONITOR_CONFIG`, then `./jobs.yaml`.
pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
    if let Some(path) = flag {
        return path.to_path_buf();
    }
    match std::env::var_os("MONITOR_CONFIG") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from("jobs.yaml"),
    }
}

/// Reads, parses and validates a jobs.yaml. `db_override` is `--db`.
pub fn load(path: &Path, db_override: Option<&Path>) -> Result<Config, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::whole_file(path, format!(
            "cannot read the config file: {e} (pass --config PATH, set MONITOR_CONFIG, or run from the folder holding jobs.yaml)"
        ))
    })?;
    load_source(path, source, db_override)
}

/// [`load`] of `source` as if read from `path` (relative paths resolve
/// against its folder): the last good jobs.yaml a tick falls back on.
pub fn load_source(
    path: &Path,
    source: String,
    db_override: Option<&Path>,
) -> Result<Config, ConfigError> {
    let absolute = absolute(path);
    let base = absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let display_path = path.to_path_buf();
    check_shape(&display_path, &source)?;
    super::interpolate::take_secret_values();
    let raw = RawConfig::deserialize(super::interpolate::Interpolating(
        serde_yaml::Deserializer::from_str(&source),
    ))
    .map_err(|e| yaml_error(&display_path, &source, &e))?;
    // What `${…_KEY}`, `${…_TOKEN}` and the like put into URLs and
    // commands is masked wherever a check says what it saw.
    crate::probe::hide_values(super::interpolate::take_secret_values());
    if raw.version != 1 {
        return Err(ConfigError::at_line(
            &display_path,
            &source,
            "version".into(),
            format!(
                "version {} is not supported: this monitor reads version 1",
                raw.version
            ),
            |l| l.trim_start().starts_with("version"),
        ));
    }
    let host = match raw.host.map(|h| h.0) {
        Some(host) if !host.trim().is_empty() => host.trim().to_string(),
        _ => hostname(),
    };
    if host.chars().any(crate::probe::hidden_or_control) {
        // It heads every message: a terminal escape in it would be obeyed
        // by every terminal and chat client that shows one.
        return Err(ConfigError::at_line(
            &display_path,
            &source,
            "host".into(),
            format!(
                "the host name {} holds control or invisible characters: give a plain name",
                crate::probe::inert(&host)
            ),
            |l| l.trim_start().starts_with("host"),
        ));
    }
    let state = match (db_override, std::env::var_os("MONITOR_DB")) {
        (Some(db), _) => absolute_from(&std::env::current_dir().unwrap_or_default(), db),
        (None, Some(db)) if !db.is_empty() => {
            absolute_from(&std::env::current_dir().unwrap_or_default(), Path::new(&db))
        }
        _ => {
            let state = raw
                .state
                .map(|s| s.0)
                .unwrap_or_else(|| "state/monitor.db".to_string());
            base.join(state)
        }
    };
    let mut notifiers: Vec<Notifier> = raw
        .notifiers
        .0
        .into_iter()
        .map(|(name, mut notifier)| {
            notifier.name = name;
            notifier
        })
        .collect();
    if !notifiers.iter().any(|n| n.name == "console") {
        notifiers.push(Notifier {
            name: "console".into(),
            kind: NotifierKind::Stdout(crate::notify::stdout::StdoutConfig {}),
            min_severity: values::Severity::Info,
            digest: false,
            rate_limit: None,
        });
    }
    for notifier in &notifiers {
        check_name(&display_path, &source, "notifier", &notifier.name)?;
    }
    let mut profiles = Vec::new();
    // Each profile's configuration as written (before `${VAR}`s are filled
    // in, without comments): what "jobs.yaml changed" compares.
    let written: serde_yaml::Value = serde_yaml::from_str(&source).unwrap_or_default();
    for (name, mut profile) in raw.profiles.0 {
        check_name(&display_path, &source, "profile", &name)?;
        let parts = [
            written.get("host"),
            written.get("defaults"),
            written.get("notifiers"),
            written.get("profiles").and_then(|p| p.get(name.as_str())),
        ];
        profile.written = fingerprint(&serde_yaml::to_string(&parts).unwrap_or_default());
        for (index, task) in profile.tasks.iter().enumerate() {
            if [super::GIT_SYNC_TASK, super::CONFIG_TASK].contains(&task.name.as_str()) {
                return Err(ConfigError::at_line(
                    &display_path,
                    &source,
                    format!("profiles.{name}.tasks[{index}].name"),
                    format!(
                        "the task name `{}` is monitor's own (it watches its git sync and jobs.yaml under it): choose another",
                        task.name
                    ),
                    |l| l.contains(&format!("name: {}", task.name)),
                ));
            }
            let restart = task.remediate.as_ref().and_then(|r| r.restart());
            if restart
                .and_then(|r| r.identity.as_ref())
                .is_some_and(|i| i.is_empty())
            {
                return Err(ConfigError::at_line(
                    &display_path,
                    &source,
                    format!("profiles.{name}.tasks[{index}].remediate.restart.identity"),
                    "`identity` names nothing real: give a non-empty `pattern`, a `pidfile` or a `port` other than 0 (an empty one would turn the check for a second copy off, an empty pattern would match every process)".into(),
                    |l| l.trim_start().starts_with("identity:"),
                ));
            }
        }
        for task in &mut profile.tasks {
            let wanted = task.series_wanted();
            for probe in &mut task.probes {
                if let Probe::Metrics(metrics) = probe {
                    metrics.wanted = Some(wanted.clone());
                }
            }
        }
        profile.name = name;
        profiles.push(profile);
    }
    if profiles.is_empty() {
        return Err(ConfigError::at_line(
            &display_path,
            &source,
            "profiles".into(),
            "no profiles are defined: add one under `profiles:`".into(),
            |l| l.starts_with("profiles"),
        ));
    }
    let mut config = Config {
        path: absolute,
        host,
        state,
        log_file: raw.log_file.map(|f| base.join(f.0)),
        defaults: raw.defaults,
        notifiers,
        profiles,
        peers: raw.peers,
        source: String::new(),
    };
    check_references(&config, &display_path, &source)?;
    check_ping_time(&config, &display_path, &source)?;
    check_signal_names(&config, &display_path, &source)?;
    resolve_relative_paths(&mut config, &base);
    let watched = crate::probe::self_check::Watched {
        database: config.state.clone(),
        log_file: config.log_file.clone(),
        profiles: config
            .profiles
            .iter()
            .filter(|p| p.enabled)
            .map(|p| (p.name.clone(), p.cron.clone()))
            .collect(),
    };
    for task in config.profiles.iter_mut().flat_map(|p| p.tasks.iter_mut()) {
        for probe in &mut task.probes {
            if let super::Probe::SelfCheck(check) = probe {
                check.watched = watched.clone();
            }
        }
    }
    config.source = source;
    Ok(config)
}

/// Profile and notifier names end up in file names, crontab lines and URLs.
fn check_name(file: &Path, source: &str, what: &str, name: &str) -> Result<(), ConfigError> {
    let Some(problem) = super::name_problem(what, name, false) else {
        return Ok(());
    };
    Err(ConfigError::at_line(
        file,
        source,
        format!("{what}s.{name}"),
        problem,
        |l| l.trim_start().starts_with(name) && l.contains(':'),
    ))
}

/// Every `notify:` name must be a defined notifier.
fn check_references(config: &Config, file: &Path, source: &str) -> Result<(), ConfigError> {
    let known: Vec<&str> = config.notifiers.iter().map(|n| n.name.as_str()).collect();
    let check = |names: &[String], key: String| -> Result<(), ConfigError> {
        for name in names {
            if !known.contains(&name.as_str()) {
                let (line, column) = notify_item(source, name).unzip();
                return Err(ConfigError {
                    file: file.to_path_buf(),
                    line,
                    column,
                    key: Some(key),
                    message: format!(
                        "notifier `{name}` is not defined: defined are {}",
                        known.join(", ")
                    ),
                });
            }
        }
        Ok(())
    };
    check(&config.defaults.notify, "defaults.notify".into())?;
    for profile in &config.profiles {
        for (names, key) in [
            (&profile.notify, "notify"),
            (&profile.notify_events, "notify_events"),
        ] {
            if let Some(names) = names {
                check(names, format!("profiles.{}.{key}", profile.name))?;
            }
        }
        for task in &profile.tasks {
            for (names, key) in [
                (&task.notify, "notify"),
                (&task.notify_events, "notify_events"),
            ] {
                if let Some(names) = names {
                    check(
                        names,
                        format!("profiles.{}.tasks[{}].{key}", profile.name, task.name),
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// A ping's requests fit in its task's timeout: else fewer than `count`
/// are sent and the loss is of those only.
fn check_ping_time(config: &Config, file: &Path, source: &str) -> Result<(), ConfigError> {
    for profile in &config.profiles {
        for (index, task) in profile.tasks.iter().enumerate() {
            let timeout = task.timeout.unwrap_or(config.defaults.timeout);
            for probe in &task.probes {
                let Probe::Ping(ping) = probe else { continue };
                let longest = crate::probe::ping::longest(ping);
                if longest > timeout.std() {
                    return Err(ConfigError::at_path(
                        file,
                        source,
                        format!("profiles.{}.tasks[{index}].ping.count", profile.name),
                        format!(
                            "count {} with interval {} and wait {} takes {}, more than the task's timeout {}: raise the task's `timeout:` or lower `count`",
                            ping.count,
                            ping.interval,
                            ping.wait,
                            super::Duration(longest),
                            timeout
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A rule or guard reading a signal no probe of its task gives never
/// fires: a typo (`conect_ms`) is refused with the names there are. Only
/// where every probe of the task tells its names (not a command's
/// perfdata, a log's states or a scrape's series).
fn check_signal_names(config: &Config, file: &Path, source: &str) -> Result<(), ConfigError> {
    for profile in &config.profiles {
        for (index, task) in profile.tasks.iter().enumerate() {
            let Some(given) = given_signals(task) else {
                continue;
            };
            for (number, rule) in task.rules.iter().enumerate() {
                for (key, name) in rule.signals_read() {
                    if given.iter().any(|g| g == name) {
                        continue;
                    }
                    let mut error = ConfigError::at_path(
                        file,
                        source,
                        format!(
                            "profiles.{}.tasks[{index}].rules[{number}].{key}",
                            profile.name
                        ),
                        format!(
                            "task `{}`, rule `{}`: {}",
                            task.name,
                            rule.name,
                            not_given(task, name, &given)
                        ),
                    );
                    if error.line.is_none() {
                        // A flow mapping (`rules: [ { …, signal: x } ]`)
                        // has no key path to follow: where the name is.
                        (error.line, error.column) = source
                            .lines()
                            .enumerate()
                            .filter(|(_, line)| line.contains(name))
                            .find_map(|(at, line)| {
                                key_in_line(line, key, 0).map(|column| (at + 1, column + 1))
                            })
                            .unzip();
                    }
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}

/// Every name the task's probes give, bare and as `probe.name`; `None`
/// when one of them does not tell.
fn given_signals(task: &super::Task) -> Option<Vec<String>> {
    let mut given = Vec::new();
    for probe in &task.probes {
        for name in probe.signal_names()? {
            given.push(format!("{}.{name}", probe.kind()));
            given.push(name);
        }
    }
    (!task.probes.is_empty()).then_some(given)
}

/// Why `name` is not there, what is, and the nearest name if one is near.
fn not_given(task: &super::Task, name: &str, given: &[String]) -> String {
    let bare = |name: &str| -> String {
        match name.split_once('.') {
            Some((kind, rest)) if task.probes.iter().any(|p| p.kind() == kind) => rest.into(),
            _ => name.into(),
        }
    };
    for probe in &task.probes {
        if let Some(how) = probe.withheld(&bare(name)) {
            return format!("`{name}` is given by {} {how}", probe.kind());
        }
    }
    let lists: Vec<String> = task
        .probes
        .iter()
        .map(|probe| {
            let names = probe.signal_names().unwrap_or_default();
            format!("{} gives {}", probe.kind(), names.join(", "))
        })
        .collect();
    // Suggested in the form written: `dns.resolv_ms` → `dns.resolve_ms`.
    let prefixed = name.contains('.');
    let nearest = super::nearest(
        name,
        given
            .iter()
            .filter(|g| g.contains('.') == prefixed)
            .map(String::as_str),
    );
    let hint = match nearest {
        Some(g) => format!(": did you mean `{g}`?"),
        None => String::new(),
    };
    format!(
        "no probe of this task gives `{name}` ({}){hint}",
        lists.join("; ")
    )
}

/// What `check-config` reads beyond loading: the files probes will read
/// (a `ca_file`). Not part of [`load`]: a file gone at a tick fails that
/// probe's check, never all monitoring.
pub fn check_files(config: &Config, path: &Path) -> Result<(), ConfigError> {
    for profile in &config.profiles {
        for (index, task) in profile.tasks.iter().enumerate() {
            for probe in &task.probes {
                if let Err(why) = probe.check_files() {
                    let (key, why) = super::split_at_key(&why).unwrap_or((probe.kind(), &why));
                    return Err(ConfigError::at_path(
                        path,
                        &config.source,
                        format!("profiles.{}.tasks[{index}].{key}", profile.name),
                        format!("task `{}`: {why}", task.name),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Where `name` is written in a `notify:` or `notify_events:` list, flow
/// (`notify: [a, b]`) or block (`- b` lines under it): 1-based line and
/// column.
fn notify_item(source: &str, name: &str) -> Option<(usize, usize)> {
    let is_name = |word: &str| word.trim().trim_matches(['"', '\'']) == name;
    let mut list_indent: Option<usize> = None;
    for (index, line) in source.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim_start();
        if let Some(within) = list_indent {
            if let Some(item) = text.strip_prefix("- ").filter(|_| indent >= within) {
                if is_name(item.split('#').next().unwrap_or_default()) {
                    return Some((index + 1, indent + 3));
                }
                continue;
            }
            if !text.is_empty() && !text.starts_with('#') {
                list_indent = None;
            }
        }
        let Some(rest) = ["notify:", "notify_events:"]
            .iter()
            .find_map(|key| text.strip_prefix(key))
        else {
            continue;
        };
        let rest = rest.split('#').next().unwrap_or_default().trim();
        if rest.is_empty() {
            list_indent = Some(indent);
            continue;
        }
        let inner = rest.trim_start_matches('[').trim_end_matches(']');
        let mut offset = line.len() - line.trim_start().len() + (text.len() - rest.len());
        offset += rest.len() - rest.trim_start_matches('[').len();
        for word in inner.split(',') {
            if is_name(word) {
                let lead = word.len() - word.trim_start().len();
                return Some((index + 1, offset + lead + 1));
            }
            offset += word.len() + 1;
        }
    }
    None
}

/// Relative paths inside jobs.yaml resolve against the file's folder, never
/// the current directory (cron runs in `$HOME`).
fn resolve_relative_paths(config: &mut Config, base: &Path) {
    let fix = |p: &mut PathBuf| *p = absolute_from(base, p);
    for profile in &mut config.profiles {
        if let Some(pre_run) = &mut profile.pre_run {
            fix(&mut pre_run.git_sync.repo);
        }
        for task in &mut profile.tasks {
            for probe in &mut task.probes {
                for path in probe.relative_paths() {
                    fix(path);
                }
            }
            let action = task.action.iter_mut().flat_map(|a| a.relative_paths());
            let remediate = task.remediate.iter_mut().flat_map(|r| r.relative_paths());
            for path in action.chain(remediate) {
                fix(path);
            }
        }
    }
}

/// A short stable hash of `text` (hex).
fn fingerprint(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn absolute(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let joined = absolute_from(&cwd, path);
    std::fs::canonicalize(&joined).unwrap_or(joined)
}

/// `path` against `base`, with `.` components dropped (`repo: .` is the
/// folder itself, not `folder/.`).
fn absolute_from(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    joined.components().collect()
}

/// The machine's hostname, for `host:` when the file leaves it empty.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
        if !name.is_empty() {
            return name;
        }
    }
    "localhost".to_string()
}

/// Turns a serde_yaml error into file:line:column, key path and message.
fn yaml_error(file: &Path, source: &str, error: &serde_yaml::Error) -> ConfigError {
    let text = error.to_string();
    let location = error.location();
    let (line, column) = match &location {
        Some(l) => (Some(l.line()), Some(l.column())),
        None => (None, None),
    };
    let message = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    // serde_yaml prefixes the path of the enclosing mapping: "a.b[0]: why".
    let (mut path, message) = match message.split_once(": ") {
        Some((path, why)) if !path.contains(' ') && !path.is_empty() => {
            (Some(path.to_string()), why.to_string())
        }
        _ => (None, message),
    };
    // A complaint about keys that do not go together names the mapping;
    // any other sits on the offending key: name it.
    let across = message.starts_with(super::ACROSS_KEYS);
    let message = in_words(message.trim_start_matches(super::ACROSS_KEYS));
    if let Some((key, why)) = super::split_at_key(&message) {
        // About one key under the mapping serde's position is on.
        let found = line.zip(column).and_then(|at| locate(source, at, key));
        return ConfigError {
            file: file.to_path_buf(),
            line: found.map(|f| f.0).or(line),
            column: found.map(|f| f.1).or(column),
            key: Some(match path {
                Some(p) => format!("{p}.{key}"),
                None => key.to_string(),
            }),
            message: why.to_string(),
        };
    }
    if !across
        && let (Some(line), Some(column)) = (line, column)
        && let Some(key) = key_at(source, line, column)
    {
        path = Some(match path {
            Some(p) if !p.ends_with(&format!(".{key}")) && p != key => format!("{p}.{key}"),
            Some(p) => p,
            None => key,
        });
    }
    ConfigError {
        file: file.to_path_buf(),
        line,
        column,
        key: path,
        message,
    }
}

/// serde's "expected u16" in an operator's words.
fn in_words(message: &str) -> String {
    const TYPES: [(&str, &str); 11] = [
        ("u8", "a whole number from 0 to 255"),
        ("u16", "a whole number from 0 to 65535"),
        ("u32", "a whole number from 0 to 4294967295"),
        ("u64", "a whole number, 0 or more"),
        ("usize", "a whole number, 0 or more"),
        ("i32", "a whole number"),
        ("i64", "a whole number"),
        ("isize", "a whole number"),
        ("f32", "a number"),
        ("f64", "a number"),
        ("a boolean", "true or false"),
    ];
    // A number too big for any integer: serde says which one it tried.
    let message = message.replace(" as u128,", ",").replace(" as i128,", ",");
    for (rust, words) in TYPES {
        if let Some(head) = message.strip_suffix(&format!("expected {rust}")) {
            return format!("{head}expected {words}");
        }
    }
    // `unknown field `depend_on`, expected one of `a`, `b`…`: the nearest.
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let known = expected.split('`').skip(1).step_by(2);
        if let Some(near) = super::nearest(field, known) {
            return format!("{message}: did you mean `{near}`?");
        }
    }
    // `expected struct TcpConfig`: our type's name, not a thing to write.
    if let Some(at) = message.find("expected struct ") {
        return format!(
            "{}expected a mapping of keys (`{{ key: value, … }}`)",
            &message[..at]
        );
    }
    message
}

/// Bigger than any real jobs.yaml: refused before parsing.
const MAX_SOURCE_BYTES: usize = 1 << 20;
/// Deeper `[`/`{` nesting than any real jobs.yaml: the YAML parser's time
/// grows with it (20 000 levels took seconds).
const MAX_NESTING: usize = 64;

/// Refuses a file too big or nested too deep before the YAML parser sees
/// it, naming the line where the nesting got too deep.
fn check_shape(file: &Path, source: &str) -> Result<(), ConfigError> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(ConfigError::whole_file(
            file,
            format!(
                "the file is {} KiB; a jobs.yaml is far smaller (at most {} KiB): is this the right file?",
                source.len() / 1024,
                MAX_SOURCE_BYTES / 1024
            ),
        ));
    }
    let mut depth = 0usize;
    for (index, line) in source.lines().enumerate() {
        let mut quote: Option<char> = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '#') => break,
                (None, '"' | '\'') => quote = Some(c),
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(ConfigError {
                            file: file.to_path_buf(),
                            line: Some(index + 1),
                            column: None,
                            key: None,
                            message: format!(
                                "`[`/`{{` nested more than {MAX_NESTING} deep: no jobs.yaml needs that"
                            ),
                        });
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                (None, _) => {}
            }
        }
    }
    Ok(())
}

/// Where `path` (`tls.ca_file`, `tasks[1].depends_on`) is written under
/// the mapping whose first key is at 1-based `from` (line, column): the
/// 1-based line and column of its last key. Block and flow (`{ a: 1 }`)
/// mappings; `None` when a part cannot be found.
fn locate(source: &str, from: (usize, usize), path: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = source.lines().collect();
    let indent = |text: &str| text.len() - text.trim_start().len();
    let blank = |text: &str| text.trim().is_empty() || text.trim_start().starts_with('#');
    // 0-based: where the search goes on from, and the least indentation a
    // line of the mapping searched has (a line left of it ends the mapping).
    let (mut line, mut column) = (from.0.checked_sub(1)?, from.1.checked_sub(1)?);
    let mut floor = column;
    let mut found = (line, column);
    for part in path.split('.') {
        let (key, item) = match part.split_once('[') {
            Some((key, index)) => (
                key,
                Some(index.trim_end_matches(']').parse::<usize>().ok()?),
            ),
            None => (part, None),
        };
        let at = (line..lines.len())
            .take_while(|&at| at == line || blank(lines[at]) || indent(lines[at]) >= floor)
            .find_map(|at| {
                let start = if at == line { column } else { 0 };
                key_in_line(lines[at], key, start).map(|col| (at, col))
            })?;
        found = at;
        (line, column) = (at.0, at.1 + key.len());
        floor = at.1 + 1;
        if let Some(index) = item {
            // The `index`-th `- ` item of the block list under the key.
            let items = lines
                .iter()
                .enumerate()
                .skip(line + 1)
                .filter(|(_, text)| !blank(text))
                .take_while(|(_, text)| {
                    indent(text) > at.1
                        || indent(text) == at.1 && text.trim_start().starts_with("- ")
                })
                .filter(|(_, text)| text.trim_start().starts_with("- "));
            let mut item_indent = None;
            let (at, text) = items
                .filter(|(_, text)| *item_indent.get_or_insert(indent(text)) == indent(text))
                .nth(index)?;
            (line, column) = (at, indent(text) + 2);
            floor = column;
            found = (line, column);
        }
    }
    Some((found.0 + 1, found.1 + 1))
}

/// The 0-based column at or after `start` where `key` is written as a
/// mapping key in `text` (`key:`, `- key:`, `{ key:`, `, key:`, quoted or not).
fn key_in_line(text: &str, key: &str, start: usize) -> Option<usize> {
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut search = start;
    while let Some(offset) = text.get(search..)?.find(key) {
        let at = search + offset;
        search = at + key.len();
        let before = text[..at].trim_end_matches(['"', '\'']);
        if before.ends_with(is_key_char) {
            continue;
        }
        let lead = before.trim_end();
        let starts = lead.is_empty()
            || lead.ends_with(['{', ','])
            || lead.strip_suffix('-').is_some_and(|l| l.trim().is_empty());
        let ends = text[search..]
            .trim_start_matches(['"', '\''])
            .starts_with(':');
        if starts && ends {
            return Some(at);
        }
    }
    None
}

/// The mapping key at 1-based `line`/`column`: the key whose value starts
/// there (`timeout: 5x`, also inside `{ … }`), or a key written there
/// (`bogus: 1` for an unknown field).
fn key_at(source: &str, line: usize, column: usize) -> Option<String> {
    let text = source.lines().nth(line.checked_sub(1)?)?;
    let start = text
        .char_indices()
        .nth(column.checked_sub(1)?)
        .map(|(i, _)| i)?;
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    // A value: `<key>:` right before it.
    let before = text[..start].trim_end();
    if let Some(head) = before.strip_suffix(':') {
        let head = head.trim_end().trim_end_matches(['"', '\'']);
        let key_start = head
            .char_indices()
            .rev()
            .find(|(_, c)| !is_key_char(*c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let key = &head[key_start..];
        if !key.is_empty() {
            return Some(key.to_string());
        }
    }
    // A key: `<key>:` starting here.
    let rest = &text[start..];
    let end = rest.find(':')?;
    let key = rest[..end].trim().trim_matches(['"', '\'']);
    (!key.is_empty() && key.chars().all(is_key_char)).then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(yaml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.yaml");
        std::fs::write(&path, yaml).unwrap();
        load(&path, None)
    }

    const MINIMAL: &str = "version: 1\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    tasks:\n      - name: t\n        http: { url: \"http://127.0.0.1:1/\" }\n";

    #[test]
    fn minimal_file_loads_with_defaults() {
        let config = load_str(MINIMAL).unwrap();
        assert_eq!(config.profiles[0].name, "p");
        assert!(config.state.ends_with("state/monitor.db"));
        assert!(config.state.is_absolute());
        assert_eq!(config.defaults.cooldown.as_millis(), 7_200_000);
        assert!(config.notifier("console").is_some());
        assert!(!config.host.is_empty());
    }

    #[test]
    fn notifiers_take_every_severity_unless_told() {
        let yaml = MINIMAL.replace("profiles:", "notifiers:\n  hook: { type: webhook, url: \"http://127.0.0.1:9/\" }\n  pager: { type: webhook, url: \"http://127.0.0.1:9/\", min_severity: critical }\nprofiles:");
        let config = load_str(&yaml).unwrap();
        assert_eq!(
            config.notifier("hook").unwrap().min_severity,
            values::Severity::Info
        );
        assert_eq!(
            config.notifier("pager").unwrap().min_severity,
            values::Severity::Critical
        );
    }

    #[test]
    fn unknown_key_names_file_line_column_and_key() {
        let yaml = MINIMAL.replace("        http:", "        bogus: 1\n        http:");
        let err = load_str(&yaml).unwrap_err();
        assert_eq!((err.line, err.column), (Some(7), Some(9)), "{err}");
        assert_eq!(
            err.key.as_deref(),
            Some("profiles.p.tasks[0].bogus"),
            "{err}"
        );
        assert!(err.message.contains("unknown field `bogus`"), "{err}");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let yaml = MINIMAL.replace("        http:", "        timeout: 5 minutes\n        http:");
        let err = load_str(&yaml).unwrap_err();
        assert_eq!(err.line, Some(7), "{err}");
        assert_eq!(
            err.key.as_deref(),
            Some("profiles.p.tasks[0].timeout"),
            "{err}"
        );
        assert!(err.message.contains("invalid duration"), "{err}");
    }

    #[test]
    fn errors_in_flow_mappings_and_urls_name_the_right_key() {
        let yaml = MINIMAL.replace(
            "http: { url: \"http://127.0.0.1:1/\" }",
            "http: { url: \"http://127.0.0.1:1/\", timeout: 5x }",
        );
        let err = load_str(&yaml).unwrap_err();
        assert_eq!(
            err.key.as_deref(),
            Some("profiles.p.tasks[0].http.timeout"),
            "{err}"
        );
        let yaml = MINIMAL.replace(
            "http: { url: \"http://127.0.0.1:1/\" }",
            "http: { url: \"${NOPE_UNSET_X}\" }",
        );
        let err = load_str(&yaml).unwrap_err();
        assert_eq!(
            err.key.as_deref(),
            Some("profiles.p.tasks[0].http.url"),
            "{err}"
        );
        assert_eq!(err.line, Some(7), "{err}");
    }

    #[test]
    fn probes_with_impossible_key_combinations_are_rejected() {
        for (probe, why) in [
            ("log: { stale_after: 5m }", "either `path`"),
            (
                "process: { pidfile: /run/x.pid, pattern: x }",
                "exactly one of",
            ),
            ("disk: { min_free: 1GiB }", "needs `path`"),
            ("disk: { dir: /tmp, min_free: 1GiB }", "add `path`"),
            (
                "metrics: { url: \"http://127.0.0.1:1/\", max_body: 0 }",
                "would refuse every scrape",
            ),
        ] {
            let yaml = MINIMAL.replace("http: { url: \"http://127.0.0.1:1/\" }", probe);
            let err = load_str(&yaml).unwrap_err();
            assert!(err.message.contains(why), "{probe}: {err}");
        }
        let yaml = MINIMAL.replace(
            "http: { url: \"http://127.0.0.1:1/\" }",
            "action: { trim_log: { path: a.log, keep_lines: 0 } }",
        );
        assert!(load_str(&yaml).unwrap_err().message.contains("at least 1"));
    }

    #[test]
    fn undefined_notifier_is_located() {
        let yaml = MINIMAL.replace("    tasks:", "    notify: [pager]\n    tasks:");
        let err = load_str(&yaml).unwrap_err();
        assert_eq!(err.line, Some(5), "{err}");
        assert!(
            err.message.contains("notifier `pager` is not defined"),
            "{err}"
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let yaml = "version: 1\nstate: data/x.db\nprofiles:\n  p:\n    cron: \"@hourly\"\n    tasks:\n      - name: trim\n        action: { trim_log: { path: logs/a.log, keep_lines: 10 } }\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = load(&path, None).unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(config.state, base.join("data/x.db"));
        let Some(crate::action::Action::TrimLog(trim)) = &config.profiles[0].tasks[0].action else {
            panic!("a trim_log action");
        };
        assert_eq!(trim.path, base.join("logs/a.log"));
    }

    #[test]
    fn task_needs_a_probe() {
        let yaml = MINIMAL.replace(
            "        http: { url: \"http://127.0.0.1:1/\" }\n",
            "        timeout: 5s\n",
        );
        let err = load_str(&yaml).unwrap_err();
        assert!(err.message.contains("needs a probe"), "{err}");
        assert_eq!(err.line, Some(6), "{err}");
    }

    /// A jobs.yaml with a password written in a probe's URL (or a header
    /// value) is not kept as the last good one; with `${VAR}` it is. The
    /// lag probe's URLs count too.
    #[test]
    fn a_literal_secret_in_any_probe_keeps_the_source_out_of_the_store() {
        let lag = |url: &str| {
            MINIMAL.replace(
                "http: { url: \"http://127.0.0.1:1/\" }",
                &format!(
                    "lag: {{ local: {{ url: \"{url}\", extract: /h }}, reference: {{ url: \"http://127.0.0.1:2/\", extract: /h }} }}"
                ),
            )
        };
        let plain = load_str(&lag("http://127.0.0.1:1/")).unwrap();
        assert!(plain.source_to_keep().is_some());
        let with_password = load_str(&lag("http://user:s3cret@127.0.0.1:1/")).unwrap();
        assert!(with_password.source_to_keep().is_none());
        let header = MINIMAL.replace(
            "http: { url: \"http://127.0.0.1:1/\" }",
            "http: { url: \"http://127.0.0.1:1/\", headers: { Authorization: \"Bearer t0ken-value\" } }",
        );
        assert!(load_str(&header).unwrap().source_to_keep().is_none());
    }
}
