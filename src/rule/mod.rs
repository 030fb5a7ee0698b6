//! Rules turn a task's signals into verdicts. Pure: signals and what the
//! rule remembered from the last tick in; verdict and new memory out.

mod config;
mod deltas;
#[cfg(test)]
mod filtered;
#[cfg(test)]
mod scenarios;
mod trend;

use crate::alert::Verdict;
use crate::clock::Timestamp;
use crate::config::{Guard, Selector, Severity, Task};
use crate::probe::{CheckStatus, Observation};
pub use config::{Direction, RatioRule, Rule, RuleKind, Trend};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The implicit rule of a task without rules: every probe healthy.
/// A Nagios WARNING (exit 1) is a warning; anything worse takes the task's
/// severity.
pub fn implicit(task: &Task, observation: &Observation) -> Verdict {
    let failing: Vec<_> = observation
        .checks
        .iter()
        .filter(|c| !c.status.is_ok())
        .collect();
    if failing.is_empty() {
        let summary = observation
            .checks
            .iter()
            .map(|c| c.summary.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        return Verdict::Clear {
            value: None,
            summary,
        };
    }
    let only_warnings = failing.iter().all(|c| c.status == CheckStatus::Warning);
    let severity = if only_warnings {
        task.severity.min(Severity::Warning)
    } else {
        task.severity
    };
    let summary = failing
        .iter()
        .map(|c| match c.status {
            // A plugin's own words (Nagios WARNING/CRITICAL/UNKNOWN).
            CheckStatus::Warning | CheckStatus::Critical | CheckStatus::Unknown
                if c.probe == "command" =>
            {
                format!(
                    "{} {}: {}",
                    c.probe,
                    c.status.label().to_uppercase(),
                    c.summary
                )
            }
            _ => format!("{}: {}", c.probe, c.summary),
        })
        .collect::<Vec<_>>()
        .join("; ");
    Verdict::Breach {
        severity,
        value: None,
        threshold: None,
        summary,
    }
}

/// Why a rule has no data: the failing probes' own words when there are any.
fn no_data(what: String, observation: &Observation) -> Verdict {
    let failed: Vec<String> = observation
        .checks
        .iter()
        .filter(|c| !c.status.is_ok())
        .map(|c| format!("{}: {}", c.probe, c.summary))
        .collect();
    let reason = if failed.is_empty() {
        what
    } else {
        format!("{what} ({})", failed.join("; "))
    };
    Verdict::NoData { reason }
}

/// Evaluates `when` / `unless`. `Ok(None)`: the rule applies; `Ok(Some(why))`:
/// it is held off; `Err`: a guard's signal is missing.
fn guards(rule: &Rule, observation: &Observation) -> Result<Option<String>, String> {
    let holds = |guard: &Guard| -> Result<bool, String> {
        match guard {
            Guard::Flag(selector) => observation
                .signals
                .get(selector)
                .map(|v| v != 0.0)
                .ok_or_else(|| format!("no signal `{selector}` for the condition")),
            Guard::Compare(selector, condition) => observation
                .signals
                .get(selector)
                .map(|v| condition.holds(v, None))
                .ok_or_else(|| format!("no signal `{selector}` for the condition")),
        }
    };
    for guard in &rule.when {
        if !holds(guard)? {
            return Ok(Some(format!("held: `when {guard}` is false")));
        }
    }
    for guard in &rule.unless {
        if holds(guard)? {
            return Ok(Some(format!("held: `unless {guard}` is true")));
        }
    }
    Ok(None)
}

/// Evaluates task-level `skip_when`: the first condition that holds, or
/// whose signal is missing (a failed scrape cannot vouch for the ratios).
pub fn skip_reason(task: &Task, observation: &Observation) -> Option<String> {
    task.skip_when.iter().find_map(|guard| {
        let (selector, holds) = match guard {
            Guard::Flag(selector) => (
                selector,
                observation.signals.get(selector).map(|v| v != 0.0),
            ),
            Guard::Compare(selector, condition) => (
                selector,
                observation
                    .signals
                    .get(selector)
                    .map(|v| condition.holds(v, None)),
            ),
        };
        match holds {
            Some(true) => Some(format!("skipped: `{guard}` holds")),
            Some(false) => None,
            None => Some(format!("skipped: no signal `{selector}` for `skip_when`")),
        }
    })
}

/// What a stateful rule remembers between ticks, stored as JSON in the
/// task's state under `rule.<name>`. Only the series the rule references
/// are kept, never whole scrapes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Last value of each referenced series (counters, ratios, histograms).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, f64>,
    /// Last tick's counter delta, for `Nx previous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_delta: Option<f64>,
    /// Consecutive ticks a streak counter met its threshold.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub streak: u32,
    /// Trend samples: (Unix ms, value), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<(i64, f64)>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What the tick says about stateful rules.
#[derive(Clone, Debug, Default)]
pub struct TickContext {
    pub now: Timestamp,
    /// Set while the target warms up after a restart.
    pub warming_up: Option<String>,
    /// Set when the task's `skip_when` holds.
    pub skip: Option<String>,
    /// When the task was last restarted by us: samples from before it
    /// (trends) describe the old process.
    pub restarted_at: Option<Timestamp>,
}

/// A rule's verdict and what it remembers for the next tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub memory: Memory,
    /// A counter the rule reads went backwards: the target restarted.
    pub reset: bool,
    /// Since when the breaching value has held, when the probe knows
    /// better than "since this tick" (`progress == 0` began at the last
    /// reading that saw progress).
    pub began: Option<Timestamp>,
    /// `when`/`unless` held the rule off this tick (`Some`), and whether
    /// its own condition is clear: a firing alert whose condition still
    /// breaches stays firing (held); anything else reads as clear.
    pub guarded: Option<bool>,
}

/// Whether the rule compares tick-over-tick deltas of counters (these
/// alerts are not raised while the target warms up after a restart).
pub fn uses_deltas(rule: &Rule) -> bool {
    matches!(
        rule.kind,
        RuleKind::Counter { .. } | RuleKind::Ratio(_) | RuleKind::Histogram { .. }
    )
}

/// Evaluates an explicit rule against this tick's signals and what it
/// remembered from the last tick.
pub fn explicit(
    rule: &Rule,
    task: &Task,
    observation: &Observation,
    memory: &Memory,
    tick: &TickContext,
) -> Judgement {
    let severity = rule.severity.unwrap_or(task.severity);
    let judged: deltas::Judged =
        match &rule.kind {
            RuleKind::Signal {
                signal,
                trend: None,
            } => signal_value(rule, severity, signal, observation)
                .map(|v| (v, Memory::default(), false)),
            RuleKind::Signal {
                signal,
                trend: Some(trend),
            } => trend::judge(severity, signal, trend, observation, memory, tick),
            RuleKind::Gauge(selectors) => gauge(rule, severity, &selectors.0, observation)
                .map(|v| (v, Memory::default(), false)),
            RuleKind::GaugeRatio {
                numerator,
                denominator,
            } => gauge_ratio(rule, severity, numerator, denominator, observation)
                .map(|v| (v, Memory::default(), false)),
            RuleKind::Counter {
                series,
                streak,
                burst,
            } => deltas::counter(
                rule,
                severity,
                &series.0,
                *streak,
                *burst,
                observation,
                memory,
            ),
            RuleKind::Ratio(ratio) => deltas::ratio(
                rule,
                severity,
                ratio,
                observation,
                memory,
                tick.skip.as_deref(),
            ),
            RuleKind::Text { signal, condition } => {
                text_value(severity, signal, condition, observation)
                    .map(|v| (v, Memory::default(), false))
            }
            RuleKind::Age { signal } => age_value(rule, severity, signal, observation, tick.now)
                .map(|v| (v, Memory::default(), false)),
            RuleKind::Histogram {
                metric,
                quantile,
                mean,
                min_count,
            } => deltas::histogram(
                rule,
                severity,
                metric,
                *quantile,
                *mean,
                *min_count,
                observation,
                memory,
            ),
        };
    let (verdict, memory, reset) = match judged {
        Ok(judged) => judged,
        Err(missing) => {
            // A signal the probe cannot give yet (no previous reading) holds;
            // one that should be there and is not is no data.
            let verdict = match referenced(rule).find_map(|name| observation.unavailable.get(name))
            {
                Some(why) => Verdict::Hold {
                    reason: why.clone(),
                },
                None => no_data(missing, observation),
            };
            // No reading this tick: the one kept is a tick older now, and
            // an increase from it next tick would span two intervals and
            // be judged as one. Next tick reads anew.
            let kept = match verdict {
                Verdict::NoData { .. } => Memory {
                    values: BTreeMap::new(),
                    previous_delta: None,
                    ..memory.clone()
                },
                _ => memory.clone(),
            };
            (verdict, kept, false)
        }
    };
    // Guards and warm-up decide whether the verdict counts; the memory is
    // kept current either way, so the next delta spans one tick. A rule its
    // guards hold off is clear even without data.
    let mut guarded = None;
    let verdict = match guards(rule, observation) {
        Ok(Some(why)) => {
            // What the rule itself says, for an alert the guard holds: one
            // whose own condition cleared resolves all the same.
            guarded = Some(matches!(verdict, Verdict::Clear { .. }));
            match &verdict {
                Verdict::Clear { value, summary } => Verdict::Clear {
                    value: *value,
                    summary: format!("{summary} ({why})"),
                },
                _ => Verdict::Clear {
                    value: None,
                    summary: why,
                },
            }
        }
        Err(why) if !matches!(verdict, Verdict::NoData { .. } | Verdict::Hold { .. }) => {
            no_data(why, observation)
        }
        _ => match &tick.warming_up {
            Some(why)
                if (rule.warmup || uses_deltas(rule))
                    && !matches!(verdict, Verdict::Hold { .. }) =>
            {
                Verdict::Hold {
                    reason: why.clone(),
                }
            }
            _ => verdict,
        },
    };
    let began = match &rule.kind {
        RuleKind::Signal { signal, .. } if matches!(verdict, Verdict::Breach { .. }) => signal
            .signal_name()
            .and_then(|name| observation.since.get(name))
            .copied()
            .map(|began| match tick.restarted_at {
                Some(restart) => began.max(restart),
                None => began,
            }),
        _ => None,
    };
    Judgement {
        verdict,
        memory,
        reset,
        began,
        guarded,
    }
}

/// The probe signal names a rule reads (for `unavailable` lookups).
fn referenced(rule: &Rule) -> impl Iterator<Item = &str> {
    let (selectors, named): (Vec<&Selector>, Vec<&str>) = match &rule.kind {
        RuleKind::Signal { signal, .. } => (vec![signal], Vec::new()),
        RuleKind::Text { signal, .. } | RuleKind::Age { signal } => (Vec::new(), vec![signal]),
        RuleKind::Gauge(_)
        | RuleKind::GaugeRatio { .. }
        | RuleKind::Counter { .. }
        | RuleKind::Ratio(_)
        | RuleKind::Histogram { .. } => (Vec::new(), Vec::new()),
    };
    selectors
        .into_iter()
        .filter_map(Selector::signal_name)
        .chain(named)
}

/// Compares a value with the rule's condition; `what` names the value.
fn compare(
    rule: &Rule,
    severity: Severity,
    what: &str,
    value: f64,
    previous: Option<f64>,
) -> Verdict {
    let shown = match rule.condition {
        Some(condition) if condition.unit != crate::config::Unit::Plain => condition.show(value),
        // A name like `rss_bytes` says its unit; `a_bytes / b_bytes` does not.
        _ if !what.contains(char::is_whitespace) => crate::config::format_value(what, value),
        _ => crate::config::format_number(value),
    };
    match rule.condition {
        Some(condition) if condition.holds(value, previous) => Verdict::Breach {
            severity,
            value: Some(value),
            threshold: Some(condition.to_string()),
            summary: format!("{what} = {shown} ({condition})"),
        },
        _ => Verdict::Clear {
            value: Some(value),
            summary: format!("{what} = {shown}"),
        },
    }
}

/// A `signal:` rule: a probe's own signal by its bare name, else (or with
/// braces) the sum of the matching scraped series.
fn signal_value(
    rule: &Rule,
    severity: Severity,
    signal: &Selector,
    observation: &Observation,
) -> Result<Verdict, String> {
    let value = observation.signals.get(signal).ok_or_else(|| {
        // An extract that found a text where the rule wants a number.
        match signal
            .signal_name()
            .and_then(|name| observation.signals.get_text(name))
        {
            Some(text) => format!(
                "`{signal}` is a text this tick ({}), not a number: compare it quoted, e.g. value: '== \"{}\"'",
                crate::probe::inert(&format!("{text:?}")),
                crate::probe::inert(&text)
            ),
            None => format!("no signal `{signal}` this tick"),
        }
    })?;
    let value = in_rule_unit(rule, signal, value, observation)?;
    Ok(compare(rule, severity, &signal.to_string(), value, None))
}

/// A plugin's value (`rta=0.042ms`) in the unit the rule is written in
/// (`> 1ms` is in seconds): a rule with a unit compares like with like, or
/// says it cannot. A rule without one reads the plugin's number as given.
fn in_rule_unit(
    rule: &Rule,
    signal: &Selector,
    value: f64,
    observation: &Observation,
) -> Result<f64, String> {
    use crate::config::Unit;
    let Some(condition) = rule.condition.filter(|c| c.unit != Unit::Plain) else {
        return Ok(value);
    };
    let Some(uom) = signal
        .signal_name()
        .and_then(|name| observation.signals.unit_of(name))
    else {
        return Ok(value);
    };
    match Unit::of_plugin(uom) {
        Some((unit, factor)) if unit == condition.unit => Ok(value * factor),
        _ => {
            let given = if uom.is_empty() {
                "has no unit (the plugin gave none)".to_string()
            } else {
                format!("is in {uom} (the plugin's unit)")
            };
            Err(format!(
                "`{signal}` {given}, but `{condition}` is {}: write the value as the plugin does, or without a unit",
                condition.unit.kind()
            ))
        }
    }
}

/// A text condition on a probe's text (or a number, as written).
fn text_value(
    severity: Severity,
    signal: &str,
    condition: &crate::config::TextCondition,
    observation: &Observation,
) -> Result<Verdict, String> {
    let text = observation
        .signals
        .get_text(signal)
        .ok_or_else(|| format!("no text `{signal}` this tick"))?;
    let shown = format!("{signal} = {text:?}");
    Ok(if condition.holds(&text) {
        Verdict::Breach {
            severity,
            value: None,
            threshold: Some(condition.to_string()),
            summary: format!("{shown} ({condition})"),
        }
    } else {
        Verdict::Clear {
            value: None,
            summary: shown,
        }
    })
}

/// `age_s(name)`: seconds from the time a probe extracted to this tick.
fn age_value(
    rule: &Rule,
    severity: Severity,
    signal: &str,
    observation: &Observation,
    now: crate::clock::Timestamp,
) -> Result<Verdict, String> {
    // A number read as it came (its text form could round it).
    let text = match observation.signals.get_name(signal) {
        Some(number) => number.to_string(),
        None => observation.signals.get_text(signal).ok_or_else(|| {
            format!("no signal `{signal}` this tick (age_s reads a time it extracted)")
        })?,
    };
    let age = crate::config::age_seconds(&text, now.millis()).ok_or_else(|| {
        format!("`{signal}` = {text:?} is not a time (Unix seconds or milliseconds, or RFC 3339)")
    })?;
    // A few seconds ahead is two clocks a little apart; minutes ahead, a
    // clock is off or the time is in another unit: no age to judge.
    const SKEW_S: f64 = 300.0;
    if age < -SKEW_S {
        return Err(format!(
            "`{signal}` = {text} is {:.0} s ahead of this host's clock: no age can be judged (is this host's or the target's clock off, or the time in another unit?)",
            -age
        ));
    }
    Ok(compare(
        rule,
        severity,
        &format!("age_s({signal})"),
        age,
        None,
    ))
}

/// A `gauge:` rule: the sum of the scraped series its selectors match
/// (never a probe's own signal: a scraped `up` is not the probe's `up`).
fn gauge(
    rule: &Rule,
    severity: Severity,
    selectors: &[Selector],
    observation: &Observation,
) -> Result<Verdict, String> {
    let mut total = 0.0;
    for selector in selectors {
        total += observation
            .signals
            .series_sum(selector)
            .ok_or_else(|| format!("no series `{selector}` this tick"))?;
    }
    let what = selectors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" + ");
    Ok(compare(rule, severity, &what, total, None))
}

fn gauge_ratio(
    rule: &Rule,
    severity: Severity,
    numerator: &Selector,
    denominator: &Selector,
    observation: &Observation,
) -> Result<Verdict, String> {
    let value = |s: &Selector| {
        observation
            .signals
            .series_sum(s)
            .ok_or_else(|| format!("no series `{s}` this tick"))
    };
    let (top, bottom) = (value(numerator)?, value(denominator)?);
    if bottom == 0.0 {
        return Ok(Verdict::Hold {
            reason: format!("{denominator} is 0"),
        });
    }
    Ok(compare(
        rule,
        severity,
        &format!("{numerator} / {denominator}"),
        top / bottom,
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Check;

    /// A rule's verdict with nothing remembered.
    fn judge(rule: &Rule, task: &Task, observation: &Observation) -> Verdict {
        explicit(
            rule,
            task,
            observation,
            &Memory::default(),
            &TickContext::default(),
        )
        .verdict
    }

    fn task(rules: &str) -> Task {
        let yaml = format!("name: t\nhttp: {{ url: \"http://127.0.0.1:1/\" }}\nrules:\n{rules}");
        serde_yaml::from_str(&yaml).unwrap()
    }

    fn observed(signals: &[(&str, f64)], status: CheckStatus) -> Observation {
        let mut o = Observation::default();
        for (name, value) in signals {
            o.signals.set(*name, *value);
        }
        o.checks.push(Check {
            probe: "http",
            status,
            summary: "x".into(),
        });
        o
    }

    #[test]
    fn signal_rule_breaches_and_clears() {
        let t =
            task("  - { name: slow, signal: latency_ms, value: \"> 500\", severity: warning }\n");
        let rule = &t.rules[0];
        let v = judge(
            rule,
            &t,
            &observed(&[("latency_ms", 900.0)], CheckStatus::Ok),
        );
        assert!(
            matches!(
                v,
                Verdict::Breach {
                    severity: Severity::Warning,
                    value: Some(900.0),
                    ..
                }
            ),
            "{v:?}"
        );
        let v = judge(
            rule,
            &t,
            &observed(&[("latency_ms", 100.0)], CheckStatus::Ok),
        );
        assert!(matches!(v, Verdict::Clear { .. }), "{v:?}");
    }

    #[test]
    fn missing_signal_is_no_data_with_the_probe_reason() {
        let t = task("  - { name: slow, signal: latency_ms, value: \"> 500\" }\n");
        let mut o = observed(&[], CheckStatus::Failed);
        o.checks[0].summary = "connection refused".into();
        let v = judge(&t.rules[0], &t, &o);
        let Verdict::NoData { reason } = v else {
            panic!("{v:?}")
        };
        assert!(
            reason.contains("latency_ms") && reason.contains("connection refused"),
            "{reason}"
        );
    }

    #[test]
    fn unless_holds_a_rule_off_and_when_enables_it() {
        let t = task(
            "  - { name: lag, signal: lag, value: \"> 20\", unless: [major_sync], when: [\"peers >= 1\"] }\n",
        );
        let rule = &t.rules[0];
        let v = judge(
            rule,
            &t,
            &observed(
                &[("lag", 50.0), ("major_sync", 1.0), ("peers", 3.0)],
                CheckStatus::Ok,
            ),
        );
        assert!(matches!(v, Verdict::Clear { .. }), "{v:?}");
        let v = judge(
            rule,
            &t,
            &observed(
                &[("lag", 50.0), ("major_sync", 0.0), ("peers", 3.0)],
                CheckStatus::Ok,
            ),
        );
        assert!(matches!(v, Verdict::Breach { .. }), "{v:?}");
        let v = judge(
            rule,
            &t,
            &observed(
                &[("lag", 50.0), ("major_sync", 0.0), ("peers", 0.0)],
                CheckStatus::Ok,
            ),
        );
        assert!(matches!(v, Verdict::Clear { .. }), "{v:?}");
        let v = judge(rule, &t, &observed(&[("lag", 50.0)], CheckStatus::Ok));
        assert!(matches!(v, Verdict::NoData { .. }), "{v:?}");
    }

    #[test]
    fn a_time_far_ahead_of_the_clock_is_no_age_but_a_little_skew_is() {
        let t = task("  - { name: behind, signal: \"age_s(close_time)\", value: \"> 30\" }\n");
        let now = Timestamp::from_secs(1_800_000_000);
        let at = |close: i64| {
            let o = observed(&[("close_time", close as f64)], CheckStatus::Ok);
            let tick = TickContext {
                now,
                ..TickContext::default()
            };
            explicit(&t.rules[0], &t, &o, &Memory::default(), &tick).verdict
        };
        assert!(matches!(at(1_800_000_000 - 31), Verdict::Breach { .. }));
        // Two seconds ahead: clocks a little apart, the node is current.
        assert!(matches!(at(1_800_000_002), Verdict::Clear { .. }));
        // An hour ahead: a clock is off (or the unit is wrong); no age can
        // be judged, and the rule says so rather than passing.
        let v = at(1_800_003_600);
        let Verdict::NoData { reason } = v else {
            panic!("{v:?}")
        };
        assert!(
            reason.contains("3600 s ahead of this host's clock"),
            "{reason}"
        );
    }

    #[test]
    fn implicit_rule_maps_nagios_warning_to_warning() {
        let t = task("  []\n");
        let v = implicit(&t, &observed(&[], CheckStatus::Warning));
        assert!(
            matches!(
                v,
                Verdict::Breach {
                    severity: Severity::Warning,
                    ..
                }
            ),
            "{v:?}"
        );
        let v = implicit(&t, &observed(&[], CheckStatus::Unknown));
        assert!(
            matches!(
                v,
                Verdict::Breach {
                    severity: Severity::Critical,
                    ..
                }
            ),
            "{v:?}"
        );
        let v = implicit(&t, &observed(&[], CheckStatus::Ok));
        assert!(matches!(v, Verdict::Clear { .. }), "{v:?}");
    }
}
