//! Silences and maintenance windows: when a task's notifications and
//! restarts are held. Pure; the store keeps silences, jobs.yaml the
//! windows.

use crate::alert::AlertKey;
use crate::clock::Timestamp;
use crate::config::{Duration, Profile, Task, Text};
use crate::schedule::CronSchedule;
use serde::Deserialize;
use serde::Serialize;

/// `maintenance: [{ cron: "0 3 * * sun", duration: 2h, reason: … }]`: from
/// each fire time of `cron`, for `duration`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    pub cron: CronSchedule,
    pub duration: Duration,
    #[serde(default)]
    pub reason: Option<Text>,
}

/// `monitor silence add`: hold a task's (or one rule's) notifications and
/// restarts until `ends_at`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Silence {
    pub id: i64,
    /// `None`: the task in every profile.
    pub profile: Option<String>,
    pub task: String,
    /// `None`: every rule of the task.
    pub rule: Option<String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub reason: String,
    pub created_by: String,
}

impl Silence {
    /// Whether it holds `key` at `now`.
    pub fn covers(&self, key: &AlertKey, now: Timestamp) -> bool {
        self.starts_at <= now
            && now < self.ends_at
            && self.task == key.task
            && self.profile.as_ref().is_none_or(|p| *p == key.profile)
            && self
                .rule
                .as_ref()
                .is_none_or(|r| rule_matches(r, &key.rule))
    }

    /// Whether it is of task `task` in profile `profile` (all its rules
    /// or some), whatever the time.
    pub fn of_task(&self, profile: &str, task: &str) -> bool {
        self.task == task && self.profile.as_deref().is_none_or(|p| p == profile)
    }

    /// What it holds of its task, for a line about that task: `silenced`,
    /// or `RULE silenced`.
    pub fn held(&self) -> String {
        match &self.rule {
            Some(rule) => format!("{rule} silenced"),
            None => "silenced".to_string(),
        }
    }

    /// Whether it holds the whole task (every rule) at `now`.
    pub fn covers_task(&self, profile: &str, task: &str, now: Timestamp) -> bool {
        self.rule.is_none() && self.covers(&AlertKey::new(profile, task, ""), now)
    }

    /// What it covers, for people: `minutely/api/health` or `*/api`.
    pub fn target(&self) -> String {
        let mut target = format!("{}/{}", self.profile.as_deref().unwrap_or("*"), self.task);
        if let Some(rule) = &self.rule {
            target.push('/');
            target.push_str(rule);
        }
        target
    }

    fn why(&self) -> String {
        format!(
            "silenced until {} by {}: {}",
            self.ends_at, self.created_by, self.reason
        )
    }
}

/// A rule's silence also covers its `:no-data` twin.
fn rule_matches(silenced: &str, rule: &str) -> bool {
    rule == silenced || rule.strip_suffix(crate::evaluate::NO_DATA_SUFFIX) == Some(silenced)
}

/// The end of the maintenance window open at `now`, and its reason.
/// Schedules read in local time, as cron reads them.
pub fn maintenance(windows: &[Maintenance], now: Timestamp) -> Option<(Timestamp, String)> {
    let at = now.to_chrono()?.with_timezone(&chrono::Local);
    windows.iter().find_map(|window| {
        let began = window.cron.previous_at_or_before(&at)?;
        let ends = Timestamp(began.timestamp_millis()).plus_millis(window.duration.as_millis());
        (now < ends).then(|| {
            let reason = window
                .reason
                .as_ref()
                .map(|r| r.0.clone())
                .unwrap_or_else(|| "scheduled".into());
            (ends, reason)
        })
    })
}

/// Why a task's notifications and restarts are held as a whole now, if
/// they are: a maintenance window of its profile or its own, or a silence
/// of the whole task.
pub fn task_hold(
    profile: &Profile,
    task: &Task,
    silences: &[Silence],
    now: Timestamp,
) -> Option<String> {
    if let Some((ends, reason)) =
        maintenance(&profile.maintenance, now).or_else(|| maintenance(&task.maintenance, now))
    {
        return Some(format!("maintenance until {ends}: {reason}"));
    }
    silences
        .iter()
        .find(|s| s.covers_task(&profile.name, &task.name, now))
        .map(Silence::why)
}

/// Why notifications of `key` are held now, if they are.
pub fn key_hold(
    task_hold: Option<&str>,
    silences: &[Silence],
    key: &AlertKey,
    now: Timestamp,
) -> Option<String> {
    task_hold.map(str::to_string).or_else(|| {
        silences
            .iter()
            .find(|s| s.covers(key, now))
            .map(Silence::why)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence(rule: Option<&str>) -> Silence {
        Silence {
            id: 1,
            profile: Some("p".into()),
            task: "api".into(),
            rule: rule.map(String::from),
            starts_at: Timestamp(1_000),
            ends_at: Timestamp(2_000),
            reason: "deploy".into(),
            created_by: "ops".into(),
        }
    }

    #[test]
    fn a_silence_covers_its_task_rule_and_time() {
        let whole = silence(None);
        let key = AlertKey::new("p", "api", "health");
        assert!(whole.covers(&key, Timestamp(1_500)));
        assert!(!whole.covers(&key, Timestamp(2_000)), "ends at ends_at");
        assert!(!whole.covers(&key, Timestamp(999)));
        assert!(!whole.covers(&AlertKey::new("q", "api", "health"), Timestamp(1_500)));
        assert!(!whole.covers(&AlertKey::new("p", "web", "health"), Timestamp(1_500)));
        let one = silence(Some("latency"));
        assert!(one.covers(&AlertKey::new("p", "api", "latency"), Timestamp(1_500)));
        assert!(one.covers(
            &AlertKey::new("p", "api", "latency:no-data"),
            Timestamp(1_500)
        ));
        assert!(!one.covers(&key, Timestamp(1_500)));
        assert!(!one.covers_task("p", "api", Timestamp(1_500)));
        assert_eq!(one.target(), "p/api/latency");
    }

    #[test]
    fn maintenance_windows_open_at_each_fire_time_for_their_duration() {
        let window: Maintenance =
            serde_yaml::from_str("{ cron: \"0 3 * * *\", duration: 2h, reason: backups }").unwrap();
        use chrono::TimeZone;
        let at = |text: &str| {
            let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").unwrap();
            Timestamp(
                chrono::Local
                    .from_local_datetime(&naive)
                    .unwrap()
                    .timestamp_millis(),
            )
        };
        let windows = [window];
        assert_eq!(maintenance(&windows, at("2026-11-26T02:59:00")), None);
        let open = maintenance(&windows, at("2026-11-26T03:00:00"));
        assert_eq!(open, Some((at("2026-11-26T05:00:00"), "backups".into())));
        assert!(maintenance(&windows, at("2026-11-26T04:59:59")).is_some());
        assert_eq!(maintenance(&windows, at("2026-11-26T05:00:00")), None);
    }
}
