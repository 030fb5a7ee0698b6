//! `/healthz`: is every enabled profile keeping to its schedule, does the
//! database read, does jobs.yaml still load; and, as warnings that do not
//! fail it, which notifiers (which Alertmanager URLs) are failing since when.

use super::http::Response;
use super::routes::{Api, Database};
use crate::clock::Timestamp;
use crate::config::{self, Config};
use crate::store::Store;
use serde_json::{Value, json};

impl Api {
    /// 200 when the database reads and no enabled profile is overdue;
    /// 503 naming why otherwise.
    pub(super) fn healthz(&self, database: &mut Database, now: Timestamp) -> Response {
        let current = self.config.current();
        let config = &current.config;
        let path = config.state.display().to_string();
        let mut body = json!({ "database": path, "now": now.rfc3339() });
        let health = match self.read(database, |store| profile_health(store, config, now)) {
            Ok(Some(health)) => health,
            Ok(None) => {
                return unhealthy(
                    body,
                    format!(
                        "the database {path} does not exist yet: no tick has run (is the scheduler running?)"
                    ),
                );
            }
            Err(e) => return unhealthy(body, format!("reading the database {path}: {e:#}")),
        };
        // Notifications failing do not make the host unhealthy, but nobody
        // may be hearing about it: a warning, with the figures.
        let read_backlog = |store: &Store| {
            let backlog = store.backlog()?;
            let mut lines = Vec::new();
            for b in backlog {
                // Which URLs of an Alertmanager cluster are the ones failing.
                let mut failing = Vec::new();
                if let Some(config::NotifierKind::Alertmanager(am)) =
                    config.notifier(&b.notifier).map(|n| &n.kind)
                {
                    for (target, since) in store.failing_targets(&b.notifier)? {
                        if let Some(url) = am
                            .urls
                            .iter()
                            .find(|u| crate::notify::alertmanager::target(u) == target)
                        {
                            failing.push(format!(
                                "{} since {}",
                                crate::notify::alertmanager::shown(url),
                                since.rfc3339()
                            ));
                        }
                    }
                }
                let which = if failing.is_empty() {
                    String::new()
                } else {
                    format!(" at {}", failing.join(", "))
                };
                lines.push(format!(
                    "{} notification{} to {}{which} waiting since {} (last error: {})",
                    b.waiting,
                    if b.waiting == 1 { "" } else { "s" },
                    b.notifier,
                    b.since.rfc3339(),
                    b.error
                ));
            }
            Ok(lines)
        };
        let warnings: Vec<String> = match self.read(database, read_backlog) {
            Ok(Some(lines)) => lines,
            Ok(None) => Vec::new(),
            Err(e) => vec![format!("reading the outbox: {e:#}")],
        };
        let overdue: Vec<&ProfileHealth> = health.iter().filter(|p| p.overdue).collect();
        let mut reasons: Vec<String> = overdue.iter().map(|p| p.reason()).collect();
        if let Some(error) = &current.error {
            reasons.push(format!(
                "jobs.yaml no longer loads (still using the last good one): {error}"
            ));
        }
        merge(
            &mut body,
            json!({
                "profiles": health.iter().map(ProfileHealth::to_json).collect::<Vec<_>>(),
                "overdue": overdue.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
                "warnings": warnings,
            }),
        );
        if reasons.is_empty() {
            merge(&mut body, json!({ "status": "ok" }));
            Response::json(200, &body)
        } else {
            unhealthy(body, reasons.join("; "))
        }
    }
}

/// `/healthz` failing: the body so far, with status and reason.
fn unhealthy(mut body: Value, reason: String) -> Response {
    merge(
        &mut body,
        json!({ "status": "unavailable", "reason": reason }),
    );
    Response::json(503, &body)
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

/// How one configured profile is keeping to its schedule.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ProfileHealth {
    pub(super) name: String,
    cron: String,
    enabled: bool,
    /// When its newest run started.
    pub(super) last_run: Option<Timestamp>,
    /// From when its schedule is judged: its newest run, or (never run)
    /// when it first appeared in jobs.yaml.
    since: Option<Timestamp>,
    /// When it counts as overdue if it does not run again (enabled only).
    overdue_after: Option<Timestamp>,
    pub(super) overdue: bool,
    /// An open maintenance window: its end and reason.
    maintenance: Option<(Timestamp, String)>,
}

impl ProfileHealth {
    /// Why this (overdue) profile makes `/healthz` fail.
    fn reason(&self) -> String {
        match self.last_run {
            Some(last) => format!(
                "profile {} is overdue: its last run started {} (cron \"{}\"), and three fire times have passed since",
                self.name,
                last.rfc3339(),
                self.cron
            ),
            None => format!(
                "profile {} is overdue: it never ran since it appeared in jobs.yaml by {} (cron \"{}\"); is it in the crontab?",
                self.name,
                self.since.map(Timestamp::rfc3339).unwrap_or_default(),
                self.cron
            ),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "profile": self.name,
            "cron": self.cron,
            "enabled": self.enabled,
            "last_run": self.last_run.map(Timestamp::rfc3339),
            "overdue_after": self.overdue_after.map(Timestamp::rfc3339),
            "overdue": self.overdue,
            "maintenance": self.maintenance.as_ref().map(|(until, reason)| {
                json!({ "until": until.rfc3339(), "reason": reason })
            }),
        })
    }
}

/// Each configured profile's last run and whether it is overdue. Disabled
/// profiles are listed but never overdue: nothing is meant to run them. A
/// profile that never ran is judged from when this configuration was
/// loaded, so one added to jobs.yaml but missing from the crontab shows.
pub(super) fn profile_health(
    store: &Store,
    config: &Config,
    now: Timestamp,
) -> anyhow::Result<Vec<ProfileHealth>> {
    let first_seen = store.first_seen()?;
    let mut health = Vec::new();
    for profile in &config.profiles {
        // A run stored by a clock that ran ahead is not the last run.
        let last_run = store.last_run(&profile.name, now)?;
        let since =
            crate::schedule::watched_since(last_run, first_seen.get(&profile.name).copied());
        let overdue_after = since
            .filter(|_| profile.enabled)
            .and_then(|since| profile.cron.overdue_after(since));
        health.push(ProfileHealth {
            name: profile.name.clone(),
            cron: profile.cron.as_str().to_string(),
            enabled: profile.enabled,
            last_run,
            since,
            overdue_after,
            overdue: overdue_after.is_some_and(|after| now > after),
            maintenance: crate::silence::maintenance(&profile.maintenance, now),
        });
    }
    Ok(health)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::CronSchedule;

    fn local(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Timestamp {
        use chrono::TimeZone;
        let at = chrono::Local
            .with_ymd_and_hms(year, month, day, hour, minute, second)
            .single()
            .unwrap();
        Timestamp(at.timestamp_millis())
    }

    #[test]
    fn a_profile_is_overdue_after_its_third_fire_time_since_its_last_run() {
        let minutely: CronSchedule = "* * * * *".parse().unwrap();
        assert_eq!(
            minutely.overdue_after(local(2026, 11, 26, 10, 0, 20)),
            Some(local(2026, 11, 26, 10, 3, 0))
        );
        let hourly: CronSchedule = "0 * * * *".parse().unwrap();
        assert_eq!(
            hourly.overdue_after(local(2026, 11, 26, 10, 0, 1)),
            Some(local(2026, 11, 26, 13, 0, 0))
        );
        // Weekdays at 09:00: a Friday run is overdue on Wednesday, not on
        // Sunday evening.
        let weekdays: CronSchedule = "0 9 * * 1-5".parse().unwrap();
        assert_eq!(
            weekdays.overdue_after(local(2026, 11, 27, 9, 0, 5)),
            Some(local(2026, 12, 2, 9, 0, 0))
        );
    }
}
