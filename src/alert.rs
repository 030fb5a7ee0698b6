//! The alert lifecycle: ok → pending → firing → resolved, one key at a
//! time. Pure: it takes the prior state, this tick's verdict and the time,
//! and returns the next state and what changed.

use crate::clock::Timestamp;
use crate::config::{Duration, Gate, Severity};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies one alert: profile / task / rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    pub profile: String,
    pub task: String,
    pub rule: String,
}

impl AlertKey {
    pub fn new(profile: &str, task: &str, rule: &str) -> Self {
        AlertKey {
            profile: profile.into(),
            task: task.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for AlertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.profile, self.task, self.rule)
    }
}

/// What one rule concluded this tick.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The condition holds: the alert should (eventually) fire.
    Breach {
        severity: Severity,
        value: Option<f64>,
        threshold: Option<String>,
        summary: String,
    },
    /// The condition does not hold.
    Clear { value: Option<f64>, summary: String },
    /// The rule could not be evaluated (missing series, failed probe).
    NoData { reason: String },
    /// Not judged this tick, and that is expected (warming up after a
    /// restart, a first scrape with nothing to compare, a denominator below
    /// its minimum): the key holds still and no no-data warning is raised.
    Hold { reason: String },
}

impl Verdict {
    pub fn summary(&self) -> &str {
        match self {
            Verdict::Breach { summary, .. } | Verdict::Clear { summary, .. } => summary,
            Verdict::NoData { reason } | Verdict::Hold { reason } => reason,
        }
    }
}

/// A live alert's status. Keys without a row are ok.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Firing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Firing => "firing",
        }
    }
}

/// The remembered state of a key that is pending or firing.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertState {
    pub key: AlertKey,
    pub status: Status,
    pub severity: Severity,
    /// When the current status began.
    pub since: Timestamp,
    /// First tick of the current run of breaches.
    pub bad_since: Timestamp,
    pub bad_ticks: u32,
    /// First tick of the current run of clears while firing.
    pub good_since: Option<Timestamp>,
    pub good_ticks: u32,
    pub last_notified: Option<Timestamp>,
    pub value: Option<f64>,
    pub threshold: Option<String>,
    pub summary: String,
}

/// A change worth a history row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    /// Breaching, but `for` is not met yet.
    Pending,
    Firing,
    /// Still firing after the cooldown: remind.
    Reminder,
    /// Still firing, at a higher severity.
    Escalated,
    Resolved,
    /// A pending alert cleared before it fired.
    Cleared,
    /// The task was restarted and came back healthy.
    Restarted,
    /// The task was restarted and did not come back (or could not be).
    RestartFailed,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Pending => "pending",
            Transition::Firing => "firing",
            Transition::Reminder => "reminder",
            Transition::Escalated => "escalated",
            Transition::Resolved => "resolved",
            Transition::Cleared => "cleared",
            Transition::Restarted => "restarted",
            Transition::RestartFailed => "restart_failed",
        }
    }
}

/// How a key is gated and reminded.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub for_: Gate,
    pub resolve_after: Gate,
    pub cooldown: Duration,
    pub notify_resolved: bool,
}

/// The result of one tick for one key.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// `None`: the key is ok (no row).
    pub state: Option<AlertState>,
    pub transition: Option<Transition>,
    pub notify: bool,
}

/// Whether a `for` / `resolve_after` gate is met by `ticks` consecutive
/// ticks that began at `since`.
pub fn gate_met(gate: Gate, ticks: u32, since: Timestamp, now: Timestamp) -> bool {
    match gate {
        Gate::Ticks(needed) => ticks >= needed,
        Gate::For(duration) => now.since(since) >= duration.as_millis(),
    }
}

/// Advances one key by one tick.
pub fn step(
    prior: Option<&AlertState>,
    key: &AlertKey,
    verdict: &Verdict,
    policy: &Policy,
    now: Timestamp,
) -> Step {
    match verdict {
        Verdict::NoData { .. } | Verdict::Hold { .. } => Step {
            state: prior.cloned(),
            transition: None,
            notify: false,
        },
        Verdict::Clear { .. } => clear(prior, policy, now),
        Verdict::Breach {
            severity,
            value,
            threshold,
            summary,
        } => {
            let mut state = match prior {
                Some(prior) => {
                    let mut state = prior.clone();
                    state.bad_ticks = state.bad_ticks.saturating_add(1);
                    state
                }
                None => AlertState {
                    key: key.clone(),
                    status: Status::Pending,
                    severity: *severity,
                    since: now,
                    bad_since: now,
                    bad_ticks: 1,
                    good_since: None,
                    good_ticks: 0,
                    last_notified: None,
                    value: None,
                    threshold: None,
                    summary: String::new(),
                },
            };
            let previous_severity = state.severity;
            state.severity = *severity;
            state.value = *value;
            state.threshold = threshold.clone();
            state.summary = summary.clone();
            state.good_since = None;
            state.good_ticks = 0;
            breach(prior, state, previous_severity, policy, now)
        }
    }
}

fn breach(
    prior: Option<&AlertState>,
    mut state: AlertState,
    previous_severity: Severity,
    policy: &Policy,
    now: Timestamp,
) -> Step {
    match state.status {
        Status::Pending => {
            if gate_met(policy.for_, state.bad_ticks, state.bad_since, now) {
                state.status = Status::Firing;
                state.since = now;
                state.last_notified = Some(now);
                Step {
                    state: Some(state),
                    transition: Some(Transition::Firing),
                    notify: true,
                }
            } else {
                let transition = prior.is_none().then_some(Transition::Pending);
                Step {
                    state: Some(state),
                    transition,
                    notify: false,
                }
            }
        }
        Status::Firing => {
            let due = state
                .last_notified
                .is_none_or(|last| now.since(last) >= policy.cooldown.as_millis());
            let transition = if state.severity > previous_severity {
                Some(Transition::Escalated)
            } else if due {
                Some(Transition::Reminder)
            } else {
                None
            };
            if transition.is_some() {
                state.last_notified = Some(now);
            }
            Step {
                state: Some(state),
                transition,
                notify: transition.is_some(),
            }
        }
    }
}

fn clear(prior: Option<&AlertState>, policy: &Policy, now: Timestamp) -> Step {
    let Some(prior) = prior else {
        return Step {
            state: None,
            transition: None,
            notify: false,
        };
    };
    match prior.status {
        Status::Pending => Step {
            state: None,
            transition: Some(Transition::Cleared),
            notify: false,
        },
        Status::Firing => {
            let mut state = prior.clone();
            state.good_ticks = state.good_ticks.saturating_add(1);
            let good_since = *state.good_since.get_or_insert(now);
            if gate_met(policy.resolve_after, state.good_ticks, good_since, now) {
                Step {
                    state: None,
                    transition: Some(Transition::Resolved),
                    notify: policy.notify_resolved,
                }
            } else {
                Step {
                    state: Some(state),
                    transition: None,
                    notify: false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn policy(for_: Gate, resolve_after: Gate) -> Policy {
        Policy {
            for_,
            resolve_after,
            cooldown: Duration::from_secs(2 * 3600),
            notify_resolved: true,
        }
    }

    fn bad(severity: Severity) -> Verdict {
        Verdict::Breach {
            severity,
            value: Some(500.0),
            threshold: Some("200-399".into()),
            summary: "HTTP 500".into(),
        }
    }

    fn good() -> Verdict {
        Verdict::Clear {
            value: Some(200.0),
            summary: "HTTP 200".into(),
        }
    }

    /// Runs verdicts one per minute; returns (status after, transition, notified) per tick.
    fn run(
        policy: Policy,
        verdicts: &[Verdict],
    ) -> Vec<(Option<Status>, Option<Transition>, bool)> {
        let key = AlertKey::new("p", "t", "health");
        let mut state: Option<AlertState> = None;
        let mut out = Vec::new();
        for (i, verdict) in verdicts.iter().enumerate() {
            let now = Timestamp(1_000_000_000_000 + i as i64 * MINUTE);
            let s = step(state.as_ref(), &key, verdict, &policy, now);
            out.push((s.state.as_ref().map(|a| a.status), s.transition, s.notify));
            state = s.state;
        }
        out
    }

    use Status::{Firing, Pending};
    use Transition as T;

    #[test]
    fn fires_at_once_by_default_and_resolves_on_the_next_clear() {
        let ticks = run(
            policy(Gate::Ticks(1), Gate::Ticks(1)),
            &[
                good(),
                bad(Severity::Critical),
                bad(Severity::Critical),
                good(),
                good(),
            ],
        );
        assert_eq!(
            ticks,
            vec![
                (None, None, false),
                (Some(Firing), Some(T::Firing), true),
                (Some(Firing), None, false),
                (None, Some(T::Resolved), true),
                (None, None, false),
            ]
        );
    }

    #[test]
    fn for_three_ticks_fires_on_the_third() {
        let b = bad(Severity::Critical);
        let ticks = run(
            policy(Gate::Ticks(3), Gate::Ticks(1)),
            &[b.clone(), b.clone(), b.clone(), b],
        );
        assert_eq!(
            ticks,
            vec![
                (Some(Pending), Some(T::Pending), false),
                (Some(Pending), None, false),
                (Some(Firing), Some(T::Firing), true),
                (Some(Firing), None, false),
            ]
        );
    }

    #[test]
    fn a_clear_resets_the_pending_streak() {
        let b = bad(Severity::Critical);
        let ticks = run(
            policy(Gate::Ticks(2), Gate::Ticks(1)),
            &[b.clone(), good(), b.clone(), b],
        );
        assert_eq!(
            ticks,
            vec![
                (Some(Pending), Some(T::Pending), false),
                (None, Some(T::Cleared), false),
                (Some(Pending), Some(T::Pending), false),
                (Some(Firing), Some(T::Firing), true),
            ]
        );
    }

    #[test]
    fn duration_gates_count_wall_time() {
        // for: 180s at one tick a minute: bad at 0, 1, 2, 3 min → fires at 3 min.
        let b = bad(Severity::Critical);
        let ticks = run(
            policy(
                Gate::For(Duration::from_secs(180)),
                Gate::For(Duration::from_secs(120)),
            ),
            &[b.clone(), b.clone(), b.clone(), b, good(), good(), good()],
        );
        let statuses: Vec<_> = ticks.iter().map(|t| t.1).collect();
        assert_eq!(
            statuses,
            vec![
                Some(T::Pending),
                None,
                None,
                Some(T::Firing),
                None,
                None,
                Some(T::Resolved)
            ]
        );
    }

    #[test]
    fn resolve_after_needs_consecutive_clears() {
        let b = bad(Severity::Critical);
        let ticks = run(
            policy(Gate::Ticks(1), Gate::Ticks(2)),
            &[b.clone(), good(), b, good(), good()],
        );
        let statuses: Vec<_> = ticks.iter().map(|t| (t.0, t.1)).collect();
        assert_eq!(
            statuses,
            vec![
                (Some(Firing), Some(T::Firing)),
                (Some(Firing), None),
                (Some(Firing), None),
                (Some(Firing), None),
                (None, Some(T::Resolved)),
            ]
        );
    }

    #[test]
    fn reminds_after_the_cooldown_only() {
        let mut p = policy(Gate::Ticks(1), Gate::Ticks(1));
        p.cooldown = Duration::from_secs(120);
        let b = bad(Severity::Critical);
        let ticks = run(p, &[b.clone(), b.clone(), b.clone(), b.clone(), b]);
        let notified: Vec<_> = ticks.iter().map(|t| (t.1, t.2)).collect();
        assert_eq!(
            notified,
            vec![
                (Some(T::Firing), true),
                (None, false),
                (Some(T::Reminder), true),
                (None, false),
                (Some(T::Reminder), true),
            ]
        );
    }

    #[test]
    fn escalation_notifies_inside_the_cooldown() {
        let ticks = run(
            policy(Gate::Ticks(1), Gate::Ticks(1)),
            &[
                bad(Severity::Warning),
                bad(Severity::Critical),
                bad(Severity::Warning),
            ],
        );
        assert_eq!(ticks[1], (Some(Firing), Some(T::Escalated), true));
        assert_eq!(ticks[2], (Some(Firing), None, false));
    }

    #[test]
    fn no_data_holds_the_state() {
        let nodata = Verdict::NoData {
            reason: "no series".into(),
        };
        let ticks = run(
            policy(Gate::Ticks(1), Gate::Ticks(1)),
            &[bad(Severity::Critical), nodata.clone(), nodata, good()],
        );
        assert_eq!(ticks[1], (Some(Firing), None, false));
        assert_eq!(ticks[2], (Some(Firing), None, false));
        assert_eq!(ticks[3], (None, Some(T::Resolved), true));
    }

    #[test]
    fn resolution_can_be_silent() {
        let mut p = policy(Gate::Ticks(1), Gate::Ticks(1));
        p.notify_resolved = false;
        let ticks = run(p, &[bad(Severity::Critical), good()]);
        assert_eq!(ticks[1], (None, Some(T::Resolved), false));
    }
}
