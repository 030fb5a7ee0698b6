//! What a tick leaves behind: its run, alert history, state and outbox in
//! one transaction, then retention's bounded pruning.

use super::TickReport;
use crate::alert::Verdict;
use crate::clock::Timestamp;
use crate::config::{Config, Profile};
use crate::error::Error;
use crate::notify::Envelope;
use crate::remediate::Remediation;
use crate::store::{HEALTHY, SignalSample, Store, TaskStatus, TickRecord};
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
    let signals = history_samples(profile, report);
    let statuses = task_statuses(profile, report, now);
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
        signals: &signals,
        statuses: &statuses,
    };
    store.commit_tick(&record, now)?;
    Ok(())
}

/// A probe's basics, recorded in the signal history whenever a task has
/// them: what a person looks at first on its page.
const BASICS: [&str; 15] = [
    "up",
    "latency_ms",
    "connect_ms",
    "response_ms",
    "handshake_ms",
    "resolve_ms",
    "rtt_ms",
    "loss_ratio",
    "lag",
    "rss_bytes",
    "open_fds",
    "cert_days_left",
    "used_ratio",
    "scrape_ms",
    "log_age_s",
];

/// At most this many series per task and tick (a command's perfdata could
/// hold hundreds): the history's size stays bounded.
const MAX_SIGNALS_PER_TASK: usize = 32;

/// The numbers this tick adds to the signal history: each task's basics,
/// the signals its rules and guards read, and the value of each rule that
/// computes one from series (`gauge`, `counter`, `ratio`…), under the
/// rule's name.
fn history_samples(profile: &Profile, report: &TickReport) -> Vec<SignalSample> {
    let mut samples = Vec::new();
    for (observed, verdict) in report.tasks.iter().zip(&report.outcome.tasks) {
        let Some(task) = profile.tasks.iter().find(|t| t.name == observed.name) else {
            continue;
        };
        let read = task.signals_read();
        let mut names: Vec<(String, f64)> = observed
            .observation
            .signals
            .named()
            .filter(|(name, _)| BASICS.contains(name) || read.contains(name))
            .map(|(name, value)| (name.to_string(), value))
            .collect();
        for result in &verdict.rules {
            let computed = task
                .rules
                .iter()
                .find(|r| r.name == result.rule)
                .is_some_and(|r| !matches!(r.kind, crate::rule::RuleKind::Signal { .. }));
            let value = match &result.verdict {
                Verdict::Breach { value, .. } | Verdict::Clear { value, .. } => *value,
                _ => None,
            };
            if let (true, Some(value)) = (computed, value)
                && !names.iter().any(|(n, _)| *n == result.rule)
            {
                names.push((result.rule.clone(), value));
            }
        }
        // Whether the task was healthy: its uptime, day by day. A task
        // found down and restarted this tick was down, though the restart
        // resolved its alert.
        names.insert(
            0,
            (HEALTHY.to_string(), f64::from(u8::from(was_up(verdict)))),
        );
        samples.extend(
            names
                .into_iter()
                .take(MAX_SIGNALS_PER_TASK)
                .map(|(signal, value)| SignalSample {
                    task: task.name.clone(),
                    signal,
                    value,
                }),
        );
    }
    samples
}

/// Whether a task counts as up this tick: healthy, and not because a
/// restart this tick made it so.
fn was_up(verdict: &crate::evaluate::TaskVerdict) -> bool {
    verdict.healthy && !restarted(verdict)
}

/// Whether this tick restarted the task.
fn restarted(verdict: &crate::evaluate::TaskVerdict) -> bool {
    matches!(
        verdict.remediation,
        Some(Remediation::Done { .. } | Remediation::Due { .. })
    )
}

/// Each task's verdict after this tick, for the status page.
fn task_statuses(profile: &Profile, report: &TickReport, now: Timestamp) -> Vec<TaskStatus> {
    report
        .tasks
        .iter()
        .zip(&report.outcome.tasks)
        .map(|(observed, verdict)| {
            let (word, why) = crate::report::page_verdict(verdict);
            TaskStatus {
                profile: profile.name.clone(),
                task: observed.name.clone(),
                verdict: word.to_string(),
                why,
                summary: crate::report::checks_line(observed, verdict),
                since: now,
                at: now,
                // Healthy again by a restart: ok since now, not since the
                // last time it was not. (A verdict that stays the same
                // otherwise keeps its since: failing since it began.)
                fresh: verdict.healthy && restarted(verdict),
            }
        })
        .collect()
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
    let windows = config.defaults.history.windows();
    while started.elapsed() < PRUNE_BUDGET {
        match store.prune_signals(now, windows, PRUNE_BATCH) {
            Ok(0) => break,
            Ok(changed) => total += changed,
            Err(e) => {
                log::warn!("retention: pruning the signal history failed: {e:#}");
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
