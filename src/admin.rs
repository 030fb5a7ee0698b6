//! The operator's commands on stored state: silences (`monitor silence`)
//! and the `monitor_state` table (`monitor state`, including the import of
//! legacy text cache files). Each opens the database, does one thing, and
//! says what it did.

use crate::clock::Timestamp;
use crate::config::{Config, Duration};
use crate::error::Error;
use crate::silence::Silence;
use crate::store::Store;
use anyhow::Context;
use std::path::Path;

/// What `silence add` was given.
pub struct NewSilence<'a> {
    pub profile: Option<&'a str>,
    pub task: &'a str,
    pub rule: Option<&'a str>,
    pub duration: Duration,
    pub reason: &'a str,
}

/// Who runs the command, for the record.
fn operator() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// Checks that the silence names a task (and rule) jobs.yaml has.
fn check_target(config: &Config, new: &NewSilence) -> Result<(), Error> {
    let profiles: Vec<_> = config
        .profiles
        .iter()
        .filter(|p| new.profile.is_none_or(|n| n == p.name))
        .collect();
    if profiles.is_empty() {
        let known: Vec<&str> = config.profiles.iter().map(|p| p.name.as_str()).collect();
        return Err(Error::Usage(format!(
            "no profile `{}` in {}: the profiles are {}",
            new.profile.unwrap_or_default(),
            config.path.display(),
            known.join(", ")
        )));
    }
    let tasks: Vec<_> = profiles
        .iter()
        .flat_map(|p| p.tasks.iter())
        .filter(|t| t.name == new.task)
        .collect();
    if tasks.is_empty() {
        let known: Vec<String> = profiles
            .iter()
            .flat_map(|p| {
                p.tasks
                    .iter()
                    .map(move |t| format!("{}/{}", p.name, t.name))
            })
            .collect();
        return Err(Error::Usage(format!(
            "no task `{}` in {}: the tasks are {}",
            new.task,
            config.path.display(),
            known.join(", ")
        )));
    }
    if let Some(rule) = new.rule {
        let known = |t: &&crate::config::Task| {
            t.rules.iter().any(|r| r.name == rule)
                || crate::config::RESERVED_KEYS.contains(&rule)
                || t.probes.iter().any(|p| matches!(p, crate::config::Probe::Log(l) if l.patterns.iter().any(|x| x.name == rule)))
        };
        if !tasks.iter().any(known) {
            return Err(Error::Usage(format!(
                "task `{}` has no rule `{rule}`",
                new.task
            )));
        }
    }
    Ok(())
}

/// `monitor silence add`.
pub fn add_silence(config: &Config, new: &NewSilence, now: Timestamp) -> Result<String, Error> {
    check_target(config, new)?;
    let silence = Silence {
        id: 0,
        profile: new.profile.map(String::from),
        task: new.task.to_string(),
        rule: new.rule.map(String::from),
        starts_at: now,
        ends_at: now.plus_millis(new.duration.as_millis()),
        reason: new.reason.to_string(),
        created_by: operator(),
    };
    let mut store = Store::open(&config.state).map_err(Error::Tool)?;
    let id = store.add_silence(&silence, now).map_err(Error::Tool)?;
    Ok(format!(
        "silence {id}: {} held until {} ({}): {}\n",
        silence.target(),
        silence.ends_at,
        new.duration,
        silence.reason
    ))
}

/// `monitor silence remove ID`.
pub fn remove_silence(config: &Config, id: i64, now: Timestamp) -> Result<String, Error> {
    let mut store = Store::open(&config.state).map_err(Error::Tool)?;
    if store.remove_silence(id, now).map_err(Error::Tool)? {
        Ok(format!(
            "silence {id} removed: its alerts notify again from the next tick\n"
        ))
    } else {
        Err(Error::Usage(format!(
            "no active silence {id}: see `monitor silence list`"
        )))
    }
}

/// `monitor silence list`: active ones, or all with `all`.
pub fn silences(config: &Config, all: bool, now: Timestamp) -> Result<Vec<Silence>, Error> {
    match Store::open_read_only(&config.state).map_err(Error::Tool)? {
        Some(store) => store.silences((!all).then_some(now)).map_err(Error::Tool),
        None => Ok(Vec::new()),
    }
}

/// Lines describing silences, for `silence list`, `list` and `alerts`.
pub fn silences_text(silences: &[Silence], now: Timestamp) -> String {
    silences
        .iter()
        .map(|s| {
            let state = if s.ends_at <= now { "ended" } else { "until" };
            format!(
                "silence {}: {} {state} {} by {}: {}\n",
                s.id,
                s.target(),
                s.ends_at,
                s.created_by,
                s.reason
            )
        })
        .collect()
}

/// What `state import` did.
#[derive(Debug, Default, PartialEq)]
pub struct Imported {
    pub added: usize,
    pub overwritten: usize,
    pub kept: usize,
    pub skipped: Vec<String>,
}

/// `monitor state import DIR`: each regular file's name is a key, its
/// content (trailing newline removed) the value, under `namespace`.
/// Existing values are kept unless `overwrite`; rerunning is safe.
pub fn import(
    config: &Config,
    dir: &Path,
    namespace: &str,
    overwrite: bool,
    now: Timestamp,
) -> Result<Imported, Error> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the cache folder {}", dir.display()))
        .map_err(Error::Tool)?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_file() || name.starts_with('.') {
            continue;
        }
        files.push((name, path));
    }
    files.sort();
    let mut store = Store::open(&config.state).map_err(Error::Tool)?;
    let mut imported = Imported::default();
    let mut values = Vec::new();
    for (name, path) in files {
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => {
                    values.push((name, text.strip_suffix('\n').unwrap_or(&text).to_string()))
                }
                Err(_) => imported.skipped.push(format!("{name}: not UTF-8 text")),
            },
            Err(e) => imported.skipped.push(format!("{name}: {e}")),
        }
    }
    let outcome = store
        .import_state(namespace, &values, overwrite, now)
        .map_err(Error::Tool)?;
    imported.added = outcome.0;
    imported.overwritten = outcome.1;
    imported.kept = outcome.2;
    Ok(imported)
}
