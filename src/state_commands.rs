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
        return Err(Error::UnknownProfile {
            name: new.profile.unwrap_or_default().to_string(),
            config: config.path.clone(),
            known: config.profiles.iter().map(|p| p.name.clone()).collect(),
        });
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
        return Err(Error::NoSuchTask {
            name: new.task.to_string(),
            config: config.path.clone(),
            known,
        });
    }
    if let Some(rule) = new.rule {
        let known = |t: &&crate::config::Task| {
            t.rules.iter().any(|r| r.name == rule)
                || crate::config::RESERVED_KEYS.contains(&rule)
                || t.probes.iter().any(|p| matches!(p, crate::config::Probe::Log(l) if l.patterns.iter().any(|x| x.name == rule)))
        };
        if !tasks.iter().any(known) {
            return Err(Error::UnknownRule {
                task: new.task.to_string(),
                rule: rule.to_string(),
            });
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
    let mut store = Store::open(&config.state)?;
    let id = store.add_silence(&silence, now)?;
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
    let mut store = Store::open(&config.state)?;
    if store.remove_silence(id, now)? {
        Ok(format!(
            "silence {id} removed: its alerts notify again from the next tick\n"
        ))
    } else {
        Err(Error::UnknownSilence(id))
    }
}

/// `monitor silence list`: active ones, or all with `all`.
pub fn silences(config: &Config, all: bool, now: Timestamp) -> Result<Vec<Silence>, Error> {
    match Store::open_read_only(&config.state)? {
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

/// A cache file found in a folder is imported only up to this size: a
/// legacy cache value is a line or a list, not a log.
pub const FOLDER_FILE_LIMIT: u64 = 64 * 1024;
/// A file named on the command line, up to this size.
pub const NAMED_FILE_LIMIT: u64 = 1024 * 1024;

/// `monitor state import PATH…`: each file named, and each small text
/// file in each folder named, becomes a key (its file name) whose value is
/// its content with one trailing newline removed (what `echo x > file`
/// adds; `state export` puts it back). A folder's SQLite files, logs, lock
/// files, hidden files and anything large or not text are skipped, each
/// with why. Existing values are kept unless `overwrite`; rerunning is safe.
pub fn import(
    config: &Config,
    paths: &[std::path::PathBuf],
    namespace: &str,
    overwrite: bool,
    now: Timestamp,
) -> Result<Imported, Error> {
    let mut imported = Imported::default();
    let mut files = Vec::new();
    for path in paths {
        let metadata =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        if !metadata.is_dir() {
            files.push((path.clone(), NAMED_FILE_LIMIT));
            continue;
        }
        let entries = std::fs::read_dir(path)
            .with_context(|| format!("reading the cache folder {}", path.display()))?;
        let mut found: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        found.sort();
        for file in found {
            let name = file_name(&file);
            let link = std::fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_symlink());
            let skip = if link {
                // A link in a cache folder may point anywhere (/etc/shadow
                // under sudo): only files named on the command line are followed.
                Some("a symbolic link")
            } else if !file.is_file() {
                Some("not a regular file")
            } else if name.starts_with('.') {
                Some("a hidden file")
            } else if [".db", "-wal", "-shm", "-journal", ".sqlite", ".sqlite3"]
                .iter()
                .any(|s| name.ends_with(s))
            {
                Some("an SQLite file")
            } else if [".log", ".lock", ".pid"].iter().any(|s| name.ends_with(s)) {
                Some("a log, lock or pid file")
            } else {
                None
            };
            match skip {
                Some(why) => imported.skipped.push(format!(
                    "{name}: {why} (name it on the command line to import it anyway)"
                )),
                None => files.push((file, FOLDER_FILE_LIMIT)),
            }
        }
    }
    let mut values: Vec<(String, String)> = Vec::new();
    for (path, limit) in files {
        let name = file_name(&path);
        match read_text(&path, limit) {
            Ok(text) => values.push((name, text.strip_suffix('\n').unwrap_or(&text).to_string())),
            Err(why) => imported.skipped.push(format!("{name}: {why}")),
        }
    }
    let mut store = Store::open(&config.state)?;
    let outcome = store.import_state(namespace, &values, overwrite, now)?;
    imported.added = outcome.0;
    imported.overwritten = outcome.1;
    imported.kept = outcome.2;
    Ok(imported)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The file's text, when it is at most `limit` bytes of UTF-8 without NUL
/// bytes (an SQLite file or a binary is not a cache value).
fn read_text(path: &Path, limit: u64) -> Result<String, String> {
    use std::io::Read;
    // Never opened: a FIFO would wait for a writer for ever.
    if !std::fs::metadata(path)
        .map_err(|e| e.to_string())?
        .is_file()
    {
        return Err("not a regular file (a folder, FIFO, socket or device)".into());
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "larger than {} KiB: not a cache value (a log?)",
            limit / 1024
        ));
    }
    if bytes.contains(&0) {
        return Err("binary (it has NUL bytes): not a text cache file".into());
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

/// What `state export` did.
#[derive(Debug, Default, PartialEq)]
pub struct Exported {
    pub written: usize,
    pub skipped: Vec<String>,
}

/// `monitor state export DIR`: the way back (seed 001's rollback to the
/// text cache): each key of `namespace` becomes the file DIR/key holding
/// its value and a newline — what `state import` reads back unchanged. An
/// existing file is left alone unless `overwrite`.
pub fn export(
    config: &Config,
    dir: &Path,
    namespace: &str,
    overwrite: bool,
) -> Result<Exported, Error> {
    let state_dir = std::fs::canonicalize(config.state_dir()).ok();
    if state_dir.is_some() && std::fs::canonicalize(dir).ok() == state_dir {
        return Err(Error::ExportIntoStateFolder(dir.to_path_buf()));
    }
    let rows = match Store::open_read_only(&config.state)? {
        Some(store) => store.state_rows(Some(namespace))?,
        None => Vec::new(),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut exported = Exported::default();
    for (_, key, value) in rows {
        if key.is_empty() || key.starts_with('.') || key.contains('/') || key.contains('\0') {
            exported
                .skipped
                .push(format!("{key:?}: not usable as a file name"));
            continue;
        }
        let path = dir.join(&key);
        let mut options = std::fs::OpenOptions::new();
        options.write(true);
        if overwrite {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        let written = options.open(&path).and_then(|mut file| {
            use std::io::Write;
            file.write_all(value.as_bytes())?;
            file.write_all(b"\n")
        });
        match written {
            Ok(()) => exported.written += 1,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => exported.skipped.push(
                format!("{key}: {} exists (--overwrite replaces it)", path.display()),
            ),
            Err(e) => exported
                .skipped
                .push(format!("{key}: {}: {e}", path.display())),
        }
    }
    Ok(exported)
}

/// A value on one line of `state list`: backslash, newline, carriage
/// return and tab escaped (`\\`, `\n`, `\r`, `\t`), so a multi-line
/// value cannot pass for several rows. `state get` prints it as it is.
pub fn one_line(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if crate::probe::hidden_or_control(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}
