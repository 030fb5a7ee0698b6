//! Reading the signal history: what `monitor history` prints and
//! `/v1/signals` answers, from the rows each tick records
//! ([`crate::store::SignalSample`]).

use crate::clock::Timestamp;
use crate::config::format_value;
use crate::store::{HEALTHY, Point, SeriesInfo, Store};
use anyhow::Result;
use serde_json::json;
use std::fmt::Write;

/// What is asked of the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub profile: Option<String>,
    pub task: Option<String>,
    pub signal: Option<String>,
    pub since: Timestamp,
    pub until: Timestamp,
    /// Summarise into buckets of this many milliseconds.
    pub step_ms: Option<i64>,
}

/// Reads `since` or `until` (named `what` in its errors) as a time (Unix
/// seconds, RFC 3339) or as a span back from `now` (`24h`, `7d`). A bare
/// number before 2001 is refused: `24` is `24h` mistyped, not 1970.
pub fn parse_time_or_span(what: &str, value: &str, now: Timestamp) -> Result<Timestamp, String> {
    let value = value.trim();
    // A span is digits and units only (`90d`, `1h30m`); a time has `-`,
    // `:` or is all digits.
    let spanlike = value.starts_with(|c: char| c.is_ascii_digit())
        && value.ends_with(|c: char| c.is_ascii_alphabetic())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
    match value.parse::<crate::config::Duration>() {
        Ok(span) => return Ok(now.plus_millis(-span.as_millis())),
        // The span's own complaint (too long…).
        Err(e) if spanlike => return Err(format!("{what} {value:?}: {e}")),
        Err(_) => {}
    }
    if let Ok(seconds) = value.parse::<i64>()
        && seconds < 978_307_200
    {
        return Err(format!(
            "{what} {value:?} reads as Unix seconds, a time in {}: give a span with its unit ({value}h, {value}d) or a time (RFC 3339 such as 2026-09-21T12:00:00Z)",
            1970 + seconds / 31_556_952
        ));
    }
    crate::api::parse_time(value).map_err(|_| {
        format!(
            "{what} {value:?} is neither a span back from now (24h, 7d, 90d) nor a time (Unix seconds, or RFC 3339 such as 2026-09-21T12:00:00Z)"
        )
    })
}

/// Reads `step` as a span (`5m`, `1h`, `1d`).
pub fn parse_step(value: &str) -> Result<i64, String> {
    match value.parse::<crate::config::Duration>() {
        Ok(step) if step.as_millis() >= 1000 => Ok(step.as_millis()),
        Ok(_) => Err(format!(
            "step {value:?} is shorter than a second: give 5m, 1h or 1d"
        )),
        Err(e) => Err(format!("step {value:?}: {e} (give 5m, 1h or 1d)")),
    }
}

/// Where `value` is from `low` (0) to `high` (1), clamped; halves are
/// compared, so values near f64's limits give a share, never NaN.
pub fn share(value: f64, low: f64, high: f64) -> f64 {
    ((value / 2.0 - low / 2.0) / (high / 2.0 - low / 2.0)).clamp(0.0, 1.0)
}

/// The bounds a chart or sparkline of `signal` is scaled to, from the
/// values' own `low` and `high`: a 0/1 signal (`healthy`, `up`) spans 0
/// to 1, so always 1 is drawn at the top; a flat series sits in the
/// middle (never on the floor, where it would read as 0).
pub fn scale(signal: &str, low: f64, high: f64) -> (f64, f64) {
    let zero_one = matches!(signal, HEALTHY | "up") || signal.ends_with(".up");
    if zero_one && low >= 0.0 && high <= 1.0 {
        return (0.0, 1.0);
    }
    if high > low {
        return (low, high);
    }
    let pad = (low.abs() / 2.0).max(1.0);
    (low - pad, high + pad)
}

/// The one profile `task` is recorded under: `profile` when given (and
/// recorded), else the only one; an error names the choices.
pub fn profile_of(store: &Store, task: &str, profile: Option<&str>) -> Result<String, String> {
    let series = store
        .signal_series(profile, Some(task))
        .map_err(|e| format!("reading the history: {e:#}"))?;
    let mut profiles: Vec<String> = series.into_iter().map(|s| s.profile).collect();
    profiles.dedup();
    match (profiles.as_slice(), profile) {
        ([one], _) => Ok(one.clone()),
        ([], Some(profile)) => Err(format!(
            "no history of task `{task}` in profile `{profile}` (has a tick of it run since this version was installed?)"
        )),
        ([], None) => Err(format!(
            "no history of task `{task}` (is the name right, and has a tick of it run since this version was installed?)"
        )),
        (many, _) => Err(format!(
            "task `{task}` is in several profiles ({}): name one with profile",
            many.join(", ")
        )),
    }
}

/// `Err` naming the signals recorded for the task when `signal` is not
/// one of them (a misspelt name is not an empty window).
pub fn recorded(
    store: &Store,
    profile: &str,
    task: &str,
    signal: &str,
) -> Result<Result<(), String>> {
    let known: Vec<String> = store
        .signal_series(Some(profile), Some(task))?
        .into_iter()
        .map(|s| s.signal)
        .collect();
    if known.iter().any(|k| k == signal) {
        return Ok(Ok(()));
    }
    let nearest = crate::config::nearest(signal, known.iter().map(String::as_str))
        .map(|n| format!("did you mean `{n}`? "))
        .unwrap_or_default();
    Ok(Err(format!(
        "task `{task}` has no recorded signal `{signal}`: {nearest}recorded are {}",
        known.join(", ")
    )))
}

/// One series' points in the query's window.
pub fn points(
    store: &Store,
    profile: &str,
    task: &str,
    signal: &str,
    query: &Query,
) -> Result<Vec<Point>> {
    store.signal_points(
        profile,
        task,
        signal,
        query.since,
        query.until,
        query.step_ms,
    )
}

/// min, avg and max over points, weighted by what each summarises. The
/// mean is kept as it goes (halves compared): values near f64's limits
/// average to a finite figure, never to ±inf.
pub fn figures(points: &[Point]) -> Option<(f64, f64, f64, i64)> {
    let count: i64 = points.iter().map(|p| p.count).sum();
    if count == 0 {
        return None;
    }
    let min = points.iter().map(|p| p.min).fold(f64::INFINITY, f64::min);
    let max = points
        .iter()
        .map(|p| p.max)
        .fold(f64::NEG_INFINITY, f64::max);
    let (mut mean, mut seen) = (0.0_f64, 0_i64);
    for point in points.iter().filter(|p| p.count > 0) {
        seen += point.count;
        let weight = point.count as f64 / seen as f64;
        mean += (point.avg / 2.0 - mean / 2.0) * weight * 2.0;
    }
    Some((min, mean.clamp(min, max), max, count))
}

/// An average to three decimals (a value too large to carry them is
/// itself).
pub fn thousandths(value: f64) -> f64 {
    if value.abs() < 1e12 {
        (value * 1000.0).round() / 1000.0
    } else {
        value
    }
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The window's averages as `width` bars (a gap where nothing was
/// recorded), scaled as [`scale`] says. No more cells than the samples'
/// usual spacing fills: ticks ten minutes apart over an hour are six
/// bars, not six bars among gaps that would read as missing ticks (a
/// missing tick is still a gap).
pub fn sparkline(
    signal: &str,
    points: &[Point],
    since: Timestamp,
    until: Timestamp,
    width: usize,
) -> String {
    let span = (until.0 - since.0).max(1);
    let mut gaps: Vec<i64> = points.windows(2).map(|w| w[1].at.0 - w[0].at.0).collect();
    gaps.sort_unstable();
    let width = match gaps.get(gaps.len().saturating_sub(1) / 2) {
        Some(&usual) if usual > 0 => width.min((span as f64 / usual as f64).ceil() as usize),
        _ => width,
    }
    .max(1);
    let mut cells: Vec<Option<(f64, i64)>> = vec![None; width];
    for point in points {
        let at = ((point.at.0 - since.0).max(0) as i128 * width as i128 / span as i128) as usize;
        let cell = &mut cells[at.min(width - 1)];
        let (sum, count) = cell.get_or_insert((0.0, 0));
        *sum += point.avg * point.count as f64;
        *count += point.count;
    }
    let averages: Vec<Option<f64>> = cells
        .into_iter()
        .map(|c| c.map(|(sum, count)| sum / count.max(1) as f64))
        .collect();
    let low = averages
        .iter()
        .flatten()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let high = averages
        .iter()
        .flatten()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let (low, high) = scale(signal, low, high);
    averages
        .into_iter()
        .map(|average| match average {
            None => ' ',
            Some(v) => BARS[(share(v, low, high) * 7.0).round() as usize],
        })
        .collect()
}

/// `monitor history TASK`: each recorded signal of the task on a line.
pub fn overview_text(store: &Store, profile: &str, task: &str, query: &Query) -> Result<String> {
    let series = store.signal_series(Some(profile), Some(task))?;
    let width = series.iter().map(|s| s.signal.len()).max().unwrap_or(6);
    let mut out = format!(
        "{task} (profile {profile}), {} to {}:\n",
        query.since, query.until
    );
    for one in &series {
        let points = points(store, profile, task, &one.signal, query)?;
        let _ = writeln!(
            out,
            "  {:<width$}  {}",
            one.signal,
            line(&one.signal, &points, query, 40)
        );
    }
    if series.is_empty() {
        out.push_str("  nothing recorded\n");
    }
    Ok(out)
}

/// `monitor history TASK SIGNAL`: the signal's line, wider.
pub fn series_text(
    points: &[Point],
    profile: &str,
    task: &str,
    signal: &str,
    query: &Query,
) -> String {
    format!(
        "{task}/{signal} (profile {profile}), {} to {}:\n  {}\n",
        query.since,
        query.until,
        line(signal, points, query, 60)
    )
}

/// A sparkline and the window's figures, in the signal's unit.
fn line(signal: &str, points: &[Point], query: &Query, width: usize) -> String {
    match figures(points) {
        None => "nothing recorded in this window".to_string(),
        Some((min, avg, max, count)) => {
            let shown = |v: f64| format_value(signal, v);
            let last = points.last().map(|p| p.avg).unwrap_or(avg);
            format!(
                "{}  min {}  avg {}  max {}  last {}  ({count} sample{})",
                sparkline(signal, points, query.since, query.until, width),
                shown(min),
                shown(thousandths(avg)),
                shown(max),
                shown(last),
                if count == 1 { "" } else { "s" }
            )
        }
    }
}

/// The series list as JSON.
pub fn series_json(series: &[SeriesInfo]) -> serde_json::Value {
    json!(
        series
            .iter()
            .map(|s| json!({
                "profile": s.profile,
                "task": s.task,
                "signal": s.signal,
                "last_at": s.last_at.rfc3339(),
                "last": s.last,
            }))
            .collect::<Vec<_>>()
    )
}

/// One series' points as JSON.
pub fn points_json(
    points: &[Point],
    profile: &str,
    task: &str,
    signal: &str,
    query: &Query,
) -> serde_json::Value {
    let figures = figures(points);
    json!({
        "profile": profile,
        "task": task,
        "signal": signal,
        "since": query.since.rfc3339(),
        "until": query.until.rfc3339(),
        "step_s": query.step_ms.map(|s| s / 1000),
        "min": figures.map(|f| f.0),
        "avg": figures.map(|f| f.1),
        "max": figures.map(|f| f.2),
        "points": points.iter().map(|p| json!({
            "at": p.at.rfc3339(),
            "t": p.at.0 / 1000,
            "value": p.avg,
            "min": p.min,
            "max": p.max,
            "count": p.count,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(minute: i64, value: f64) -> Point {
        Point::sample(Timestamp(minute * 60_000), value)
    }

    #[test]
    fn a_sparkline_spans_min_to_max_and_leaves_gaps_blank() {
        let points = [point(0, 0.0), point(1, 7.0), point(3, 14.0)];
        let line = sparkline("lag", &points, Timestamp(0), Timestamp(4 * 60_000), 40);
        assert_eq!(line, "▁▅ █", "one cell a minute, the missing one blank");
        let flat = sparkline("lag", &[point(0, 5.0)], Timestamp(0), Timestamp(60_000), 2);
        assert_eq!(flat, "▅ ", "a flat series in the middle");
        let up = [point(0, 1.0), point(10, 1.0), point(20, 1.0)];
        let line = sparkline(HEALTHY, &up, Timestamp(0), Timestamp(30 * 60_000), 40);
        assert_eq!(line, "███", "always healthy is drawn full, a cell a tick");
        assert_eq!(figures(&points), Some((0.0, 7.0, 14.0, 3)));
        let extremes = [point(0, 1e308), point(1, -1.7976931348623157e308)];
        let (min, avg, max, _) = figures(&extremes).unwrap();
        assert!(avg.is_finite() && min <= avg && avg <= max, "{avg}");
    }
}
