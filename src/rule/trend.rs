//! `trend: rising | falling` over a `window`: is a signal moving one way
//! consistently across the samples kept over the window (seed 004's
//! "falling behind": lag rising over 300 s)?

use super::Memory;
use crate::alert::Verdict;
use crate::clock::{Timestamp, human_duration};
use crate::config::{Rule, Selector, Severity, Trend, format_number};
use crate::probe::Observation;

/// Keeps the samples inside the window plus the newest one older than it
/// (the anchor, so ticks a few seconds late still cover the window), and
/// breaches when they span the window, never move against the trend, and
/// end beyond where they began.
pub(super) fn judge(
    _rule: &Rule,
    severity: Severity,
    signal: &Selector,
    trend: &Trend,
    observation: &Observation,
    memory: &Memory,
    now: Timestamp,
) -> super::deltas::Judged {
    let value = observation
        .signals
        .get(signal)
        .ok_or_else(|| format!("no signal `{signal}` this tick"))?;
    let window = trend.window.as_millis();
    let mut samples = memory.samples.clone();
    samples.retain(|(t, _)| *t < now.0);
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
        let reason = format!(
            "{signal} trend: {} of its {} window sampled so far",
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
    let moved = if trend.rising {
        last > first
    } else {
        last < first
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
    let verdict = if steady && moved {
        Verdict::Breach {
            severity,
            value: Some(value),
            threshold: Some(format!("{direction} over {}", trend.window)),
            summary: format!("{path}: steadily {direction}"),
        }
    } else {
        Verdict::Clear {
            value: Some(value),
            summary: format!("{path}: not steadily {direction}"),
        }
    };
    Ok((verdict, next, false))
}
