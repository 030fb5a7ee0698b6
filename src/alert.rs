//! The alert lifecycle: ok → pending → firing → resolved, one key at a
//! time. Pure: it takes the prior state, this tick's verdict and the time,
//! and returns the next state and what changed.
//!
//! Over 800 lines because its unit tests (about 420, one per lifecycle
//! step) stay beside the state machine; the code is about 560.

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

/// A live alert's status. Keys without a row are ok. Its names are derived
/// once (strum) for the store and serde alike.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Status {
    /// Breaching, `for` not met yet.
    Pending,
    /// Breaching (or, for a point-like rule, it occurred this tick): the
    /// incident is open and the task is unhealthy.
    Firing,
    /// Clear again, but its incident stays open for the cooldown: firing
    /// again within it is the same incident, not a new one.
    Quiet,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<Status> {
        use strum::VariantArray;
        Status::VARIANTS
            .iter()
            .copied()
            .find(|s| s.as_str() == text)
    }

    /// Whether the key makes its task unhealthy (exit 1).
    pub fn is_active(self) -> bool {
        matches!(self, Status::Pending | Status::Firing)
    }
}

/// The remembered state of a key that is pending, firing or quiet.
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
    /// When the incident first fired; `None` while it never has.
    pub opened_at: Option<Timestamp>,
    /// What people were told last is "firing" (no resolution since).
    pub announced: bool,
    /// It fired again after its resolution was announced: further
    /// resolutions wait until it stays clear for the cooldown.
    pub flapping: bool,
    /// The last ticks' verdicts, a bit a tick (bit 0 the newest, 1 a
    /// breach): what `for: N of M` counts.
    pub recent: u64,
}

/// A change worth a history row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Breaching, but `for` is not met yet.
    Pending,
    Firing,
    /// Still firing after the cooldown: remind.
    Reminder,
    /// Still firing, at a higher severity.
    Escalated,
    Resolved,
    /// The condition cleared and nothing was announced: a pending alert
    /// before it fired, a point-like rule after its occurrence, or a
    /// flapping one.
    Cleared,
    /// The task was restarted and came back healthy.
    Restarted,
    /// The task was restarted and did not come back (or could not be).
    RestartFailed,
}

impl Transition {
    /// Its `alert_history.status`.
    pub fn as_str(self) -> &'static str {
        HistoryStatus::from(self).as_str()
    }
}

/// `alert_history.status`: the alert transitions, the events of log
/// probes, and the notifications given up on. The one list of these names:
/// the store writes them, `monitor alerts --status` and `/v1/alerts?status=`
/// take them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum HistoryStatus {
    Pending,
    Firing,
    Reminder,
    Escalated,
    Resolved,
    Cleared,
    Restarted,
    RestartFailed,
    /// A log line that an `events:` pattern matched.
    Event,
    /// A notification given up on (retries or `max_age` exhausted).
    DeadLetter,
}

impl HistoryStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The status named `text`; the error lists every name.
    pub fn parse(text: &str) -> Result<HistoryStatus, String> {
        use strum::VariantArray;
        HistoryStatus::VARIANTS
            .iter()
            .copied()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "{text:?} is not a history status: give one of {}",
                    HistoryStatus::names().join(", ")
                )
            })
    }

    /// Every name, in the order of the enum.
    pub fn names() -> Vec<&'static str> {
        use strum::VariantArray;
        HistoryStatus::VARIANTS.iter().map(|s| s.as_str()).collect()
    }
}

impl From<Transition> for HistoryStatus {
    fn from(transition: Transition) -> HistoryStatus {
        match transition {
            Transition::Pending => HistoryStatus::Pending,
            Transition::Firing => HistoryStatus::Firing,
            Transition::Reminder => HistoryStatus::Reminder,
            Transition::Escalated => HistoryStatus::Escalated,
            Transition::Resolved => HistoryStatus::Resolved,
            Transition::Cleared => HistoryStatus::Cleared,
            Transition::Restarted => HistoryStatus::Restarted,
            Transition::RestartFailed => HistoryStatus::RestartFailed,
        }
    }
}

/// `monitor alerts --status` takes exactly these names.
impl clap::ValueEnum for HistoryStatus {
    fn value_variants<'a>() -> &'a [Self] {
        <HistoryStatus as strum::VariantArray>::VARIANTS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// What a step tells people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A new incident.
    Firing,
    /// The same incident fired again after a quiet spell.
    Again,
    Reminder,
    Escalated,
    Resolved,
}

/// How a key is gated and reminded.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub for_: Gate,
    pub resolve_after: Gate,
    /// Reminders of a firing alert come no more often than this, and an
    /// incident stays open this long after it clears.
    pub cooldown: Duration,
    pub notify_resolved: bool,
    /// The rule reports occurrences (counter deltas, log patterns), not a
    /// lasting state: clearing the next tick fixes nothing, so it is not
    /// announced; the incident ends after a cooldown without occurrences.
    pub point_like: bool,
    /// `clear:`: a firing alert resolves only once this holds (a separate
    /// resolve threshold); between the two it stays firing.
    pub clear: Option<crate::config::Condition>,
}

/// The result of one tick for one key.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// `None`: the key is ok (no row).
    pub state: Option<AlertState>,
    pub transition: Option<Transition>,
    /// What to tell people, if anything.
    pub notice: Option<Notice>,
    /// Why it was (not) announced, for the history row.
    pub note: Option<String>,
}

impl Step {
    fn quiet(state: Option<AlertState>) -> Step {
        Step {
            state,
            transition: None,
            notice: None,
            note: None,
        }
    }

    pub fn notify(&self) -> bool {
        self.notice.is_some()
    }
}

/// Whether a `for` / `resolve_after` gate is met by `ticks` consecutive
/// ticks that began at `since`.
pub fn gate_met(gate: Gate, ticks: u32, since: Timestamp, now: Timestamp) -> bool {
    match gate {
        Gate::Ticks(needed) => ticks >= needed,
        Gate::For(duration) => now.reached(since, duration.as_millis()),
        // `ticks` is then the count of breaches within the window.
        Gate::Within { needed, .. } => ticks >= needed,
    }
}

/// The verdicts `gate` counts of `recent`: those of its window.
fn breaches_within(gate: Gate, recent: u64) -> Option<u32> {
    match gate {
        Gate::Within { window, .. } => {
            let mask = if window >= 64 {
                u64::MAX
            } else {
                (1u64 << window) - 1
            };
            Some((recent & mask).count_ones())
        }
        _ => None,
    }
}

/// Advances one key by one tick. `began` is when a breach really began,
/// when the probe knows it began before this tick.
pub fn step(
    prior: Option<&AlertState>,
    key: &AlertKey,
    verdict: &Verdict,
    policy: &Policy,
    now: Timestamp,
    began: Option<Timestamp>,
) -> Step {
    let earlier = prior.map_or(0, |p| p.recent);
    match verdict {
        // Between the firing threshold and `clear:`: still firing.
        Verdict::Clear {
            value: Some(value), ..
        } if policy.clear.is_some_and(|clear| !clear.holds(*value, None))
            && prior.is_some_and(|p| p.status == Status::Firing) =>
        {
            let mut state = prior.cloned().expect("a firing key");
            state.value = Some(*value);
            state.good_since = None;
            state.good_ticks = 0;
            state.recent = earlier << 1;
            Step::quiet(Some(state))
        }
        Verdict::NoData { .. } | Verdict::Hold { .. } => match prior {
            // A quiet incident ends on time even while its rule is held.
            Some(state) if state.status == Status::Quiet => close_when_due(state, policy, now),
            _ => Step::quiet(prior.cloned()),
        },
        Verdict::Clear { .. } => clear(prior, policy, now),
        Verdict::Breach {
            severity,
            value,
            threshold,
            summary,
        } => {
            // A quiet incident whose cooldown passed without a tick (the
            // host was off) is over: this is a new one.
            let prior = prior.filter(|p| {
                !(p.status == Status::Quiet && now.reached(p.since, policy.cooldown.as_millis()))
            });
            let began = began.filter(|b| *b <= now).unwrap_or(now);
            let mut state = match prior {
                Some(prior) if prior.status == Status::Quiet => AlertState {
                    status: Status::Pending,
                    since: now,
                    bad_since: began,
                    bad_ticks: 1,
                    ..prior.clone()
                },
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
                    bad_since: began,
                    bad_ticks: 1,
                    good_since: None,
                    good_ticks: 0,
                    last_notified: None,
                    value: None,
                    threshold: None,
                    summary: String::new(),
                    opened_at: None,
                    announced: false,
                    flapping: false,
                    recent: 0,
                },
            };
            state.recent = (earlier << 1) | 1;
            if let Some(count) = breaches_within(policy.for_, state.recent) {
                state.bad_ticks = count;
            }
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
        Status::Pending | Status::Quiet => {
            if gate_met(policy.for_, state.bad_ticks, state.bad_since, now) {
                fire(state, policy, now)
            } else {
                let fresh = prior.is_none_or(|p| p.status == Status::Quiet);
                Step {
                    state: Some(state),
                    transition: fresh.then_some(Transition::Pending),
                    notice: None,
                    note: None,
                }
            }
        }
        Status::Firing => {
            let due = state
                .last_notified
                .is_none_or(|last| now.reached(last, policy.cooldown.as_millis()));
            let notice = if state.severity > previous_severity {
                Some(Notice::Escalated)
            } else if due && !state.announced {
                // Never told (a silence held it): the first word is "firing".
                Some(Notice::Firing)
            } else if due {
                Some(Notice::Reminder)
            } else {
                None
            };
            if notice.is_some() {
                state.last_notified = Some(now);
                state.announced = true;
            }
            Step {
                state: Some(state),
                transition: notice.map(|n| match n {
                    Notice::Escalated => Transition::Escalated,
                    Notice::Firing => Transition::Firing,
                    _ => Transition::Reminder,
                }),
                notice,
                note: None,
            }
        }
    }
}

/// The gate is met: a new incident, or the open one firing again.
fn fire(mut state: AlertState, policy: &Policy, now: Timestamp) -> Step {
    state.status = Status::Firing;
    state.since = now;
    let Some(opened) = state.opened_at else {
        state.opened_at = Some(now);
        state.last_notified = Some(now);
        state.announced = true;
        state.flapping = false;
        return Step {
            state: Some(state),
            transition: Some(Transition::Firing),
            notice: Some(Notice::Firing),
            note: None,
        };
    };
    let cooldown = policy.cooldown.as_millis();
    let since_notified = state.last_notified.map(|last| now.since(last));
    let (notice, note) = if !state.announced && state.last_notified.is_none() {
        // Never told (held when it fired): this is the first word.
        (Some(Notice::Firing), None)
    } else if !state.announced {
        // The last word was "resolved": say it is back, once.
        state.flapping = !policy.point_like;
        let note = if state.flapping {
            format!(
                "fired again within {} of its resolution: flapping; its next resolution is announced once it stays clear for {}",
                policy.cooldown, policy.cooldown
            )
        } else {
            "fired again".to_string()
        };
        (Some(Notice::Again), Some(note))
    } else if since_notified.is_none_or(|ms| ms + crate::clock::TICK_SLACK_MS >= cooldown) {
        (Some(Notice::Again), None)
    } else {
        let note = format!(
            "the same incident as at {opened}: not notified again within the cooldown ({} since the last notification, cooldown {})",
            crate::clock::human_duration(since_notified.unwrap_or(0)),
            policy.cooldown
        );
        (None, Some(note))
    };
    if notice.is_some() {
        state.last_notified = Some(now);
        state.announced = true;
    }
    Step {
        state: Some(state),
        transition: Some(Transition::Firing),
        notice,
        note,
    }
}

fn clear(prior: Option<&AlertState>, policy: &Policy, now: Timestamp) -> Step {
    let Some(prior) = prior else {
        return Step::quiet(None);
    };
    let recent = prior.recent << 1;
    if matches!(prior.status, Status::Pending)
        && let Some(count) = breaches_within(policy.for_, recent).filter(|n| *n > 0)
    {
        // `for: N of M`: the breaches of the window still count.
        let mut state = prior.clone();
        state.recent = recent;
        state.bad_ticks = count;
        return Step::quiet(Some(state));
    }
    let mut step = clear_in_a_row(prior, policy, now);
    if let Some(state) = &mut step.state {
        state.recent = recent;
    }
    step
}

fn clear_in_a_row(prior: &AlertState, policy: &Policy, now: Timestamp) -> Step {
    match prior.status {
        Status::Pending if prior.opened_at.is_some() => Step {
            state: Some(go_quiet(prior, now)),
            transition: Some(Transition::Cleared),
            notice: None,
            note: Some("cleared before firing again".to_string()),
        },
        Status::Pending => Step {
            state: None,
            transition: Some(Transition::Cleared),
            notice: None,
            note: None,
        },
        Status::Firing if policy.point_like => Step {
            state: Some(go_quiet(prior, now)),
            transition: Some(Transition::Cleared),
            notice: None,
            note: Some(format!(
                "no new occurrence this tick; not announced as resolved (an occurrence is not a state): the incident ends after {} without one",
                policy.cooldown
            )),
        },
        Status::Firing => {
            let mut state = prior.clone();
            state.good_ticks = state.good_ticks.saturating_add(1);
            let good_since = *state.good_since.get_or_insert(now);
            if !gate_met(policy.resolve_after, state.good_ticks, good_since, now) {
                return Step::quiet(Some(state));
            }
            let mut quiet = go_quiet(&state, now);
            if prior.flapping {
                return Step {
                    state: Some(quiet),
                    transition: Some(Transition::Cleared),
                    notice: None,
                    note: Some(format!(
                        "cleared while flapping: announced once it stays clear for {}",
                        policy.cooldown
                    )),
                };
            }
            quiet.announced = false;
            // What was never told (held by a silence) resolves quietly.
            let told = prior.announced && policy.notify_resolved;
            Step {
                state: Some(quiet),
                transition: Some(Transition::Resolved),
                notice: told.then_some(Notice::Resolved),
                note: None,
            }
        }
        Status::Quiet => close_when_due(prior, policy, now),
    }
}

fn go_quiet(state: &AlertState, now: Timestamp) -> AlertState {
    AlertState {
        status: Status::Quiet,
        since: now,
        good_since: None,
        good_ticks: 0,
        bad_ticks: 0,
        ..state.clone()
    }
}

/// A quiet incident ends after the cooldown. Its resolution is announced
/// then if people last heard it firing (a point-like rule, a flapping one).
fn close_when_due(state: &AlertState, policy: &Policy, now: Timestamp) -> Step {
    if !now.reached(state.since, policy.cooldown.as_millis()) {
        return Step::quiet(Some(state.clone()));
    }
    if !state.announced {
        return Step::quiet(None);
    }
    let note = if policy.point_like {
        format!("no new occurrence for {}", policy.cooldown)
    } else {
        format!("clear for {} after flapping", policy.cooldown)
    };
    Step {
        state: None,
        transition: Some(Transition::Resolved),
        notice: policy.notify_resolved.then_some(Notice::Resolved),
        note: Some(note),
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
            point_like: false,
            clear: None,
        }
    }

    fn point_like() -> Policy {
        Policy {
            point_like: true,
            ..policy(Gate::Ticks(1), Gate::Ticks(1))
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

    /// Runs verdicts one per minute; returns (status after, transition,
    /// notice) per tick.
    fn run(
        policy: Policy,
        verdicts: &[Verdict],
    ) -> Vec<(Option<Status>, Option<Transition>, Option<Notice>)> {
        run_at(
            policy,
            verdicts
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, v)| (i as i64, v)),
        )
    }

    /// Like `run`, each verdict at its own minute.
    fn run_at(
        policy: Policy,
        verdicts: impl IntoIterator<Item = (i64, Verdict)>,
    ) -> Vec<(Option<Status>, Option<Transition>, Option<Notice>)> {
        let key = AlertKey::new("p", "t", "health");
        let mut state: Option<AlertState> = None;
        let mut out = Vec::new();
        for (minute, verdict) in verdicts {
            let now = Timestamp(1_000_000_000_000 + minute * MINUTE);
            let s = step(state.as_ref(), &key, &verdict, &policy, now, None);
            out.push((s.state.as_ref().map(|a| a.status), s.transition, s.notice));
            state = s.state;
        }
        out
    }

    use Notice as N;
    use Status::{Firing, Pending, Quiet};
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
                (None, None, None),
                (Some(Firing), Some(T::Firing), Some(N::Firing)),
                (Some(Firing), None, None),
                (Some(Quiet), Some(T::Resolved), Some(N::Resolved)),
                (Some(Quiet), None, None),
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
                (Some(Pending), Some(T::Pending), None),
                (Some(Pending), None, None),
                (Some(Firing), Some(T::Firing), Some(N::Firing)),
                (Some(Firing), None, None),
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
                (Some(Pending), Some(T::Pending), None),
                (None, Some(T::Cleared), None),
                (Some(Pending), Some(T::Pending), None),
                (Some(Firing), Some(T::Firing), Some(N::Firing)),
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
    fn a_breach_known_to_have_begun_earlier_counts_from_then() {
        // progress == 0 first seen at minute 1, but the last progress was
        // seen at minute 0: 180 s are up at minute 3, not 4.
        let key = AlertKey::new("p", "t", "stalled");
        let p = policy(Gate::For(Duration::from_secs(180)), Gate::Ticks(1));
        let at = |m: i64| Timestamp(m * MINUTE);
        let mut state = None;
        let mut fired = Vec::new();
        for minute in 1..=4 {
            let s = step(
                state.as_ref(),
                &key,
                &bad(Severity::Critical),
                &p,
                at(minute),
                Some(at(0)),
            );
            fired.push(s.transition);
            state = s.state;
        }
        assert_eq!(fired, [Some(T::Pending), None, Some(T::Firing), None]);
    }

    #[test]
    fn cron_start_jitter_does_not_cost_a_tick() {
        // Ticks start a few hundred ms late, then on time: `for: 180s`
        // from the first is met on the tick three minutes later.
        let key = AlertKey::new("p", "t", "health");
        let p = policy(Gate::For(Duration::from_secs(180)), Gate::Ticks(1));
        let mut state = None;
        let mut fired = Vec::new();
        for at in [300, 60_200, 120_100, 180_050] {
            let s = step(
                state.as_ref(),
                &key,
                &bad(Severity::Critical),
                &p,
                Timestamp(at),
                None,
            );
            fired.push(s.transition);
            state = s.state;
        }
        assert_eq!(fired, [Some(T::Pending), None, None, Some(T::Firing)]);
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
                (Some(Quiet), Some(T::Resolved)),
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
                (Some(T::Firing), Some(N::Firing)),
                (None, None),
                (Some(T::Reminder), Some(N::Reminder)),
                (None, None),
                (Some(T::Reminder), Some(N::Reminder)),
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
        assert_eq!(
            ticks[1],
            (Some(Firing), Some(T::Escalated), Some(N::Escalated))
        );
        assert_eq!(ticks[2], (Some(Firing), None, None));
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
        assert_eq!(ticks[1], (Some(Firing), None, None));
        assert_eq!(ticks[2], (Some(Firing), None, None));
        assert_eq!(
            ticks[3],
            (Some(Quiet), Some(T::Resolved), Some(N::Resolved))
        );
    }

    #[test]
    fn resolution_can_be_silent() {
        let mut p = policy(Gate::Ticks(1), Gate::Ticks(1));
        p.notify_resolved = false;
        let ticks = run(p, &[bad(Severity::Critical), good()]);
        assert_eq!(ticks[1], (Some(Quiet), Some(T::Resolved), None));
    }

    /// A bursty counter (seed 003): an increase every other tick for two
    /// hours is one incident, told once, then once more after the
    /// cooldown; its quiet ticks announce nothing; after two quiet hours
    /// the incident ends and that is said.
    #[test]
    fn a_bursty_point_like_rule_is_one_incident_per_cooldown() {
        let mut verdicts: Vec<(i64, Verdict)> = (0..=150)
            .map(|m| {
                let v = if m % 2 == 0 {
                    bad(Severity::Warning)
                } else {
                    good()
                };
                (m, v)
            })
            .collect();
        verdicts.extend((151..=280).map(|m| (m, good())));
        let ticks = run_at(point_like(), verdicts);
        let told: Vec<(usize, Notice)> = ticks
            .iter()
            .enumerate()
            .filter_map(|(m, t)| t.2.map(|n| (m, n)))
            .collect();
        // Fired at 0, told again at 120 (cooldown since 0), resolved two
        // hours after it went quiet at 151.
        assert_eq!(told, [(0, N::Firing), (120, N::Again), (271, N::Resolved)]);
        assert_eq!(ticks[1], (Some(Quiet), Some(T::Cleared), None));
        assert_eq!(ticks[2], (Some(Firing), Some(T::Firing), None));
        assert_eq!(ticks[272], (None, None, None));
        // Every occurrence and quiet tick is in the history.
        let firings = ticks.iter().filter(|t| t.1 == Some(T::Firing)).count();
        assert_eq!(firings, 76);
    }

    /// A flapping state: resolved once, back once (told), then its
    /// flapping is not told until it holds steady for the cooldown.
    #[test]
    fn a_flapping_state_is_told_once_back_and_resolved_when_steady() {
        let mut p = policy(Gate::Ticks(1), Gate::Ticks(1));
        p.cooldown = Duration::from_secs(600);
        let b = || bad(Severity::Critical);
        let ticks = run(
            p,
            &[
                b(),
                good(),
                b(),
                good(),
                b(),
                good(),
                good(),
                good(),
                good(),
                good(),
                good(),
                good(),
                good(),
                good(),
                good(),
                good(),
                good(),
            ],
        );
        let told: Vec<(usize, Notice)> = ticks
            .iter()
            .enumerate()
            .filter_map(|(m, t)| t.2.map(|n| (m, n)))
            .collect();
        assert_eq!(
            told,
            [
                (0, N::Firing),
                (1, N::Resolved),
                (2, N::Again),
                (15, N::Resolved)
            ]
        );
        assert_eq!(ticks[3], (Some(Quiet), Some(T::Cleared), None));
        assert_eq!(ticks[4], (Some(Firing), Some(T::Firing), None));
        assert_eq!(ticks[16], (None, None, None));
    }

    #[test]
    fn a_quiet_incident_older_than_its_cooldown_is_over_even_without_ticks() {
        let mut p = policy(Gate::Ticks(1), Gate::Ticks(1));
        p.cooldown = Duration::from_secs(600);
        // Resolved at minute 1, no tick for two hours, failing again.
        let ticks = run_at(
            p,
            [
                (0, bad(Severity::Critical)),
                (1, good()),
                (121, bad(Severity::Critical)),
            ],
        );
        assert_eq!(ticks[2], (Some(Firing), Some(T::Firing), Some(N::Firing)));
    }

    #[test]
    fn a_quiet_state_ends_silently_after_the_cooldown() {
        let mut p = policy(Gate::Ticks(1), Gate::Ticks(1));
        p.cooldown = Duration::from_secs(120);
        let ticks = run(
            p,
            &[bad(Severity::Critical), good(), good(), good(), good()],
        );
        assert_eq!(ticks[1].0, Some(Quiet));
        assert_eq!(ticks[2], (Some(Quiet), None, None));
        assert_eq!(
            ticks[3],
            (None, None, None),
            "the incident ended, nothing to say"
        );
        // After it ended, a breach is a new incident.
        let ticks = run(
            p,
            &[
                bad(Severity::Critical),
                good(),
                good(),
                good(),
                bad(Severity::Critical),
            ],
        );
        assert_eq!(ticks[4], (Some(Firing), Some(T::Firing), Some(N::Firing)));
    }
}
