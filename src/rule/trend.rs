//! `trend: rising | falling` over a `window`: is a signal moving one way
//! consistently across the samples kept over the window (seed 004's
//! "falling behind": lag rising over 300 s)? A trend needs a size: it must
//! move by at least `min_change` over the window (and, if set, end beyond
//! `above` / `below`), so jitter of a synced node is never a trend. Samples
//! from before the target's last restart are dropped.

use super::{Memory, TickContext};
use crate::alert::Verdict;
use crate::clock::human_duration;
use crate::config::{Selector, Severity, Trend, format_number};
use crate::probe::Observation;

/// Keeps the samples inside the window plus the newest one older than it
/// (the anchor, so ticks a few seconds late still cover the window), and
/// breaches when they span the window, never move against the trend, end
/// at least `min_change` beyond where they began, and past the optional
/// limit.
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
    let mut samples = memory.samples.clone();
    let restarted = tick.restarted_at.map_or(i64::MIN, |t| t.0);
    samples.retain(|(t, _)| *t < now.0 && *t >= restarted);
    samples.push((now.0, value));
    let first_inside = samples
        .iter()
        .position(|(t, _)| *t >= now.0 - window)
        .unwrap_or(samples.len() - 1);
    samples.drain(..first_inside.saturating_sub(1));
    let next = Memory {
        samples: samples.clone(),
        ..Memory::default()
    };
    let (first, last) = (samples[0].1, value);
    let span = now.0 - samples[0].0;
    let direction = if trend.rising { "rising" } else { "falling" };
    if span < window {
        let since_restart = if tick.restarted_at.is_some_and(|t| t.0 > now.0 - window) {
            " since the restart"
        } else {
            ""
        };
        let reason = format!(
            "{signal} trend: {} of its {} window sampled{since_restart} so far",
            human_duration(span),
            trend.window
        );
        return Ok((
            Verdict::Clear {
                value: Some(value),
                summary: reason,
            },
            next,
            false,
        ));
    }
    let steady = samples.windows(2).all(|w| {
        if trend.rising {
            w[1].1 >= w[0].1
        } else {
            w[1].1 <= w[0].1
        }
    });
    let change = if trend.rising {
        last - first
    } else {
        first - last
    };
    let big_enough = change >= trend.min_change && change > 0.0;
    let past_limit = match (trend.rising, trend.limit) {
        (_, None) => true,
        (true, Some(above)) => last > above,
        (false, Some(below)) => last < below,
    };
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
    let limit = match (trend.rising, trend.limit) {
        (_, None) => String::new(),
        (true, Some(above)) => format!(", above {}", format_number(above)),
        (false, Some(below)) => format!(", below {}", format_number(below)),
    };
    let threshold = format!(
        "{direction} by ≥ {} over {}{limit}",
        format_number(trend.min_change),
        trend.window
    );
    let verdict = if steady && big_enough && past_limit {
        Verdict::Breach {
            severity,
            value: Some(value),
            threshold: Some(threshold.clone()),
            summary: format!(
                "{path}: steadily {direction} by {} ({threshold})",
                format_number(change)
            ),
        }
    } else {
        let why = if !steady {
            format!("not steadily {direction}")
        } else if !big_enough {
            format!(
                "{direction} by {}, less than min_change {}",
                format_number(change.max(0.0)),
                format_number(trend.min_change)
            )
        } else {
            format!("steadily {direction}, but not{limit}")
        };
        Verdict::Clear {
            value: Some(value),
            summary: format!("{path}: {why}"),
        }
    };
    Ok((verdict, next, false))
}
