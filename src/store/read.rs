//! What `list`, `alerts`, the API and the self-check read: typed queries
//! over runs, history, silences and the outbox, each written once. The
//! history and runs queries name only the filters given, so SQLite walks one
//! `(filter, at DESC)` index in order and stops after `limit` rows.

use super::Store;
use crate::alert::HistoryStatus;
use crate::clock::Timestamp;
use crate::config::Severity;
use anyhow::Result;
use rusqlite::types::Value as SqlValue;
use std::collections::BTreeMap;

/// A row of `runs`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub profile: String,
    pub host: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub duration_ms: i64,
    /// `ok` or `failing`.
    pub status: String,
    pub tasks: i64,
    pub failing: i64,
    pub summary: String,
}

impl RunRow {
    /// `ok`, `failing`, or `pending` for a run whose unhealthy tasks were
    /// all pending: stored as failing (it exited 1; runs.status takes only
    /// the two), told apart by the summary the tick wrote.
    pub fn shown_status(&self) -> &str {
        if self.status == "failing" && self.summary.starts_with("pending: ") {
            "pending"
        } else {
            &self.status
        }
    }
}

const RUN_COLUMNS: &str =
    "id, profile, host, started_at, finished_at, duration_ms, status, tasks, failing, summary";

fn run_row(r: &rusqlite::Row) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        profile: r.get(1)?,
        host: r.get(2)?,
        started_at: Timestamp(r.get(3)?),
        finished_at: Timestamp(r.get(4)?),
        duration_ms: r.get(5)?,
        status: r.get(6)?,
        tasks: r.get(7)?,
        failing: r.get(8)?,
        summary: r.get(9)?,
    })
}

/// A row of `alert_history`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryRow {
    pub id: i64,
    pub at: Timestamp,
    pub host: String,
    pub profile: String,
    pub task: String,
    pub rule: String,
    /// The task name.
    pub source: String,
    /// A [`HistoryStatus`] name (kept as text: a newer monitor may have
    /// written one this one does not know).
    pub status: String,
    pub severity: String,
    pub summary: String,
    pub value: Option<f64>,
    pub threshold: Option<String>,
}

/// Which history rows, newest first: `monitor alerts` and `/v1/alerts`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    pub limit: u32,
    /// The task name.
    pub source: Option<String>,
    pub severity: Option<Severity>,
    pub status: Option<HistoryStatus>,
    pub since: Option<Timestamp>,
}

impl HistoryQuery {
    /// The newest `limit` rows, unfiltered.
    pub fn newest(limit: u32) -> HistoryQuery {
        HistoryQuery {
            limit,
            source: None,
            severity: None,
            status: None,
            since: None,
        }
    }

    /// The exact SQL, and its parameters: only the given filters appear.
    pub fn sql(&self) -> (String, Vec<SqlValue>) {
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        let mut filter = |condition: &str, value: SqlValue| {
            values.push(value);
            conditions.push(format!("{condition} ?{}", values.len()));
        };
        if let Some(source) = &self.source {
            filter("source =", SqlValue::Text(source.clone()));
        }
        if let Some(severity) = self.severity {
            filter("severity =", SqlValue::Text(severity.as_str().to_string()));
        }
        if let Some(status) = self.status {
            filter("status =", SqlValue::Text(status.as_str().to_string()));
        }
        if let Some(since) = self.since {
            filter("at >=", SqlValue::Integer(since.0));
        }
        let mut sql = String::from(
            "SELECT id, at, host, profile, task, rule, source, status, severity, summary, value, threshold FROM alert_history",
        );
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        values.push(SqlValue::Integer(i64::from(self.limit)));
        sql.push_str(&format!(
            " ORDER BY at DESC, id DESC LIMIT ?{}",
            values.len()
        ));
        (sql, values)
    }
}

/// Which runs (ticks), newest first: `/v1/runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunQuery {
    pub limit: u32,
    pub profile: Option<String>,
}

impl RunQuery {
    /// The exact SQL, and its parameters.
    pub fn sql(&self) -> (String, Vec<SqlValue>) {
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs");
        let mut values = Vec::new();
        if let Some(profile) = &self.profile {
            values.push(SqlValue::Text(profile.clone()));
            sql.push_str(" WHERE profile = ?1");
        }
        values.push(SqlValue::Integer(i64::from(self.limit)));
        sql.push_str(&format!(
            " ORDER BY started_at DESC, id DESC LIMIT ?{}",
            values.len()
        ));
        (sql, values)
    }
}

/// Restarts per profile, task and result for `/metrics`: read from the
/// covering partial index `alert_history_restarts` (migration 0004), whose
/// `WHERE` this must repeat word for word, so the statuses are literals
/// here (a unit test holds them to [`HistoryStatus`]).
pub const RESTART_COUNTS_SQL: &str = "SELECT profile, task, status, count(*) FROM alert_history
     WHERE status IN ('restarted', 'restart_failed') GROUP BY profile, task, status";

/// The newest run of a profile and how many runs are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileFigures {
    pub profile: String,
    pub runs: i64,
    pub started_at: Timestamp,
    pub duration_ms: i64,
    pub ok: bool,
}

/// monitor's own figures for `/metrics`, read in one snapshot.
#[derive(Debug, Default, PartialEq)]
pub struct Figures {
    pub profiles: Vec<ProfileFigures>,
    /// Firing alerts by severity.
    pub firing: BTreeMap<String, i64>,
    pub outbox_backlog: i64,
    /// (profile, task, result) → restarts in the history; result is `ok`
    /// or `failed`.
    pub restarts: BTreeMap<(String, String, &'static str), i64>,
    pub silences_active: i64,
}

/// What the self-check reads of the database besides the schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Integrity {
    /// `PRAGMA quick_check` said ok.
    pub ok: bool,
    /// Its first two complaints, and how many more.
    pub problem: String,
    /// Notifications neither delivered nor given up on.
    pub backlog: i64,
    /// When the oldest of those was queued.
    pub oldest: Option<Timestamp>,
}

impl Store {
    /// Each profile's newest run up to `now` (a run stored by a clock that
    /// ran ahead is not the last run).
    pub fn last_runs(&self, now: Timestamp) -> Result<BTreeMap<String, RunRow>> {
        let mut statement = self.conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs r
             WHERE id = (SELECT id FROM runs WHERE profile = r.profile AND started_at <= ?1
                         ORDER BY started_at DESC, id DESC LIMIT 1)"
        ))?;
        let rows = statement.query_map([now.0 + crate::clock::FUTURE_SLACK_MS], run_row)?;
        let mut last = BTreeMap::new();
        for row in rows {
            let row = row?;
            last.insert(row.profile.clone(), row);
        }
        Ok(last)
    }

    /// When `profile`'s newest run up to `now` started.
    pub fn last_run(&self, profile: &str, now: Timestamp) -> Result<Option<Timestamp>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT max(started_at) FROM runs WHERE profile = ?1 AND started_at <= ?2",
        )?;
        let latest = now.0 + crate::clock::FUTURE_SLACK_MS;
        let last: Option<i64> =
            statement.query_row(rusqlite::params![profile, latest], |r| r.get(0))?;
        Ok(last.map(Timestamp))
    }

    /// When the newest tick of any profile started: what "now" is checked
    /// against, and what retention counts back from.
    pub fn newest_run(&self) -> Result<Option<Timestamp>> {
        let newest: Option<i64> =
            self.conn
                .query_row("SELECT max(started_at) FROM runs", [], |r| r.get(0))?;
        Ok(newest.map(Timestamp))
    }

    /// When each enabled profile first appeared in jobs.yaml, as the ticks
    /// recorded it (empty for a database older than that record).
    pub fn first_seen(&self) -> Result<BTreeMap<String, Timestamp>> {
        let exists: bool = self.conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'profile_seen'",
            [],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(BTreeMap::new());
        }
        let mut statement = self
            .conn
            .prepare_cached("SELECT profile, first_seen_at FROM profile_seen")?;
        let rows =
            statement.query_map([], |r| Ok((r.get::<_, String>(0)?, Timestamp(r.get(1)?))))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// History rows, newest first.
    pub fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryRow>> {
        let (sql, values) = query.sql();
        let mut statement = self.conn.prepare_cached(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(values), |r| {
            Ok(HistoryRow {
                id: r.get(0)?,
                at: Timestamp(r.get(1)?),
                host: r.get(2)?,
                profile: r.get(3)?,
                task: r.get(4)?,
                rule: r.get(5)?,
                source: r.get(6)?,
                status: r.get(7)?,
                severity: r.get(8)?,
                summary: r.get(9)?,
                value: r.get(10)?,
                threshold: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Runs, newest first.
    pub fn runs(&self, query: &RunQuery) -> Result<Vec<RunRow>> {
        let (sql, values) = query.sql();
        let mut statement = self.conn.prepare_cached(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(values), run_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// `/metrics`' figures, every one from the same snapshot.
    pub fn figures(&self, now: Timestamp) -> Result<Figures> {
        let snapshot = self.conn.unchecked_transaction()?;
        let mut figures = Figures::default();
        let mut statement = snapshot.prepare(
            "SELECT c.profile, c.runs, r.started_at, r.duration_ms, r.status
             FROM (SELECT profile, count(*) AS runs FROM runs GROUP BY profile) AS c
             JOIN runs AS r ON r.id = (SELECT id FROM runs WHERE profile = c.profile
                                       ORDER BY started_at DESC, id DESC LIMIT 1)
             ORDER BY c.profile",
        )?;
        let rows = statement.query_map([], |r| {
            Ok(ProfileFigures {
                profile: r.get(0)?,
                runs: r.get(1)?,
                started_at: Timestamp(r.get(2)?),
                duration_ms: r.get(3)?,
                ok: r.get::<_, String>(4)? == "ok",
            })
        })?;
        figures.profiles = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        let mut statement = snapshot.prepare(
            "SELECT severity, count(*) FROM alert_state WHERE status = ?1 GROUP BY severity",
        )?;
        let rows = statement.query_map([crate::alert::Status::Firing.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?))
        })?;
        for row in rows {
            let (severity, count) = row?;
            figures.firing.insert(severity, count);
        }
        figures.outbox_backlog = snapshot.query_row(
            "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        let mut statement = snapshot.prepare(RESTART_COUNTS_SQL)?;
        let rows = statement.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (profile, task, status, count) = row?;
            let result = if status == HistoryStatus::Restarted.as_str() {
                "ok"
            } else {
                "failed"
            };
            figures.restarts.insert((profile, task, result), count);
        }
        figures.silences_active = snapshot.query_row(
            "SELECT count(*) FROM silences WHERE removed_at IS NULL AND ends_at > ?1",
            [now.0],
            |r| r.get(0),
        )?;
        Ok(figures)
    }

    /// `PRAGMA quick_check` and the outbox backlog, for the self-check.
    pub fn integrity(&self) -> Result<Integrity> {
        let mut statement = self.conn.prepare("PRAGMA quick_check")?;
        let results: Vec<String> = statement
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let ok = results.len() == 1 && results[0] == "ok";
        let lines: Vec<&str> = results
            .iter()
            .flat_map(|r| r.lines())
            .filter(|l| !l.starts_with("***"))
            .collect();
        let mut problem = lines.iter().take(2).copied().collect::<Vec<_>>().join("; ");
        if lines.len() > 2 {
            problem.push_str(&format!(" (and {} more)", lines.len() - 2));
        }
        let (backlog, oldest): (i64, Option<i64>) = self.conn.query_row(
            "SELECT count(*), min(created_at) FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(Integrity {
            ok,
            problem,
            backlog,
            oldest: oldest.map(Timestamp),
        })
    }

    /// Notifications given up on after `since`.
    pub fn dead_letters_since(&self, since: Timestamp) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM outbox WHERE given_up_at IS NOT NULL AND given_up_at > ?1",
            [since.0],
            |r| r.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_sql_names_only_the_given_filters() {
        let mut query = HistoryQuery::newest(50);
        query.source = Some("x".into());
        let (sql, values) = query.sql();
        assert!(
            sql.ends_with(
                "FROM alert_history WHERE source = ?1 ORDER BY at DESC, id DESC LIMIT ?2"
            ),
            "{sql}"
        );
        assert_eq!(
            values,
            vec![SqlValue::Text("x".into()), SqlValue::Integer(50)]
        );
        let (sql, values) = HistoryQuery::newest(50).sql();
        assert!(
            sql.ends_with("FROM alert_history ORDER BY at DESC, id DESC LIMIT ?1"),
            "{sql}"
        );
        assert_eq!(values, vec![SqlValue::Integer(50)]);
        let query = HistoryQuery {
            limit: 50,
            source: Some("s".into()),
            severity: Some(Severity::Info),
            status: Some(HistoryStatus::Firing),
            since: Some(Timestamp(1)),
        };
        let (sql, values) = query.sql();
        assert!(
            sql.contains("WHERE source = ?1 AND severity = ?2 AND status = ?3 AND at >= ?4 ORDER BY at DESC, id DESC LIMIT ?5"),
            "{sql}"
        );
        assert_eq!(values.len(), 5);
        let runs = RunQuery {
            limit: 3,
            profile: Some("p".into()),
        };
        let (sql, _) = runs.sql();
        assert!(
            sql.ends_with(
                "FROM runs WHERE profile = ?1 ORDER BY started_at DESC, id DESC LIMIT ?2"
            ),
            "{sql}"
        );
    }

    #[test]
    fn the_restart_count_names_the_statuses_the_store_writes() {
        let named = format!(
            "status IN ('{}', '{}')",
            HistoryStatus::Restarted.as_str(),
            HistoryStatus::RestartFailed.as_str()
        );
        assert!(RESTART_COUNTS_SQL.contains(&named), "{RESTART_COUNTS_SQL}");
        let index = super::super::MIGRATIONS
            .iter()
            .find(|(_, name, _)| *name == "0004_schedule_watch.sql")
            .map(|(_, _, sql)| *sql)
            .unwrap();
        assert!(index.contains(&named), "the partial index must say {named}");
    }
}
