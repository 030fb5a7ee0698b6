//! Rules on tick-over-tick deltas of counters (seed 003's catalog): counter
//! deltas with resets, sums, `Nx previous`, streaks and bursts; ratios of
//! deltas with a minimum denominator; histogram quantiles and means from
//! per-tick bucket deltas.

use super::{Memory, compare};
use super::{RatioRule, Rule};
use crate::alert::Verdict;
use crate::config::{Selector, Severity, format_number};
use crate::probe::Observation;
use std::collections::BTreeMap;

/// A verdict, the memory for the next tick, and whether a counter went
/// backwards (the target restarted).
pub(super) type Judged = Result<(Verdict, Memory, bool), String>;

/// How much some series grew since the last tick.
struct Increase {
    total: f64,
    /// A series went backwards: its current value was counted as its delta.
    reset: bool,
}

/// Series values a rule keeps at most, absent ones included.
const MAX_REMEMBERED: usize = 10_000;

fn series_key(prefix: &str, index: usize, name: &str, labels: &[(String, String)]) -> String {
    format!("{prefix}{index}:{name}{{{}}}", series_of(labels))
}

/// Sums the per-series increase of everything `selectors` match and stores
/// their current values under `prefix` in `next`. A series that went down
/// was reset: its increase is its current value. A series new since the
/// last tick started from zero: its whole value is its increase (client
/// libraries create a labelled counter on its first increment). While the
/// metric family is present, a selector matching no series reads 0.
/// `Err` when the family is absent altogether (a renamed metric must not
/// read as "nothing happened"); `Ok(None)` on first sight, with nothing to
/// compare to.
fn increase(
    observation: &Observation,
    selectors: &[Selector],
    prefix: &str,
    previous: &BTreeMap<String, f64>,
    next: &mut BTreeMap<String, f64>,
) -> Result<Option<Increase>, String> {
    let signals = &observation.signals;
    let mut total = 0.0;
    let mut reset = false;
    let mut first_sight = false;
    for (index, selector) in selectors.iter().enumerate() {
        let found = signals.series_matching(selector);
        if found.is_empty()
            && let Some(why) = missing(signals, selector)
        {
            return Err(why);
        }
        // Marks that this selector was read, series or not.
        let marker = format!("{prefix}{index}");
        first_sight |= !previous.contains_key(&marker);
        next.insert(marker, 0.0);
        for (name, labels, value) in found.into_iter().filter(|(_, _, v)| v.is_finite()) {
            let key = series_key(prefix, index, name, labels);
            match previous.get(&key) {
                Some(before) if value >= *before => total += value - before,
                Some(_) => {
                    total += value;
                    reset = true;
                }
                None => total += value,
            }
            next.insert(key, value);
        }
        // A series absent this tick keeps its last value: if it comes
        // back, its increase counts from there, not from zero. (Bounded:
        // labels that churn for ever must not grow the memory for ever.)
        let own = format!("{prefix}{index}:");
        for (key, value) in previous.range(own.clone()..) {
            if !key.starts_with(&own) || next.len() >= MAX_REMEMBERED {
                break;
            }
            next.entry(key.clone()).or_insert(*value);
        }
    }
    Ok((!first_sight).then_some(Increase { total, reset }))
}

/// Why a selector that matches no series is missing data, not a series
/// with nothing counted yet: its metric family is absent from the scrape,
/// or it asks for a label no series of the family has (a typo or a
/// rename must not read as calm). `None`: the family is there and the
/// series has not been created yet (client libraries create a labelled
/// series on its first increment).
fn missing(signals: &crate::probe::Signals, selector: &Selector) -> Option<String> {
    if !signals.family_present(selector) {
        return Some(format!(
            "no series `{selector}` this tick, and no metric family of that name in the scrape"
        ));
    }
    let known = signals.family_labels(selector)?;
    let absent = selector
        .matchers
        .iter()
        .find(|m| !m.matches("") && !known.contains(m.label.as_str()))?;
    let known: Vec<&str> = known.into_iter().collect();
    Some(format!(
        "no series `{selector}` this tick: no series of {} has a label `{}` (its labels: {})",
        selector.name.as_deref().unwrap_or("the family"),
        absent.label,
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    ))
}

fn names(selectors: &[Selector]) -> String {
    selectors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" + ")
}

fn first_sight(what: &str) -> Verdict {
    Verdict::Hold {
        reason: format!("first sample of {what}: nothing to compare with yet"),
    }
}

/// `counter: …, delta: ">= 1"` (+ `streak`, `burst`).
pub(super) fn counter(
    rule: &Rule,
    severity: Severity,
    series: &[Selector],
    streak: Option<u32>,
    burst: Option<f64>,
    observation: &Observation,
    memory: &Memory,
) -> Judged {
    let what = names(series);
    let mut next = Memory::default();
    let Some(increase) = increase(observation, series, "", &memory.values, &mut next.values)?
    else {
        return Ok((first_sight(&what), next, false));
    };
    let delta = increase.total;
    next.previous_delta = Some(delta);
    let condition = rule.condition.ok_or("the rule has no `delta` condition")?;
    let met = condition.holds(delta, memory.previous_delta);
    let burst_hit = burst.is_some_and(|b| delta >= b);
    let reset_note = if increase.reset {
        " (a counter reset: counted from zero)"
    } else {
        ""
    };
    let previous_note = match (condition.threshold, memory.previous_delta) {
        (crate::config::Threshold::TimesPrevious(_), Some(previous)) => {
            format!(", previous tick {}", format_number(previous))
        }
        _ => String::new(),
    };
    let shown = match condition.unit {
        crate::config::Unit::Plain => crate::config::format_value(&what, delta),
        _ => condition.show(delta),
    };
    let (breach, detail) = match streak {
        Some(needed) => {
            next.streak = if met { memory.streak + 1 } else { 0 };
            let detail = match burst {
                Some(b) if burst_hit => format!("burst: {shown} ≥ {}", format_number(b)),
                _ if next.streak >= needed => {
                    format!("{} ticks in a row (streak: {needed})", next.streak)
                }
                _ => format!("{} of {needed} ticks in a row", next.streak),
            };
            (next.streak >= needed || burst_hit, detail)
        }
        None if burst_hit && !met => (
            true,
            format!("burst ≥ {}", burst.map(format_number).unwrap_or_default()),
        ),
        None => (met, String::new()),
    };
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!("; {detail}")
    };
    let verdict = if breach {
        Verdict::Breach {
            severity,
            value: Some(delta),
            threshold: Some(condition.to_string()),
            summary: format!(
                "{what} rose by {shown} this tick ({condition}{previous_note}{detail}){reset_note}"
            ),
        }
    } else {
        Verdict::Clear {
            value: Some(delta),
            summary: format!("{what} rose by {shown}{previous_note}{detail}{reset_note}"),
        }
    };
    Ok((verdict, next, increase.reset))
}

/// `ratio: { numerator, denominator, min_denominator }` of deltas.
pub(super) fn ratio(
    rule: &Rule,
    severity: Severity,
    ratio: &RatioRule,
    observation: &Observation,
    memory: &Memory,
    skip: Option<&str>,
) -> Judged {
    if let Some(why) = skip {
        // seed 003: on any skip, empty the ratio snapshot.
        return Ok((
            Verdict::Hold {
                reason: why.to_string(),
            },
            Memory::default(),
            false,
        ));
    }
    let mut next = Memory::default();
    let numerator = increase(
        observation,
        &ratio.numerator.0,
        "n",
        &memory.values,
        &mut next.values,
    )?;
    let denominator = increase(
        observation,
        &ratio.denominator.0,
        "d",
        &memory.values,
        &mut next.values,
    )?;
    let (Some(numerator), Some(denominator)) = (numerator, denominator) else {
        return Ok((first_sight("the ratio's counters"), next, false));
    };
    let reset = numerator.reset || denominator.reset;
    if denominator.total <= 0.0 || denominator.total < ratio.min_denominator {
        let reason = format!(
            "the denominator grew by {} this tick (min_denominator {}): neither breach nor clear",
            format_number(denominator.total),
            format_number(ratio.min_denominator)
        );
        return Ok((Verdict::Hold { reason }, next, reset));
    }
    let value = numerator.total / denominator.total;
    let what = format!(
        "Δ({}) / Δ({}) = {} / {}",
        names(&ratio.numerator.0),
        names(&ratio.denominator.0),
        format_number(numerator.total),
        format_number(denominator.total)
    );
    Ok((compare(rule, severity, &what, value, None), next, reset))
}

/// `histogram: name, quantile: 0.99` (and/or `mean: true`), `min_count`.
#[allow(clippy::too_many_arguments)]
pub(super) fn histogram(
    rule: &Rule,
    severity: Severity,
    metric: &Selector,
    quantile: Option<f64>,
    mean: bool,
    min_count: f64,
    observation: &Observation,
    memory: &Memory,
) -> Judged {
    let Some(name) = metric.name.as_deref() else {
        return Err("a histogram rule needs a metric name".to_string());
    };
    let part = |suffix: &str| Selector {
        name: Some(format!("{name}{suffix}")),
        matchers: metric.matchers.clone(),
        braced: true,
    };
    // Cumulative bucket counts by upper bound, summed over other labels,
    // and each series' own (its labels but `le`): a reset is per series.
    let mut buckets: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut each: BTreeMap<String, f64> = BTreeMap::new();
    for (_, labels, value) in observation.signals.series_matching(&part("_bucket")) {
        let Some((_, le)) = labels.iter().find(|(k, _)| k == "le") else {
            continue;
        };
        let own: Vec<(String, String)> =
            labels.iter().filter(|(k, _)| k != "le").cloned().collect();
        let Some(bound) = parse_bound(le) else {
            return Ok((
                broken(name, &format!("a bucket has le={le:?}, not a number")),
                Memory::default(),
                false,
            ));
        };
        let key = format!("b{}", format_number(bound));
        *each
            .entry(format!("{}|{key}", series_of(&own)))
            .or_insert(0.0) += value;
        buckets.entry(key).or_insert((bound, 0.0)).1 += value;
    }
    for (suffix, what) in [("_count", "count"), ("_sum", "sum")] {
        for (_, labels, value) in observation.signals.series_matching(&part(suffix)) {
            *each
                .entry(format!("{}|{what}", series_of(labels)))
                .or_insert(0.0) += value;
        }
    }
    if buckets.is_empty() {
        let quantiles = observation
            .signals
            .series_matching(&Selector {
                name: Some(name.to_string()),
                matchers: metric.matchers.clone(),
                braced: true,
            })
            .iter()
            .any(|(_, labels, _)| labels.iter().any(|(k, _)| k == "quantile"));
        if quantiles {
            let why = format!(
                "{name} is a summary (quantiles, no buckets): read a quantile with gauge: '{name}{{quantile=\"0.99\"}}'"
            );
            return Ok((Verdict::NoData { reason: why }, Memory::default(), false));
        }
        let buckets = part("_bucket");
        if let Some(why) = missing(&observation.signals, &buckets) {
            return Err(why);
        }
        // The family is there, this series not yet: no observations so
        // far. Its first count will be all this tick's (a series that went
        // away keeps what it had, as a counter does).
        let next = if memory.values.contains_key("count") {
            memory.clone()
        } else {
            let mut next = Memory::default();
            next.values.insert("count".into(), 0.0);
            next
        };
        let reason = format!("no observations of `{buckets}` yet (the family is in the scrape)");
        return Ok((Verdict::Hold { reason }, next, false));
    }
    let Some(count) = observation.signals.series_sum(&part("_count")) else {
        if observation.signals.series_sum(&part("_gcount")).is_some() {
            let why = format!(
                "{name} is a gauge histogram (`_gcount`): its buckets are current values, not counts since the start; judge a bucket with gauge: '{name}_bucket{{le=\"…\"}}'"
            );
            return Ok((Verdict::NoData { reason: why }, Memory::default(), false));
        }
        return Err(format!("no series `{name}_count` this tick"));
    };
    if let Some(why) = bucket_defect(&buckets, count) {
        return Ok((broken(name, &why), Memory::default(), false));
    }
    let sum = observation.signals.series_sum(&part("_sum"));
    let mut next = Memory::default();
    next.values.insert("count".into(), count);
    if let Some(sum) = sum {
        next.values.insert("sum".into(), sum);
    }
    for (key, (_, value)) in &buckets {
        next.values.insert(key.clone(), *value);
    }
    let per_series = each.len() + next.values.len() < MAX_REMEMBERED;
    if per_series {
        next.values.insert(PER_SERIES.into(), 1.0);
        for (key, value) in &each {
            next.values.insert(format!("s{key}"), *value);
        }
        // A series absent this tick keeps its last counts: if it comes
        // back, it counts from there (bounded, as counters are).
        for (key, value) in &memory.values {
            if next.values.len() >= MAX_REMEMBERED {
                break;
            }
            if key.starts_with('s') && key.contains('|') {
                next.values.entry(key.clone()).or_insert(*value);
            }
        }
    }
    let Some(previous_count) = memory.values.get("count").copied() else {
        return Ok((first_sight(name), next, false));
    };
    let (deltas, reset) = if memory.values.contains_key(PER_SERIES) {
        series_deltas(&each, memory)
    } else {
        // Remembered as one sum (too many series, or an earlier build).
        let reset = count < previous_count;
        let mut totals: BTreeMap<String, f64> = buckets
            .iter()
            .map(|(key, (_, value))| (key.clone(), *value))
            .collect();
        totals.insert("count".into(), count);
        if let Some(sum) = sum {
            totals.insert("sum".into(), sum);
        }
        for (key, now) in totals.iter_mut() {
            if !reset {
                *now -= memory.values.get(key).copied().unwrap_or(0.0);
            }
        }
        (totals, reset)
    };
    let delta = |key: &str| deltas.get(key).copied().unwrap_or(0.0);
    let count_delta = delta("count");
    if count_delta <= 0.0 || count_delta < min_count {
        let reason = format!(
            "{} observations of {} this tick (min_count {}): skipped",
            format_number(count_delta),
            name,
            format_number(min_count)
        );
        return Ok((Verdict::Hold { reason }, next, reset));
    }
    let mut bounds: Vec<(f64, f64)> = buckets
        .iter()
        .map(|(key, (bound, _))| (*bound, delta(key)))
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut verdicts = Vec::new();
    if let Some(q) = quantile {
        let wanted = q * count_delta;
        let bound = bounds
            .iter()
            .find(|(_, cumulative)| *cumulative >= wanted)
            .map(|(b, _)| *b)
            .unwrap_or(f64::INFINITY);
        // In the +Inf bucket: as Prometheus's histogram_quantile, the
        // highest finite bound (the quantile is at least that).
        let highest = bounds
            .iter()
            .map(|(b, _)| *b)
            .filter(|b| b.is_finite())
            .fold(f64::NAN, f64::max);
        let (bound, beyond) = if bound.is_infinite() && highest.is_finite() {
            (
                highest,
                format!(", above the highest bound le={}", format_number(highest)),
            )
        } else {
            (bound, String::new())
        };
        if !bound.is_finite() {
            let reason = format!("{name} has only a +Inf bucket: no quantile");
            return Ok((Verdict::NoData { reason }, next, reset));
        }
        let what = format!(
            "p{} of {} (bucket bound{beyond}, {} observations this tick)",
            format_number(q * 100.0),
            name,
            format_number(count_delta)
        );
        verdicts.push(compare(rule, severity, &what, bound, None));
    }
    if mean && sum.is_some() {
        let average = delta("sum") / count_delta;
        let what = format!(
            "mean of {} ({} observations this tick)",
            name,
            format_number(count_delta)
        );
        verdicts.push(compare(rule, severity, &what, average, None));
    }
    // Fire on whichever breaches (seed 003).
    let verdict = verdicts
        .iter()
        .find(|v| matches!(v, Verdict::Breach { .. }))
        .or(verdicts.first())
        .cloned()
        .ok_or_else(|| format!("no `{name}_sum` for the mean"))?;
    Ok((verdict, next, reset))
}

/// Marks a histogram's memory as holding each series' counts.
const PER_SERIES: &str = "per_series";

/// A series' labels as memory keys hold them (a histogram's without `le`).
fn series_of(labels: &[(String, String)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    labels.join(",")
}

/// This tick's observations of a histogram, by `count`, `sum` and bucket
/// key, summed over its series, each series against its own last counts
/// (`each`: `series|key` → value): a series whose count went down was
/// reset (and counts its current values), a series new since the last
/// tick counts from zero, as counters do. Also whether any was reset.
fn series_deltas(each: &BTreeMap<String, f64>, memory: &Memory) -> (BTreeMap<String, f64>, bool) {
    let mut deltas: BTreeMap<String, f64> = BTreeMap::new();
    let mut reset = false;
    let mut series: Vec<&str> = each
        .keys()
        .filter_map(|key| key.rsplit_once('|').map(|(series, _)| series))
        .collect();
    series.dedup();
    for one in series {
        let before = |what: &str| memory.values.get(&format!("s{one}|{what}")).copied();
        let now = |what: &str| each.get(&format!("{one}|{what}")).copied();
        let was_reset =
            matches!((now("count"), before("count")), (Some(now), Some(before)) if now < before);
        reset |= was_reset;
        let prefix = format!("{one}|");
        for (key, value) in each.range(prefix.clone()..) {
            let Some(what) = key.strip_prefix(&prefix) else {
                break;
            };
            let increase = if was_reset {
                *value
            } else {
                value - before(what).unwrap_or(0.0)
            };
            *deltas.entry(what.to_string()).or_insert(0.0) += increase;
        }
    }
    (deltas, reset)
}

/// A histogram whose buckets cannot give a quantile: a warning on the
/// task (the rule's no-data key), never a silent wrong figure.
fn broken(name: &str, why: &str) -> Verdict {
    Verdict::NoData {
        reason: format!("the histogram {name} has broken buckets: {why}"),
    }
}

/// What is wrong with cumulative buckets, if anything: counts that fall as
/// the bound rises, no `+Inf` bucket, or a `+Inf` bucket that disagrees
/// with `_count`.
fn bucket_defect(buckets: &BTreeMap<String, (f64, f64)>, count: f64) -> Option<String> {
    let mut sorted: Vec<(f64, f64)> = buckets.values().copied().collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(pair) = sorted.windows(2).find(|pair| pair[1].1 < pair[0].1) {
        return Some(format!(
            "le={} counts {} but le={} counts {} (cumulative counts cannot fall)",
            format_number(pair[0].0),
            format_number(pair[0].1),
            format_number(pair[1].0),
            format_number(pair[1].1)
        ));
    }
    match sorted.last() {
        Some((bound, _)) if bound.is_finite() => Some("there is no le=\"+Inf\" bucket".to_string()),
        Some((_, total)) if (*total - count).abs() > 1e-9 * count.abs().max(1.0) => Some(format!(
            "the +Inf bucket counts {} but _count is {}",
            format_number(*total),
            format_number(count)
        )),
        _ => None,
    }
}

fn parse_bound(le: &str) -> Option<f64> {
    match le.trim() {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}
