//! The generic `webhook` notifier: a POST per payload — monitor's JSON,
//! Slack-compatible `{"text": …}`, or a JSON template of the config's.

use super::kinds::{NotifierConfig, converted};
use super::{Context, Failure, Payload, Sent};
use crate::config::{Secret, Text, values};
use crate::http_client::{ClientSettings, agent, describe_error};
use serde::Deserialize;
use serde::de::Deserializer;
use std::collections::BTreeMap;

/// `type: webhook`: a POST of JSON to a URL.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: Secret,
    pub headers: BTreeMap<String, Secret>,
    pub body: WebhookBody,
}

/// What a webhook POSTs.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookBody {
    /// monitor's own JSON (id, kind, host, profile, task, …, text).
    Json,
    /// `{"text": …}`: Slack, Mattermost, Discord (`/slack`) incoming webhooks.
    Slack,
    /// A JSON document of the config's, its strings' `{field}` filled in.
    Template(serde_json::Value),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    #[serde(default)]
    url: Option<Secret>,
    #[serde(default)]
    headers: BTreeMap<String, Secret>,
    #[serde(default)]
    format: Option<Text>,
    #[serde(default)]
    template: Option<serde_json::Value>,
}

impl TryFrom<RawWebhook> for WebhookConfig {
    type Error = String;
    fn try_from(raw: RawWebhook) -> Result<Self, String> {
        let url = values::required_secret_url(raw.url, "webhook", "url")?;
        values::checked_headers(&raw.headers)?;
        let body = match (raw.format.as_ref().map(Text::as_str), raw.template) {
            (None | Some("json"), None) => WebhookBody::Json,
            (Some("slack"), None) => WebhookBody::Slack,
            (None, Some(template)) => WebhookBody::Template(template),
            (Some(_), Some(_)) => return Err("give `format` or `template`, not both".into()),
            (Some(other), None) => {
                return Err(format!(
                    "webhook format{} is not json or slack (or give a `template`)",
                    values::word(other)
                ));
            }
        };
        Ok(WebhookConfig {
            url,
            headers: raw.headers,
            body,
        })
    }
}

impl NotifierConfig for WebhookConfig {
    fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        converted::<D, RawWebhook, Self>(d)
    }

    fn keys() -> &'static [&'static str] {
        crate::config::tagged::field_names::<RawWebhook>()
    }

    fn send(&self, payload: &Payload, context: &Context) -> Result<Sent, Failure> {
        send(&self.url, &self.headers, &self.body, payload, context).map(|()| Sent::Done)
    }

    fn secrets(&self) -> Vec<&str> {
        let mut all = vec![self.url.expose()];
        all.extend(self.headers.values().map(Secret::expose));
        all
    }
}

/// POSTs the payload. Any 2xx is delivered.
pub fn send(
    url: &Secret,
    headers: &BTreeMap<String, Secret>,
    body: &WebhookBody,
    payload: &Payload,
    context: &Context,
) -> Result<(), Failure> {
    let agent = agent(&ClientSettings {
        timeout: context.timeout,
        tls_verify: true,
        ca_file: None,
        pin: None,
    })
    .map_err(Failure::transient)?;
    let document = render(body, payload);
    let mut request = agent
        .post(url.expose())
        .header("content-type", "application/json")
        .header("idempotency-key", payload.id().as_str());
    for (name, value) in headers {
        request = request.header(name.as_str(), value.expose());
    }
    match request.send(document.to_string().as_bytes()) {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(Failure::from_status(response.status().as_u16())),
        Err(e) => Err(Failure::transient(describe_error(&e, context.timeout))),
    }
}

/// The JSON document a payload becomes.
pub fn render(body: &WebhookBody, payload: &Payload) -> serde_json::Value {
    match (body, payload) {
        (WebhookBody::Slack, _) => serde_json::json!({ "text": payload.text() }),
        (WebhookBody::Json, Payload::Single(message)) => message.to_json(),
        (WebhookBody::Json, _) => serde_json::json!({
            "id": payload.id(),
            "kind": "digest",
            "severity": payload.severity(),
            "messages": payload.messages().iter().map(super::Message::to_json).collect::<Vec<_>>(),
            "text": payload.text(),
        }),
        (WebhookBody::Template(template), _) => fill(template, &fields(payload)),
    }
}

/// The `{field}`s a template can use.
fn fields(payload: &Payload) -> BTreeMap<&'static str, String> {
    let first = payload.messages().first();
    let field = |f: fn(&super::Message) -> String| first.map(f).unwrap_or_default();
    BTreeMap::from([
        ("id", payload.id()),
        ("text", payload.text()),
        ("severity", payload.severity().to_string()),
        ("kind", field(|m| format!("{:?}", m.kind).to_lowercase())),
        ("status", field(|m| m.kind.status().to_string())),
        ("host", field(|m| m.host.clone())),
        ("profile", field(|m| m.profile.clone())),
        ("task", field(|m| m.task.clone())),
        ("rule", field(|m| m.rule.clone())),
        ("summary", field(|m| m.summary.clone())),
        (
            "value",
            field(|m| {
                m.value
                    .map(crate::config::format_number)
                    .unwrap_or_default()
            }),
        ),
        (
            "threshold",
            field(|m| m.threshold.clone().unwrap_or_default()),
        ),
        ("at", field(|m| m.at.rfc3339())),
        ("count", payload.messages().len().to_string()),
    ])
}

/// Replaces `{field}` in every string of `template` (keys included).
fn fill(
    template: &serde_json::Value,
    fields: &BTreeMap<&'static str, String>,
) -> serde_json::Value {
    let fill_text = |text: &str| {
        let mut out = text.to_string();
        for (name, value) in fields {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    };
    match template {
        serde_json::Value::String(text) => serde_json::Value::String(fill_text(text)),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(|i| fill(i, fields)).collect())
        }
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (fill_text(k), fill(v, fields)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::config::Severity;
    use crate::notify::{Message, MessageKind};

    fn message(task: &str, severity: Severity) -> Message {
        Message {
            id: format!("id-{task}"),
            kind: MessageKind::Firing,
            host: "box-1".into(),
            profile: "p".into(),
            task: task.into(),
            rule: "health".into(),
            severity,
            summary: "HTTP 500 \"quoted\"".into(),
            value: Some(500.0),
            threshold: None,
            started_at: None,
            at: Timestamp(0),
            remediation: None,
            labels: Default::default(),
            related: Vec::new(),
        }
    }

    #[test]
    fn slack_bodies_carry_the_text() {
        let payload = Payload::Single(Box::new(message("api", Severity::Critical)));
        let body = render(&WebhookBody::Slack, &payload);
        assert_eq!(
            body,
            serde_json::json!({ "text": "[box-1] FIRING critical p/api/health: HTTP 500 \"quoted\"" })
        );
    }

    #[test]
    fn templates_fill_fields_with_json_safe_text() {
        let template = serde_json::json!({ "title": "{severity} on {host}", "body": ["{summary}", 1, true], "{task}": "x" });
        let body = render(
            &WebhookBody::Template(template),
            &Payload::Single(Box::new(message("api", Severity::Warning))),
        );
        assert_eq!(body["title"], "warning on box-1");
        assert_eq!(body["body"][0], "HTTP 500 \"quoted\"");
        assert_eq!(body["body"][1], 1);
        assert_eq!(body["api"], "x");
        // Serializing escapes the quotes: the receiver gets valid JSON.
        assert!(serde_json::from_str::<serde_json::Value>(&body.to_string()).is_ok());
    }

    #[test]
    fn a_digest_is_one_document_with_every_message() {
        let payload = Payload::Digest {
            digest: vec![
                message("a", Severity::Warning),
                message("b", Severity::Critical),
            ],
        };
        let body = render(&WebhookBody::Json, &payload);
        assert_eq!(body["kind"], "digest");
        assert_eq!(body["severity"], "critical");
        assert_eq!(body["messages"].as_array().unwrap().len(), 2);
        assert!(
            body["text"]
                .as_str()
                .unwrap()
                .starts_with("[box-1] p: 2 changes\n• FIRING warning p/a/health")
        );
    }

    /// What a receiver gets, as a person reviews it: monitor's JSON and
    /// the Slack-style `{"text": …}`.
    #[test]
    fn bodies_a_receiver_reads() {
        let payload = Payload::Single(Box::new(message("api", Severity::Critical)));
        let json = serde_json::to_string_pretty(&render(&WebhookBody::Json, &payload)).unwrap();
        insta::assert_snapshot!("webhook_json", json);
        let slack = serde_json::to_string_pretty(&render(&WebhookBody::Slack, &payload)).unwrap();
        insta::assert_snapshot!("webhook_slack", slack);
    }
}
