//! Cron schedules: validation, next fire times, and the crontab that
//! `render-crontab` prints for cron, cron.d and supercronic. Does not run
//! anything on a schedule itself — cron does.

use crate::config::Config;
use chrono::{DateTime, Local, Offset, TimeZone, Timelike};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::de::{Deserialize, Deserializer};
use std::fmt;
use std::path::Path;

/// A validated five-field cron expression (or `@hourly`-style alias) that
/// both Vixie cron and supercronic accept and that fires at least once,
/// judged as Debian's cron runs it: a day field starting with `*` makes
/// both day fields have to match (otherwise either), and when the clock
/// goes back an hour, jobs whose minute or hour starts with `*` run again
/// in the repeated hour while fixed-time jobs do not; when it jumps
/// forward, fixed-time jobs of the skipped hour run right after the jump.
#[derive(Clone)]
pub struct CronSchedule {
    text: String,
    cron: Cron,
    /// Minute or hour starts with `*` (Vixie cron's MIN_STAR/HR_STAR).
    wildcard: bool,
    /// The five fields in the form every cron reads alike (aliases
    /// spelled out, Sunday as 0): what supercronic is given.
    portable: String,
    /// A day field like `*/2` beside a restricted other one: Debian's cron
    /// needs both to match, supercronic's parser either.
    starred_days: bool,
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

/// The instants at which `zone`'s wall clock shows `wall`, earliest first:
/// none in a skipped hour, two in a repeated one. Each is checked by
/// converting it back (chrono's `Local` also calls the first wall time
/// after a repeated hour ambiguous).
fn instants<Tz: TimeZone>(zone: &Tz, wall: chrono::NaiveDateTime) -> Vec<DateTime<Tz>> {
    let candidates: Vec<DateTime<Tz>> = match zone.from_local_datetime(&wall) {
        chrono::LocalResult::Single(t) => vec![t],
        chrono::LocalResult::Ambiguous(a, b) => vec![a, b],
        chrono::LocalResult::None => Vec::new(),
    };
    // Back from each instant through the zone, not through the offset the
    // answer carries (which is how a wrong one gets in).
    let mut found: Vec<DateTime<Tz>> = candidates
        .iter()
        .map(|t| zone.from_utc_datetime(&t.naive_utc()))
        .filter(|t| t.naive_local() == wall)
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Debian cron's aliases and what they stand for.
const ALIASES: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
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
        let fields = if text.starts_with('@') {
            match ALIASES
                .iter()
                .find(|(alias, _)| alias.eq_ignore_ascii_case(&text))
            {
                Some((_, fields)) => fields.to_string(),
                None => {
                    let names: Vec<&str> = ALIASES.iter().map(|(alias, _)| *alias).collect();
                    return Err(format!(
                        "invalid cron schedule {text:?}: the aliases are {} (@reboot is not a schedule monitor can run)",
                        names.join(", ")
                    ));
                }
            }
        } else {
            check_fields(&text)?;
            text.clone()
        };
        let parts: Vec<&str> = fields.split(' ').collect();
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            // Vixie cron: with a day field starting with `*` both must match.
            .dom_and_dow(parts[2].starts_with('*') || parts[4].starts_with('*'))
            .build()
            .parse(&fields)
            .map_err(|e| format!("invalid cron schedule {text:?}: {e}"))?;
        let wildcard = parts[0].starts_with('*') || parts[1].starts_with('*');
        let starred = |field: &str| field.starts_with('*') && field != "*";
        let starred_days = (starred(parts[2]) && !parts[4].starts_with('*'))
            || (starred(parts[4]) && !parts[2].starts_with('*'));
        let portable = [
            parts[0].to_string(),
            parts[1].to_string(),
            parts[2].to_string(),
            parts[3].to_string(),
            sunday_as_zero(parts[4]),
        ]
        .join(" ");
        // croner accepts impossible dates such as `0 0 31 2 *`: demand a next
        // occurrence within the next eight years (leap days included).
        let now = Local::now();
        match cron.find_next_occurrence(&now, false) {
            Ok(next) if next.signed_duration_since(now).num_days() < 8 * 366 => {}
            _ => return Err(format!("cron schedule {text:?} never fires (no such date)")),
        }
        Ok(CronSchedule {
            text,
            cron,
            wildcard,
            portable,
            starred_days,
        })
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
            let mut bounds = Vec::new();
            for bound in range.split('-') {
                let value = match bound.parse::<u32>() {
                    Ok(n) if (lo..=hi).contains(&n) => Some(n),
                    Ok(_) => None,
                    Err(_) => name_value(bound, what),
                };
                let Some(value) = value else {
                    return Err(format!(
                        "invalid cron schedule {text:?}: {bound:?} is not a valid {what} ({lo}-{hi})"
                    ));
                };
                bounds.push(value);
            }
            // Debian's cron sets nothing for a range that runs backwards,
            // and never runs the job: refuse it rather than list a next run.
            if let [first, last] = bounds[..]
                && first > last
            {
                let hint = if what == "day of week" && last == 0 {
                    format!(
                        "cron reads `sun` as 0, so {range} is the empty range {first}-0 and the job never runs: write {}",
                        if first == 6 {
                            "6,0".to_string()
                        } else {
                            format!("{first}-6,0")
                        }
                    )
                } else {
                    format!(
                        "the range {range} runs backwards ({first} > {last}), which cron reads as empty: the job would never run; split it (e.g. {first}-{hi},{lo}-{last})"
                    )
                };
                return Err(format!("invalid cron schedule {text:?}: {hint}"));
            }
        }
    }
    Ok(())
}

/// A day-of-week field with Sunday written as 0 only (`6-7` → `6,0`,
/// `7` → `0`): some crons (supercronic's) read a 7 as 0 and `6-7` as empty.
fn sunday_as_zero(field: &str) -> String {
    field
        .split(',')
        .map(|item| {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, step.parse::<u32>().ok()),
                None => (item, None),
            };
            let bounds = range
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
            match bounds {
                // A range reaching 7 (`5-7`, `1-7/2`): its days, Sunday as 0.
                Some((first, 7)) => {
                    let mut days: Vec<u32> = (first..=7)
                        .step_by(step.unwrap_or(1).max(1) as usize)
                        .map(|d| d % 7)
                        .collect();
                    days.sort_unstable();
                    days.dedup();
                    days.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                }
                None if range == "7" && step.is_none() => "0".to_string(),
                _ => item.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The number cron reads for a month or day name (`jan` 1, `sun` 0).
fn name_value(word: &str, field: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let word = word.to_ascii_lowercase();
    let (names, first) = match field {
        "month" => (&MONTHS[..], 1),
        "day of week" => (&DAYS[..], 0),
        _ => return None,
    };
    let index = names.iter().position(|n| *n == word)?;
    Some(index as u32 + first)
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

    /// The first time strictly after `after` that cron runs the job, in
    /// `after`'s time zone, as Debian's cron handles clock changes (see
    /// [`CronSchedule`]).
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let zone = after.timezone();
        let wall = after.naive_local();
        let minute = chrono::TimeDelta::minutes(1);
        // The next wall clock match, mapped to the instants cron runs it.
        let mut ahead = None;
        let mut at = wall;
        for _ in 0..1000 {
            at = self.next_wall(at)?;
            let found = instants(&zone, at);
            ahead = match found.as_slice() {
                [] if self.wildcard => continue,
                // In the hour the clock skips, a fixed-time job runs as
                // soon as the clock has jumped.
                [] => (1..=24 * 60)
                    .find_map(|n| instants(&zone, at + minute * n).into_iter().next())
                    .filter(|t| *t > *after),
                // Twice when the clock goes back: a wildcard job both times,
                // a fixed-time job the first time only.
                [first, ..] if !self.wildcard => Some(first.clone()).filter(|t| *t > *after),
                runs => runs.iter().find(|t| **t > *after).cloned(),
            };
            if ahead.is_some() {
                break;
            }
        }
        // `after` in the first pass of an hour the clock repeats: a wildcard
        // job meets the repeated wall times again, from the start of the fold.
        let mut again = None;
        let fold = instants(&zone, wall);
        if self.wildcard && fold.len() == 2 && fold[0].offset().fix() == after.offset().fix() {
            let mut start = wall - chrono::TimeDelta::seconds(i64::from(wall.second()));
            for _ in 0..3 * 60 {
                if instants(&zone, start - minute).len() == 2 {
                    start -= minute;
                } else {
                    break;
                }
            }
            if let Some(w) = self.next_wall(start - chrono::TimeDelta::seconds(1))
                && let [_, second] = instants(&zone, w).as_slice()
                && *second > *after
            {
                again = Some(second.clone());
            }
        }
        match (ahead, again) {
            (Some(a), Some(b)) => Some(if b < a { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// The next wall clock time after `at` that the fields match.
    fn next_wall(&self, at: chrono::NaiveDateTime) -> Option<chrono::NaiveDateTime> {
        let as_utc = chrono::Utc.from_utc_datetime(&at);
        self.cron
            .find_next_occurrence(&as_utc, false)
            .ok()
            .map(|t| t.naive_utc())
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
pub fn render_crontab(input: &CrontabInput) -> Result<String, String> {
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
        let mut command = shell_quote(&input.binary.display().to_string());
        // The job's environment, from the env file (cron gives none), read
        // by monitor as systemd reads it.
        if let Some(file) = input.env_file {
            command.push_str(&format!(
                " --env-file {}",
                shell_quote(&file.display().to_string())
            ));
        }
        command.push_str(&format!(
            " --config {}",
            shell_quote(&input.config.path.display().to_string())
        ));
        if let Some(db) = input.db {
            command.push_str(&format!(" --db {}", shell_quote(&db.display().to_string())));
        }
        command.push_str(&format!(" run {}", shell_quote(&profile.name)));
        if input.format != CrontabFormat::Supercronic {
            command.push_str(" --quiet");
        }
        // Debian's cron reads the schedule as written (and as monitor
        // judges it); supercronic gets the form every cron reads alike.
        let schedule = match input.format {
            CrontabFormat::Supercronic if profile.cron.starred_days => {
                return Err(format!(
                    "profile {}: cron \"{}\" has a day field starting with `*` beside a restricted one: Debian's cron runs it when both days match, supercronic when either does. Write the days as lists (e.g. 1,3,5,…,31 and sat) for \"either\", or keep one day field, then render again",
                    profile.name, profile.cron
                ));
            }
            CrontabFormat::Supercronic => profile.cron.portable.clone(),
            _ => profile.cron.text.clone(),
        };
        let line = match input.format {
            CrontabFormat::CronD => format!("{schedule} {} {command}", input.user),
            _ => format!("{schedule} {command}"),
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
    Ok(out)
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
/// of any profile recorded it. `None` (not judged) when no tick recorded
/// it yet: on a host where nothing has run, `list`, `/healthz` and the
/// self check agree that nothing is overdue rather than guess.
pub fn watched_since(
    last_run: Option<crate::clock::Timestamp>,
    first_seen: Option<crate::clock::Timestamp>,
) -> Option<crate::clock::Timestamp> {
    last_run.or(first_seen)
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

    /// Issue 11, item 12: a day field that starts with `*` makes Debian's
    /// cron require both (`*/2` odd days AND Saturday); `either` was used,
    /// and `0 16 */2 * sat` was flagged overdue days before cron's run.
    #[test]
    fn a_day_field_starting_with_a_star_needs_both_days_to_match() {
        let both: CronSchedule = "0 16 */2 * sat".parse().unwrap();
        // Sunday 1 November 2026 is odd but no Saturday; Saturday 7 is both.
        assert_eq!(
            both.next_after(&at("2026-10-31T17:00:00Z")).unwrap(),
            at("2026-11-07T16:00:00Z")
        );
        let starred_weekday: CronSchedule = "0 0 13 * */1".parse().unwrap();
        assert_eq!(
            starred_weekday
                .next_after(&at("2026-11-26T12:00:00Z"))
                .unwrap(),
            at("2026-12-13T00:00:00Z")
        );
    }

    /// `sat-sun` and `Mon-Sun`: cron reads `sun` as 0, the range as empty,
    /// and never runs the job; they were accepted with a next run. Any
    /// range that runs backwards is refused with how to write it.
    #[test]
    fn ranges_cron_reads_as_empty_are_refused_with_the_fix() {
        for (text, fix) in [
            ("0 0 * * sat-sun", "write 6,0"),
            ("0 9 * * Mon-Sun", "write 1-6,0"),
        ] {
            let err = text.parse::<CronSchedule>().unwrap_err();
            assert!(err.contains("cron reads `sun` as 0"), "{err}");
            assert!(err.ends_with(fix), "{err}");
        }
        let err = "0 22-2 * * *".parse::<CronSchedule>().unwrap_err();
        assert!(
            err.contains("runs backwards") && err.contains("22-23,0-2"),
            "{err}"
        );
        for ok in [
            "0 0 * * sat,sun",
            "0 0 * * 6-7",
            "0 9 * * mon-sat",
            "0 0 * nov-dec *",
        ] {
            assert!(ok.parse::<CronSchedule>().is_ok(), "{ok}");
        }
    }

    /// Review: supercronic's parser has no `@midnight`, reads 7 as 0 (so
    /// `6-7` as empty) and `*/2` days as restricted: it is given the form
    /// every cron reads alike.
    #[test]
    fn supercronic_gets_the_schedule_in_the_form_every_cron_reads_alike() {
        for (written, portable) in [
            ("@midnight", "0 0 * * *"),
            ("@weekly", "0 0 * * 0"),
            ("0 0 * * 6-7", "0 0 * * 0,6"),
            ("0 0 * * 5-7", "0 0 * * 0,5,6"),
            ("0 0 * * 1-7/2", "0 0 * * 0,1,3,5"),
            ("0 0 * * 1,7", "0 0 * * 1,0"),
            ("*/5 * * * mon-fri", "*/5 * * * mon-fri"),
        ] {
            let schedule: CronSchedule = written.parse().unwrap();
            assert_eq!(schedule.portable, portable, "{written}");
            assert_eq!(schedule.as_str(), written);
        }
        let both: CronSchedule = "0 16 */2 * sat".parse().unwrap();
        assert!(both.starred_days);
        assert!(!"0 16 * * sat".parse::<CronSchedule>().unwrap().starred_days);
        assert!(
            !"0 16 1,15 * sat"
                .parse::<CronSchedule>()
                .unwrap()
                .starred_days
        );
    }

    #[test]
    fn every_alias_debian_cron_knows_parses() {
        for (alias, fields) in ALIASES {
            let by_alias: CronSchedule = alias.parse().unwrap();
            let by_fields: CronSchedule = fields.parse().unwrap();
            let from = at("2026-11-26T12:34:56Z");
            assert_eq!(
                by_alias.next_after(&from),
                by_fields.next_after(&from),
                "{alias}"
            );
            assert_eq!(by_alias.as_str(), alias);
        }
    }
}
