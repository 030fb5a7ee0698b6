//! What people read: the tick summary, `list`, and `alerts`, as text or
//! JSON. Formats values it is given; computes nothing about health.

use crate::alert::{Status, Transition, Verdict};
use crate::clock::Timestamp;
use crate::config::{Config, Severity};
use crate::remediate::Remediation;
use crate::store::{HistoryRow, RunRow};
use crate::tick::{DeliveryResult, TickReport};
use serde_json::json;
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
                    value["status"] = json!(r.status().map(|s| s.as_str()).unwrap_or("ok"));
                    // Held: a firing alert held, or a breach held still
                    // while the task settles.
                    let settling = matches!(r.verdict, Verdict::Hold { .. })
                        && matches!(result.remediation, Some(Remediation::Settling { .. }));
                    value["held"] = json!(r.held() || settling);
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
        "notes": report.notes,
        "notifications": report.deliveries,
    })
}

/// The tick summary for a person.
pub fn tick_text(report: &TickReport) -> String {
    let mut out = String::new();
    let failing = report.outcome.tasks.iter().filter(|t| !t.healthy).count();
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
    if restarted > 0 {
        parts.push(format!("{restarted} restarted"));
    }
    let state = if parts.is_empty() {
        "all healthy".to_string()
    } else {
        parts.join(", ")
    };
    let _ = writeln!(
        out,
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
    );
    for note in &report.notes {
        let _ = writeln!(out, "  {note}");
    }
    let width = report.tasks.iter().map(|t| t.name.len()).max().unwrap_or(4);
    for (task, result) in report.tasks.iter().zip(&report.outcome.tasks) {
        let breaches: Vec<Severity> = result
            .rules
            .iter()
            .filter_map(|r| match r.verdict {
                Verdict::Breach { severity, .. } => Some(severity),
                _ => None,
            })
            .collect();
        let tag = if result.healthy {
            "ok"
        } else if !breaches.is_empty() && breaches.iter().all(|s| *s < Severity::Critical) {
            "WARN"
        } else {
            "FAIL"
        };
        let checks: Vec<&str> = task
            .observation
            .checks
            .iter()
            .map(|c| c.summary.as_str())
            .collect();
        let _ = writeln!(
            out,
            "  {tag:<4}  {:<width$}  {}",
            task.name,
            checks.join("; ")
        );
        let told = |rule: &crate::evaluate::RuleResult| {
            report
                .outcome
                .outgoing
                .iter()
                .any(|o| o.message.task == task.name && o.message.rule == rule.rule)
        };
        for rule in &result.rules {
            // Clear and held rules of an ok key are noise in the summary
            // (a first scrape holds every delta rule); JSON has them all.
            // A quiet key (resolved, its incident open) is ok to a reader.
            // A breach held still while the task settles after a restart.
            let settling_breach = matches!(rule.verdict, Verdict::Hold { .. })
                && matches!(result.remediation, Some(Remediation::Settling { .. }));
            let interesting = !matches!(rule.verdict, Verdict::Clear { .. } | Verdict::Hold { .. })
                || rule.transition.is_some()
                || rule.status().is_some_and(Status::is_active)
                || settling_breach;
            let implicit_repeat = rule.rule == crate::evaluate::HEALTH_RULE
                && matches!(rule.verdict, Verdict::Breach { .. });
            if !interesting {
                continue;
            }
            let status = match (rule.transition, rule.status()) {
                (Some(Transition::Firing), _) if told(rule) && report.dry_run => {
                    "FIRING (would notify)".to_string()
                }
                (Some(Transition::Firing), _) if told(rule) => "FIRING (notified)".to_string(),
                (Some(Transition::Escalated), _) if told(rule) && report.dry_run => {
                    "ESCALATED (would notify)".to_string()
                }
                (Some(Transition::Escalated), _) if told(rule) => {
                    "ESCALATED (notified)".to_string()
                }
                (Some(Transition::Escalated), _) => "ESCALATED (not notified)".to_string(),
                (Some(Transition::Reminder), _) if told(rule) && report.dry_run => {
                    "still firing (reminder would be sent)".to_string()
                }
                (Some(Transition::Reminder), _) if told(rule) => {
                    "still firing (reminder sent)".to_string()
                }
                (Some(Transition::Reminder), _) => "still firing".to_string(),
                (Some(Transition::Resolved), _) => "RESOLVED".to_string(),
                (Some(Transition::Cleared), Some(Status::Quiet)) => {
                    "clear, not announced".to_string()
                }
                (Some(Transition::Cleared), _) => "cleared before firing".to_string(),
                (Some(Transition::Firing), _)
                    if rule
                        .state
                        .as_ref()
                        .is_some_and(|st| st.opened_at == Some(report.started_at)) =>
                {
                    "FIRING (not notified)".to_string()
                }
                (Some(Transition::Firing), _) => {
                    "fired again (same incident, not notified)".to_string()
                }
                (_, Some(Status::Firing)) if rule.held() => "firing (held)".to_string(),
                (_, status) if settling_breach && !status.is_some_and(Status::is_active) => {
                    "breaching (held)".to_string()
                }
                (_, Some(s)) => s.as_str().to_string(),
                (_, None) => "ok".to_string(),
            };
            let detail = if implicit_repeat {
                String::new()
            } else {
                format!(": {}", rule.verdict.summary())
            };
            let _ = writeln!(
                out,
                "  {:4}  {:<width$}  └ {} {status}{detail}",
                "", "", rule.rule
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
    if !report.skipped_tasks.is_empty() {
        let _ = writeln!(out, "  disabled: {}", report.skipped_tasks.join(", "));
    }
    for line in &report.console {
        let _ = writeln!(out, "{line}");
    }
    for delivery in &report.deliveries {
        match &delivery.result {
            DeliveryResult::Delivered if report.console.contains(&delivery.text) => {}
            DeliveryResult::Delivered => {
                let _ = writeln!(out, "sent to {}: {}", delivery.notifier, delivery.text);
            }
            DeliveryResult::Failed { error, retry_at } => {
                let _ = writeln!(
                    out,
                    "NOT sent to {} ({error}); will retry from {retry_at}: {}",
                    delivery.notifier, delivery.text
                );
            }
            DeliveryResult::GaveUp { error } => {
                let _ = writeln!(
                    out,
                    "GAVE UP sending to {} ({error}): {}",
                    delivery.notifier, delivery.text
                );
            }
            DeliveryResult::WouldSend => {
                let _ = writeln!(
                    out,
                    "would send to {}: {}",
                    delivery.notifier, delivery.text
                );
            }
        }
    }
    out
}

/// What remediation did, in one line.
fn remediation_text(remediation: &Remediation) -> String {
    match remediation {
        Remediation::Planned { summary, .. } => format!("restart planned: {summary}"),
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
        Remediation::Plan { what } => what.clone(),
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

pub fn list_text(rows: &[ProfileListing]) -> String {
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
                run.started_at, run.status, run.summary, run.duration_ms
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
                .map(|t| t.to_string())
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
                    "status": run.status,
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
