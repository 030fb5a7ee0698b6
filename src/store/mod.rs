//! The SQLite database: schema migrations, the tick's one transaction,
//! probe state, silences and retention. The outbox is in [`outbox`], the
//! reads behind `list`, `alerts`, the API and the self-check in [`read`].
//! All of monitor's SQL lives in this folder. Decides nothing; it keeps
//! what the tick decided.

mod outbox;
mod read;
mod signals;

pub use outbox::{Backlog, OutboxRow, failing_namespace};
pub use read::{
    Figures, HistoryQuery, HistoryRow, Integrity, ProfileFigures, RESTART_COUNTS_SQL, RunQuery,
    RunRow,
};
pub use signals::{HEALTHY, Point, SeriesInfo, SignalSample, Windows};

use crate::alert::{AlertKey, AlertState, Status};
use crate::clock::Timestamp;
use crate::config::Severity;
use crate::evaluate::{Outcome, Prior};
use crate::notify::Envelope;
use crate::probe::TaskMemory;
use crate::silence::Silence;
use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Numbered SQL files from `migrations/`, applied in order. A test checks
/// that every file in the folder is listed here.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "0001_init.sql",
        include_str!("../../migrations/0001_init.sql"),
    ),
    (
        2,
        "0002_operations.sql",
        include_str!("../../migrations/0002_operations.sql"),
    ),
    (
        3,
        "0003_incidents.sql",
        include_str!("../../migrations/0003_incidents.sql"),
    ),
    (
        4,
        "0004_schedule_watch.sql",
        include_str!("../../migrations/0004_schedule_watch.sql"),
    ),
    (
        5,
        "0005_retention.sql",
        include_str!("../../migrations/0005_retention.sql"),
    ),
    (
        6,
        "0006_verdict_window.sql",
        include_str!("../../migrations/0006_verdict_window.sql"),
    ),
    (
        7,
        "0007_signal_history.sql",
        include_str!("../../migrations/0007_signal_history.sql"),
    ),
    (
        8,
        "0008_task_status.sql",
        include_str!("../../migrations/0008_task_status.sql"),
    ),
    (
        9,
        "0009_signal_history_index.sql",
        include_str!("../../migrations/0009_signal_history_index.sql"),
    ),
    (
        10,
        "0010_signal_hours_by_series_only.sql",
        include_str!("../../migrations/0010_signal_hours_by_series_only.sql"),
    ),
];

/// An open database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Keeps a dry run's private copy alive.
    _snapshot: Option<tempfile::TempDir>,
}

/// A completed tick, as committed.
pub struct TickRecord<'a> {
    pub profile: &'a str,
    pub host: &'a str,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub tasks: usize,
    pub failing: usize,
    pub summary: String,
    pub outcome: &'a Outcome,
    /// This tick's outbox entries.
    pub envelopes: &'a [Envelope],
    /// `(namespace, key, value)`; `None` deletes the key.
    pub state: Vec<(String, String, Option<String>)>,
    /// Every enabled profile of jobs.yaml: when each first appeared is
    /// recorded (and forgotten for the others).
    pub enabled_profiles: Vec<&'a str>,
    /// jobs.yaml's path and text as written: kept as the last good one
    /// (`None`: it holds a literal secret, so it is not kept).
    pub config: (&'a Path, Option<&'a str>),
    /// This tick's numbers for the signal history.
    pub signals: &'a [SignalSample],
    /// Each task's verdict after this tick, for the status page.
    pub statuses: &'a [TaskStatus],
}

/// A task's verdict after its last tick (`task_status`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskStatus {
    pub profile: String,
    pub task: String,
    /// `ok`, `pending`, `warning`, `failing` or `held`.
    pub verdict: String,
    /// What holds or fails it, in a line ("held: depends on rpc, …").
    pub why: String,
    /// What its checks said.
    pub summary: String,
    /// When the verdict began (set by the store).
    pub since: Timestamp,
    pub at: Timestamp,
    /// The verdict begins anew this tick though it is the same word (a
    /// task restarted back to health): `since` is now.
    #[serde(skip)]
    pub fresh: bool,
}

/// The write-ahead log's size past which a tick empties it into the
/// database ([`Store::trim_log`]).
const WAL_LIMIT: u64 = 512 * 1024;

impl Store {
    /// Opens (creating if needed) the database and applies migrations.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            create_private_dir(dir)?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("opening the database {}", path.display()))?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            _snapshot: None,
        };
        store.configure()?;
        store.migrate()?;
        crate::ownership::adopt_database(path);
        Ok(store)
    }

    /// Opens the database for reading only, without creating anything.
    /// `None` when it does not exist yet.
    pub fn open_read_only(path: &Path) -> Result<Option<Store>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening the database {} read-only", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
            _snapshot: None,
        };
        store.check_version()?;
        Ok(Some(store))
    }

    /// For `--dry-run`: a view of the database that cannot change a byte of
    /// the state folder. Opened immutable when no write-ahead log is
    /// pending, otherwise copied (with its log) to a private temp folder.
    pub fn open_snapshot(path: &Path) -> Result<Option<Store>> {
        if !path.exists() {
            return Ok(None);
        }
        let wal = wal_path(path);
        let wal_pending = std::fs::metadata(&wal)
            .map(|m| m.len() > 0)
            .unwrap_or(false);
        let (conn, snapshot) = if wal_pending {
            let dir = tempfile::tempdir().context("creating a temp folder for the dry-run copy")?;
            let copy = dir.path().join("monitor.db");
            std::fs::copy(path, &copy)
                .with_context(|| format!("copying {} for the dry run", path.display()))?;
            std::fs::copy(&wal, wal_path(&copy))
                .with_context(|| format!("copying {} for the dry run", wal.display()))?;
            (Connection::open(&copy)?, Some(dir))
        } else {
            let uri = format!("file:{}?immutable=1", uri_path(path));
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            (
                Connection::open_with_flags(uri, flags)
                    .with_context(|| format!("opening {} for the dry run", path.display()))?,
                None,
            )
        };
        let store = Store {
            conn,
            path: path.to_path_buf(),
            _snapshot: snapshot,
        };
        store.check_version()?;
        Ok(Some(store))
    }

    fn configure(&self) -> Result<()> {
        self.conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Switching a new database to WAL takes an exclusive lock that the
        // busy timeout does not wait for: two profiles creating the file at
        // once would see "database is locked". Retry for as long.
        let patience = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mode: String = loop {
            match self
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(
                        e.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && std::time::Instant::now() < patience =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => {
                    break other.with_context(|| {
                        format!("switching {} to WAL mode", self.path.display())
                    })?;
                }
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            bail!(
                "{} refused WAL mode (journal_mode is {mode}); is it on a network filesystem?",
                self.path.display()
            );
        }
        self.conn
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
        // A tick is one short process: checkpointing the log (and deleting
        // it) at every exit costs four fsyncs. [`Store::trim_log`] does it
        // once the log has grown; the log is as safe.
        self.conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        Ok(())
    }

    /// Checkpoints the write-ahead log into the database and empties it,
    /// once it is over [`WAL_LIMIT`]. A tick opens the database alone, and
    /// SQLite then reads the whole log back to rebuild its index, and
    /// forgets what was checkpointed: its own checkpoint (at 1000 pages)
    /// then copies the whole log again at every later commit, fsyncs
    /// included, and the log a tick reads stays at 4 MB. Emptying it costs
    /// four fsyncs (a few ms); at 512 KiB that is once every 25-odd ticks
    /// of a profile writing 5 pages a tick, and a tick reads 256 KiB of
    /// log on average. A reader in the way (the API) is not waited for,
    /// and a failure only logs: the next tick tries again.
    pub fn trim_log(&self) {
        let size = std::fs::metadata(wal_path(&self.path)).map_or(0, |m| m.len());
        if size <= WAL_LIMIT {
            return;
        }
        // A checkpoint that empties the log waits for readers: none is
        // waited for here, the tick is over.
        let done = self
            .conn
            .busy_timeout(std::time::Duration::ZERO)
            .and_then(|()| {
                self.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        r.get::<_, i64>(0)
                    })
            });
        let _ = self.conn.busy_timeout(std::time::Duration::from_secs(5));
        match done {
            Ok(0) => {}
            Ok(_) => log::debug!(
                "{}: the write-ahead log is in use; emptied later",
                self.path.display()
            ),
            Err(e) => log::warn!(
                "{}: emptying the write-ahead log failed: {e}",
                self.path.display()
            ),
        }
    }

    /// The newest migration applied, 0 for a fresh file.
    pub fn schema_version(&self) -> Result<u32> {
        let exists: bool = self.conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(0);
        }
        Ok(self.conn.query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?)
    }

    fn check_version(&self) -> Result<()> {
        let version = self.schema_version().with_context(|| {
            format!(
                "reading the database {} (is it a monitor database? move it aside to start afresh)",
                self.path.display()
            )
        })?;
        let newest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        if version > newest {
            bail!(
                "{} has schema version {version}, newer than this monitor knows ({newest}): upgrade monitor",
                self.path.display()
            );
        }
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        self.check_version()?;
        let applied = self.schema_version()?;
        if MIGRATIONS.iter().all(|(version, _, _)| *version <= applied) {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )?;
        // Another process may have migrated while we waited for the lock.
        let applied: u32 = tx.query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > applied) {
            tx.execute_batch(sql)
                .with_context(|| format!("applying migration {name}"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![version, name, crate::clock::system_now().0],
            )?;
        }
        tx.commit().context("committing migrations")?;
        Ok(())
    }

    /// The live alerts, task state and silences (not over at `now`) of a profile.
    pub fn load_prior(&self, profile: &str, now: Timestamp) -> Result<Prior> {
        let mut prior = Prior::default();
        let mut statement = self.conn.prepare_cached(
            "SELECT task, rule, status, severity, since, bad_since, bad_ticks, good_since, good_ticks,
                    last_notified, value, threshold, summary, opened_at, announced, flapping, recent
             FROM alert_state WHERE profile = ?1",
        )?;
        let rows = statement.query_map([profile], |r| {
            let key = AlertKey::new(profile, &r.get::<_, String>(0)?, &r.get::<_, String>(1)?);
            let status: String = r.get(2)?;
            let severity: String = r.get(3)?;
            Ok(AlertState {
                key,
                status: Status::parse(&status).unwrap_or(Status::Pending),
                severity: severity.parse().unwrap_or(Severity::Critical),
                since: Timestamp(r.get(4)?),
                bad_since: Timestamp(r.get(5)?),
                bad_ticks: r.get(6)?,
                good_since: r.get::<_, Option<i64>>(7)?.map(Timestamp),
                good_ticks: r.get(8)?,
                last_notified: r.get::<_, Option<i64>>(9)?.map(Timestamp),
                value: r.get(10)?,
                threshold: r.get(11)?,
                summary: r.get(12)?,
                opened_at: r.get::<_, Option<i64>>(13)?.map(Timestamp),
                announced: r.get(14)?,
                flapping: r.get(15)?,
                recent: r.get::<_, i64>(16)? as u64,
            })
        })?;
        for row in rows {
            let state = row?;
            prior.alerts.insert(state.key.clone(), state);
        }
        let mut task_state: BTreeMap<String, TaskMemory> = BTreeMap::new();
        let prefix = format!("{profile}/");
        let mut statement = self.conn.prepare_cached(
            "SELECT namespace, key, value FROM monitor_state WHERE namespace >= ?1 AND namespace < ?2",
        )?;
        let upper = format!("{profile}0"); // '0' sorts right after '/'
        let rows = statement.query_map(params![prefix, upper], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
        })?;
        for row in rows {
            let (namespace, key, value): (String, String, String) = row?;
            let task = namespace[prefix.len()..].to_string();
            task_state.entry(task).or_default().insert(key, value);
        }
        prior.tasks = task_state;
        prior.silences = self
            .silences(Some(now))?
            .into_iter()
            .filter(|s| s.profile.as_ref().is_none_or(|p| p == profile))
            .collect();
        Ok(prior)
    }

    /// Commits a tick: run row, alert state, history, outbox and probe state,
    /// all or nothing. Returns the run id.
    pub fn commit_tick(&mut self, record: &TickRecord, deliver_after: Timestamp) -> Result<i64> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO runs (profile, host, started_at, finished_at, duration_ms, status, tasks, failing, summary)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                record.profile,
                record.host,
                record.started_at.0,
                record.finished_at.0,
                record.finished_at.since(record.started_at).max(0),
                if record.failing == 0 { "ok" } else { "failing" },
                record.tasks as i64,
                record.failing as i64,
                record.summary,
            ],
        )?;
        let run_id = tx.last_insert_rowid();
        for profile in &record.enabled_profiles {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO profile_seen (profile, first_seen_at) VALUES (?1, ?2)",
            )?
            .execute(params![profile, record.started_at.0])?;
        }
        match record.config {
            (path, Some(source)) => tx
                .prepare_cached(
                    "INSERT INTO config_good (path, source, saved_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (path) DO UPDATE SET source = excluded.source, saved_at = excluded.saved_at
                     WHERE source != excluded.source",
                )?
                .execute(params![path.to_string_lossy(), source, record.started_at.0])?,
            // An older copy is no longer the last good one.
            (path, None) => tx
                .prepare_cached("DELETE FROM config_good WHERE path = ?1")?
                .execute([path.to_string_lossy()])?,
        };
        let enabled = serde_json::to_string(&record.enabled_profiles)?;
        tx.execute(
            "DELETE FROM profile_seen WHERE profile NOT IN (SELECT value FROM json_each(?1))",
            [enabled],
        )?;
        for (key, state) in &record.outcome.alerts {
            match state {
                Some(s) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO alert_state (key, profile, task, rule, status, severity, since, bad_since,
                            bad_ticks, good_since, good_ticks, last_notified, value, threshold, summary,
                            opened_at, announced, flapping, recent)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
                    )?
                    .execute(params![
                        key.to_string(),
                        key.profile,
                        key.task,
                        key.rule,
                        s.status.as_str(),
                        s.severity.as_str(),
                        s.since.0,
                        s.bad_since.0,
                        s.bad_ticks,
                        s.good_since.map(|t| t.0),
                        s.good_ticks,
                        s.last_notified.map(|t| t.0),
                        s.value,
                        s.threshold,
                        s.summary,
                        s.opened_at.map(|t| t.0),
                        s.announced,
                        s.flapping,
                        s.recent as i64,
                    ])?;
                }
                None => {
                    tx.prepare_cached("DELETE FROM alert_state WHERE key = ?1")?
                        .execute([key.to_string()])?;
                }
            }
        }
        for entry in &record.outcome.history {
            tx.prepare_cached(
                "INSERT INTO alert_history (at, run_id, host, profile, task, rule, source, status, severity, summary, value, threshold)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                record.finished_at.0,
                run_id,
                record.host,
                entry.key.profile,
                entry.key.task,
                entry.key.rule,
                entry.key.task,
                entry.transition.as_str(),
                entry.severity.as_str(),
                entry.summary,
                entry.value,
                entry.threshold,
            ])?;
        }
        for outgoing in &record.outcome.outgoing {
            let message = &outgoing.message;
            if message.kind == crate::notify::MessageKind::Event {
                tx.prepare_cached(
                    "INSERT INTO alert_history (at, run_id, host, profile, task, rule, source, status, severity, summary)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?
                .execute(params![
                    record.finished_at.0,
                    run_id,
                    record.host,
                    message.profile,
                    message.task,
                    message.rule,
                    message.task,
                    crate::alert::HistoryStatus::Event.as_str(),
                    message.severity.as_str(),
                    message.summary,
                ])?;
            }
        }
        for envelope in record.envelopes {
            let payload = serde_json::to_string(&envelope.payload)?;
            tx.prepare_cached(
                "INSERT OR IGNORE INTO outbox (message_id, notifier, profile, created_at, payload, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                envelope.payload.id(),
                envelope.notifier,
                record.profile,
                record.started_at.0,
                payload,
                deliver_after.0
            ])?;
        }
        for (namespace, key, value) in &record.state {
            match value {
                Some(value) => tx
                    .prepare_cached(
                        "INSERT INTO monitor_state (namespace, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    )?
                    .execute(params![namespace, key, value, record.finished_at.0])?,
                None => tx
                    .prepare_cached("DELETE FROM monitor_state WHERE namespace = ?1 AND key = ?2")?
                    .execute(params![namespace, key])?,
            };
        }
        signals::record(&tx, record.profile, record.started_at, record.signals)?;
        for status in record.statuses {
            tx.prepare_cached(
                "INSERT INTO task_status (profile, task, verdict, why, summary, since, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT (profile, task) DO UPDATE SET
                   since = CASE WHEN verdict = excluded.verdict AND NOT ?7 THEN since
                                ELSE excluded.since END,
                   verdict = excluded.verdict, why = excluded.why, summary = excluded.summary,
                   at = excluded.at",
            )?
            .execute(params![
                status.profile,
                status.task,
                status.verdict,
                status.why,
                status.summary,
                record.started_at.0,
                status.fresh
            ])?;
        }
        tx.commit().context("committing the tick")?;
        Ok(run_id)
    }

    /// Every task's last verdict (of `profile`), by profile and task.
    pub fn task_statuses(&self, profile: Option<&str>) -> Result<Vec<TaskStatus>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT profile, task, verdict, why, summary, since, at FROM task_status
             WHERE ?1 IS NULL OR profile = ?1 ORDER BY profile, task",
        )?;
        let rows = statement.query_map([profile], |r| {
            Ok(TaskStatus {
                profile: r.get(0)?,
                task: r.get(1)?,
                verdict: r.get(2)?,
                why: r.get(3)?,
                summary: r.get(4)?,
                since: Timestamp(r.get(5)?),
                at: Timestamp(r.get(6)?),
                fresh: false,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every `monitor_state` row, or one namespace's, ordered.
    pub fn state_rows(&self, namespace: Option<&str>) -> Result<Vec<(String, String, String)>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT namespace, key, value FROM monitor_state WHERE ?1 IS NULL OR namespace = ?1 ORDER BY namespace, key",
        )?;
        let rows = statement.query_map(params![namespace], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Sets one `monitor_state` value (`None` deletes it); true when a row changed.
    pub fn set_state(
        &mut self,
        namespace: &str,
        key: &str,
        value: Option<&str>,
        now: Timestamp,
    ) -> Result<bool> {
        let changed = match value {
            Some(value) => self.conn.execute(
                "INSERT INTO monitor_state (namespace, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![namespace, key, value, now.0],
            )?,
            None => self
                .conn
                .execute("DELETE FROM monitor_state WHERE namespace = ?1 AND key = ?2", params![namespace, key])?,
        };
        Ok(changed > 0)
    }

    /// Imports values in one transaction: (added, overwritten, kept).
    pub fn import_state(
        &mut self,
        namespace: &str,
        values: &[(String, String)],
        overwrite: bool,
        now: Timestamp,
    ) -> Result<(usize, usize, usize)> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (mut added, mut overwritten, mut kept) = (0, 0, 0);
        for (key, value) in values {
            let existing: Option<String> = tx
                .query_row(
                    "SELECT value FROM monitor_state WHERE namespace = ?1 AND key = ?2",
                    params![namespace, key],
                    |r| r.get(0),
                )
                .ok();
            match existing {
                Some(_) if !overwrite => {
                    kept += 1;
                    continue;
                }
                Some(old) if old == *value => {
                    kept += 1;
                    continue;
                }
                Some(_) => overwritten += 1,
                None => added += 1,
            }
            tx.execute(
                "INSERT INTO monitor_state (namespace, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![namespace, key, value, now.0],
            )?;
        }
        tx.commit()?;
        Ok((added, overwritten, kept))
    }

    /// Deletes at most `batch` rows per table older than `cutoff`: history,
    /// runs, finished outbox entries, ended silences. Returns rows deleted.
    /// Bounded so one tick never stalls on a large backlog.
    pub fn prune(&mut self, cutoff: Timestamp, batch: usize) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let limit = batch as i64;
        let mut deleted = tx.execute(
            "DELETE FROM alert_history WHERE id IN (SELECT id FROM alert_history WHERE at < ?1 ORDER BY at LIMIT ?2)",
            params![cutoff.0, limit],
        )?;
        // Runs keep a day's margin. A run's own history goes first (the
        // foreign key: a run with history left failed the whole cleanup,
        // every tick), found by its index; then the runs with none left.
        let runs_due = cutoff.0 - 86_400_000;
        deleted += tx.execute(
            "DELETE FROM alert_history WHERE run_id IN
               (SELECT id FROM runs WHERE started_at < ?1 ORDER BY started_at LIMIT ?2)",
            params![runs_due, (limit / 10).max(1)],
        )?;
        deleted += tx.execute(
            "DELETE FROM runs WHERE id IN (SELECT id FROM runs r WHERE started_at < ?1
               AND NOT EXISTS (SELECT 1 FROM alert_history h WHERE h.run_id = r.id)
               ORDER BY started_at LIMIT ?2)",
            params![runs_due, limit],
        )?;
        deleted += tx.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE created_at < ?1
               AND (delivered_at IS NOT NULL OR given_up_at IS NOT NULL) ORDER BY created_at LIMIT ?2)",
            params![cutoff.0, limit],
        )?;
        deleted += tx.execute(
            "DELETE FROM silences WHERE id IN (SELECT id FROM silences WHERE ends_at < ?1 LIMIT ?2)",
            params![cutoff.0, limit],
        )?;
        tx.commit()?;
        Ok(deleted)
    }

    /// Records a silence; returns its id.
    pub fn add_silence(&mut self, silence: &Silence, now: Timestamp) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO silences (profile, task, rule, starts_at, ends_at, reason, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                silence.profile,
                silence.task,
                silence.rule,
                silence.starts_at.0,
                silence.ends_at.0,
                silence.reason,
                silence.created_by,
                now.0
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Ends a silence now; false when no active silence has that id.
    pub fn remove_silence(&mut self, id: i64, now: Timestamp) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE silences SET removed_at = ?2 WHERE id = ?1 AND removed_at IS NULL AND ends_at > ?2",
            params![id, now.0],
        )?;
        Ok(changed == 1)
    }

    /// Silences not removed and not over at `now` (all of them when `None`).
    pub fn silences(&self, active_at: Option<Timestamp>) -> Result<Vec<Silence>> {
        // A handful of rows: one statement for both uses.
        let mut statement = self.conn.prepare_cached(
            "SELECT id, profile, task, rule, starts_at, ends_at, reason, created_by FROM silences
             WHERE ?1 IS NULL OR (removed_at IS NULL AND ends_at > ?1)
             ORDER BY ends_at, id",
        )?;
        let rows = statement.query_map(params![active_at.map(|t| t.0)], |r| {
            Ok(Silence {
                id: r.get(0)?,
                profile: r.get(1)?,
                task: r.get(2)?,
                rule: r.get(3)?,
                starts_at: Timestamp(r.get(4)?),
                ends_at: Timestamp(r.get(5)?),
                reason: r.get(6)?,
                created_by: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Raw access for the unit tests.
    #[cfg(test)]
    fn connection(&self) -> &Connection {
        &self.conn
    }
}

fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Percent-encodes the characters SQLite URIs treat specially.
fn uri_path(path: &Path) -> String {
    let text = path.display().to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            other => out.push(other),
        }
    }
    out
}

/// The last jobs.yaml at `path` that loaded in a tick, as written, and
/// when it was first saved; `None` without one (or without a database).
pub fn last_good_config(db: &Path, path: &Path) -> Option<(String, Timestamp)> {
    let store = Store::open_read_only(db).ok()??;
    store
        .conn
        .query_row(
            "SELECT source, saved_at FROM config_good WHERE path = ?1",
            [path.to_string_lossy()],
            |r| Ok((r.get(0)?, Timestamp(r.get(1)?))),
        )
        .ok()
}

/// Creates the state folder (and its parents) readable only by its owner
/// and group.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .with_context(|| format!("creating the state folder {}", dir.display()))?;
    // Outermost first: each takes the owner of the folder it is in.
    for created in missing.iter().rev() {
        crate::ownership::adopt(created);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|m| m.1.to_string()).collect();
        assert_eq!(files, listed);
        for (i, (version, name, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
            assert!(name.starts_with(&format!("{version:04}_")), "{name}");
        }
    }

    #[test]
    fn open_migrates_once_and_records_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/monitor.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as u32);
        drop(store);
        let store = Store::open(&path).unwrap();
        let rows: i64 = store
            .connection()
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, MIGRATIONS.len() as i64);
        let mode: String = store
            .connection()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn the_state_folder_is_private_to_owner_and_group() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        crate::lock::acquire(&state, "p").unwrap();
        Store::open(&state.join("monitor.db")).unwrap();
        for folder in [&state, &state.join("locks")] {
            let mode = std::fs::metadata(folder).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o007, 0, "{} is mode {mode:o}", folder.display());
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.db");
        let store = Store::open(&path).unwrap();
        store
            .connection()
            .execute(
                "INSERT INTO schema_migrations VALUES (999, 'future', 0)",
                [],
            )
            .unwrap();
        drop(store);
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("newer than this monitor knows"), "{err}");
    }
}
