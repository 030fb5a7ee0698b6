//! Messages to people and where they go: routing by profile/task lists and
//! minimum severity, and delivery by each notifier kind. Notifiers only
//! send; the outbox in the store decides what is due and records results.

pub mod webhook;

use crate::clock::{Timestamp, human_duration};
use crate::config::{Config, Notifier, NotifierKind, Profile, Severity, Task, format_number};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a message is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Firing,
    Reminder,
    Escalated,
    Resolved,
    /// A notification without a lifecycle (a log event).
    Event,
    /// The task was restarted and is healthy again (the alert resolved).
    Restarted,
    /// The task was restarted and is still unhealthy (the alert fires on).
    RestartFailed,
}

impl MessageKind {
    /// The alert status a receiver should show.
    pub fn status(self) -> &'static str {
        match self {
            MessageKind::Firing
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
        let source = format!("{}/{}/{}", self.profile, self.task, self.rule);
        let mut text = match self.kind {
            MessageKind::Event => format!("[{}] {}", self.host, self.summary),
            MessageKind::Firing => format!(
                "[{}] FIRING {} {source}: {}",
                self.host, self.severity, self.summary
            ),
            MessageKind::Escalated => format!(
                "[{}] ESCALATED to {} {source}: {}",
                self.host, self.severity, self.summary
            ),
            MessageKind::Reminder => {
                let since = self
                    .started_at
                    .map(|s| human_duration(self.at.since(s)))
                    .unwrap_or_default();
                format!(
                    "[{}] STILL FIRING for {since} {} {source}: {}",
                    self.host, self.severity, self.summary
                )
            }
            MessageKind::Resolved => {
                let after = self
                    .started_at
                    .map(|s| format!(" after {}", human_duration(self.at.since(s))))
                    .unwrap_or_default();
                format!("[{}] RESOLVED{after} {source}: {}", self.host, self.summary)
            }
            MessageKind::Restarted => {
                format!("[{}] RESTARTED {source}: {}", self.host, self.summary)
            }
            MessageKind::RestartFailed => format!(
                "[{}] RESTART FAILED {} {source}: {}",
                self.host, self.severity, self.summary
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

/// Whether `notifier` takes a message of `severity`.
pub fn accepts(notifier: &Notifier, severity: Severity) -> bool {
    severity >= notifier.min_severity
}

/// Sends one message through one notifier. Stdout messages are handed back
/// for the report to print (so `--quiet` and `--format json` stay clean).
pub enum Sent {
    Done,
    Console(String),
}

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error: String,
    /// The receiver rejected this message (a 4xx): retrying cannot help.
    pub permanent: bool,
}

impl Failure {
    pub fn transient(error: impl Into<String>) -> Self {
        Failure {
            error: error.into(),
            permanent: false,
        }
    }

    /// Classifies an HTTP status: 4xx but 408 and 429 will never succeed.
    pub fn from_status(status: u16) -> Self {
        Failure {
            error: format!("the receiver answered HTTP {status}"),
            permanent: (400..500).contains(&status) && status != 408 && status != 429,
        }
    }
}

/// Delivers `message` through `notifier`, or says why it could not.
pub fn deliver(
    notifier: &Notifier,
    message: &Message,
    timeout: std::time::Duration,
) -> Result<Sent, Failure> {
    match &notifier.kind {
        NotifierKind::Stdout => Ok(Sent::Console(message.text())),
        NotifierKind::Webhook { url, headers } => {
            webhook::send(url, headers, message, timeout).map(|()| Sent::Done)
        }
        other => Err(Failure::transient(format!(
            "{} notifier is not supported yet",
            other.type_name()
        ))),
    }
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
}
