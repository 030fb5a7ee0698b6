//! Recording what judging decided: a key's history row and message, and a
//! carried-out restart (its book, history and message).

use super::*;

impl Judge<'_> {
    /// Records a stepped key: its state change, history row and message.
    pub(super) fn settle_key(&self, stepped: Stepped, outcome: &mut Outcome) -> RuleResult {
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
            held_breach: None,
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

impl Judge<'_> {
    /// Records a carried-out restart: the restart book, a history row and
    /// one message — the trigger resolved by a healthy restart of a failed
    /// probe, still judged (another rule), or marked as a failed restart.
    pub(super) fn restarted(
        &self,
        rules: &mut [RuleResult],
        trigger: &AlertKey,
        attempt: &Attempt,
        book: &RestartBook,
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
