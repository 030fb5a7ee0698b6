//! Signal history: each tick's numbers, one row per series and hour
//! (`signal_hours`, migration 0007). An hour's row holds its samples while
//! the full-resolution window lasts and its min/max/sum/count for as long
//! as the hourly window does; retention empties, then deletes, rows in
//! bounded batches.

use super::Store;
use crate::clock::Timestamp;
use anyhow::Result;
use rusqlite::{Transaction, params};

const HOUR_MS: i64 = 3_600_000;

/// The series of a task's health (1 healthy, 0 not) each tick records:
/// the status page's uptime bars and badges.
pub const HEALTHY: &str = "healthy";
/// Bytes a sample takes in an hour's `data`: u16 seconds, f64 value.
const SAMPLE_BYTES: usize = 10;

/// One number a tick recorded for a task.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalSample {
    pub task: String,
    pub signal: String,
    pub value: f64,
}

/// A point of a series: one sample, or a bucket's summary.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Point {
    /// The sample's time, or the bucket's start.
    pub at: Timestamp,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    /// Samples summarised (1 for a raw sample).
    pub count: i64,
}

impl Point {
    /// One raw sample.
    pub fn sample(at: Timestamp, value: f64) -> Point {
        Point {
            at,
            min: value,
            avg: value,
            max: value,
            count: 1,
        }
    }
}

/// A recorded series of a task, with its newest sample.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesInfo {
    pub profile: String,
    pub task: String,
    pub signal: String,
    pub last_at: Timestamp,
    pub last: f64,
}

/// How long history keeps what (`defaults.history`).
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// Every sample, for this long.
    pub full_ms: i64,
    /// Each hour's min/avg/max, for this long.
    pub hourly_ms: i64,
}

/// Appends this tick's samples to their hours' rows (inside the tick's
/// transaction).
pub(super) fn record(
    tx: &Transaction<'_>,
    profile: &str,
    at: Timestamp,
    samples: &[SignalSample],
) -> Result<()> {
    let hour = at.0.div_euclid(HOUR_MS) * HOUR_MS;
    let second = u16::try_from((at.0 - hour) / 1000).unwrap_or(u16::MAX);
    // The profile's series ids, read once: a new one is added as met.
    let mut ids: std::collections::HashMap<(String, String), i64> = tx
        .prepare_cached("SELECT task, signal, id FROM signal_series WHERE profile = ?1")?
        .query_map([profile], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for sample in samples.iter().filter(|s| s.value.is_finite()) {
        let key = (sample.task.clone(), sample.signal.clone());
        let series = match ids.get(&key) {
            Some(id) => *id,
            None => {
                tx.prepare_cached(
                    "INSERT INTO signal_series (profile, task, signal) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![profile, sample.task, sample.signal])?;
                let id = tx.last_insert_rowid();
                ids.insert(key, id);
                id
            }
        };
        let mut data = [0u8; SAMPLE_BYTES];
        data[..2].copy_from_slice(&second.to_le_bytes());
        data[2..].copy_from_slice(&sample.value.to_le_bytes());
        tx.prepare_cached(
            "INSERT INTO signal_hours (series, hour, data, min, max, sum, count)
             VALUES (?1, ?2, ?3, ?4, ?4, ?4, 1)
             ON CONFLICT (series, hour) DO UPDATE SET
               data = CAST(coalesce(data, x'') || excluded.data AS BLOB),
               min = min(min, excluded.min), max = max(max, excluded.max),
               sum = sum + excluded.sum, count = count + 1",
        )?
        .execute(params![series, hour, &data[..], sample.value])?;
    }
    Ok(())
}

/// The samples an hour's `data` holds, in time order.
fn samples(hour: i64, data: &[u8]) -> Vec<(Timestamp, f64)> {
    let mut out: Vec<(Timestamp, f64)> = data
        .chunks_exact(SAMPLE_BYTES)
        .map(|chunk| {
            let second = u16::from_le_bytes([chunk[0], chunk[1]]);
            let mut value = [0u8; 8];
            value.copy_from_slice(&chunk[2..]);
            (
                Timestamp(hour + i64::from(second) * 1000),
                f64::from_le_bytes(value),
            )
        })
        .collect();
    out.sort_by_key(|(at, _)| at.0);
    out
}

impl Store {
    /// Every recorded series (of `task`, of `profile`, when given), with
    /// its newest sample, by profile, task and signal.
    pub fn signal_series(
        &self,
        profile: Option<&str>,
        task: Option<&str>,
    ) -> Result<Vec<SeriesInfo>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT s.profile, s.task, s.signal, h.hour, h.data, h.max
             FROM signal_series s
             JOIN signal_hours h ON h.series = s.id
              AND h.hour = (SELECT max(hour) FROM signal_hours WHERE series = s.id)
             WHERE (?1 IS NULL OR s.profile = ?1) AND (?2 IS NULL OR s.task = ?2)
             ORDER BY s.profile, s.task, s.signal",
        )?;
        let rows = statement.query_map(params![profile, task], |r| {
            let hour: i64 = r.get(3)?;
            let data: Option<Vec<u8>> = r.get(4)?;
            let max: f64 = r.get(5)?;
            let last = data
                .as_deref()
                .and_then(|d| samples(hour, d).last().copied())
                .unwrap_or((Timestamp(hour), max));
            Ok(SeriesInfo {
                profile: r.get(0)?,
                task: r.get(1)?,
                signal: r.get(2)?,
                last_at: last.0,
                last: last.1,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A series from `since` to `until`: its samples when `step` is `None`
    /// and the window still holds them (hourly summaries otherwise), or
    /// summaries of `step` milliseconds each. Buckets of an hour or more
    /// are made of the hourly summaries; shorter ones need the samples.
    pub fn signal_points(
        &self,
        profile: &str,
        task: &str,
        signal: &str,
        since: Timestamp,
        until: Timestamp,
        step_ms: Option<i64>,
    ) -> Result<Vec<Point>> {
        let first_hour = since.0.div_euclid(HOUR_MS) * HOUR_MS;
        let mut statement = self.conn.prepare_cached(
            "SELECT h.hour, h.data, h.min, h.max, h.sum, h.count
             FROM signal_hours h JOIN signal_series s ON s.id = h.series
             WHERE s.profile = ?1 AND s.task = ?2 AND s.signal = ?3
               AND h.hour >= ?4 AND h.hour <= ?5
             ORDER BY h.hour",
        )?;
        let hours = statement
            .query_map(params![profile, task, signal, first_hour, until.0], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<Vec<u8>>>(1)?,
                    r.get::<_, f64>(2)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, f64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let within = |at: Timestamp| at.0 >= since.0 && at.0 <= until.0;
        let hourly = |hour: i64, min: f64, max: f64, sum: f64, count: i64| Point {
            at: Timestamp(hour),
            min,
            avg: sum / count.max(1) as f64,
            max,
            count,
        };
        let step = step_ms.filter(|s| *s > 0);
        let raw = step.is_none_or(|s| s < HOUR_MS);
        let mut points: Vec<Point> = Vec::new();
        for (hour, data, min, max, sum, count) in hours {
            let data: Option<Vec<u8>> = data.filter(|_| raw);
            match data {
                Some(data) => points.extend(
                    samples(hour, &data)
                        .into_iter()
                        .filter(|(at, _)| within(*at))
                        .map(|(at, value)| Point::sample(at, value)),
                ),
                None => points.push(hourly(hour, min, max, sum, count)),
            }
        }
        Ok(match step {
            None => points,
            Some(step) => buckets(points, step),
        })
    }

    /// Retention of signal history, at most `batch` rows: hours past the
    /// full window lose their samples, hours past the hourly window go,
    /// and so do series left with no hour. Returns the rows changed.
    pub fn prune_signals(
        &mut self,
        now: Timestamp,
        windows: Windows,
        batch: usize,
    ) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let limit = batch as i64;
        let hourly_cutoff = now.0 - windows.hourly_ms;
        // An hour is emptied once all of it is older than the window.
        let full_cutoff = now.0 - windows.full_ms - HOUR_MS;
        // Each series' oldest hour is one step down its primary key: the
        // series with hours past the window, then their ranges.
        let due: Vec<i64> = tx
            .prepare_cached(
                "SELECT id FROM signal_series s
                 WHERE (SELECT min(hour) FROM signal_hours WHERE series = s.id) < ?1",
            )?
            .query_map([hourly_cutoff - HOUR_MS], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut changed = 0;
        for series in due {
            if changed >= batch {
                break;
            }
            changed += tx
                .prepare_cached("DELETE FROM signal_hours WHERE series = ?1 AND hour < ?2")?
                .execute(params![series, hourly_cutoff - HOUR_MS])?;
        }
        changed += tx.execute(
            "UPDATE signal_hours SET data = NULL WHERE (series, hour) IN
               (SELECT series, hour FROM signal_hours WHERE hour < ?1 AND data IS NOT NULL
                ORDER BY hour LIMIT ?2)",
            params![full_cutoff, limit],
        )?;
        if changed > 0 {
            changed += tx.execute(
                "DELETE FROM signal_series WHERE id IN (SELECT id FROM signal_series s
                   WHERE NOT EXISTS (SELECT 1 FROM signal_hours h WHERE h.series = s.id) LIMIT ?1)",
                [limit],
            )?;
        }
        tx.commit()?;
        Ok(changed)
    }
}

/// Points summarised into buckets of `step` ms (aligned to the epoch).
fn buckets(points: Vec<Point>, step: i64) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::new();
    for point in points {
        let start = point.at.0.div_euclid(step) * step;
        match out.last_mut() {
            Some(last) if last.at.0 == start => {
                let total = last.avg * last.count as f64 + point.avg * point.count as f64;
                last.count += point.count;
                last.min = last.min.min(point.min);
                last.max = last.max.max(point.max);
                last.avg = total / last.count.max(1) as f64;
            }
            _ => out.push(Point {
                at: Timestamp(start),
                ..point
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> Timestamp {
        Timestamp(1_800_000_000_000 + minute * 60_000)
    }

    fn sample(value: f64) -> SignalSample {
        SignalSample {
            task: "rpc".into(),
            signal: "lag".into(),
            value,
        }
    }

    fn tick(store: &mut Store, minute: i64, value: f64) {
        let tx = store.conn.transaction().unwrap();
        record(&tx, "p", at(minute), &[sample(value)]).unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn samples_come_back_raw_then_as_hourly_summaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("m.db")).unwrap();
        for minute in 0..180 {
            tick(&mut store, minute, minute as f64);
        }
        let raw = store
            .signal_points("p", "rpc", "lag", at(0), at(179), None)
            .unwrap();
        assert_eq!(raw.len(), 180);
        assert_eq!((raw[0].at, raw[0].avg), (at(0), 0.0));
        assert_eq!((raw[179].at, raw[179].avg), (at(179), 179.0));
        let hourly = store
            .signal_points("p", "rpc", "lag", at(0), at(179), Some(HOUR_MS))
            .unwrap();
        let counts: i64 = hourly.iter().map(|p| p.count).sum();
        assert_eq!(counts, 180, "{hourly:?}");
        let five = store
            .signal_points("p", "rpc", "lag", at(0), at(179), Some(300_000))
            .unwrap();
        assert!(five.iter().all(|p| p.count <= 5), "{five:?}");
        assert_eq!(five.iter().map(|p| p.count).sum::<i64>(), 180);
        // Past the full window, an hour keeps its summary only.
        let windows = Windows {
            full_ms: 3_600_000,
            hourly_ms: 90 * 86_400_000,
        };
        while store.prune_signals(at(300), windows, 2).unwrap() > 0 {}
        let after = store
            .signal_points("p", "rpc", "lag", at(0), at(179), None)
            .unwrap();
        assert!(
            after.len() < 180 && after.iter().any(|p| p.count == 60),
            "{after:?}"
        );
        assert_eq!(after.iter().map(|p| p.count).sum::<i64>(), 180);
        let summary = after.iter().find(|p| p.count == 60).unwrap();
        assert_eq!(
            (summary.min, summary.max),
            (summary.avg - 29.5, summary.avg + 29.5)
        );
        // Past the hourly window, the rows and the series go.
        while store
            .prune_signals(at(300 + 90 * 1440), windows, 2)
            .unwrap()
            > 0
        {}
        assert!(store.signal_series(None, None).unwrap().is_empty());
    }
}
