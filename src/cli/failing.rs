//! When a command cannot do its work: a jobs.yaml that does not load (a
//! tick runs on the last good one), and an error that stops a command,
//! which reaches stderr, syslog and the log file with a hint (the owner of
//! a file this user cannot write, how to recover a damaged database).

use super::*;

/// For an error that a file of the state folder this user cannot write
/// caused: which file, its owner, and the fix; for a corrupt or locked
/// database, which file and how to recover.
pub(super) fn permission_hint(cli: &Cli, error: &Error) -> Option<String> {
    let Error::Tool(e) = error else {
        return None;
    };
    let text = format!("{e:#}").to_ascii_lowercase();
    if text.contains("malformed") || text.contains("file is not a database") {
        let db = load_config(cli).ok()?.state;
        let db = db.display();
        return Some(format!(
            "the database {db} is corrupt: stop the ticks, then recover it (sqlite3 {db} .recover | sqlite3 {db}.new && mv {db}.new {db}) or move it aside (mv {db} {db}.corrupt): the next tick starts an empty one"
        ));
    }
    if text.contains("database is locked") {
        let db = load_config(cli).ok()?.state;
        let db = db.display();
        return Some(format!(
            "the database {db} is locked by another process (a sqlite3 shell or backup holding a transaction, a stuck monitor): monitor waited 5 s for it; find it with `fuser -v {db} {db}-wal` and end it"
        ));
    }
    let denied = text.contains("readonly database")
        || text.contains("permission denied")
        || text.contains("unable to open database file")
        || e.chain().any(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
        });
    if !denied {
        return None;
    }
    let config = load_config(cli).ok()?;
    crate::ownership::explain(&config.state_dir(), &config.state)
}

/// The log file of the run, once logging is set up.
pub(super) static LOG_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Appends an error line to the log file: the one logging uses, or the
/// `log_file:` a broken jobs.yaml still names.
pub(super) fn to_log_file(cli: &Cli, line: &str) {
    if matches!(cli.command, Command::Run { dry_run: true, .. }) {
        return;
    }
    let path = LOG_FILE.get().cloned().or_else(|| {
        let config = config::resolve_path(cli.config.as_deref());
        broken_setting(&config, "log_file")
    });
    let Some(path) = path else {
        return;
    };
    if let Some(dir) = path.parent() {
        let _ = crate::store::create_private_dir(dir);
    }
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        crate::ownership::adopt(&path);
        use std::io::Write;
        let at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let _ = writeln!(file, "{at} [ERROR] {line}");
    }
}

/// A top-level path setting (`log_file:`, `state:`) of a jobs.yaml that
/// does not load, against the file's folder, read from its own line at
/// the start of a line: never by parsing the file, whose syntax error
/// must not hide where the log and the database are, and whose depth may
/// be what made it fail (100 000 nested `[` took the YAML parser minutes).
/// `None` for a `${VAR}` in it.
fn broken_setting(config: &std::path::Path, key: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(config).ok()?;
    let named = text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let value = rest.split(" #").next()?.trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_string())
    })?;
    if named.contains("${") {
        return None;
    }
    let base = config::absolute(config)
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    Some(base.join(named))
}

/// Sends an error line to syslog (the journal on systemd hosts).
pub(super) fn to_syslog(line: &str) {
    let Ok(text) = std::ffi::CString::new(line.replace('\0', " ")) else {
        return;
    };
    // SAFETY: openlog keeps the static identity string; syslog is given a
    // constant "%s" format and a NUL-terminated argument.
    unsafe {
        libc::openlog(c"monitor".as_ptr(), libc::LOG_PID, libc::LOG_USER);
        libc::syslog(libc::LOG_ERR, c"%s".as_ptr(), text.as_ptr());
        libc::closelog();
    }
}

pub(super) fn load_config(cli: &Cli) -> Result<Config, Error> {
    let path = config::resolve_path(cli.config.as_deref());
    Ok(config::load(&path, cli.db.as_deref())?)
}

/// jobs.yaml for a tick. When it does not load but an earlier tick kept a
/// last good one (a bad commit in a synced checkout), that one, and why
/// the new one is rejected: the tick goes on (and syncs the fix) instead
/// of stopping every tick until someone logs in.
pub(super) fn load_for_tick(cli: &Cli) -> Result<(Config, Option<tick::Rejected>), Error> {
    let error = match load_config(cli) {
        Ok(config) => return Ok((config, None)),
        Err(Error::Config(error)) => error,
        Err(other) => return Err(other),
    };
    let path = config::resolve_path(cli.config.as_deref());
    let absolute = config::absolute(&path);
    let database = database_of_broken(cli, &path);
    let fallback = database.as_ref().and_then(|db| {
        let (source, saved_at) = crate::store::last_good_config(db, &absolute)?;
        let config = config::load_source(&path, source, cli.db.as_deref()).ok()?;
        Some((config, saved_at))
    });
    match fallback {
        Some((config, saved_at)) => Ok((
            config,
            Some(tick::Rejected {
                error: error.to_string(),
                saved_at,
            }),
        )),
        // Ticks ran here before: say why they cannot go on this time.
        None if database.is_some_and(|db| db.exists()) => {
            let mut error = error;
            error.message.push_str(
                " — this tick stopped: no last good jobs.yaml is kept for this file (no tick has loaded it yet, or it holds a secret written in it rather than as ${VAR}), so nothing runs, syncs or alerts until it is fixed",
            );
            Err(Error::Config(error))
        }
        None => Err(Error::Config(error)),
    }
}

/// The database a jobs.yaml that does not load would use: `--db`,
/// `$MONITOR_DB`, its `state:` if that much still reads, else the default.
fn database_of_broken(cli: &Cli, config: &std::path::Path) -> Option<PathBuf> {
    if let Some(db) = &cli.db {
        return Some(db.clone());
    }
    if let Some(db) = std::env::var_os("MONITOR_DB").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(db));
    }
    broken_setting(config, "state").or_else(|| {
        let base = config::absolute(config).parent()?.to_path_buf();
        Some(base.join("state/monitor.db"))
    })
}
