//! Rules turn a task's signals into verdicts. Pure: signals in, verdict out.

use crate::alert::Verdict;
use crate::config::{Guard, Rule, RuleKind, Severity, Task, format_number};
use crate::probe::{CheckStatus, Observation};

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
            CheckStatus::Warning | CheckStatus::Critical | CheckStatus::Unknown => {
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
        .filter(|c| matches!(c.status, CheckStatus::Failed | CheckStatus::Unsupported))
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

/// Evaluates an explicit rule against this tick's signals.
pub fn explicit(rule: &Rule, task: &Task, observation: &Observation) -> Verdict {
    let severity = rule.severity.unwrap_or(task.severity);
    match guards(rule, observation) {
        Err(why) => return no_data(why, observation),
        Ok(Some(why)) => {
            return Verdict::Clear {
                value: None,
                summary: why,
            };
        }
        Ok(None) => {}
    }
    match &rule.kind {
        RuleKind::Signal {
            signal,
            trend: None,
        } => {
            let Some(value) = observation.signals.get(signal) else {
                return no_data(format!("no signal `{signal}` this tick"), observation);
            };
            let Some(condition) = rule.condition else {
                return Verdict::NoData {
                    reason: "the rule has no condition".into(),
                };
            };
            let shown = format_number(value);
            if condition.holds(value, None) {
                Verdict::Breach {
                    severity,
                    value: Some(value),
                    threshold: Some(condition.to_string()),
                    summary: format!("{signal} = {shown} ({condition})"),
                }
            } else {
                Verdict::Clear {
                    value: Some(value),
                    summary: format!("{signal} = {shown}"),
                }
            }
        }
        other => Verdict::NoData {
            reason: format!(
                "`{}{}` rules are not supported yet",
                other.key(),
                if matches!(other, RuleKind::Signal { .. }) {
                    " trend"
                } else {
                    ""
                }
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Check;

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
        let v = explicit(
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
        let v = explicit(
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
        let v = explicit(&t.rules[0], &t, &o);
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
        let v = explicit(
            rule,
            &t,
            &observed(
                &[("lag", 50.0), ("major_sync", 1.0), ("peers", 3.0)],
                CheckStatus::Ok,
            ),
        );
        assert!(matches!(v, Verdict::Clear { .. }), "{v:?}");
        let v = explicit(
            rule,
            &t,
            &observed(
                &[("lag", 50.0), ("major_sync", 0.0), ("peers", 3.0)],
                CheckStatus::Ok,
            ),
        );
        assert!(matches!(v, Verdict::Breach { .. }), "{v:?}");
        let v = explicit(
            rule,
            &t,
            &observed(
                &[("lag", 50.0), ("major_sync", 0.0), ("peers", 0.0)],
                CheckStatus::Ok,
            ),
        );
        assert!(matches!(v, Verdict::Clear { .. }), "{v:?}");
        let v = explicit(rule, &t, &observed(&[("lag", 50.0)], CheckStatus::Ok));
        assert!(matches!(v, Verdict::NoData { .. }), "{v:?}");
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
