//! The functional core of a tick: (config, prior state, observations, now)
//! → (new alert states, history, outgoing messages). No clock, file, socket
//! or database here; everything is an argument.

use crate::alert::{self, AlertKey, AlertState, Notice, Policy, Status, Transition, Verdict};
use crate::clock::Timestamp;
use crate::config::{Config, Gate, Probe, Profile, Selector, Severity, Task};
use crate::notify::{self, Message, MessageKind};
use crate::probe::{Observation, TaskMemory};
use crate::remediate::{Attempt, Carried, Decision, Remediation, RestartBook};
use crate::rule;
use crate::rule::{Rule, RuleKind};
use crate::silence;
use std::collections::{BTreeMap, BTreeSet};

mod judge;
mod record;
use judge::{Judge, Judged};

pub use crate::config::{HEALTH_RULE, RESTART_LOOP_RULE};

/// Suffix of the key that reports a rule without data.
pub const NO_DATA_SUFFIX: &str = ":no-data";

/// What earlier ticks left for this profile.
#[derive(Clone, Debug, Default)]
pub struct Prior {
    pub alerts: BTreeMap<AlertKey, AlertState>,
    /// Each task's remembered values: probe state and its restart book.
    pub tasks: BTreeMap<String, TaskMemory>,
    /// Silences of this profile that are not over (the tick checks times).
    pub silences: Vec<crate::silence::Silence>,
}

/// One task's observation this tick.
pub struct Observed<'a> {
    pub task: &'a Task,
    pub observation: Observation,
}

/// A row for the alert history.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryEntry {
    pub key: AlertKey,
    pub transition: Transition,
    pub severity: Severity,
    pub summary: String,
    pub value: Option<f64>,
    pub threshold: Option<String>,
}

/// A message and the notifiers it goes to.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    pub message: Message,
    pub notifiers: Vec<String>,
}

/// The series whose value changing means the scraped target restarted
/// (client libraries export it): every metrics scrape keeps it.
pub const START_TIME_SERIES: &str = "process_start_time_seconds";

/// One rule's result this tick, for the report.
#[derive(Clone, Debug)]
pub struct RuleResult {
    pub rule: String,
    pub verdict: Verdict,
    /// The key's state after this tick (`None`: ok).
    pub state: Option<AlertState>,
    pub transition: Option<Transition>,
    /// Breaching, but held still (a failing dependency, settling after a
    /// restart), at this severity: not stepped into its alert, and the
    /// task not healthy.
    pub held_breach: Option<Severity>,
}

impl RuleResult {
    pub fn status(&self) -> Option<Status> {
        self.state.as_ref().map(|s| s.status)
    }

    /// Pending or firing after this tick, held or not: the task is
    /// unhealthy (exit 1) while any of its keys is.
    pub fn active(&self) -> bool {
        match self.status() {
            Some(Status::Firing) => true,
            // `for: "N of M"` keeps a clear key pending while its window
            // still holds a breach: it counts them, it is not unhealthy.
            Some(Status::Pending) => !matches!(self.verdict, Verdict::Clear { .. }),
            _ => false,
        }
    }

    /// Pending this tick: breaching (or unjudged), its `for:` not met.
    pub fn pending(&self) -> bool {
        self.status() == Some(Status::Pending) && self.active()
    }

    /// Firing, but its verdict this tick was held (skip_when, warm-up,
    /// settle, no data): still firing, shown as held.
    pub fn held(&self) -> bool {
        self.status() == Some(Status::Firing)
            && matches!(self.verdict, Verdict::Hold { .. } | Verdict::NoData { .. })
    }
}

/// One task's result this tick, for the report and the exit code.
#[derive(Clone, Debug)]
pub struct TaskVerdict {
    pub name: String,
    /// No key of the task is pending or firing, held or not (or a restart
    /// resolved the one that was).
    pub healthy: bool,
    pub rules: Vec<RuleResult>,
    /// What happened about remediation, when something did.
    pub remediation: Option<Remediation>,
}

/// Everything the tick must store and send.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Keys whose state changed: `Some` upserts, `None` deletes.
    pub alerts: BTreeMap<AlertKey, Option<AlertState>>,
    pub history: Vec<HistoryEntry>,
    pub outgoing: Vec<Outgoing>,
    pub tasks: Vec<TaskVerdict>,
    /// Values to store per task besides what probes stored: `(task, key, value)`.
    pub state: Vec<(String, String, String)>,
}

impl Outcome {
    pub fn healthy(&self) -> bool {
        self.tasks.iter().all(|t| t.healthy)
    }
}

/// A restart the evaluation decided on: carry it out, then
/// [`Evaluation::conclude`] with what became of it.
#[derive(Clone, Debug, PartialEq)]
pub struct RestartPlan {
    pub task: String,
    /// The firing alert that asks for the restart.
    pub trigger: AlertKey,
    pub summary: String,
}

/// The verdicts of a tick, before its restarts: every key judged and
/// stepped, the restarts decided, nothing recorded yet. Only
/// [`Evaluation::conclude`] turns it into the [`Outcome`] to store and send.
pub struct Evaluation<'a> {
    tasks: Vec<TaskDraft<'a>>,
    /// Keys of rules or tasks no longer configured, retired.
    retired: Outcome,
}

/// One task's verdicts, waiting for what its restart (if any) did.
struct TaskDraft<'a> {
    judge: Judge<'a>,
    /// Its events and remembered values (what no restart changes).
    early: Outcome,
    /// Keys judged this tick, in order, not yet recorded.
    keys: Vec<Stepped>,
    /// Keys held still while the task settles after a restart.
    held: Vec<RuleResult>,
    remediation: Option<Remediation>,
    book: RestartBook,
}

/// A key advanced by this tick's verdict, not yet recorded.
struct Stepped {
    judged: Judged,
    key: AlertKey,
    before: Option<AlertState>,
    step: alert::Step,
}

/// Evaluates one tick of `profile`. `whole_profile` is false under
/// `--task`, so alerts of tasks that did not run are left alone.
pub fn evaluate<'a>(
    config: &'a Config,
    profile: &'a Profile,
    prior: &'a Prior,
    runs: &[Observed<'a>],
    whole_profile: bool,
    now: Timestamp,
) -> Evaluation<'a> {
    let mut live_keys = BTreeSet::new();
    let mut tasks = Vec::new();
    // Dependencies are judged before their dependents: whether one fails
    // is known from its verdict (a critical rule firing), not only from
    // its probes.
    let mut failing = not_due_failing(profile, prior, runs);
    let mut drafts: Vec<Option<TaskDraft>> = runs.iter().map(|_| None).collect();
    for index in dependencies_first(runs) {
        let run = &runs[index];
        let held_by = run
            .task
            .depends_on
            .iter()
            .find(|dependency| failing.contains(dependency.as_str()))
            .map(String::as_str);
        let judge = Judge::new(
            config,
            profile,
            run.task,
            &run.observation,
            &prior.silences,
            now,
        );
        let draft = judge.draft(prior, &run.observation, held_by, &mut live_keys);
        if run.observation.failing() || draft.fires_critical() {
            failing.insert(run.task.name.as_str());
        }
        drafts[index] = Some(draft);
    }
    tasks.extend(drafts.into_iter().flatten());
    let mut retired = Outcome::default();
    if whole_profile && profile.announce {
        announce_watching(config, profile, prior, now, &mut retired);
    }
    retire_stale_keys(
        profile,
        prior,
        runs,
        whole_profile,
        &live_keys,
        &mut retired,
    );
    Evaluation { tasks, retired }
}

/// Tasks not run this tick (not due under `every:`) that are failing, as
/// `depends_on` reads it: a critical alert of theirs still fires.
fn not_due_failing<'a>(
    profile: &'a Profile,
    prior: &Prior,
    runs: &[Observed<'a>],
) -> BTreeSet<&'a str> {
    profile
        .tasks
        .iter()
        .filter(|task| !runs.iter().any(|run| run.task.name == task.name))
        .filter(|task| {
            prior.alerts.iter().any(|(key, alert)| {
                key.profile == profile.name
                    && key.task == task.name
                    && alert.status == Status::Firing
                    && alert.severity == Severity::Critical
            })
        })
        .map(|task| task.name.as_str())
        .collect()
}

/// The order to judge `runs` in: each after the tasks it depends on that
/// run this tick (load refuses circles; one would be judged in file order).
fn dependencies_first(runs: &[Observed<'_>]) -> Vec<usize> {
    let mut order: Vec<usize> = Vec::with_capacity(runs.len());
    while order.len() < runs.len() {
        let ready = (0..runs.len()).filter(|i| !order.contains(i)).find(|&i| {
            runs[i].task.depends_on.iter().all(|dependency| {
                runs.iter()
                    .enumerate()
                    .all(|(j, run)| run.task.name != *dependency || order.contains(&j))
            })
        });
        match ready {
            Some(index) => order.push(index),
            None => order.extend(
                (0..runs.len())
                    .filter(|i| !order.contains(i))
                    .collect::<Vec<_>>(),
            ),
        }
    }
    order
}

impl TaskDraft<'_> {
    /// A critical alert of the task fires after this tick, or a critical
    /// breach of it is held (by its own failing dependency: a chain of
    /// `depends_on` holds all the way down).
    fn fires_critical(&self) -> bool {
        self.keys.iter().any(|stepped| {
            stepped.step.state.as_ref().is_some_and(|state| {
                state.status == Status::Firing && state.severity == Severity::Critical
            })
        }) || self
            .held
            .iter()
            .any(|r| r.held_breach == Some(Severity::Critical))
    }
}

impl Evaluation<'_> {
    /// The restarts to carry out this tick.
    pub fn plans(&self) -> Vec<RestartPlan> {
        self.tasks
            .iter()
            .filter_map(|draft| match &draft.remediation {
                Some(Remediation::Due { trigger, summary }) => Some(RestartPlan {
                    task: draft.judge.task.name.clone(),
                    trigger: trigger.clone(),
                    summary: summary.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// The tick's outcome, given what became of each planned restart (by
    /// task name): a pure function of the verdicts, the attempts and the
    /// tick's time. A planned restart missing from `carried` stays planned.
    pub fn conclude(self, carried: &BTreeMap<String, Carried>) -> Outcome {
        let mut outcome = Outcome::default();
        for draft in self.tasks {
            let done = carried.get(&draft.judge.task.name);
            let result = draft.conclude(done, &mut outcome);
            outcome.tasks.push(result);
        }
        outcome.absorb(self.retired);
        outcome
    }
}

impl Outcome {
    /// Appends another outcome's records after this one's.
    fn absorb(&mut self, other: Outcome) {
        self.alerts.extend(other.alerts);
        self.history.extend(other.history);
        self.outgoing.extend(other.outgoing);
        self.tasks.extend(other.tasks);
        self.state.extend(other.state);
    }
}

impl TaskDraft<'_> {
    /// Records the task's keys, given what its planned restart did.
    fn conclude(self, carried: Option<&Carried>, outcome: &mut Outcome) -> TaskVerdict {
        let TaskDraft {
            judge,
            early,
            mut keys,
            held,
            mut remediation,
            book,
        } = self;
        outcome.absorb(early);
        let trigger = match &remediation {
            Some(Remediation::Due { trigger, .. }) => Some(trigger.clone()),
            _ => None,
        };
        let attempt = match (carried, &trigger) {
            (Some(Carried::Attempted(attempt)), Some(trigger)) => Some((attempt, trigger)),
            (Some(Carried::Described(what)), Some(_)) => {
                remediation = Some(Remediation::WouldDo { what: what.clone() });
                None
            }
            _ => None,
        };
        if let Some((_, trigger)) = attempt {
            for stepped in &mut keys {
                // After a restart every failure streak of the task starts
                // from zero, so a `for: 3` needs three new failing ticks
                // before the next restart.
                if let Some(state) = stepped.step.state.as_mut().filter(|s| s.status.is_active()) {
                    state.bad_ticks = 0;
                    state.bad_since = judge.now;
                    // `for: N of M` counts from the restart too.
                    state.recent = 0;
                }
                // The restart's message tells of the trigger instead.
                if stepped.key == *trigger {
                    stepped.step.notice = None;
                }
            }
        }
        let mut rules = Vec::new();
        for stepped in keys {
            rules.push(judge.settle_key(stepped, outcome));
        }
        // A breach held still (settling after a restart, or waiting on a
        // failing dependency) is no health: the task says so (exit 1).
        let held_breach = held.iter().any(|r| r.held_breach.is_some());
        rules.extend(held);
        // The no-data twin of a healthy rule is noise in the report.
        rules.retain(|r| {
            !(r.rule.ends_with(NO_DATA_SUFFIX) && r.state.is_none() && r.transition.is_none())
        });
        if let Some((attempt, trigger)) = attempt {
            remediation = Some(judge.restarted(&mut rules, trigger, attempt, &book, outcome));
        }
        TaskVerdict {
            name: judge.task.name.clone(),
            healthy: !rules.iter().any(RuleResult::active) && !held_breach,
            rules,
            remediation,
        }
    }
}

fn policy_for(config: &Config, task: &Task, rule: Option<&Rule>) -> Policy {
    Policy {
        for_: rule.and_then(|r| r.for_).unwrap_or(task.for_),
        resolve_after: rule
            .and_then(|r| r.resolve_after)
            .unwrap_or(task.resolve_after),
        cooldown: rule
            .and_then(|r| r.cooldown)
            .or(task.cooldown)
            .unwrap_or(config.defaults.cooldown),
        notify_resolved: config.defaults.notify_resolved,
        point_like: rule.is_some_and(|r| matches!(r.kind, RuleKind::Counter { .. })),
        clear: rule.and_then(|r| r.clear),
    }
}

fn push_outgoing(config: &Config, notifiers: &[String], message: Message, outcome: &mut Outcome) {
    let targets: Vec<String> = notifiers
        .iter()
        .filter(|name| {
            config
                .notifier(name)
                .is_some_and(|n| notify::accepts(n, message.severity))
        })
        .cloned()
        .collect();
    if !targets.is_empty() {
        outcome.outgoing.push(Outgoing {
            message,
            notifiers: targets,
        });
    }
}

/// Where the profile's own state lives (the task-state namespace of no task).
const PROFILE_STATE: &str = "";
/// The fingerprint of the configuration the profile last ran with.
const WATCHING_KEY: &str = "watching.config";

/// The first tick of a profile, and the first after its configuration
/// changed, tells what is now watched (seed 000's "Monitor script
/// started"): a person sees monitoring begin, or a change take effect.
fn announce_watching(
    config: &Config,
    profile: &Profile,
    prior: &Prior,
    now: Timestamp,
    outcome: &mut Outcome,
) {
    let fingerprint = profile.written.clone();
    let before = prior
        .tasks
        .get(PROFILE_STATE)
        .and_then(|s| s.get(WATCHING_KEY));
    if before == Some(&fingerprint) {
        return;
    }
    outcome.state.push((
        PROFILE_STATE.to_string(),
        WATCHING_KEY.to_string(),
        fingerprint,
    ));
    let tasks: Vec<String> = profile
        .tasks
        .iter()
        .filter(|t| t.enabled)
        .map(|t| {
            let mut parts: Vec<String> = t.probes.iter().map(|p| p.kind().to_string()).collect();
            if t.action.is_some() {
                parts.push("action".into());
            }
            if let Some(restart) = t.remediate.as_ref().and_then(|r| r.restart()) {
                parts.push(format!(
                    "restarts: {}",
                    crate::remediate::start::plan_short(&restart.start)
                ));
            }
            format!("{} ({})", t.name, parts.join(", "))
        })
        .collect();
    let why = if before.is_none() {
        "first run"
    } else {
        "jobs.yaml changed"
    };
    let summary = format!(
        "monitor is now watching profile {} ({why}): {} task{} — {}",
        profile.name,
        tasks.len(),
        if tasks.len() == 1 { "" } else { "s" },
        tasks.join("; ")
    );
    let rule = "monitor.watching";
    let message = Message {
        id: Message::make_id(
            &config.host,
            &profile.name,
            "",
            rule,
            MessageKind::Event,
            now,
        ),
        kind: MessageKind::Event,
        host: config.host.clone(),
        profile: profile.name.clone(),
        task: String::new(),
        rule: rule.to_string(),
        severity: Severity::Info,
        summary,
        value: None,
        threshold: None,
        started_at: None,
        labels: BTreeMap::new(),
        related: Vec::new(),
        at: now,
        remediation: None,
    };
    let notifiers = profile
        .notify_events
        .as_deref()
        .or(profile.notify.as_deref())
        .unwrap_or(&config.defaults.notify);
    push_outgoing(config, notifiers, message, outcome);
}

/// Keys of rules or tasks that no longer exist (or were disabled) are
/// retired without a notification, with a history row saying why.
fn retire_stale_keys(
    profile: &Profile,
    prior: &Prior,
    runs: &[Observed],
    whole_profile: bool,
    live: &BTreeSet<AlertKey>,
    outcome: &mut Outcome,
) {
    let ran: BTreeSet<&str> = runs.iter().map(|r| r.task.name.as_str()).collect();
    for (key, state) in &prior.alerts {
        if key.profile != profile.name || live.contains(key) {
            continue;
        }
        let in_scope = whole_profile || ran.contains(key.task.as_str());
        // A dry run does not sync: the git-sync task's key stays as it is.
        let unsynced = key.task == crate::config::GIT_SYNC_TASK && profile.pre_run.is_some();
        if !in_scope || unsynced {
            continue;
        }
        let still_configured = profile
            .tasks
            .iter()
            .any(|t| t.enabled && t.name == key.task);
        // A task with `every:` that did not run was not due: its alerts
        // hold as they are until it runs again.
        let resting = profile
            .tasks
            .iter()
            .any(|t| t.enabled && t.name == key.task && t.every.is_some())
            && !ran.contains(key.task.as_str());
        if resting {
            continue;
        }
        let why = if still_configured {
            "rule no longer in jobs.yaml"
        } else {
            "task removed or disabled in jobs.yaml"
        };
        outcome.alerts.insert(key.clone(), None);
        outcome.history.push(HistoryEntry {
            key: key.clone(),
            transition: Transition::Resolved,
            severity: state.severity,
            summary: format!("retired: {why} (was: {})", state.summary),
            value: state.value,
            threshold: state.threshold.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Check, CheckStatus, Event};

    const CONFIG: &str = r#"
version: 1
host: box-1
notifiers:
  hook: { type: webhook, url: "http://127.0.0.1:9/hook", min_severity: critical }
profiles:
  p:
    cron: "* * * * *"
    announce: false
    notify: [console, hook]
    tasks:
      - name: api
        http: { url: "http://127.0.0.1:1/" }
      - name: slow
        http: { url: "http://127.0.0.1:1/" }
        rules:
          - { name: latency, signal: latency_ms, value: "> 500", for: 2, severity: warning }
"#;

    fn config() -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.yaml");
        std::fs::write(&path, CONFIG).unwrap();
        crate::config::load(&path, None).unwrap()
    }

    fn observation(status: CheckStatus, latency: Option<f64>) -> Observation {
        let mut o = Observation::default();
        o.checks.push(Check {
            probe: "http",
            status,
            summary: format!("{status:?}"),
        });
        if let Some(l) = latency {
            o.signals.set("latency_ms", l);
        }
        o
    }

    /// Runs ticks one minute apart, carrying state like the store would.
    fn ticks(config: &Config, steps: &[(Observation, Observation)]) -> Vec<Outcome> {
        let profile = &config.profiles[0];
        let mut prior = Prior::default();
        let mut outcomes = Vec::new();
        for (i, (api, slow)) in steps.iter().enumerate() {
            let runs = [
                Observed {
                    task: &profile.tasks[0],
                    observation: api.clone(),
                },
                Observed {
                    task: &profile.tasks[1],
                    observation: slow.clone(),
                },
            ];
            let outcome = evaluate(
                config,
                profile,
                &prior,
                &runs,
                true,
                Timestamp(i as i64 * 60_000),
            )
            .conclude(&BTreeMap::new());
            for (key, state) in &outcome.alerts {
                match state {
                    Some(s) => prior.alerts.insert(key.clone(), s.clone()),
                    None => prior.alerts.remove(key),
                };
            }
            outcomes.push(outcome);
        }
        outcomes
    }

    #[test]
    fn failing_probe_fires_notifies_and_resolves() {
        let config = config();
        let ok = || observation(CheckStatus::Ok, Some(10.0));
        let down = || observation(CheckStatus::Critical, Some(10.0));
        let out = ticks(
            &config,
            &[(ok(), ok()), (down(), ok()), (down(), ok()), (ok(), ok())],
        );
        assert!(out[0].healthy() && out[0].outgoing.is_empty() && out[0].history.is_empty());
        assert!(!out[1].healthy());
        assert_eq!(out[1].outgoing.len(), 1);
        assert_eq!(out[1].outgoing[0].message.kind, MessageKind::Firing);
        assert_eq!(out[1].outgoing[0].notifiers, vec!["console", "hook"]);
        assert_eq!(out[1].history[0].transition, Transition::Firing);
        assert!(
            out[2].outgoing.is_empty(),
            "no reminder inside the cooldown"
        );
        assert_eq!(out[3].outgoing[0].message.kind, MessageKind::Resolved);
        assert_eq!(out[3].history[0].transition, Transition::Resolved);
    }

    #[test]
    fn warnings_skip_notifiers_with_a_higher_minimum() {
        let config = config();
        let ok = || observation(CheckStatus::Ok, Some(10.0));
        let slow = || observation(CheckStatus::Ok, Some(900.0));
        let out = ticks(&config, &[(ok(), slow()), (ok(), slow())]);
        assert!(out[0].outgoing.is_empty(), "for: 2 holds the first tick");
        assert_eq!(out[0].history[0].transition, Transition::Pending);
        assert!(
            !out[0].healthy(),
            "a pending breach still makes the tick unhealthy"
        );
        assert_eq!(out[1].outgoing.len(), 1);
        assert_eq!(
            out[1].outgoing[0].notifiers,
            vec!["console"],
            "hook takes critical only"
        );
    }

    #[test]
    fn a_dead_probe_raises_no_data_not_the_rule() {
        let config = config();
        let ok = || observation(CheckStatus::Ok, Some(10.0));
        let dead = || observation(CheckStatus::Failed, None);
        let out = ticks(&config, &[(ok(), dead())]);
        let slow = &out[0].tasks[1];
        let keys: Vec<_> = slow
            .rules
            .iter()
            .map(|r| (r.rule.as_str(), r.status()))
            .collect();
        // The no-data key shares the rule's gating (for: 2).
        assert_eq!(
            keys,
            vec![
                ("health", Some(Status::Firing)),
                ("latency", None),
                ("latency:no-data", Some(Status::Pending))
            ]
        );
        assert!(!slow.healthy);
        assert_eq!(
            out[0].outgoing[0].message.rule, "health",
            "a failed probe is a critical alert even with explicit rules"
        );
        assert_eq!(out[0].outgoing[0].message.severity, Severity::Critical);
        let out = ticks(&config, &[(ok(), dead()), (ok(), dead())]);
        let no_data = out[1].tasks[1]
            .rules
            .iter()
            .find(|r| r.rule == "latency:no-data")
            .unwrap();
        assert_eq!(no_data.status(), Some(Status::Firing));
        assert!(
            out[1].outgoing.is_empty(),
            "the missing data a dead probe causes is told by the health alert only"
        );
    }

    #[test]
    fn events_become_messages() {
        let config = config();
        let mut o = observation(CheckStatus::Ok, Some(1.0));
        o.events.push(Event {
            name: "task-started".into(),
            message: "Task Started: 123".into(),
            severity: Severity::Info,
        });
        let out = ticks(&config, &[(o, observation(CheckStatus::Ok, Some(1.0)))]);
        assert_eq!(out[0].outgoing.len(), 1);
        assert_eq!(
            out[0].outgoing[0].message.text(),
            "[box-1] Task Started: 123"
        );
        assert_eq!(out[0].outgoing[0].notifiers, vec!["console"]);
    }

    #[test]
    fn settle_holds_the_health_but_never_drops_a_fatal_log_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.yaml");
        std::fs::write(
            &path,
            r#"
version: 1
host: box-1
profiles:
  p:
    cron: "* * * * *"
    announce: false
    tasks:
      - name: prover
        log:
          path: /tmp/prover.log
          stale_after: 300s
          patterns: [{ name: tls, regex: "(?i)tls error", severity: critical }]
        remediate:
          restart:
            stop: { tmux: cysic }
            start: { tmux: cysic, command: "./start2.sh" }
            settle: 2m
"#,
        )
        .unwrap();
        let config = crate::config::load(&path, None).unwrap();
        let profile = &config.profiles[0];
        let mut prior = Prior::default();
        prior.tasks.insert(
            "prover".into(),
            [("remediate.settle_until".to_string(), "120000".to_string())]
                .into_iter()
                .collect(),
        );
        let mut seen = observation(CheckStatus::Critical, None);
        seen.checks[0].probe = "log";
        seen.matches.push(crate::probe::PatternMatch {
            name: "tls".into(),
            severity: Severity::Critical,
            count: 1,
            line: "ERROR TLS error: bad record mac".into(),
        });
        let runs = [Observed {
            task: &profile.tasks[0],
            observation: seen,
        }];
        let out = evaluate(&config, profile, &prior, &runs, true, Timestamp(60_000))
            .conclude(&BTreeMap::new());
        let told: Vec<&str> = out
            .outgoing
            .iter()
            .map(|o| o.message.rule.as_str())
            .collect();
        assert_eq!(
            told,
            ["tls"],
            "the fatal line is told during settle; the health is held"
        );
        assert!(!out.healthy());
        assert!(matches!(
            out.tasks[0].remediation,
            Some(Remediation::Settling { .. })
        ));
    }

    #[test]
    fn keys_of_removed_rules_are_retired() {
        let config = config();
        let profile = &config.profiles[0];
        let key = AlertKey::new("p", "gone", "health");
        let mut prior = Prior::default();
        prior.alerts.insert(
            key.clone(),
            AlertState {
                key: key.clone(),
                status: Status::Firing,
                severity: Severity::Critical,
                since: Timestamp(0),
                bad_since: Timestamp(0),
                bad_ticks: 3,
                good_since: None,
                good_ticks: 0,
                last_notified: Some(Timestamp(0)),
                value: None,
                threshold: None,
                summary: "down".into(),
                opened_at: Some(Timestamp(0)),
                announced: true,
                flapping: false,
                recent: 0,
            },
        );
        let runs = [Observed {
            task: &profile.tasks[0],
            observation: observation(CheckStatus::Ok, None),
        }];
        let partial = evaluate(&config, profile, &prior, &runs, false, Timestamp(60_000))
            .conclude(&BTreeMap::new());
        assert!(
            !partial.alerts.contains_key(&key),
            "--task leaves other tasks alone"
        );
        let whole = evaluate(&config, profile, &prior, &runs, true, Timestamp(60_000))
            .conclude(&BTreeMap::new());
        assert_eq!(whole.alerts.get(&key), Some(&None));
        assert!(whole.history[0].summary.starts_with("retired"));
        assert!(whole.outgoing.is_empty());
    }
}
