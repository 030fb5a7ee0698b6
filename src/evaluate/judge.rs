//! Judging one task of a tick: every key of it (its rules, the implicit
//! health rule, log patterns) given this tick's verdict, stepped through
//! the alert lifecycle, silenced or held, and its restart recorded once
//! carried out. [`super::evaluate`] runs this for each task.

use super::*;
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
pub(super) struct Judged {
    pub(super) name: String,
    pub(super) verdict: Verdict,
    pub(super) policy: Policy,
    /// Whether its firing may restart the task.
    remediates: Remediates,
    /// When its breach really began, if before this tick.
    pub(super) began: Option<Timestamp>,
    /// Why it is recorded but not told (a rule's missing data while the
    /// health alert already tells that the probe failed).
    pub(super) inhibited: Option<String>,
    /// Judged even while the task settles after a restart (a log pattern:
    /// a fatal line is an occurrence a restart does not disturb).
    pub(super) during_settle: bool,
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
pub(crate) struct Judge<'a> {
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

impl<'a> Judge<'a> {
    pub fn new(
        config: &'a Config,
        profile: &'a Profile,
        task: &'a Task,
        observation: &Observation,
        silences: &'a [silence::Silence],
        now: Timestamp,
    ) -> Self {
        Judge {
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
    /// `held_by`: a task this one `depends_on` that is failing this tick:
    /// every key holds still and no restart is attempted.
    pub(super) fn draft(
        self,
        prior: &Prior,
        observation: &Observation,
        held_by: Option<&str>,
        live_keys: &mut BTreeSet<AlertKey>,
    ) -> TaskDraft<'a> {
        let task = self.task;
        let book = RestartBook::load(prior.tasks.get(&task.name));
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
        // Held still: waiting on a failing dependency, or settling after
        // a restart. Breaches are held, no restart is tried.
        let hold = match (held_by, book.settling(self.now)) {
            (Some(dependency), _) => Some((
                format!("held: depends on {dependency}, which is failing"),
                false,
                task.remediate.as_ref().map(|_| Remediation::Held {
                    why: format!("restart held: depends on {dependency}, which is failing"),
                }),
            )),
            (None, Some(until)) => Some((
                format!("held: settling after the restart until {until}"),
                true,
                Some(Remediation::Settling { until }),
            )),
            (None, None) => None,
        };
        if let Some((why, settling, remediation)) = hold {
            let (keys, held) = self.hold(prior, judged, &why, settling, live_keys);
            return TaskDraft {
                judge: self,
                early,
                keys,
                held,
                remediation,
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
                Decision::Go => Remediation::Due { trigger: key, summary },
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
            judge: self,
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
        state: Option<&TaskMemory>,
        observation: &Observation,
        outcome: &mut Outcome,
        book: &RestartBook,
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
                    .get_name(super::START_TIME_SERIES)
                    .map(|v| format!("start:{v}"))
            })
            .or_else(|| {
                let selector: Selector = super::START_TIME_SERIES.parse().ok()?;
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
        why: &str,
        settling: bool,
        live_keys: &mut BTreeSet<AlertKey>,
    ) -> (Vec<Stepped>, Vec<RuleResult>) {
        let mut keys = Vec::new();
        let mut held_names = Vec::new();
        for judged in judged {
            if (settling && judged.during_settle) || matches!(judged.verdict, Verdict::Clear { .. })
            {
                keys.push(self.step(prior, judged, live_keys));
            } else {
                // Held still, breach or no data, with what it is now: a
                // breach keeps the task unhealthy (exit 1).
                let breach = match judged.verdict {
                    Verdict::Breach { severity, .. } => Some(severity),
                    _ => None,
                };
                let now = judged.verdict.summary().to_string();
                held_names.push((judged.name, Some((now, breach))));
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
            .map(|(name, now)| {
                let key = self.key(&name);
                let state = prior.alerts.get(&key).cloned();
                live_keys.insert(key);
                let (reason, held_breach) = match now {
                    Some((now, breach)) => (format!("{why}; now: {now}"), breach),
                    None => (why.to_string(), None),
                };
                RuleResult {
                    rule: name,
                    verdict: Verdict::Hold { reason },
                    state,
                    transition: None,
                    held_breach,
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
}
