//! Cron schedules: validation, next fire times, and the crontab that
//! `render-crontab` prints for cron, cron.d and supercronic. Does not run
//! anything on a schedule itself — cron does.

use crate::config::Config;
use chrono::{DateTime, Local, TimeZone};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::de::{Deserialize, Deserializer};
use std::fmt;
use std::path::Path;

/// A validated five-field cron expression (or `@hourly`-style alias) that
/// both Vixie cron and supercronic accept and that fires at least once.
#[derive(Clone)]
pub struct CronSchedule {
    text: String,
    cron: Cron,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.text)
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const ALIASES: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

impl std::str::FromStr for CronSchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.starts_with('@') {
            if !ALIASES.contains(&text.as_str()) {
                return Err(format!(
                    "invalid cron schedule {text:?}: the aliases are {} (@reboot is not a schedule monitor can run)",
                    ALIASES.join(", ")
                ));
            }
        } else {
            check_fields(&text)?;
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&text)
            .map_err(|e| format!("invalid cron schedule {text:?}: {e}"))?;
        // croner accepts impossible dates such as `0 0 31 2 *`: demand a next
        // occurrence within the next eight years (leap days included).
        let now = Local::now();
        match cron.find_next_occurrence(&now, false) {
            Ok(next) if next.signed_duration_since(now).num_days() < 8 * 366 => {}
            _ => return Err(format!("cron schedule {text:?} never fires (no such date)")),
        }
        Ok(CronSchedule { text, cron })
    }
}

/// Checks each field against what Debian's cron accepts: numbers in range,
/// `*`, lists, ranges, steps and month/day names — no `L`, `W`, `#` or `?`.
fn check_fields(text: &str) -> Result<(), String> {
    let fields: Vec<&str> = text.split(' ').collect();
    if fields.len() != 5 {
        return Err(format!(
            "invalid cron schedule {text:?}: it has {} fields; write five (minute hour day-of-month month day-of-week), e.g. \"*/5 * * * *\"",
            fields.len()
        ));
    }
    for (field, (what, lo, hi)) in fields.iter().zip(FIELDS) {
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (item, None),
            };
            if let Some(step) = step
                && step.parse::<u32>().map_or(true, |n| n == 0 || n > hi)
            {
                return Err(format!(
                    "invalid cron schedule {text:?}: step {step:?} in the {what} field"
                ));
            }
            if range == "*" {
                continue;
            }
            for bound in range.split('-') {
                let ok = match bound.parse::<u32>() {
                    Ok(n) => (lo..=hi).contains(&n),
                    Err(_) => is_name(bound, what),
                };
                if !ok {
                    return Err(format!(
                        "invalid cron schedule {text:?}: {bound:?} is not a valid {what} ({lo}-{hi})"
                    ));
                }
            }
        }
    }
    Ok(())
}

fn is_name(word: &str, field: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let word = word.to_ascii_lowercase();
    match field {
        "month" => MONTHS.contains(&word.as_str()),
        "day of week" => DAYS.contains(&word.as_str()),
        _ => false,
    }
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::config::values::parsed(d, |text| text.parse())
    }
}

impl CronSchedule {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first fire time strictly after `after`.
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.cron.find_next_occurrence(after, false).ok()
    }

    /// The time between two runs around `at` (cron schedules need not be
    /// regular: the gap after the next fire time).
    pub fn interval_after<Tz: TimeZone>(&self, at: &DateTime<Tz>) -> Option<std::time::Duration> {
        let next = self.next_after(at)?;
        let after = self.next_after(&next)?;
        (after - next).to_std().ok()
    }

    /// When a profile whose newest run started at `last` becomes overdue:
    /// more than two runs after the one it next owes, i.e. at its third
    /// fire time after `last` (local time, as cron reads schedules).
    /// Counting fire times rather than multiplying one interval keeps
    /// irregular schedules (weekdays only, 09:00 daily) right.
    pub fn overdue_after(&self, last: crate::clock::Timestamp) -> Option<crate::clock::Timestamp> {
        let mut at = last.to_chrono()?.with_timezone(&chrono::Local);
        for _ in 0..3 {
            at = self.next_after(&at)?;
        }
        Some(crate::clock::Timestamp(at.timestamp_millis()))
    }

    /// Whether a profile is overdue at `now`, judged from [`watched_since`].
    pub fn overdue_from(
        &self,
        since: Option<crate::clock::Timestamp>,
        now: crate::clock::Timestamp,
    ) -> bool {
        since.is_some_and(|since| self.overdue(since, now))
    }

    /// Whether a profile whose last run began at `last` is overdue at `now`.
    pub fn overdue(&self, last: crate::clock::Timestamp, now: crate::clock::Timestamp) -> bool {
        self.overdue_after(last).is_some_and(|after| now > after)
    }

    /// The last fire time at or before `at`.
    pub fn previous_at_or_before<Tz: TimeZone>(&self, at: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.cron.find_previous_occurrence(at, true).ok()
    }
}

/// The crontab flavours `render-crontab` can print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CrontabFormat {
    /// For supercronic (the systemd unit in deploy/): no user field.
    Supercronic,
    /// For `crontab -` (a user's crontab): no user field, output silenced.
    Cron,
    /// For /etc/cron.d/monitor: a user field, output silenced.
    #[value(name = "cron.d")]
    CronD,
}

/// What goes into each crontab line besides the schedule.
pub struct CrontabInput<'a> {
    pub binary: &'a Path,
    pub config: &'a Config,
    pub format: CrontabFormat,
    pub user: &'a str,
    /// `--db` given to render-crontab, passed on to every run.
    pub db: Option<&'a Path>,
    /// `--env-file`: every job sources it before it runs.
    pub env_file: Option<&'a Path>,
}

/// Renders one line per enabled profile, with absolute paths and a
/// generated-file header.
pub fn render_crontab(input: &CrontabInput) -> String {
    let mut out = String::new();
    out.push_str("# Generated by `monitor render-crontab`: do not edit by hand.\n");
    out.push_str(&format!(
        "# Source: {} — edit it, then re-render (or restart the monitoring unit).\n",
        input.config.path.display()
    ));
    if input.format != CrontabFormat::Supercronic {
        out.push_str(
            "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
        );
    }
    for profile in &input.config.profiles {
        if !profile.enabled {
            out.push_str(&format!(
                "# profile {} is disabled (enabled: false)\n",
                profile.name
            ));
            continue;
        }
        let mut command = match input.env_file {
            // The job's environment, from the env file (cron gives none).
            Some(file) => format!(
                "set -a; . {}; set +a; exec ",
                shell_quote(&file.display().to_string())
            ),
            None => String::new(),
        };
        command.push_str(&format!(
            "{} --config {}",
            shell_quote(&input.binary.display().to_string()),
            shell_quote(&input.config.path.display().to_string())
        ));
        if let Some(db) = input.db {
            command.push_str(&format!(" --db {}", shell_quote(&db.display().to_string())));
        }
        command.push_str(&format!(" run {}", shell_quote(&profile.name)));
        if input.format != CrontabFormat::Supercronic {
            command.push_str(" --quiet");
        }
        let line = match input.format {
            CrontabFormat::CronD => format!("{} {} {}", profile.cron, input.user, command),
            _ => format!("{} {}", profile.cron, command),
        };
        // cron treats `%` as a newline in the command part; supercronic
        // passes the command to sh as written (a `\%` would stay).
        if input.format == CrontabFormat::Supercronic {
            out.push_str(&line);
        } else {
            out.push_str(&line.replace('%', "\\%"));
        }
        out.push('\n');
    }
    out
}

/// Quotes a word for /bin/sh when it holds anything but safe characters.
pub(crate) fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// From when a profile's schedule is judged: its newest run; before its
/// first run, when it first appeared (enabled) in jobs.yaml, as the ticks
/// of any profile recorded it; when nothing was recorded (no tick ran on
/// this host), the last change of jobs.yaml (it was there since).
pub fn watched_since(
    last_run: Option<crate::clock::Timestamp>,
    first_seen: Option<crate::clock::Timestamp>,
    config_path: &Path,
) -> Option<crate::clock::Timestamp> {
    last_run.or(first_seen).or_else(|| {
        let modified = std::fs::metadata(config_path).ok()?.modified().ok()?;
        let millis = modified
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_millis();
        Some(crate::clock::Timestamp(i64::try_from(millis).ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn accepts_what_debian_cron_accepts() {
        for ok in [
            "* * * * *",
            "*/5 * * * *",
            "0 * * * *",
            "3,23,43 * * * *",
            "0 9-17 * * mon-fri",
            "0 0 1 jan *",
            "@hourly",
            "@daily",
            "0 0 * * 7",
        ] {
            assert!(
                ok.parse::<CronSchedule>().is_ok(),
                "{ok} should be accepted"
            );
        }
    }

    #[test]
    fn rejects_bad_fields_with_the_reason() {
        let err = "61 * * * *".parse::<CronSchedule>().unwrap_err();
        assert!(err.contains("\"61\" is not a valid minute"), "{err}");
        assert!(
            "* * * *"
                .parse::<CronSchedule>()
                .unwrap_err()
                .contains("4 fields")
        );
        assert!("0 0 L * *".parse::<CronSchedule>().is_err());
        assert!("*/0 * * * *".parse::<CronSchedule>().is_err());
        assert!("@reboot".parse::<CronSchedule>().is_err());
        let err = "0 0 31 2 *".parse::<CronSchedule>().unwrap_err();
        assert!(err.contains("never fires"), "{err}");
    }

    #[test]
    fn next_fire_times() {
        let every_five: CronSchedule = "*/5 * * * *".parse().unwrap();
        assert_eq!(
            every_five.next_after(&at("2026-11-26T20:07:30Z")).unwrap(),
            at("2026-11-26T20:10:00Z")
        );
        let hourly: CronSchedule = "0 * * * *".parse().unwrap();
        assert_eq!(
            hourly.next_after(&at("2026-11-26T20:00:00Z")).unwrap(),
            at("2026-11-26T21:00:00Z")
        );
        // Vixie cron: a restricted day-of-month OR a restricted day-of-week.
        let either: CronSchedule = "0 0 1 * mon".parse().unwrap();
        assert_eq!(
            either.next_after(&at("2026-11-26T12:00:00Z")).unwrap(),
            at("2026-11-30T00:00:00Z")
        );
    }
}
