//! What a tick leaves behind: its run, alert history, state and outbox in
//! one transaction, then retention's bounded pruning.

use super::TickReport;
use crate::clock::Timestamp;
use crate::config::{Config, Profile};
use crate::error::Error;
use crate::notify::Envelope;
use crate::store::{Store, TickRecord};
use std::time::{Duration, Instant};

/// Stores the tick: run, history, state and outbox, all or nothing.
pub(super) fn commit(
    store: &mut Store,
    config: &Config,
    profile: &Profile,
    report: &TickReport,
    envelopes: &[Envelope],
    now: Timestamp,
    finished_at: Timestamp,
) -> Result<(), Error> {
    let failing = report.outcome.tasks.iter().filter(|t| !t.healthy).count();
    let named = |pending: bool| -> Vec<&str> {
        report
            .outcome
            .tasks
            .iter()
            .filter(|t| !t.healthy && (crate::report::task_tag(t) == "PEND") == pending)
            .map(|t| t.name.as_str())
            .collect()
    };
    let summary = if failing == 0 {
        let count = report.tasks.len();
        format!("{count} task{} healthy", if count == 1 { "" } else { "s" })
    } else {
        let mut parts = Vec::new();
        for (label, names) in [("failing", named(false)), ("pending", named(true))] {
            if !names.is_empty() {
                parts.push(format!("{label}: {}", names.join(", ")));
            }
        }
        parts.join("; ")
    };
    let namespace = |task: &str| format!("{}/{task}", profile.name);
    let state = report
        .tasks
        .iter()
        .flat_map(|t| {
            t.observation
                .state
                .iter()
                .map(|(k, v)| (namespace(&t.name), k.clone(), Some(v.clone())))
        })
        .chain(
            report
                .outcome
                .state
                .iter()
                .map(|(task, k, v)| (namespace(task), k.clone(), Some(v.clone()))),
        )
        .collect();
    let record = TickRecord {
        profile: &profile.name,
        host: &config.host,
        started_at: now,
        finished_at,
        tasks: report.tasks.len(),
        failing,
        summary,
        outcome: &report.outcome,
        envelopes,
        state,
        enabled_profiles: config
            .profiles
            .iter()
            .filter(|p| p.enabled)
            .map(|p| p.name.as_str())
            .collect(),
        config: (&config.path, config.source_to_keep()),
    };
    store.commit_tick(&record, now)?;
    Ok(())
}

/// Rows deleted per table and tick by retention: enough to keep up with
/// any tick rate, small enough to cost milliseconds.
const PRUNE_BATCH: usize = 2_000;

/// Retention: history, runs and finished outbox entries older than
/// `retention` go, a bounded batch per tick. A failure only logs.
pub(super) fn prune(store: &mut Store, config: &Config, now: Timestamp) {
    let cutoff = now.plus_millis(-config.defaults.retention.as_millis());
    // Batch after batch (each its own transaction) while there is more and
    // the tick's budget for it lasts: a backlog shrinks fast, a tick stays
    // short.
    let started = Instant::now();
    let mut total = 0;
    while started.elapsed() < PRUNE_BUDGET {
        match store.prune(cutoff, PRUNE_BATCH) {
            Ok(0) => break,
            Ok(deleted) => total += deleted,
            Err(e) => {
                log::warn!("retention: pruning failed: {e:#}");
                break;
            }
        }
    }
    if total > 0 {
        log::debug!(
            "retention: pruned {total} rows older than {cutoff} in {} ms",
            started.elapsed().as_millis()
        );
    }
}

/// How long a tick may spend pruning (it stops after the batch running).
const PRUNE_BUDGET: Duration = Duration::from_millis(250);
