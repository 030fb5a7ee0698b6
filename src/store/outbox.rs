//! The outbox: notifications committed with their tick, delivered after
//! it, retried, given up on (a dead letter in the history); and, per
//! notifier, what is failing since when.

use super::Store;
use crate::alert::HistoryStatus;
use crate::clock::Timestamp;
use crate::notify::Payload;
use anyhow::{Context, Result};
use rusqlite::{TransactionBehavior, params};

/// One outbox entry that is due.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub notifier: String,
    pub payload: Payload,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
    /// Why the last attempt failed; none before the first.
    pub last_error: Option<String>,
}

/// Per notifier whose notifications fail, how many wait (those that
/// failed and those queued behind them), since when, and the last error
/// (secrets already redacted).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Backlog {
    pub notifier: String,
    pub waiting: i64,
    pub since: Timestamp,
    pub error: String,
}

/// The `monitor_state` namespace holding, per URL of `notifier`, since
/// when it has been failing.
pub fn failing_namespace(notifier: &str) -> String {
    format!("{FAILING_PREFIX}{notifier}")
}

const FAILING_PREFIX: &str = "notify:";

impl Store {
    /// Undelivered outbox entries of `profile`, oldest first, due or not.
    pub fn waiting_outbox(&self, profile: &str) -> Result<Vec<OutboxRow>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, notifier, payload, attempts, created_at, next_attempt_at, last_error FROM outbox
             WHERE profile = ?1 AND delivered_at IS NULL AND given_up_at IS NULL
             ORDER BY id LIMIT 1000",
        )?;
        let rows = statement.query_map(params![profile], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        let mut waiting = Vec::new();
        for row in rows {
            let (id, notifier, payload, attempts, created_at, next_attempt_at, last_error) = row?;
            let payload: Payload = serde_json::from_str(&payload)
                .with_context(|| format!("outbox entry {id} holds an unreadable message"))?;
            waiting.push(OutboxRow {
                id,
                notifier,
                payload,
                attempts,
                created_at: Timestamp(created_at),
                next_attempt_at: Timestamp(next_attempt_at),
                last_error,
            });
        }
        Ok(waiting)
    }

    pub fn mark_delivered(&self, id: i64, now: Timestamp) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1")?
            .execute(params![id, now.0])?;
        Ok(())
    }

    pub fn mark_failed(&self, id: i64, error: &str, next_attempt_at: Timestamp) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 WHERE id = ?1")?
            .execute(params![id, error, next_attempt_at.0])?;
        Ok(())
    }

    /// Gives up on an entry and records a dead letter in the history.
    pub fn give_up(&mut self, row: &OutboxRow, error: &str, now: Timestamp) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE outbox SET given_up_at = ?2, last_error = ?3 WHERE id = ?1",
            params![row.id, now.0, error],
        )?;
        for m in row.payload.messages() {
            tx.execute(
                "INSERT INTO alert_history (at, host, profile, task, rule, source, status, severity, summary)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    now.0,
                    m.host,
                    m.profile,
                    m.task,
                    m.rule,
                    m.task,
                    HistoryStatus::DeadLetter.as_str(),
                    m.severity.as_str(),
                    format!(
                        "gave up delivering to {} after {} attempt{}: {error} (message: {})",
                        row.notifier,
                        row.attempts + 1,
                        if row.attempts == 0 { "" } else { "s" },
                        m.text()
                    ),
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// How many sends to `notifier` succeeded since `since` (rate limits).
    pub fn delivered_since(&self, notifier: &str, since: Timestamp) -> Result<u32> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM outbox WHERE notifier = ?1 AND delivered_at > ?2",
            params![notifier, since.0],
            |r| r.get(0),
        )?)
    }

    /// Per URL digest of `notifier`, since when it has been failing.
    pub fn failing_targets(&self, notifier: &str) -> Result<Vec<(String, Timestamp)>> {
        let mut statement = self.conn.prepare_cached(
        "SELECT key, CAST(value AS INTEGER) FROM monitor_state WHERE namespace = ?1 ORDER BY key",
    )?;
        let rows = statement.query_map([failing_namespace(notifier)], |r| {
            Ok((r.get::<_, String>(0)?, Timestamp(r.get(1)?)))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// [`Backlog`] of every notifier, by name.
    pub fn backlog(&self) -> Result<Vec<Backlog>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT notifier, count(*),
                min(min(created_at), coalesce(
                    (SELECT min(CAST(value AS INTEGER)) FROM monitor_state
                     WHERE namespace = ?1 || outbox.notifier), min(created_at))),
                (SELECT last_error FROM outbox AS o WHERE o.notifier = outbox.notifier
                   AND o.delivered_at IS NULL AND o.given_up_at IS NULL AND o.attempts > 0
                 ORDER BY o.id DESC LIMIT 1)
         FROM outbox
         WHERE delivered_at IS NULL AND given_up_at IS NULL
         GROUP BY notifier HAVING max(attempts) > 0 ORDER BY notifier",
        )?;
        let rows = statement.query_map([FAILING_PREFIX], |r| {
            Ok(Backlog {
                notifier: r.get(0)?,
                waiting: r.get(1)?,
                since: Timestamp(r.get(2)?),
                error: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
