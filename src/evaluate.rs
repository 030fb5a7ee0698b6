//! The functional core of a tick: (config, prior state, observations, now)
//! → (new alert states, history, outgoing messages). No clock, file, socket
//! or database here; everything is an argument.

use crate::alert::{self, AlertKey, AlertState, Notice, Policy, Status, Transition, Verdict};
use crate::clock::Timestamp;
use crate::config::{Config, Gate, Probe, Profile, Selector, Severity, Task};
use crate::notify::{self, Message, MessageKind};
use crate::probe::{Observation, TaskState};
use crate::remediate::{Attempt, Book, Carried, Decision, Remediation};
use crate::rule;
use crate::rule::{Rule, RuleKind};
use crate::silence;
use std::collections::{BTreeMap, BTreeSet};

pub use crate::config::{HEALTH_RULE, RESTART_LOOP_RULE};

/// Suffix of the key that reports a rule without data.
pub const NO_DATA_SUFFIX: &str = ":no-data";

/// What earlier ticks left for this profile.
#[derive(Clone, Debug, Default)]
pub struct Prior {
    pub alerts: BTreeMap<AlertKey, AlertState>,
    /// Each task's remembered values: probe state and its restart book.
    pub tasks: BTreeMap<String, TaskState>,
    /// Silences of this profile that are not over (the tick checks times).
    pub silences: Vec<crate::silence::Silence>,
}

/// One task's observation this tick.
pub struct TaskRun<'a> {
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

/// One rule's result this tick, for the report.
#[derive(Clone, Debug)]
pub struct RuleResult {
    pub rule: String,
    pub verdict: Verdict,
    /// The key's state after this tick (`None`: ok).
    pub state: Option<AlertState>,
    pub transition: Option<Transition>,
}

impl RuleResult {
    pub fn status(&self) -> Option<Status> {
        self.state.as_ref().map(|s| s.status)
    }

    /// Pending or firing after this tick, held or not: the task is
    /// unhealthy (exit 1) while any of its keys is.
    pub fn active(&self) -> bool {
        self.status().is_some_and(Status::is_active)
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
pub struct TaskResult {
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
    pub tasks: Vec<TaskResult>,
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
    scope: Scope<'a>,
    /// Its events and remembered values (what no restart changes).
    early: Outcome,
    /// Keys judged this tick, in order, not yet recorded.
    keys: Vec<Stepped>,
    /// Keys held still while the task settles after a restart.
    held: Vec<RuleResult>,
    remediation: Option<Remediation>,
    book: Book,
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
    runs: &[TaskRun<'a>],
    whole_profile: bool,
    now: Timestamp,
) -> Evaluation<'a> {
    let mut live_keys = BTreeSet::new();
    let mut tasks = Vec::new();
    for run in runs {
        let scope = Scope::new(
            config,
            profile,
            run.task,
            &run.observation,
            &prior.silences,
            now,
        );
        tasks.push(scope.draft(prior, &run.observation, &mut live_keys));
    }
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

impl Evaluation<'_> {
    /// The restarts to carry out this tick.
    pub fn plans(&self) -> Vec<RestartPlan> {
        self.tasks
            .iter()
            .filter_map(|draft| match &draft.remediation {
                Some(Remediation::Planned { trigger, summary }) => Some(RestartPlan {
                    task: draft.scope.task.name.clone(),
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
            let done = carried.get(&draft.scope.task.name);
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

/// Task state keys of stateful rules.
const IDENTITY_KEY: &str = "metrics.identity";
const WARMUP_KEY: &str = "warmup.left";
const MEMORY_PREFIX: &str = "rule.";

/// The task's rule memories and how this tick treats stateful rules.
struct RuleMemory {
    memories: BTreeMap<String, rule::Memory>,
    tick: rule::TickContext,
    /// Warm-up ticks left, this one included.
    warmup_left: u32,
}

fn warming_up(restarted_now: bool, warmup: u32, left: u32) -> String {
    let tick = warmup.saturating_sub(left) + 1;
    let why = if restarted_now {
        "the target restarted"
    } else {
        "after the target restarted"
    };
    format!("warming up: {why} (tick {tick} of {warmup})")
}

/// A rule-like key of a task and how to judge it this tick.
struct Judged {
    name: String,
    verdict: Verdict,
    policy: Policy,
    /// Whether its firing may restart the task.
    remediates: Remediates,
    /// When its breach really began, if before this tick.
    began: Option<Timestamp>,
    /// Why it is recorded but not told (a rule's missing data while the
    /// health alert already tells that the probe failed).
    inhibited: Option<String>,
    /// Judged even while the task settles after a restart (a log pattern:
    /// a fatal line is an occurrence a restart does not disturb).
    during_settle: bool,
}

impl Judged {
    /// A key that restarts nothing, began this tick, is told as usual and
    /// held while the task settles.
    fn new(name: String, verdict: Verdict, policy: Policy) -> Judged {
        Judged {
            name,
            verdict,
            policy,
            remediates: Remediates::Never,
            began: None,
            inhibited: None,
            during_settle: false,
        }
    }
}

/// Whether a key's firing restarts the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Remediates {
    Never,
    /// When it fires as critical (the task's failed probes, unflagged rules).
    IfCritical,
    /// `remediate: true`: whatever its severity.
    Always,
}

impl Remediates {
    fn applies(self, severity: Severity) -> bool {
        match self {
            Remediates::Never => false,
            Remediates::IfCritical => severity == Severity::Critical,
            Remediates::Always => true,
        }
    }
}

/// The task being evaluated and what every key of it shares.
pub(crate) struct Scope<'a> {
    pub config: &'a Config,
    pub profile: &'a Profile,
    pub task: &'a Task,
    pub notifiers: &'a [String],
    pub now: Timestamp,
    /// The task's signals this tick, `name = value`, as evidence in messages.
    pub related: Vec<String>,
    /// Silences of the profile; and why the whole task is held, if it is.
    pub silences: &'a [silence::Silence],
    pub task_hold: Option<String>,
}

impl<'a> Scope<'a> {
    pub fn new(
        config: &'a Config,
        profile: &'a Profile,
        task: &'a Task,
        observation: &Observation,
        silences: &'a [silence::Silence],
        now: Timestamp,
    ) -> Self {
        Scope {
            config,
            profile,
            task,
            notifiers: notify::route(config, profile, task),
            now,
            related: observation.signals.evidence(24),
            silences,
            task_hold: silence::task_hold(profile, task, silences, now),
        }
    }

    pub fn key(&self, rule: &str) -> AlertKey {
        AlertKey::new(&self.profile.name, &self.task.name, rule)
    }

    /// Judges and steps every key of the task and decides its restart;
    /// records nothing yet (see [`TaskDraft::conclude`]).
    fn draft(
        self,
        prior: &Prior,
        observation: &Observation,
        live_keys: &mut BTreeSet<AlertKey>,
    ) -> TaskDraft<'a> {
        let task = self.task;
        let book = Book::load(prior.tasks.get(&task.name));
        let mut early = Outcome::default();
        // A held task says nothing, events included.
        let events = if self.task_hold.is_some() {
            &[][..]
        } else {
            &observation.events[..]
        };
        for (index, event) in events.iter().enumerate() {
            let mut message = self.message(
                MessageKind::Event,
                &event.name,
                event.severity,
                event.message.clone(),
                None,
            );
            // Two lines of one event in a tick are two messages.
            message.id = Message::make_id(
                &self.config.host,
                &self.profile.name,
                &task.name,
                &format!("{}#{index}", event.name),
                MessageKind::Event,
                self.now,
            );
            push_outgoing(
                self.config,
                notify::route_events(self.config, self.profile, task),
                message,
                &mut early,
            );
        }
        let memory = self.remembered(prior.tasks.get(&task.name), observation, &mut early, &book);
        let judged = self.judge(prior, observation, &memory, &mut early);
        if let Some(until) = book.settling(self.now) {
            let (keys, held) = self.hold(prior, judged, until, live_keys);
            return TaskDraft {
                scope: self,
                early,
                keys,
                held,
                remediation: Some(Remediation::Settling { until }),
                book,
            };
        }
        let mut keys = Vec::new();
        let mut trigger: Option<(AlertKey, String)> = None;
        for judged in judged {
            let stepped = self.step(prior, judged, live_keys);
            if let (Some(state), Verdict::Breach { severity, .. }) =
                (&stepped.step.state, &stepped.judged.verdict)
                && trigger.is_none()
                && state.status == Status::Firing
                && stepped.judged.remediates.applies(*severity)
                && alert::gate_met(
                    stepped.judged.policy.for_,
                    state.bad_ticks,
                    state.bad_since,
                    self.now,
                )
            {
                trigger = Some((stepped.key.clone(), state.summary.clone()));
            }
            keys.push(stepped);
        }
        let still_failing = trigger.is_some();
        let remediation = task.remediate.as_ref().and_then(|remediate| {
            let (key, summary) = trigger?;
            if let Some(why) = silence::key_hold(self.task_hold.as_deref(), self.silences, &key, self.now) {
                return Some(Remediation::Held { why: format!("restart held: {why}") });
            }
            Some(match book.decide(remediate, self.now) {
                Decision::Go => Remediation::Planned { trigger: key, summary },
                Decision::Cooldown { next } => Remediation::Held {
                    why: format!("restart held: cooldown {} since the last restart, next allowed at {next}", remediate.cooldown),
                },
                Decision::Exhausted { frees_at, restarts } => Remediation::Exhausted {
                    why: format!(
                        "restart loop: {restarts} restart{} within {} (max {}); not restarting until {frees_at} — last: {summary}",
                        if restarts == 1 { "" } else { "s" },
                        remediate.max.as_ref().map(|m| m.within.to_string()).unwrap_or_default(),
                        remediate.max.as_ref().map(|m| m.restarts).unwrap_or(0),
                    ),
                },
            })
        });
        if let Some(remediate) = &task.remediate
            && remediate.max.is_some()
        {
            let verdict = match &remediation {
                Some(Remediation::Exhausted { why }) => Verdict::Breach {
                    severity: Severity::Critical,
                    value: None,
                    threshold: None,
                    summary: why.clone(),
                },
                // The budget freed while the task still fails: the loop is
                // not over until a restart makes it healthy.
                _ if still_failing => Verdict::Hold {
                    reason: "still failing: restarting again".into(),
                },
                _ => Verdict::Clear {
                    value: None,
                    summary: "the task is healthy again".into(),
                },
            };
            let policy = Policy {
                for_: Gate::Ticks(1),
                resolve_after: Gate::Ticks(1),
                ..policy_for(self.config, task, None)
            };
            let judged = Judged::new(RESTART_LOOP_RULE.into(), verdict, policy);
            keys.push(self.step(prior, judged, live_keys));
        }
        TaskDraft {
            scope: self,
            early,
            keys,
            held: Vec::new(),
            remediation,
            book,
        }
    }

    /// What the task's stateful rules remember, and how this tick treats
    /// them: a restart of the target (its identity changed) discards every
    /// snapshot and starts the warm-up; `skip_when` is looked up.
    fn remembered(
        &self,
        state: Option<&TaskState>,
        observation: &Observation,
        outcome: &mut Outcome,
        book: &Book,
    ) -> RuleMemory {
        let task = self.task;
        let read = |key: &str| state.and_then(|s| s.get(key));
        let mut write = |key: &str, value: String| {
            if read(key) != Some(&value) {
                outcome
                    .state
                    .push((task.name.clone(), key.to_string(), value));
            }
        };
        let identity = observation
            .state
            .get("process.identity")
            .cloned()
            .or_else(|| {
                observation
                    .signals
                    .get_name("process_start_time_seconds")
                    .map(|v| format!("start:{v}"))
            })
            .or_else(|| {
                let selector: Selector = "process_start_time_seconds".parse().ok()?;
                observation
                    .signals
                    .get(&selector)
                    .map(|v| format!("start:{v}"))
            });
        let restarted =
            matches!((read(IDENTITY_KEY), &identity), (Some(before), Some(now)) if before != now);
        if let Some(identity) = identity {
            write(IDENTITY_KEY, identity);
        }
        let warmup = task.warmup.unwrap_or(0);
        let left: u32 = if restarted {
            warmup
        } else {
            read(WARMUP_KEY).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        let memories = task
            .rules
            .iter()
            .filter(|_| !restarted)
            .filter_map(|r| {
                let text = read(&format!("{MEMORY_PREFIX}{}", r.name))?;
                Some((
                    r.name.clone(),
                    serde_json::from_str(text).unwrap_or_default(),
                ))
            })
            .collect();
        RuleMemory {
            memories,
            tick: rule::TickContext {
                now: self.now,
                warming_up: (left > 0).then(|| warming_up(restarted, warmup, left)),
                skip: rule::skip_reason(task, observation),
                restarted_at: book.restarts.last().copied(),
            },
            warmup_left: left,
        }
    }

    /// Every key of the task with its verdict this tick: the implicit health
    /// rule, the explicit rules with their no-data twins, then one key per
    /// log pattern.
    fn judge(
        &self,
        prior: &Prior,
        observation: &Observation,
        memory: &RuleMemory,
        outcome: &mut Outcome,
    ) -> Vec<Judged> {
        let task = self.task;
        let mut tick = memory.tick.clone();
        let mut judgements: Vec<rule::Judgement> = self.judge_rules(observation, memory, &tick);
        // A counter that went backwards is a restart too (seed 003): warm up
        // from this tick and judge again.
        let mut left = memory.warmup_left;
        if tick.warming_up.is_none()
            && task.warmup.unwrap_or(0) > 0
            && judgements.iter().any(|j| j.reset)
        {
            left = task.warmup.unwrap_or(0);
            tick.warming_up = Some(warming_up(true, left, left));
            judgements = self.judge_rules(observation, memory, &tick);
        }
        let stored_left = left.saturating_sub(1).to_string();
        if task.warmup.is_some()
            && prior.tasks.get(&task.name).and_then(|s| s.get(WARMUP_KEY)) != Some(&stored_left)
        {
            outcome
                .state
                .push((task.name.clone(), WARMUP_KEY.to_string(), stored_left));
        }
        let any_flagged = task.rules.iter().any(|r| r.remediate);
        let unflagged = if any_flagged {
            Remediates::Never
        } else {
            Remediates::IfCritical
        };
        let mut judged = Vec::new();
        let task_policy = policy_for(self.config, task, None);
        // The task's own health: every probe healthy. In force next to
        // explicit rules too: a dead endpoint is a critical alert, never
        // only a rule's missing data. A failure outside the target (the
        // lag probe's reference node) is told but restarts nothing.
        let failing: Vec<&str> = observation
            .checks
            .iter()
            .filter(|c| !c.status.is_ok())
            .map(|c| c.probe)
            .collect();
        let health_remediates =
            if !failing.is_empty() && failing.iter().all(|p| observation.outside.contains(p)) {
                Remediates::Never
            } else {
                Remediates::IfCritical
            };
        let health = rule::implicit(task, observation);
        // A failed probe is told once, by the health alert: the rules'
        // no-data keys it causes are recorded and shown, not sent.
        let inhibited = matches!(health, Verdict::Breach { .. })
            .then(|| format!("told by {}/{HEALTH_RULE}: a probe failed", task.name));
        judged.push(Judged {
            remediates: health_remediates,
            ..Judged::new(HEALTH_RULE.to_string(), health, task_policy)
        });
        for (rule, judgement) in task.rules.iter().zip(judgements) {
            let policy = policy_for(self.config, task, Some(rule));
            let before = memory.memories.get(&rule.name).cloned().unwrap_or_default();
            if judgement.memory != before {
                let text = serde_json::to_string(&judgement.memory).unwrap_or_else(|_| "{}".into());
                outcome.state.push((
                    task.name.clone(),
                    format!("{MEMORY_PREFIX}{}", rule.name),
                    text,
                ));
            }
            let mut verdict = judgement.verdict;
            // A guard holds a firing alert (it still breaches as far as we
            // know: the guard only says not to act on it now).
            if judgement.guarded == Some(false)
                && prior
                    .alerts
                    .get(&self.key(&rule.name))
                    .is_some_and(|s| s.status == Status::Firing)
            {
                verdict = Verdict::Hold {
                    reason: verdict.summary().to_string(),
                };
            }
            // A skip resets a pending ratio's streak (seed 003); a firing one holds.
            if let (Some(why), RuleKind::Ratio(_)) = (&tick.skip, &rule.kind)
                && prior
                    .alerts
                    .get(&self.key(&rule.name))
                    .is_some_and(|s| s.status == Status::Pending)
            {
                verdict = Verdict::Clear {
                    value: None,
                    summary: why.clone(),
                };
            }
            let no_data = match &verdict {
                Verdict::NoData { reason } => Verdict::Breach {
                    severity: Severity::Warning,
                    value: None,
                    threshold: None,
                    summary: format!("no data for rule {}: {reason}", rule.name),
                },
                _ => Verdict::Clear {
                    value: None,
                    summary: "data present".into(),
                },
            };
            judged.push(Judged {
                remediates: if rule.remediate {
                    Remediates::Always
                } else {
                    unflagged
                },
                began: judgement.began,
                ..Judged::new(rule.name.clone(), verdict, policy)
            });
            let no_data_policy = Policy {
                point_like: false,
                ..policy
            };
            judged.push(Judged {
                inhibited: inhibited.clone(),
                ..Judged::new(
                    format!("{}{NO_DATA_SUFFIX}", rule.name),
                    no_data,
                    no_data_policy,
                )
            });
        }
        for pattern in task
            .probes
            .iter()
            .filter_map(|p| match p {
                Probe::Log(log) => Some(&log.patterns),
                _ => None,
            })
            .flatten()
        {
            let verdict = match observation.matches.iter().find(|m| m.name == pattern.name) {
                Some(found) => Verdict::Breach {
                    severity: found.severity,
                    value: Some(found.count as f64),
                    threshold: None,
                    summary: format!(
                        "{} log line{} matched /{}/: {}",
                        found.count,
                        if found.count == 1 { "" } else { "s" },
                        pattern.regex.0.as_str(),
                        found.line
                    ),
                },
                None => Verdict::Clear {
                    value: Some(0.0),
                    summary: format!("no line matched /{}/", pattern.regex.0.as_str()),
                },
            };
            let policy = Policy {
                point_like: true,
                ..task_policy
            };
            judged.push(Judged {
                remediates: unflagged,
                during_settle: true,
                ..Judged::new(pattern.name.clone(), verdict, policy)
            });
        }
        judged
    }

    fn judge_rules(
        &self,
        observation: &Observation,
        memory: &RuleMemory,
        tick: &rule::TickContext,
    ) -> Vec<rule::Judgement> {
        let empty = rule::Memory::default();
        self.task
            .rules
            .iter()
            .map(|r| {
                rule::explicit(
                    r,
                    self.task,
                    observation,
                    memory.memories.get(&r.name).unwrap_or(&empty),
                    tick,
                )
            })
            .collect()
    }

    /// Right after a restart (`settle`), the conditions a restart disturbs
    /// (health, staleness, lag) hold still; what clears is judged (a
    /// restart may well have fixed it), and a log pattern is never held.
    fn hold(
        &self,
        prior: &Prior,
        judged: Vec<Judged>,
        until: Timestamp,
        live_keys: &mut BTreeSet<AlertKey>,
    ) -> (Vec<Stepped>, Vec<RuleResult>) {
        let why = format!("held: settling after the restart until {until}");
        let mut keys = Vec::new();
        let mut held_names = Vec::new();
        for judged in judged {
            if judged.during_settle || matches!(judged.verdict, Verdict::Clear { .. }) {
                keys.push(self.step(prior, judged, live_keys));
            } else {
                // A breach held still is told by the verdict: the task is
                // not healthy while it settles with it (exit 1).
                let breach = matches!(judged.verdict, Verdict::Breach { .. })
                    .then(|| judged.verdict.summary().to_string());
                held_names.push((judged.name, breach));
            }
        }
        if self
            .task
            .remediate
            .as_ref()
            .is_some_and(|r| r.max.is_some())
        {
            held_names.push((RESTART_LOOP_RULE.to_string(), None));
        }
        let held = held_names
            .into_iter()
            .map(|(name, breach)| {
                let key = self.key(&name);
                let state = prior.alerts.get(&key).cloned();
                live_keys.insert(key);
                RuleResult {
                    rule: name,
                    verdict: match breach {
                        Some(now) => Verdict::Hold {
                            reason: format!("{why}; now: {now}"),
                        },
                        None => Verdict::NoData {
                            reason: why.clone(),
                        },
                    },
                    state,
                    transition: None,
                }
            })
            .collect();
        (keys, held)
    }

    /// Advances one key by this tick's verdict (recorded later).
    fn step(&self, prior: &Prior, judged: Judged, live_keys: &mut BTreeSet<AlertKey>) -> Stepped {
        let key = self.key(&judged.name);
        let before = prior.alerts.get(&key).cloned();
        let step = alert::step(
            before.as_ref(),
            &key,
            &judged.verdict,
            &judged.policy,
            self.now,
            judged.began,
        );
        live_keys.insert(key.clone());
        Stepped {
            judged,
            key,
            before,
            step,
        }
    }

    /// Records a stepped key: its state change, history row and message.
    fn settle_key(&self, stepped: Stepped, outcome: &mut Outcome) -> RuleResult {
        let Stepped {
            judged,
            key,
            before,
            step,
        } = stepped;
        let (state, transition) = self.record(
            &key,
            before.as_ref(),
            &step,
            &judged.verdict,
            judged.inhibited.as_deref(),
            outcome,
        );
        RuleResult {
            rule: judged.name,
            verdict: judged.verdict,
            state,
            transition,
        }
    }

    /// A message about this task, id derived from what makes it unique.
    pub fn message(
        &self,
        kind: MessageKind,
        rule: &str,
        severity: Severity,
        summary: String,
        state: Option<&AlertState>,
    ) -> Message {
        let config = self.config;
        Message {
            id: Message::make_id(
                &config.host,
                &self.profile.name,
                &self.task.name,
                rule,
                kind,
                self.now,
            ),
            kind,
            host: config.host.clone(),
            profile: self.profile.name.clone(),
            task: self.task.name.clone(),
            rule: rule.to_string(),
            severity,
            summary,
            value: state.and_then(|s| s.value),
            threshold: state.and_then(|s| s.threshold.clone()),
            started_at: match kind {
                MessageKind::Event => None,
                MessageKind::Firing => Some(self.now),
                _ => state.map(|s| s.opened_at.unwrap_or(s.since)),
            },
            labels: self.task.labels.clone(),
            related: if kind == MessageKind::Event {
                Vec::new()
            } else {
                self.related.clone()
            },
            at: self.now,
            remediation: None,
        }
    }

    /// Turns a key's step into a state change, a history row and a message;
    /// returns the key's state as stored and the transition that counted
    /// (a reminder a hold kept back is none).
    fn record(
        &self,
        key: &AlertKey,
        before: Option<&AlertState>,
        step: &alert::Step,
        verdict: &Verdict,
        inhibited: Option<&str>,
        outcome: &mut Outcome,
    ) -> (Option<AlertState>, Option<Transition>) {
        let hold = silence::key_hold(self.task_hold.as_deref(), self.silences, key, self.now)
            .or_else(|| inhibited.map(str::to_string));
        let mut state = step.state.clone();
        if let (Some(_), Some(state), true) = (&hold, &mut state, step.notify()) {
            // Held: not notified, so the alert is told once the hold ends,
            // and a resolution of what was never told is not told either.
            state.last_notified = None;
            state.announced = false;
        }
        if state.as_ref() != before {
            outcome.alerts.insert(key.clone(), state.clone());
        }
        let Some(transition) = step.transition else {
            return (state, None);
        };
        if hold.is_some() && matches!(transition, Transition::Reminder) {
            return (state, None);
        }
        if hold.is_some()
            && transition == Transition::Firing
            && before.is_some_and(|b| b.status == Status::Firing)
        {
            // The first telling of a held alert, held again.
            return (state, None);
        }
        // The state that explains the transition: the new one, or for a
        // resolution the one that was firing.
        let Some(shown) = step.state.as_ref().or(before) else {
            return (state, Some(transition));
        };
        // A resolution says what the rule sees now ("HTTP 200 in 3 ms").
        let mut summary = match transition {
            Transition::Resolved | Transition::Cleared => verdict.summary().to_string(),
            _ => shown.summary.clone(),
        };
        if let Some(note) = &step.note {
            summary = format!("{summary} ({note})");
        }
        let recorded = match &hold {
            Some(why) if step.notify() => format!("{summary} (not notified: {why})"),
            _ => summary.clone(),
        };
        outcome.history.push(HistoryEntry {
            key: key.clone(),
            transition,
            severity: shown.severity,
            summary: recorded,
            value: shown.value,
            threshold: shown.threshold.clone(),
        });
        let Some(notice) = step.notice.filter(|_| hold.is_none()) else {
            return (state, Some(transition));
        };
        let kind = match notice {
            Notice::Firing => MessageKind::Firing,
            Notice::Again => MessageKind::Again,
            Notice::Reminder => MessageKind::Reminder,
            Notice::Escalated => MessageKind::Escalated,
            Notice::Resolved => MessageKind::Resolved,
        };
        let message = self.message(kind, &key.rule, shown.severity, summary, Some(shown));
        push_outgoing(self.config, self.notifiers, message, outcome);
        (state, Some(transition))
    }
}

impl TaskDraft<'_> {
    /// Records the task's keys, given what its planned restart did.
    fn conclude(self, carried: Option<&Carried>, outcome: &mut Outcome) -> TaskResult {
        let TaskDraft {
            scope,
            early,
            mut keys,
            held,
            mut remediation,
            book,
        } = self;
        outcome.absorb(early);
        let trigger = match &remediation {
            Some(Remediation::Planned { trigger, .. }) => Some(trigger.clone()),
            _ => None,
        };
        let attempt = match (carried, &trigger) {
            (Some(Carried::Attempted(attempt)), Some(trigger)) => Some((attempt, trigger)),
            (Some(Carried::Described(what)), Some(_)) => {
                remediation = Some(Remediation::Plan { what: what.clone() });
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
                    state.bad_since = scope.now;
                }
                // The restart's message tells of the trigger instead.
                if stepped.key == *trigger {
                    stepped.step.notice = None;
                }
            }
        }
        let mut rules = Vec::new();
        for stepped in keys {
            rules.push(scope.settle_key(stepped, outcome));
        }
        rules.extend(held);
        // The no-data twin of a healthy rule is noise in the report.
        rules.retain(|r| {
            !(r.rule.ends_with(NO_DATA_SUFFIX) && r.state.is_none() && r.transition.is_none())
        });
        if let Some((attempt, trigger)) = attempt {
            remediation = Some(scope.restarted(&mut rules, trigger, attempt, &book, outcome));
        }
        // Held still by settle while it breaches: not healthy either.
        let settling_breach = matches!(remediation, Some(Remediation::Settling { .. }))
            && rules
                .iter()
                .any(|r| matches!(r.verdict, Verdict::Hold { .. }));
        TaskResult {
            name: scope.task.name.clone(),
            healthy: !rules.iter().any(RuleResult::active) && !settling_breach,
            rules,
            remediation,
        }
    }
}

impl Scope<'_> {
    /// Records a carried-out restart: the restart book, a history row and
    /// one message — the trigger resolved by a healthy restart of a failed
    /// probe, still judged (another rule), or marked as a failed restart.
    fn restarted(
        &self,
        rules: &mut [RuleResult],
        trigger: &AlertKey,
        attempt: &Attempt,
        book: &Book,
        outcome: &mut Outcome,
    ) -> Remediation {
        let now = self.now;
        if let Some(remediate) = &self.task.remediate {
            let settle = remediate.restart().and_then(|r| r.settle);
            for (key, value) in book.after_restart(remediate, settle, now).entries() {
                outcome.state.push((self.task.name.clone(), key, value));
            }
            outcome.state.push((
                self.task.name.clone(),
                crate::remediate::BEGUN_KEY.to_string(),
                "0".to_string(),
            ));
        }
        let healthy = attempt.result.is_ok();
        let what = attempt.describe();
        outcome.history.push(HistoryEntry {
            key: self.key(crate::config::RESTART_RULE),
            transition: if healthy {
                Transition::Restarted
            } else {
                Transition::RestartFailed
            },
            severity: if healthy {
                Severity::Info
            } else {
                Severity::Critical
            },
            summary: what.clone(),
            value: None,
            threshold: None,
        });
        let trigger_state = rules
            .iter()
            .find(|r| r.rule == trigger.rule)
            .and_then(|r| r.state.clone());
        let summary = trigger_state
            .as_ref()
            .map(|s| s.summary.clone())
            .unwrap_or_default();
        let severity = trigger_state
            .as_ref()
            .map(|s| s.severity)
            .unwrap_or(Severity::Critical);
        // The recheck saw every probe pass: that is the health rule's own
        // condition cleared. Any other rule (lag, a gauge) is judged again
        // by the next tick; a restart does not make its condition clear.
        let resolves = healthy && trigger.rule == HEALTH_RULE;
        if resolves && let Some(state) = &trigger_state {
            let quiet = AlertState {
                status: Status::Quiet,
                since: now,
                good_since: None,
                good_ticks: 0,
                announced: false,
                ..state.clone()
            };
            outcome.alerts.insert(trigger.clone(), Some(quiet.clone()));
            outcome.history.push(HistoryEntry {
                key: trigger.clone(),
                transition: Transition::Resolved,
                severity,
                summary: format!("healthy after the restart ({what})"),
                value: None,
                threshold: None,
            });
            for rule in rules.iter_mut().filter(|r| r.rule == trigger.rule) {
                rule.state = Some(quiet.clone());
                rule.transition = Some(Transition::Resolved);
            }
            // The rules' missing data came from the failed probe, which the
            // recheck saw answer: those keys (never told) clear with it.
            for rule in rules.iter_mut().filter(|r| {
                r.rule.ends_with(NO_DATA_SUFFIX)
                    && r.state
                        .as_ref()
                        .is_some_and(|s| s.status.is_active() && !s.announced)
            }) {
                let Some(state) = rule.state.clone() else {
                    continue;
                };
                let cleared = AlertState {
                    status: Status::Quiet,
                    since: now,
                    ..state
                };
                let key = self.key(&rule.rule);
                outcome.alerts.insert(key.clone(), Some(cleared.clone()));
                outcome.history.push(HistoryEntry {
                    key,
                    transition: Transition::Resolved,
                    severity: cleared.severity,
                    summary: format!("data back after the restart ({what})"),
                    value: None,
                    threshold: None,
                });
                rule.state = Some(cleared);
                rule.transition = Some(Transition::Resolved);
            }
        }
        let kind = if healthy {
            MessageKind::Restarted
        } else {
            MessageKind::RestartFailed
        };
        let summary = match (healthy, resolves) {
            (true, true) => format!("was: {summary}"),
            (true, false) => format!(
                "was: {summary}; {} is judged again from the next tick",
                trigger.rule
            ),
            (false, _) => summary,
        };
        let mut message = self.message(
            kind,
            &trigger.rule,
            severity,
            summary,
            trigger_state.as_ref(),
        );
        message.remediation = Some(what.clone());
        push_outgoing(self.config, self.notifiers, message, outcome);
        Remediation::Done { what, healthy }
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
    runs: &[TaskRun],
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
                TaskRun {
                    task: &profile.tasks[0],
                    observation: api.clone(),
                },
                TaskRun {
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
        let runs = [TaskRun {
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
            },
        );
        let runs = [TaskRun {
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
