//! `trend: rising | falling` over a `window`: is a signal moving one way
//! across the samples kept over the window (seed 004's "falling behind":
//! the lag rising over 300 s)? Judged on the whole window, so one dip does
//! not hide a node falling 160 blocks behind: the least-squares fit over
//! the samples and the window's net change must both move by at least
//! `min_change` (and, if set, end beyond `above` / `below`), so a synced
//! node's jitter is never a trend. Samples from before the target's last
//! restart are dropped; until the window is covered again the rule holds
//! (a firing alert stays firing, nothing resolves).

use super::{Direction, Trend};
use super::{Memory, TickContext};
use crate::alert::Verdict;
use crate::clock::human_duration;
use crate::config::{Selector, Severity, format_number};
use crate::probe::Observation;

/// Keeps the samples inside the window plus, when none sits exactly on its
/// start, the newest one older than it (the anchor, so ticks a few seconds
/// late still cover the window), and breaches when they span the window
/// and move in the trend's direction by at least `min_change`, both as
/// fitted (least squares) and from the first sample to the last.
pub(super) fn judge(
    severity: Severity,
    signal: &Selector,
    trend: &Trend,
    observation: &Observation,
    memory: &Memory,
    tick: &TickContext,
) -> super::deltas::Judged {
    let now = tick.now;
    let value = observation
        .signals
        .get(signal)
        .ok_or_else(|| format!("no signal `{signal}` this tick"))?;
    let window = trend.window.as_millis();
    let start = now.0 - window;
    let mut samples = memory.samples.clone();
    let restarted = tick.restarted_at.map_or(i64::MIN, |t| t.0);
    // The restart tick's own reading was taken before the restart.
    samples.retain(|(t, _)| *t < now.0 && *t > restarted);
    samples.push((now.0, value));
    let first_inside = samples
        .iter()
        .position(|(t, _)| *t >= start)
        .unwrap_or(samples.len() - 1);
    let keep_from = if samples[first_inside].0 == start {
        first_inside
    } else {
        first_inside.saturating_sub(1)
    };
    samples.drain(..keep_from);
    let next = Memory {
        samples: samples.clone(),
        ..Memory::default()
    };
    let span = now.0 - samples[0].0;
    let direction: &str = trend.direction.into();
    if span + crate::clock::TICK_SLACK_MS < window || samples.len() < 2 {
        let since_restart = if tick.restarted_at.is_some_and(|t| t.0 > start) {
            " since the restart"
        } else {
            ""
        };
        let reason = format!(
            "{signal} trend: {} of its {} window sampled{since_restart} so far",
            human_duration(span),
            trend.window
        );
        return Ok((Verdict::Hold { reason }, next, false));
    }
    let sign = match trend.direction {
        Direction::Rising => 1.0,
        Direction::Falling => -1.0,
    };
    let net = sign * (value - samples[0].1);
    let fitted = sign * slope(&samples) * span as f64;
    let past_limit = match (trend.direction, trend.limit) {
        (_, None) => true,
        (Direction::Rising, Some(above)) => value > above,
        (Direction::Falling, Some(below)) => value < below,
    };
    let limit = match (trend.direction, trend.limit) {
        (_, None) => String::new(),
        (Direction::Rising, Some(above)) => format!(", above {}", format_number(above)),
        (Direction::Falling, Some(below)) => format!(", below {}", format_number(below)),
    };
    let threshold = format!(
        "{direction} by ≥ {} over {}{limit}",
        format_number(trend.min_change),
        trend.window
    );
    let path = format!(
        "{signal} went {} over the last {} ({} samples)",
        samples
            .iter()
            .map(|(_, v)| format_number(*v))
            .collect::<Vec<_>>()
            .join(" → "),
        human_duration(span),
        samples.len()
    );
    let moved = format!(
        "{direction} by {} (fitted {})",
        format_number(net),
        format_number((fitted * 10.0).round() / 10.0)
    );
    let big_enough = net >= trend.min_change && fitted >= trend.min_change && net > 0.0;
    let verdict = if big_enough && past_limit {
        Verdict::Breach {
            severity,
            value: Some(value),
            threshold: Some(threshold.clone()),
            summary: format!("{path}: {moved} ({threshold})"),
        }
    } else {
        let why = if !big_enough {
            format!(
                "not {direction} by min_change {}: {moved}",
                format_number(trend.min_change)
            )
        } else {
            format!("{moved}, but not{limit}")
        };
        Verdict::Clear {
            value: Some(value),
            summary: format!("{path}: {why}"),
        }
    };
    Ok((verdict, next, false))
}

/// The least-squares slope of the samples, in value per millisecond.
fn slope(samples: &[(i64, f64)]) -> f64 {
    let n = samples.len() as f64;
    let t0 = samples[0].0;
    let mean_t = samples.iter().map(|(t, _)| (t - t0) as f64).sum::<f64>() / n;
    let mean_v = samples.iter().map(|(_, v)| v).sum::<f64>() / n;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for (t, v) in samples {
        let dt = (t - t0) as f64 - mean_t;
        covariance += dt * (v - mean_v);
        variance += dt * dt;
    }
    if variance == 0.0 {
        0.0
    } else {
        covariance / variance
    }
}
