//! Messages to people and where they go: routing by profile/task lists and
//! minimum severity, digests and Alertmanager batches, and delivery by each
//! notifier kind. Notifiers only send; the outbox in the store decides what
//! is due and records results.

#[macro_use]
pub(crate) mod kinds;

pub mod alertmanager;
pub(crate) mod feishu;
pub(crate) mod github;
pub(crate) mod heartbeat;
pub(crate) mod outbox;
pub(crate) mod stdout;
pub(crate) mod telegram;
pub(crate) mod webhook;

// Every notifier type, by its `type:`: the one list. A new notifier is a
// `mod` line above and a line here (see `kinds.rs`).
notifier_kinds! {
    stdout => Stdout(stdout::StdoutConfig),
    webhook => Webhook(webhook::WebhookConfig),
    telegram => Telegram(telegram::TelegramConfig),
    feishu => Feishu(feishu::FeishuConfig),
    alertmanager => Alertmanager(alertmanager::AlertmanagerConfig),
    github => Github(github::GithubConfig),
}

use crate::alert::{AlertState, Status};
use crate::clock::{Timestamp, human_duration};
use crate::config::{Config, Notifier, Profile, Secret, Severity, Task, format_number};
use crate::evaluate::Outgoing;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

/// Why a message is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Firing,
    /// The same incident fired again after a quiet spell (or a resolution).
    Again,
    Reminder,
    Escalated,
    Resolved,
    /// A notification without a lifecycle (a log event).
    Event,
    /// The task was restarted and is healthy again (the alert resolved).
    Restarted,
    /// The task was restarted and is still unhealthy (the alert fires on).
    /// (Outbox rows written before 2026-12 spell it `restartfailed`.)
    #[serde(alias = "restartfailed")]
    RestartFailed,
}

impl MessageKind {
    /// The alert status a receiver should show.
    pub fn status(self) -> &'static str {
        match self {
            MessageKind::Firing
            | MessageKind::Again
            | MessageKind::Reminder
            | MessageKind::Escalated
            | MessageKind::RestartFailed => "firing",
            MessageKind::Resolved | MessageKind::Restarted => "resolved",
            MessageKind::Event => "event",
        }
    }
}

/// One message, as stored in the outbox and sent to every notifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Stable across retries and notifiers: receivers deduplicate on it.
    pub id: String,
    pub kind: MessageKind,
    pub host: String,
    pub profile: String,
    pub task: String,
    pub rule: String,
    pub severity: Severity,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    /// When the alert started firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    pub at: Timestamp,
    /// What a restart did: stopped pids, new pid, seconds to healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
    /// The task's `labels` (Alertmanager labels, GitHub context).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Other signals of the task at that tick, `name = value` (evidence).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
}

impl Message {
    /// Derives the id from what makes the message unique.
    pub fn make_id(
        host: &str,
        profile: &str,
        task: &str,
        rule: &str,
        kind: MessageKind,
        at: Timestamp,
    ) -> String {
        let mut hash = Sha256::new();
        for part in [
            host,
            profile,
            task,
            rule,
            kind.status(),
            &format!("{kind:?}"),
            &at.0.to_string(),
        ] {
            hash.update(part.as_bytes());
            hash.update([0u8]);
        }
        hash.finalize()
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// One line for a person: host first, then what happened.
    pub fn text(&self) -> String {
        format!("[{}] {}", self.host, self.line())
    }

    /// What happened, without the host: `FIRING critical p/t/r: …`.
    pub fn line(&self) -> String {
        let source = format!("{}/{}/{}", self.profile, self.task, self.rule);
        let mut text = match self.kind {
            MessageKind::Event => self.summary.clone(),
            MessageKind::Firing => format!("FIRING {} {source}: {}", self.severity, self.summary),
            MessageKind::Again => {
                let first = self
                    .started_at
                    .map(|s| format!(" (first fired {} ago)", human_duration(self.at.since(s))))
                    .unwrap_or_default();
                format!(
                    "FIRING AGAIN {} {source}{first}: {}",
                    self.severity, self.summary
                )
            }
            MessageKind::Escalated => {
                format!("ESCALATED to {} {source}: {}", self.severity, self.summary)
            }
            MessageKind::Reminder => {
                let since = self
                    .started_at
                    .map(|s| human_duration(self.at.since(s)))
                    .unwrap_or_default();
                format!(
                    "STILL FIRING for {since} {} {source}: {}",
                    self.severity, self.summary
                )
            }
            MessageKind::Resolved => {
                let after = self
                    .started_at
                    .map(|s| format!(" after {}", human_duration(self.at.since(s))))
                    .unwrap_or_default();
                format!("RESOLVED{after} {source}: {}", self.summary)
            }
            MessageKind::Restarted => format!("RESTARTED {source}: {}", self.summary),
            MessageKind::RestartFailed => format!(
                "RESTART FAILED {} {source}: {}",
                self.severity, self.summary
            ),
        };
        if let Some(remediation) = &self.remediation {
            text.push_str(" — ");
            text.push_str(remediation);
        }
        if !matches!(
            self.kind,
            MessageKind::Event | MessageKind::Resolved | MessageKind::Restarted
        ) {
            match (&self.value, &self.threshold) {
                (Some(value), Some(threshold)) if !self.summary.contains(threshold.as_str()) => {
                    text.push_str(&format!(
                        " [value {}, threshold {threshold}]",
                        format_number(*value)
                    ));
                }
                _ => {}
            }
        }
        text
    }

    /// The "source" a test route prefixes: the task.
    pub fn source(&self) -> &str {
        &self.task
    }

    /// The JSON body a webhook receives.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "kind": self.kind,
            "status": self.kind.status(),
            "host": self.host,
            "profile": self.profile,
            "task": self.task,
            "rule": self.rule,
            "severity": self.severity,
            "summary": self.summary,
            "value": self.value,
            "threshold": self.threshold,
            "started_at": self.started_at.map(|t| t.rfc3339()),
            "at": self.at.rfc3339(),
            "remediation": self.remediation,
            "labels": self.labels,
            "text": self.text(),
        })
    }
}

/// The notifiers a task's messages go to: the task's list, else the
/// profile's, else the defaults.
pub fn route<'c>(config: &'c Config, profile: &'c Profile, task: &'c Task) -> &'c [String] {
    task.notify
        .as_deref()
        .or(profile.notify.as_deref())
        .unwrap_or(&config.defaults.notify)
}

/// Where a task's events ("Task Started: 12") go: `notify_events` of the
/// task or profile, else wherever its alerts go.
pub fn route_events<'c>(config: &'c Config, profile: &'c Profile, task: &'c Task) -> &'c [String] {
    task.notify_events
        .as_deref()
        .or(profile.notify_events.as_deref())
        .unwrap_or_else(|| route(config, profile, task))
}

/// Whether `notifier` takes a message of `severity`.
pub fn accepts(notifier: &Notifier, severity: Severity) -> bool {
    severity >= notifier.min_severity
}

/// What one outbox entry carries to one notifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Payload {
    /// Several messages of one tick in one send (`digest: true`).
    Digest {
        digest: Vec<Message>,
    },
    /// Every alert firing for an Alertmanager (re-sent each tick, valid
    /// until `valid_until`) and those resolved this tick.
    Alerts {
        alerts: Vec<Message>,
        valid_until: Timestamp,
        /// The one URL of the notifier this batch is for
        /// ([`alertmanager::target`]); none in batches queued before each
        /// URL had its own queue, which go to every URL at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    Single(Box<Message>),
}

impl Payload {
    pub fn messages(&self) -> &[Message] {
        match self {
            Payload::Digest { digest } => digest,
            Payload::Alerts { alerts, .. } => alerts,
            Payload::Single(message) => std::slice::from_ref(message),
        }
    }

    /// Stable across retries: receivers deduplicate on it.
    pub fn id(&self) -> String {
        match self {
            Payload::Single(message) => message.id.clone(),
            Payload::Digest { digest } => combined_id("digest", digest),
            Payload::Alerts {
                alerts,
                valid_until,
                to: None,
            } => combined_id(&format!("alerts@{}", valid_until.0), alerts),
            Payload::Alerts {
                alerts,
                valid_until,
                to: Some(to),
            } => combined_id(&format!("alerts@{}@{to}", valid_until.0), alerts),
        }
    }

    /// The most severe message's severity.
    pub fn severity(&self) -> Severity {
        self.messages()
            .iter()
            .map(|m| m.severity)
            .max()
            .unwrap_or(Severity::Info)
    }

    /// For a person: one message's line, or a digest's header and lines.
    pub fn text(&self) -> String {
        match self {
            Payload::Single(message) => message.text(),
            Payload::Digest { digest } | Payload::Alerts { alerts: digest, .. } => {
                let Some(first) = digest.first() else {
                    return String::new();
                };
                let mut text = format!(
                    "[{}] {}: {} changes",
                    first.host,
                    first.profile,
                    digest.len()
                );
                for message in digest {
                    text.push_str("\n• ");
                    text.push_str(&message.line());
                }
                text
            }
        }
    }
}

fn combined_id(kind: &str, messages: &[Message]) -> String {
    let mut hash = Sha256::new();
    hash.update(kind.as_bytes());
    for message in messages {
        hash.update([0u8]);
        hash.update(message.id.as_bytes());
    }
    hash.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One outbox entry: a payload for one notifier.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub notifier: String,
    pub payload: Payload,
}

/// Turns this tick's messages into outbox entries: one per message and
/// notifier, one digest per digest notifier, and for each Alertmanager
/// every alert of its tasks firing after this tick plus those resolved in
/// it. `alerts` holds the profile's alert states after the tick.
pub fn envelopes(
    config: &Config,
    profile: &Profile,
    outgoing: &[Outgoing],
    alerts: &[AlertState],
    now: Timestamp,
) -> Vec<Envelope> {
    let mut envelopes = Vec::new();
    let mut digests: BTreeMap<&str, Vec<Message>> = BTreeMap::new();
    for out in outgoing {
        for name in &out.notifiers {
            let Some(notifier) = config.notifier(name) else {
                continue;
            };
            match notifier.kind {
                NotifierKind::Alertmanager(_) => {}
                _ if notifier.digest => digests.entry(name).or_default().push(out.message.clone()),
                _ => envelopes.push(Envelope {
                    notifier: name.clone(),
                    payload: Payload::Single(Box::new(out.message.clone())),
                }),
            }
        }
    }
    for (name, mut messages) in digests {
        let payload = if messages.len() == 1 {
            Payload::Single(Box::new(messages.remove(0)))
        } else {
            Payload::Digest { digest: messages }
        };
        envelopes.push(Envelope {
            notifier: name.to_string(),
            payload,
        });
    }
    for notifier in config.notifiers.iter() {
        let NotifierKind::Alertmanager(am) = &notifier.kind else {
            continue;
        };
        if let Some((batch, valid_until)) =
            alertmanager_batch(config, profile, notifier, outgoing, alerts, now)
        {
            // One queue per URL: a URL that is down holds back only itself.
            envelopes.extend(am.urls.iter().map(|url| Envelope {
                notifier: notifier.name.clone(),
                payload: Payload::Alerts {
                    alerts: batch.clone(),
                    valid_until,
                    to: Some(alertmanager::target(url)),
                },
            }));
        }
    }
    envelopes
}

/// Every alert an Alertmanager must hear about this tick: those firing (it
/// forgets alerts not re-sent before their end) and those resolved now.
fn alertmanager_batch(
    config: &Config,
    profile: &Profile,
    notifier: &Notifier,
    outgoing: &[Outgoing],
    alerts: &[AlertState],
    now: Timestamp,
) -> Option<(Vec<Message>, Timestamp)> {
    let routed = |task: &str| {
        profile
            .tasks
            .iter()
            .find(|t| t.name == task)
            .is_some_and(|t| route(config, profile, t).contains(&notifier.name))
    };
    let labels = |task: &str| {
        profile
            .tasks
            .iter()
            .find(|t| t.name == task)
            .map(|t| t.labels.clone())
            .unwrap_or_default()
    };
    let mut batch: Vec<Message> = alerts
        .iter()
        .filter(|a| a.status == Status::Firing && a.key.profile == profile.name)
        .filter(|a| accepts(notifier, a.severity) && routed(&a.key.task))
        .map(|a| Message {
            // The same id for the whole incident: Alertmanager keys on labels.
            id: Message::make_id(
                &config.host,
                &a.key.profile,
                &a.key.task,
                &a.key.rule,
                MessageKind::Firing,
                a.opened_at.unwrap_or(a.since),
            ),
            kind: MessageKind::Firing,
            host: config.host.clone(),
            profile: a.key.profile.clone(),
            task: a.key.task.clone(),
            rule: a.key.rule.clone(),
            severity: a.severity,
            summary: a.summary.clone(),
            value: a.value,
            threshold: a.threshold.clone(),
            started_at: Some(a.opened_at.unwrap_or(a.since)),
            at: now,
            remediation: None,
            labels: labels(&a.key.task),
            related: Vec::new(),
        })
        .collect();
    batch.extend(
        outgoing
            .iter()
            .filter(|o| o.notifiers.contains(&notifier.name))
            .map(|o| &o.message)
            .filter(|m| matches!(m.kind, MessageKind::Resolved | MessageKind::Restarted))
            .cloned(),
    );
    if batch.is_empty() {
        return None;
    }
    // Valid for three intervals of the profile's schedule: a missed tick
    // or two does not resolve it, a dead monitor does.
    let interval = profile_interval(profile, now).unwrap_or(Duration::from_secs(300));
    let valid_until = now.plus_millis(3 * i64::try_from(interval.as_millis()).unwrap_or(300_000));
    Some((batch, valid_until))
}

/// The time between two runs of the profile around `now`.
pub fn profile_interval(profile: &Profile, now: Timestamp) -> Option<Duration> {
    profile
        .cron
        .interval_after(&now.to_chrono()?.with_timezone(&chrono::Local))
}

/// Sends one payload through one notifier. Stdout messages are handed back
/// for the report to print (so `--quiet` and `--format json` stay clean).
pub enum Sent {
    Done,
    Console(String),
}

/// Why a delivery failed, and whether and when trying again can help.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error: String,
    /// The receiver rejected this message for good (a 4xx): dead-letter it.
    pub permanent: bool,
    /// The receiver asked to wait this long (HTTP 429 `retry_after`).
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn transient(error: impl Into<String>) -> Self {
        Failure {
            error: error.into(),
            permanent: false,
            retry_after: None,
        }
    }

    /// Classifies an HTTP status: 4xx but 408 and 429 will never succeed.
    pub fn from_status(status: u16) -> Self {
        Failure {
            error: format!("the receiver answered HTTP {status}"),
            permanent: (400..500).contains(&status) && status != 408 && status != 429,
            retry_after: None,
        }
    }
}

/// Escapes `&`, `<` and `>`: what Telegram's HTML mode and Feishu's
/// `lark_md` would read as markup.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Replaces every secret in `text` (tokens, keyed URLs) by `[redacted]`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "[redacted]");
    }
    text
}

/// The seed-001 test route: with `TELEGRAM_TEST_CHAT_ID` set, every
/// telegram message goes to that chat (via `TELEGRAM_BOT_TOKEN_DEFAULT`
/// when set), prefixed with its source, without topic threading.
#[derive(Clone, Debug)]
pub struct TelegramTestRoute {
    pub chat_id: String,
    pub token: Option<Secret>,
}

impl TelegramTestRoute {
    pub fn from_env() -> Option<TelegramTestRoute> {
        let chat_id = std::env::var("TELEGRAM_TEST_CHAT_ID")
            .ok()
            .filter(|c| !c.trim().is_empty())?;
        let token = std::env::var("TELEGRAM_BOT_TOKEN_DEFAULT")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| Secret::new(t.trim()));
        Some(TelegramTestRoute {
            chat_id: chat_id.trim().to_string(),
            token,
        })
    }
}

/// What delivery needs besides the notifier and the payload.
pub struct Context<'a> {
    pub timeout: Duration,
    pub now: Timestamp,
    pub telegram_test: Option<&'a TelegramTestRoute>,
}

/// Delivers `payload` through `notifier`, or says why it could not. No
/// secret of the notifier survives in the error.
pub fn deliver(notifier: &Notifier, payload: &Payload, context: &Context) -> Result<Sent, Failure> {
    let result = notifier.kind.config().send(payload, context);
    let mut secrets = notifier.kind.secrets();
    if let Some(token) = context.telegram_test.and_then(|t| t.token.as_ref()) {
        secrets.push(token.expose());
    }
    result.map_err(|mut failure| {
        failure.error = redact(&failure.error, &secrets);
        failure
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: MessageKind) -> Message {
        Message {
            id: "x".into(),
            kind,
            host: "box-1".into(),
            profile: "minutely".into(),
            task: "api".into(),
            rule: "health".into(),
            severity: Severity::Critical,
            summary: "http: http://127.0.0.1:8080/: HTTP 500 (expected 200-399)".into(),
            value: None,
            threshold: None,
            started_at: Some(Timestamp(0)),
            at: Timestamp(185_000),
            remediation: None,
            labels: BTreeMap::new(),
            related: Vec::new(),
        }
    }

    #[test]
    fn texts_start_with_the_host() {
        assert_eq!(
            message(MessageKind::Firing).text(),
            "[box-1] FIRING critical minutely/api/health: http: http://127.0.0.1:8080/: HTTP 500 (expected 200-399)"
        );
        assert!(
            message(MessageKind::Resolved)
                .text()
                .starts_with("[box-1] RESOLVED after 3m 5s minutely/api/health")
        );
        assert!(
            message(MessageKind::Reminder)
                .text()
                .contains("STILL FIRING for 3m 5s")
        );
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = Message::make_id("h", "p", "t", "r", MessageKind::Firing, Timestamp(1));
        assert_eq!(
            a,
            Message::make_id("h", "p", "t", "r", MessageKind::Firing, Timestamp(1))
        );
        assert_ne!(
            a,
            Message::make_id("h", "p", "t", "r", MessageKind::Resolved, Timestamp(1))
        );
        assert_ne!(
            a,
            Message::make_id("h", "p", "t", "r", MessageKind::Firing, Timestamp(2))
        );
        assert_eq!(a.len(), 24);
    }

    /// The line the stdout notifier prints (and what chats quote), for each
    /// kind of message.
    #[test]
    fn lines_a_person_reads() {
        let lines: Vec<String> = [
            MessageKind::Firing,
            MessageKind::Again,
            MessageKind::Reminder,
            MessageKind::Escalated,
            MessageKind::Resolved,
            MessageKind::Event,
            MessageKind::Restarted,
            MessageKind::RestartFailed,
        ]
        .into_iter()
        .map(|kind| message(kind).text())
        .collect();
        insta::assert_snapshot!("stdout_lines", lines.join("\n"));
    }
}
