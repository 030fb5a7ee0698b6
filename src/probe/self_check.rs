//! The `self_check` probe: monitor watching itself. Its database (SQLite's
//! `quick_check`), its outbox (messages waiting, and dead letters: given up
//! in the last day), its schedule (enabled profiles overdue, never-run
//! ones judged from when they appeared in jobs.yaml), the size of its
//! state folder and log; and, when asked, trimming its own log file.
//! Opens the database read-only; trims only in a real tick.

use super::kinds::ProbeConfig;
use super::{Check, CheckStatus, Context, Observation};
use crate::clock::Timestamp;
use crate::probe::disk::human_bytes;
use crate::schedule::CronSchedule;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Instant;

/// `self_check`: monitor watching itself — its database (SQLite's quick
/// check), its outbox (backlog, dead letters), its schedule (overdue
/// profiles) and the size of its log and state; optionally trimming its
/// own `log_file`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct SelfCheckConfig {
    /// Trim `log_file:` to its last this many lines (nothing when unset,
    /// or when there is no log file yet).
    #[serde(default)]
    pub keep_log_lines: Option<u64>,
    /// Filled in at load: what to look at.
    #[serde(skip)]
    pub watched: Watched,
}

/// What a `self_check` looks at, from the loaded jobs.yaml.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    pub database: PathBuf,
    pub log_file: Option<PathBuf>,
    /// Each enabled profile's name and schedule.
    pub profiles: Vec<(String, CronSchedule)>,
}

/// A dead letter counts for this long after it was given up.
const DEAD_LETTER_WINDOW_MS: i64 = 24 * 3600 * 1000;

impl ProbeConfig for SelfCheckConfig {
    fn observe(&self, context: &Context, out: &mut Observation) {
        observe(self, context, out);
    }
}

pub fn observe(probe: &SelfCheckConfig, context: &Context, out: &mut Observation) {
    let watched = &probe.watched;
    let mut parts = Vec::new();
    let mut status = CheckStatus::Ok;
    let database = &watched.database;
    if !database.exists() {
        parts.push(format!(
            "no database yet at {} (no tick has stored anything)",
            database.display()
        ));
    }
    {
        match read_database(probe, context.now) {
            Ok(figures) => {
                out.signals
                    .set_probe("self_check", "db_ok", if figures.ok { 1.0 } else { 0.0 });
                if !figures.ok {
                    status = CheckStatus::Critical;
                    parts.push(format!(
                        "the database {} fails SQLite's quick_check: {} — stop the ticks and recover it (sqlite3 DB .recover | sqlite3 DB.new, then move DB.new in place), or move it aside and the next tick starts an empty one",
                        database.display(),
                        figures.problem
                    ));
                } else if database.exists() {
                    parts.push("database ok".to_string());
                }
                for (name, value) in [
                    ("outbox_backlog", figures.backlog),
                    ("outbox_oldest_s", figures.oldest_s),
                    ("dead_letters", figures.dead_letters),
                    ("profiles_overdue", figures.overdue.len() as i64),
                ] {
                    out.signals.set_probe("self_check", name, value as f64);
                }
                parts.push(format!(
                    "outbox {} waiting{}",
                    figures.backlog,
                    if figures.backlog > 0 {
                        format!(
                            " (oldest {})",
                            crate::clock::human_duration(figures.oldest_s * 1000)
                        )
                    } else {
                        String::new()
                    }
                ));
                parts.push(format!("{} dead letters in 24 h", figures.dead_letters));
                parts.push(if figures.overdue.is_empty() {
                    format!("0 of {} profiles overdue", watched.profiles.len())
                } else {
                    format!("profiles overdue: {}", figures.overdue.join(", "))
                });
            }
            Err(e) => {
                status = CheckStatus::Critical;
                out.signals.set_probe("self_check", "db_ok", 0.0);
                parts.push(format!(
                    "cannot read the database {}: {e:#}",
                    database.display()
                ));
            }
        }
    }
    let folder = watched
        .database
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let size = crate::probe::disk::dir_size(&folder, Instant::now() + context.budget(None))
        .map_or(0, |size| size.bytes);
    out.signals
        .set_probe("self_check", "state_bytes", size as f64);
    parts.push(format!("state {}", human_bytes(size)));
    if let Some(log) = &watched.log_file {
        let bytes = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        out.signals
            .set_probe("self_check", "log_bytes", bytes as f64);
        parts.push(format!("log {}", human_bytes(bytes)));
        if let Some(keep) = probe.keep_log_lines
            && log.exists()
        {
            match crate::action::trim_file(log, keep, context) {
                Ok(trimmed) => parts.push(trimmed.describe(log, keep)),
                Err(why) => {
                    if status == CheckStatus::Ok {
                        status = CheckStatus::Warning;
                    }
                    parts.push(why);
                }
            }
        }
    } else {
        out.signals.set_probe("self_check", "log_bytes", 0.0);
    }
    let word = match status {
        CheckStatus::Ok => "OK",
        CheckStatus::Warning => "WARNING",
        _ => "CRITICAL",
    };
    out.checks.push(Check {
        probe: "self_check",
        status,
        summary: format!("monitor {word} - {}", parts.join("; ")),
    });
}

struct Figures {
    ok: bool,
    problem: String,
    backlog: i64,
    oldest_s: i64,
    dead_letters: i64,
    overdue: Vec<String>,
}

/// The database's figures; all zero (and the schedule judged from the
/// file's last change) when there is no database yet.
fn read_database(probe: &SelfCheckConfig, now: Timestamp) -> anyhow::Result<Figures> {
    if !probe.watched.database.exists() {
        return Ok(Figures {
            ok: true,
            problem: String::new(),
            backlog: 0,
            oldest_s: 0,
            dead_letters: 0,
            overdue: overdue(probe, now, |_| Ok((None, None)))?,
        });
    }
    let Some(store) = crate::store::Store::open_read_only(&probe.watched.database)? else {
        anyhow::bail!(
            "{} vanished while being read",
            probe.watched.database.display()
        );
    };
    let integrity = store.integrity()?;
    let dead_letters = store.dead_letters_since(Timestamp(now.0 - DEAD_LETTER_WINDOW_MS))?;
    let first_seen = store.first_seen()?;
    let overdue = overdue(probe, now, |name| {
        Ok((store.last_run(name, now)?, first_seen.get(name).copied()))
    })?;
    Ok(Figures {
        ok: integrity.ok,
        problem: integrity.problem,
        backlog: integrity.backlog,
        oldest_s: integrity
            .oldest
            .map_or(0, |at| (now.0 - at.0).max(0) / 1000),
        dead_letters,
        overdue,
    })
}

/// The enabled profiles overdue at `now`, given each one's last run and
/// first appearance (`known`).
fn overdue(
    probe: &SelfCheckConfig,
    now: Timestamp,
    mut known: impl FnMut(&str) -> anyhow::Result<(Option<Timestamp>, Option<Timestamp>)>,
) -> anyhow::Result<Vec<String>> {
    let mut overdue = Vec::new();
    for (name, cron) in &probe.watched.profiles {
        let (last_run, first_seen) = known(name)?;
        let since = crate::schedule::watched_since(last_run, first_seen);
        if cron.overdue_from(since, now) {
            overdue.push(name.clone());
        }
    }
    Ok(overdue)
}
