//! Wall-clock time as the tick sees it. The only place that reads the
//! system clock; everything else takes a [`Timestamp`] as an argument.

use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// How early a tick may start and still count as on time.
pub const TICK_SLACK_MS: i64 = 1_000;

/// A stored time later than now by more than this was written by a clock
/// that ran ahead: it is not taken as a last run, a notification or a
/// restart that happened.
pub const FUTURE_SLACK_MS: i64 = 5 * 60_000;

impl Timestamp {
    pub fn from_secs(secs: i64) -> Self {
        Timestamp(secs * 1000)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_millis(self, millis: i64) -> Self {
        Timestamp(self.0.saturating_add(millis))
    }

    /// Milliseconds from `earlier` to `self` (negative if the clock went back).
    pub fn since(self, earlier: Timestamp) -> i64 {
        self.0 - earlier.0
    }

    /// Whether at least `millis` have passed since `earlier`, give or take
    /// the second cron's start times jitter by: a `for: 180s` or a 5 min
    /// cooldown is met on the tick 180 s or 5 min later even when that tick
    /// started a few milliseconds early.
    pub fn reached(self, earlier: Timestamp, millis: i64) -> bool {
        self.since(earlier).saturating_add(TICK_SLACK_MS) >= millis
    }

    fn to_offset_date_time(self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).ok()
    }

    /// RFC 3339 in UTC, for machines (JSON, webhooks).
    pub fn rfc3339(self) -> String {
        self.to_offset_date_time()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| self.0.to_string())
    }

    /// `2026-11-26 20:15:00` in the local zone, for people.
    /// Local wall clock time, at the UTC offset of that instant (a time
    /// after the next clock change shows as cron will run it).
    pub fn local(self) -> String {
        match self.to_chrono() {
            Some(t) => t
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            None => self.0.to_string(),
        }
    }

    /// [`Timestamp::local`], with its UTC offset when that differs from
    /// `now`'s (around a clock change, the same wall time comes twice).
    pub fn local_near(self, now: Timestamp) -> String {
        use chrono::Offset;
        let offset = |t: Timestamp| {
            t.to_chrono()
                .map(|t| t.with_timezone(&chrono::Local).offset().fix())
        };
        match (offset(self), offset(now)) {
            (Some(mine), Some(theirs)) if mine != theirs => format!("{} ({mine})", self.local()),
            _ => self.local(),
        }
    }

    pub fn to_chrono(self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp_millis(self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.local())
    }
}

/// The environment variable that pins "now" for tests and replays: Unix
/// seconds (`1764180000`, fractions allowed) or RFC 3339.
pub const NOW_VARIABLE: &str = "MONITOR_NOW";

/// The current time, or the time pinned by `$MONITOR_NOW`.
pub fn now() -> Result<Timestamp, String> {
    let (now, source) = match std::env::var(NOW_VARIABLE) {
        Ok(text) if !text.trim().is_empty() => (
            parse(text.trim()).ok_or_else(|| {
                format!("{NOW_VARIABLE}={text:?} is neither Unix seconds nor an RFC 3339 time")
            })?,
            format!("{NOW_VARIABLE}={}", text.trim()),
        ),
        _ => (system_now(), "the system clock".to_string()),
    };
    // Retention, cooldowns and schedules all count from now: a clock at
    // 1970 is a dead RTC battery or a typo, not a time to act on.
    if now.0 < EARLIEST {
        return Err(format!(
            "{source} says {}, before 2000: that is no real time (a dead clock battery, or a typo); set the clock (timedatectl, NTP) and run again",
            now.rfc3339()
        ));
    }
    Ok(now)
}

/// 2000-01-01T00:00:00Z: no tick is older.
const EARLIEST: i64 = 946_684_800_000;

pub fn system_now() -> Timestamp {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

/// Parses Unix seconds or RFC 3339.
pub fn parse(text: &str) -> Option<Timestamp> {
    if let Ok(secs) = text.parse::<f64>() {
        return Some(Timestamp((secs * 1000.0).round() as i64));
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(|t| Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

/// `3m 20s`-style age for people.
pub fn human_duration(millis: i64) -> String {
    let secs = millis.max(0) / 1000;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h {}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d {}h", secs / 86_400, (secs % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seconds_and_rfc3339() {
        assert_eq!(parse("1764180000"), Some(Timestamp(1_764_180_000_000)));
        assert_eq!(parse("1764180000.5"), Some(Timestamp(1_764_180_000_500)));
        assert_eq!(
            parse("2026-11-26T18:00:00Z"),
            Some(Timestamp(1_795_716_000_000))
        );
        assert_eq!(parse("yesterday"), None);
        assert_eq!(
            Timestamp(1_795_716_000_000).rfc3339(),
            "2026-11-26T18:00:00Z"
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(59_000), "59s");
        assert_eq!(human_duration(200_000), "3m 20s");
        assert_eq!(human_duration(7_500_000), "2h 5m");
    }
}
