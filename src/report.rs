//! What people read: the tick summary, `list`, and `alerts`, as text or
//! JSON. Formats values it is given; computes nothing about health.

use crate::alert::{Status, Transition, Verdict};
use crate::clock::Timestamp;
use crate::config::{Config, Severity};
use crate::evaluate::{RuleResult, TaskVerdict};
use crate::notify::outbox::{Delivery, DeliveryResult, Undelivered};
use crate::remediate::Remediation;
use crate::store::{HistoryRow, RunRow};
use crate::tick::{TaskObservation, TickReport};
use serde_json::json;
use std::collections::BTreeSet;
use std::fmt::Write;

/// Output format of commands that print data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

fn verdict_json(verdict: &Verdict) -> serde_json::Value {
    match verdict {
        Verdict::Breach {
            severity,
            value,
            threshold,
            summary,
        } => {
            json!({"verdict": "breach", "severity": severity, "value": value, "threshold": threshold, "summary": summary})
        }
        Verdict::Clear { value, summary } => {
            json!({"verdict": "clear", "value": value, "summary": summary})
        }
        Verdict::NoData { reason } => json!({"verdict": "no_data", "summary": reason}),
        Verdict::Hold { reason } => json!({"verdict": "held", "summary": reason}),
    }
}

/// The tick summary as JSON.
pub fn tick_json(report: &TickReport) -> serde_json::Value {
    let tasks: Vec<_> = report
        .tasks
        .iter()
        .zip(&report.outcome.tasks)
        .map(|(task, result)| {
            let rules: Vec<_> = result
                .rules
                .iter()
                .map(|r| {
                    let mut value = verdict_json(&r.verdict);
                    value["rule"] = json!(r.rule);
                    let status = r.status().filter(|s| *s != Status::Pending || r.active());
                    value["status"] = json!(status.map(|s| s.as_str()).unwrap_or("ok"));
                    // Held: a firing alert held, or a breach held still
                    // (a failing dependency, settling after a restart).
                    value["held"] = json!(r.held() || r.held_breach.is_some());
                    // A breach held still: breaching, at its severity.
                    if let Some(severity) = r.held_breach.filter(|_| !r.active()) {
                        value["status"] = json!("breaching");
                        value["severity"] = json!(severity);
                    }
                    value["transition"] = json!(r.transition.map(|t| t.as_str()));
                    value
                })
                .collect();
            json!({
                "name": task.name,
                "healthy": result.healthy,
                "elapsed_ms": task.observation.elapsed_ms,
                "checks": task.observation.checks,
                "signals": task.observation.signals,
                "rules": rules,
                "remediation": result.remediation.as_ref().map(remediation_text),
            })
        })
        .collect();
    json!({
        "profile": report.profile,
        "host": report.host,
        "dry_run": report.dry_run,
        "started_at": report.started_at.rfc3339(),
        "elapsed_ms": report.elapsed.as_millis() as u64,
        "healthy": report.healthy(),
        "tasks": tasks,
        "disabled_tasks": report.skipped_tasks,
        "not_due_tasks": report.not_due.iter().map(|n| serde_json::json!({"task": n.task, "next_at": n.next.to_string(), "firing": n.firing})).collect::<Vec<_>>(),
        "notes": report.notes,
        "notifications": report.deliveries,
        "undelivered": report.undelivered,
    })
}

/// The tick summary for a person.
/// The summary's first line: profile, host, time, tasks and the verdict.
fn headline(report: &TickReport) -> String {
    let tags: Vec<&str> = report.outcome.tasks.iter().map(task_tag).collect();
    let pending = tags.iter().filter(|t| **t == "PEND").count();
    let failing = tags
        .iter()
        .filter(|t| !matches!(**t, "ok" | "PEND"))
        .count();
    // A tick that restarted something did not find all healthy: it says so.
    let restarted = report
        .outcome
        .tasks
        .iter()
        .filter(|t| matches!(t.remediation, Some(Remediation::Done { healthy: true, .. })))
        .count();
    let mut parts = Vec::new();
    if failing > 0 {
        parts.push(format!("{failing} failing"));
    }
    if pending > 0 {
        parts.push(format!("{pending} pending"));
    }
    if restarted > 0 {
        parts.push(format!("{restarted} restarted"));
    }
    let resting = report
        .not_due
        .iter()
        .filter(|n| !n.firing.is_empty())
        .count();
    if resting > 0 {
        parts.push(format!("{resting} not due, still firing"));
    }
    if !report.undelivered.is_empty() {
        let receivers = report.undelivered.len();
        parts.push(format!(
            "notifications failing for {receivers} receiver{}",
            if receivers == 1 { "" } else { "s" }
        ));
    }
    let state = if parts.is_empty() {
        "all healthy".to_string()
    } else {
        parts.join(", ")
    };
    format!(
        "{}{} on {} at {}: {} task{}, {state} ({} ms)",
        if report.dry_run {
            "DRY RUN (nothing restarted, sent or stored) — "
        } else {
            ""
        },
        report.profile,
        report.host,
        report.started_at,
        report.tasks.len(),
        if report.tasks.len() == 1 { "" } else { "s" },
        report.elapsed.as_millis()
    )
}

pub fn tick_text(report: &TickReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", headline(report));
    for note in &report.notes {
        let _ = writeln!(out, "  {note}");
    }
    let width = report.tasks.iter().map(|t| t.name.len()).max().unwrap_or(4);
    for (task, result) in report.tasks.iter().zip(&report.outcome.tasks) {
        let _ = writeln!(
            out,
            "  {:<4}  {:<width$}  {}",
            task_tag(result),
            task.name,
            checks_line(task, result)
        );
        for rule in &result.rules {
            let Some(status) = rule_status(report, result, rule) else {
                continue;
            };
            let _ = writeln!(
                out,
                "  {:4}  {:<width$}  └ {} {status}{}",
                "",
                "",
                rule.rule,
                rule_detail(rule)
            );
        }
        if let Some(remediation) = &result.remediation {
            let _ = writeln!(
                out,
                "  {:4}  {:<width$}  └ {}",
                "",
                "",
                remediation_text(remediation)
            );
        }
    }
    if !report.not_due.is_empty() {
        let shown: Vec<String> = report
            .not_due
            .iter()
            .map(|n| match n.firing.as_slice() {
                [] => format!("{} (next at {})", n.task, n.next),
                rules => format!(
                    "{} (next at {}; still firing: {})",
                    n.task,
                    n.next,
                    rules.join(", ")
                ),
            })
            .collect();
        let _ = writeln!(out, "  not due (every:): {}", shown.join(", "));
    }
    if !report.skipped_tasks.is_empty() {
        let _ = writeln!(out, "  disabled: {}", report.skipped_tasks.join(", "));
    }
    for line in &report.console {
        let _ = writeln!(out, "{line}");
    }
    for delivery in &report.deliveries {
        match &delivery.result {
            DeliveryResult::Delivered if report.console.contains(&delivery.text) => {}
            _ => {
                let _ = writeln!(out, "{}", delivery_line(report, delivery, &delivery.text));
            }
        }
    }
    for backlog in &report.undelivered {
        let _ = writeln!(out, "{}", undelivered_line(backlog));
    }
    out
}

/// What became of one delivery, for a person.
fn delivery_line(report: &TickReport, delivery: &Delivery, text: &str) -> String {
    let to = delivery.receiver();
    match &delivery.result {
        DeliveryResult::Delivered => format!("sent to {to}: {text}"),
        DeliveryResult::Failed { error, retry_at } if retry_at <= &report.started_at => {
            format!("NOT sent to {to} ({error}); will retry next tick: {text}")
        }
        DeliveryResult::Failed { error, retry_at } => {
            format!("NOT sent to {to} ({error}); will retry from {retry_at}: {text}")
        }
        DeliveryResult::GaveUp { error } => format!("GAVE UP sending to {to} ({error}): {text}"),
        DeliveryResult::WouldSend => format!("would send to {to}: {text}"),
    }
}

/// One receiver's backlog, for a person.
fn undelivered_line(backlog: &Undelivered) -> String {
    format!(
        "UNDELIVERED: {} notification{} to {} waiting since {} (last error: {})",
        backlog.waiting,
        if backlog.waiting == 1 { "" } else { "s" },
        backlog.receiver,
        backlog.since,
        backlog.error
    )
}

/// How this tick's message about `(task, rule)` fared: delivered by every
/// notifier it was for, by some (naming the others), or by none.
fn told_how(report: &TickReport, task: &str, rule: &str) -> String {
    let notifiers: BTreeSet<&str> = report
        .outcome
        .outgoing
        .iter()
        .filter(|o| o.message.task == task && o.message.rule == rule)
        .flat_map(|o| o.notifiers.iter().map(String::as_str))
        .collect();
    let delivered = |notifier: &str| {
        report.deliveries.iter().any(|d| {
            d.notifier == notifier
                && !d.failed()
                && d.carries.iter().any(|(t, r)| t == task && r == rule)
        })
    };

    let carries = |d: &Delivery| d.carries.iter().any(|(t, r)| t == task && r == rule);
    let mut missed: Vec<String> = notifiers
        .iter()
        .filter(|n| !delivered(n))
        .map(|n| n.to_string())
        .collect();
    // One URL of a cluster that did not take it, while another did.
    missed.extend(
        report
            .deliveries
            .iter()
            .filter(|d| d.to.is_some() && d.failed() && carries(d) && delivered(&d.notifier))
            .map(Delivery::receiver),
    );
    if missed.is_empty() {
        "notified".to_string()
    } else if notifiers.iter().any(|n| delivered(n)) {
        format!("notified, but NOT delivered to {}", missed.join(", "))
    } else {
        format!("NOT delivered to {}", missed.join(", "))
    }
}

/// `ok`, `PEND` (breaching, its `for:` not met yet: nothing fires),
/// `WARN` (only warning breaches) or `FAIL`: a task's verdict.
/// A task's verdict in the status page's words (`ok`, `pending`,
/// `warning`, `failing`, `held`) and what holds or fails it.
pub(crate) fn page_verdict(result: &TaskVerdict) -> (&'static str, String) {
    let held = result.rules.iter().find(|r| r.held_breach.is_some());
    let active: Vec<&RuleResult> = result.rules.iter().filter(|r| r.active()).collect();
    let why = |rules: &[&RuleResult]| {
        rules
            .iter()
            .map(|r| format!("{}: {}", r.rule, r.verdict.summary()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match (task_tag(result), held) {
        ("ok", _) => ("ok", String::new()),
        (_, Some(rule)) if active.is_empty() => ("held", rule.verdict.summary().to_string()),
        ("PEND", _) => ("pending", why(&active)),
        ("WARN", _) => ("warning", why(&active)),
        _ => ("failing", why(&active)),
    }
}

pub(crate) fn task_tag(result: &TaskVerdict) -> &'static str {
    let mut breaches = result.rules.iter().filter_map(|r| match r.verdict {
        Verdict::Breach { severity, .. } => Some(severity),
        _ => None,
    });
    let only_pending = result.rules.iter().any(RuleResult::pending)
        && !result
            .rules
            .iter()
            .any(|r| r.status() == Some(Status::Firing))
        && !matches!(
            result.remediation,
            Some(Remediation::Done { healthy: false, .. })
        );
    if result.healthy {
        "ok"
    } else if only_pending {
        "PEND"
    } else if let Some(first) = breaches.next()
        && first < Severity::Critical
        && breaches.all(|s| s < Severity::Critical)
    {
        "WARN"
    } else {
        "FAIL"
    }
}

/// What the task's checks said, one summary each; `was: …` when a
/// restart made the task healthy (the checks saw it before).
pub(crate) fn checks_line(task: &TaskObservation, result: &TaskVerdict) -> String {
    let checks: Vec<&str> = task
        .observation
        .checks
        .iter()
        .map(|c| c.summary.as_str())
        .collect();
    let restarted = matches!(
        result.remediation,
        Some(Remediation::Done { healthy: true, .. })
    );
    if restarted {
        format!("was: {}", checks.join("; "))
    } else {
        checks.join("; ")
    }
}

/// A rule's status for the summary, `None` when it is not worth a line:
/// clear and held rules of an ok key are noise (a first scrape holds every
/// delta rule); JSON has them all. A quiet key (resolved, its incident
/// open) is ok to a reader. A breach held still while the task settles
/// after a restart is shown.
fn rule_status(report: &TickReport, result: &TaskVerdict, rule: &RuleResult) -> Option<String> {
    let told = report
        .outcome
        .outgoing
        .iter()
        .any(|o| o.message.task == result.name && o.message.rule == rule.rule);
    let settling_breach = rule.held_breach.is_some();
    let interesting = !matches!(rule.verdict, Verdict::Clear { .. } | Verdict::Hold { .. })
        || rule.transition.is_some()
        || rule.active()
        || settling_breach;
    if !interesting {
        return None;
    }
    let dry = report.dry_run;
    Some(match (rule.transition, rule.status()) {
        (Some(Transition::Firing), _) if told && dry => "FIRING (would notify)".to_string(),
        (Some(Transition::Firing), _) if told => {
            format!("FIRING ({})", told_how(report, &result.name, &rule.rule))
        }
        (Some(Transition::Escalated), _) if told && dry => "ESCALATED (would notify)".to_string(),
        (Some(Transition::Escalated), _) if told => {
            format!("ESCALATED ({})", told_how(report, &result.name, &rule.rule))
        }
        (Some(Transition::Escalated), _) => "ESCALATED (not notified)".to_string(),
        (Some(Transition::Reminder), _) if told && dry => {
            "still firing (reminder would be sent)".to_string()
        }
        (Some(Transition::Reminder), _) if told => "still firing (reminder sent)".to_string(),
        (Some(Transition::Reminder), _) => "still firing".to_string(),
        (Some(Transition::Resolved), _) => "RESOLVED".to_string(),
        (Some(Transition::Cleared), Some(Status::Quiet)) => "clear, not announced".to_string(),
        (Some(Transition::Cleared), _) => "cleared before firing".to_string(),
        (Some(Transition::Firing), _)
            if rule
                .state
                .as_ref()
                .is_some_and(|st| st.opened_at == Some(report.started_at)) =>
        {
            "FIRING (not notified)".to_string()
        }
        (Some(Transition::Firing), _) => "fired again (same incident, not notified)".to_string(),
        (_, Some(Status::Firing)) if rule.held() => "firing (held)".to_string(),
        (_, status) if settling_breach && !status.is_some_and(Status::is_active) => {
            "breaching (held)".to_string()
        }
        (_, Some(s)) => s.as_str().to_string(),
        (_, None) if matches!(rule.verdict, Verdict::NoData { .. }) => "no data".to_string(),
        (_, None) => "ok".to_string(),
    })
}

/// `: <the verdict's summary>`, except for the implicit health rule's
/// breach, which repeats the check line above it.
fn rule_detail(rule: &RuleResult) -> String {
    let implicit_repeat =
        rule.rule == crate::evaluate::HEALTH_RULE && matches!(rule.verdict, Verdict::Breach { .. });
    if implicit_repeat {
        String::new()
    } else {
        format!(": {}", rule.verdict.summary())
    }
}

/// The tick told as log lines (for `log_file:`, seed 002's log): one per
/// task with its verdict, one per alert transition or active rule, the
/// restart or hold with its reason, every delivery, and the summary. At
/// debug, every rule's verdict too, clear and held ones included.
pub fn tick_story(report: &TickReport) -> Vec<(log::Level, String)> {
    use log::Level;
    let mut lines = Vec::new();
    let prefix = if report.dry_run { "DRY RUN " } else { "" };
    for note in &report.notes {
        lines.push((Level::Info, format!("{prefix}{}: {note}", report.profile)));
    }
    for (task, result) in report.tasks.iter().zip(&report.outcome.tasks) {
        let name = format!("{prefix}{}/{}", report.profile, task.name);
        let tag = task_tag(result);
        let level = match tag {
            "ok" | "PEND" => Level::Info,
            "WARN" => Level::Warn,
            _ => Level::Error,
        };
        let restarted = matches!(
            result.remediation,
            Some(Remediation::Done { healthy: true, .. })
        );
        let tag = if restarted { "ok (restarted)" } else { tag };
        lines.push((
            level,
            format!("{name}: {tag} — {}", checks_line(task, result)),
        ));
        for rule in &result.rules {
            let severity = rule.state.as_ref().map(|s| s.severity);
            match rule_status(report, result, rule) {
                Some(status) => {
                    let level = match (rule.transition, severity) {
                        (Some(Transition::Resolved | Transition::Cleared), _) => Level::Info,
                        (_, Some(Severity::Critical)) if rule.active() => Level::Error,
                        (_, _) if rule.active() => Level::Warn,
                        _ => Level::Info,
                    };
                    lines.push((
                        level,
                        format!("{name}: {} {status}{}", rule.rule, rule_detail(rule)),
                    ));
                }
                None => lines.push((
                    Level::Debug,
                    format!(
                        "{name}: {} {} ({}): {}",
                        rule.rule,
                        rule.status().map_or("ok", Status::as_str),
                        verdict_kind(&rule.verdict),
                        rule.verdict.summary()
                    ),
                )),
            }
        }
        match &result.remediation {
            Some(Remediation::Held { why }) if why.starts_with("restart held") => {
                lines.push((Level::Warn, format!("{name}: {why}")));
            }
            Some(Remediation::Held { why }) => {
                lines.push((Level::Warn, format!("{name}: restart held: {why}")));
            }
            Some(Remediation::Exhausted { why }) => {
                lines.push((Level::Error, format!("{name}: no restart: {why}")));
            }
            Some(Remediation::Done { healthy: false, .. }) => {
                let text = remediation_text(result.remediation.as_ref().expect("matched"));
                lines.push((Level::Error, format!("{name}: {text}")));
            }
            Some(remediation) => {
                lines.push((
                    Level::Warn,
                    format!("{name}: {}", remediation_text(remediation)),
                ));
            }
            None => {}
        }
    }
    for delivery in &report.deliveries {
        let first = delivery.text.lines().next().unwrap_or_default();
        let more = delivery.text.lines().count().saturating_sub(1);
        let text = if more > 0 {
            format!("{first} (+{more} line{})", if more == 1 { "" } else { "s" })
        } else {
            first.to_string()
        };
        let level = match &delivery.result {
            DeliveryResult::Delivered | DeliveryResult::WouldSend => Level::Info,
            DeliveryResult::Failed { .. } => Level::Warn,
            DeliveryResult::GaveUp { .. } => Level::Error,
        };
        let line = delivery_line(report, delivery, &text);
        lines.push((level, format!("{prefix}{}: {line}", report.profile)));
    }
    let head = headline(report);
    let level = if report.healthy() {
        Level::Info
    } else {
        Level::Warn
    };
    lines.push((level, head));
    lines
}

fn verdict_kind(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Breach { .. } => "breach",
        Verdict::Clear { .. } => "clear",
        Verdict::NoData { .. } => "no data",
        Verdict::Hold { .. } => "held",
    }
}

/// What remediation did, in one line.
fn remediation_text(remediation: &Remediation) -> String {
    match remediation {
        Remediation::Due { summary, .. } => format!("restart planned: {summary}"),
        Remediation::Held { why } | Remediation::Exhausted { why } => why.clone(),
        Remediation::Settling { until } => {
            format!("settling after a restart until {until}: alerts held")
        }
        Remediation::Done {
            what,
            healthy: true,
        } => format!("RESTARTED: {what}"),
        Remediation::Done {
            what,
            healthy: false,
        } => format!("RESTART FAILED: {what}"),
        Remediation::WouldDo { what } => what.clone(),
    }
}

/// One profile's line of `monitor list`.
pub struct ProfileListing<'a> {
    pub name: &'a str,
    pub cron: &'a str,
    pub enabled: bool,
    pub tasks: usize,
    pub next: Option<Timestamp>,
    pub last: Option<&'a RunRow>,
    /// More than two runs missed: cron or supercronic is not running it.
    pub overdue: bool,
    /// A maintenance window holds it now: why, until when.
    pub held: Option<String>,
}

pub fn list_text(rows: &[ProfileListing], now: Timestamp) -> String {
    let mut table = vec![[
        "PROFILE".to_string(),
        "CRON".into(),
        "ENABLED".into(),
        "TASKS".into(),
        "NEXT RUN".into(),
        "LAST RUN".into(),
    ]];
    for row in rows {
        let mut last = match row.last {
            Some(run) => format!(
                "{} {} ({}, {} ms)",
                run.started_at.local_near(now),
                run.shown_status(),
                run.summary,
                run.duration_ms
            ),
            None => "never".to_string(),
        };
        if row.overdue {
            last = format!("OVERDUE: {last}");
        }
        if let Some(held) = &row.held {
            last = format!("{last} — {held}");
        }
        table.push([
            row.name.to_string(),
            row.cron.to_string(),
            if row.enabled {
                "yes".into()
            } else {
                "no".into()
            },
            row.tasks.to_string(),
            row.next
                .filter(|_| row.enabled)
                .map(|t| t.local_near(now))
                .unwrap_or_else(|| "-".into()),
            last,
        ]);
    }
    columns(&table)
}

pub fn list_json(rows: &[ProfileListing]) -> serde_json::Value {
    json!(
        rows.iter()
            .map(|r| json!({
                "profile": r.name,
                "cron": r.cron,
                "enabled": r.enabled,
                "tasks": r.tasks,
                "overdue": r.overdue,
            "maintenance": r.held,
            "next_run": r.next.map(|t| t.rfc3339()),
                "last_run": r.last.map(|run| json!({
                    "started_at": run.started_at.rfc3339(),
                    "status": run.shown_status(),
                    "duration_ms": run.duration_ms,
                    "summary": run.summary,
                })),
            }))
            .collect::<Vec<_>>()
    )
}

pub fn history_text(rows: &[HistoryRow]) -> String {
    if rows.is_empty() {
        return "no alerts recorded\n".to_string();
    }
    let mut table = vec![[
        "TIME".to_string(),
        "STATUS".into(),
        "SEVERITY".into(),
        "ALERT".into(),
        "SUMMARY".into(),
    ]];
    for row in rows {
        table.push([
            row.at.to_string(),
            row.status.clone(),
            row.severity.clone(),
            format!("{}/{}/{}", row.profile, row.task, row.rule),
            row.summary.clone(),
        ]);
    }
    columns(&table)
}

pub fn history_json(rows: &[HistoryRow]) -> serde_json::Value {
    json!(
        rows.iter()
            .map(|r| json!({
                "id": r.id,
                "at": r.at.rfc3339(),
                "host": r.host,
                "profile": r.profile,
                "task": r.task,
                "rule": r.rule,
                "source": r.source,
                "status": r.status,
                "severity": r.severity,
                "summary": r.summary,
                "value": r.value,
                "threshold": r.threshold,
            }))
            .collect::<Vec<_>>()
    )
}

/// `check-config`'s one-line verdict.
pub fn config_summary(config: &Config) -> String {
    let tasks: usize = config.profiles.iter().map(|p| p.tasks.len()).sum();
    format!(
        "{}: ok — {} profile{}, {tasks} task{}, {} notifier{}; state in {}\n",
        config.path.display(),
        config.profiles.len(),
        if config.profiles.len() == 1 { "" } else { "s" },
        if tasks == 1 { "" } else { "s" },
        config.notifiers.len(),
        if config.notifiers.len() == 1 { "" } else { "s" },
        config.state.display()
    )
}

fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
