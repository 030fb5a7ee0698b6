//! The `alertmanager` notifier: turns a batch of alerts into Alertmanager
//! API v2 `postableAlert`s and POSTs them to every URL of a cluster. It
//! decides nothing about which alerts are firing (`alertmanager_batch` in
//! `notify` does) and keeps no state between ticks (the outbox does).
//!
//! Decisions a reader of the Alertmanager side should know:
//!
//! - **Labels** are the alert's identity in Alertmanager: `alertname` (the
//!   rule), `profile`, `task`, `rule`, `severity`, `host`, plus the task's
//!   `labels`. Monitor's own names win over a task label of the same name:
//!   a resolution must carry exactly the labels of the alert it ends, and a
//!   task label `severity: page` must not re-route a warning or split one
//!   alert in two. Task label names that Alertmanager would refuse (it
//!   accepts `[A-Za-z_][A-Za-z0-9_]*` and answers 400 for the whole batch
//!   otherwise) have each other character replaced by `_`, as Prometheus
//!   does; labels with an empty value are left out (Alertmanager drops them).
//! - **endsAt** of a firing alert is the batch's `valid_until`: Alertmanager
//!   resolves it by itself if monitor stops re-sending. A resolved alert's
//!   `endsAt` is the time it resolved.
//! - **One queue per URL**, as Prometheus keeps one per Alertmanager: each
//!   tick queues one batch for each URL of the notifier (the outbox row's
//!   payload names the URL by [`target`], a digest, never the URL: it may
//!   hold a password). A URL's waiting batches are sent as one POST: the
//!   resolutions of all of them, then the firing alerts of this tick's batch
//!   only. A firing alert of an earlier tick is restated, with a later
//!   `endsAt`, by the current batch, and posting it would tell Alertmanager
//!   it ended when that old `valid_until` passed (a false "resolved", then
//!   "firing" again); a waiting resolution of an alert that fires again is
//!   dropped for the same reason. So one Alertmanager that is down costs the
//!   others nothing: they hear every tick's alerts on that tick; the one
//!   that was down hears, once back, what it missed that still matters, and
//!   no URL is sent again what it already took. Each URL is tried every
//!   tick (no backoff: each tick carries the current state), all at once,
//!   so a hung one costs its own timeout once per tick.
//! - A 400 means Alertmanager refused some alert for good: permanent.

use super::kinds::{NotifierConfig, converted};
use super::{Context, Failure, Message, MessageKind, Payload, Sent};
use crate::clock::Timestamp;
use crate::config::{Text, format_number, values};
use crate::http_client::{ClientSettings, agent, body_excerpt, describe_error};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

/// `type: alertmanager`: every URL of a cluster gets every tick's alerts.
#[derive(Debug, Clone)]
pub struct AlertmanagerConfig {
    pub urls: Vec<Text>,
    /// Where `generatorURL` points, e.g. the API's `/v1/alerts`.
    pub generator_url: Option<Text>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    #[serde(default)]
    urls: Vec<Text>,
    #[serde(default)]
    generator_url: Option<Text>,
}

impl TryFrom<RawAlertmanager> for AlertmanagerConfig {
    type Error = String;
    fn try_from(raw: RawAlertmanager) -> Result<Self, String> {
        if raw.urls.is_empty() {
            return Err("an alertmanager notifier needs `urls`".into());
        }
        for url in &raw.urls {
            values::checked_url(url, "urls")?;
        }
        Ok(AlertmanagerConfig {
            urls: raw.urls,
            generator_url: raw.generator_url,
        })
    }
}

impl NotifierConfig for AlertmanagerConfig {
    fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        converted::<D, RawAlertmanager, Self>(d)
    }

    fn keys() -> &'static [&'static str] {
        crate::config::tagged::field_names::<RawAlertmanager>()
    }

    fn send(&self, payload: &Payload, context: &Context) -> Result<Sent, Failure> {
        let generator_url = self.generator_url.as_ref().map(Text::as_str);
        send(&self.urls, generator_url, payload, context).map(|()| Sent::Done)
    }

    fn takes_digest(&self) -> bool {
        false
    }

    fn takes_rate_limit(&self) -> bool {
        false
    }
}

/// Alertmanager's v2 alerts endpoint, under a configured base URL.
const ALERTS_PATH: &str = "/api/v2/alerts";

/// How much of an error response is kept for the message.
const ERROR_BODY_LIMIT: u64 = 1024;

/// One alert as Alertmanager's `POST /api/v2/alerts` takes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    pub ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

/// The name a URL's outbox rows carry: a digest of the URL as configured,
/// so a password in it is never stored.
pub fn target(url: &Text) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(url.as_str().as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The URL as shown to people: `user:***@`, as probe URLs are.
pub fn shown(url: &Text) -> String {
    crate::probe::mask_credentials(url.as_str())
}

/// What one URL is sent for its waiting batches (oldest first): every
/// resolution not overtaken by the alert firing again in the current
/// batch, then the current batch's firing alerts. Empty when nothing in
/// them still matters (stale firing alerts only).
pub fn merged(
    batches: &[&Payload],
    generator_url: Option<&str>,
    now: Timestamp,
) -> Vec<PostableAlert> {
    let (mut resolutions, mut firing) = (Vec::new(), Vec::new());
    for batch in batches {
        if let Payload::Alerts {
            alerts,
            valid_until,
            ..
        } = batch
        {
            for message in alerts {
                match postable(message, *valid_until, generator_url, now) {
                    Some((true, alert)) => firing.push(alert),
                    Some((false, alert)) => resolutions.push(alert),
                    None => {}
                }
            }
        }
    }
    resolutions.retain(|r: &PostableAlert| !firing.iter().any(|f| f.labels == r.labels));
    resolutions.append(&mut firing);
    resolutions
}

/// POSTs `alerts` to one Alertmanager.
pub fn send_to(url: &Text, alerts: &[PostableAlert], context: &Context) -> Result<(), Failure> {
    let (body, agent) = prepare(alerts, context)?;
    post(&agent, url.as_str(), &body, context.timeout)
}

/// The JSON body of `alerts` and the client to POST it with.
fn prepare(alerts: &[PostableAlert], context: &Context) -> Result<(Vec<u8>, ureq::Agent), Failure> {
    let body = serde_json::to_vec(alerts)
        .map_err(|e| Failure::transient(format!("encoding the alerts as JSON: {e}")))?;
    let agent = agent(&ClientSettings {
        timeout: context.timeout,
        tls_verify: true,
        ca_file: None,
        pin: None,
    })
    .map_err(Failure::transient)?;
    Ok((body, agent))
}

/// POSTs the batch to every URL at once (outbox rows queued before one
/// queue per URL). Delivered when all of them accepted it; otherwise the
/// error names each URL that did not, and why.
pub fn send(
    urls: &[Text],
    generator_url: Option<&str>,
    payload: &Payload,
    context: &Context,
) -> Result<(), Failure> {
    let Payload::Alerts {
        alerts,
        valid_until,
        ..
    } = payload
    else {
        return Err(Failure {
            error: "an alertmanager notifier takes alert batches, not single messages or digests (was the notifier's type changed while messages waited?)".into(),
            permanent: true,
            retry_after: None,
        });
    };
    let postable = postable_alerts(alerts, *valid_until, generator_url, context.now);
    if postable.is_empty() {
        return Ok(());
    }
    let (body, agent) = prepare(&postable, context)?;
    let timeout = context.timeout;
    let results = std::thread::scope(|scope| {
        let requests: Vec<_> = urls
            .iter()
            .map(|url| {
                let (agent, body) = (&agent, body.as_slice());
                scope.spawn(move || {
                    post(agent, url.as_str(), body, timeout).map_err(|mut failure| {
                        failure.error = format!("{}: {}", shown(url), failure.error);
                        failure
                    })
                })
            })
            .collect();
        requests
            .into_iter()
            .map(|request| {
                request
                    .join()
                    .unwrap_or_else(|_| Err(Failure::transient("the request thread panicked")))
            })
            .collect::<Vec<_>>()
    });
    combine(results)
}

/// The alerts a batch becomes, in its order. A firing alert built by an
/// earlier tick than `now` is left out (the module doc says why), and
/// events, which have no lifecycle, are never sent.
pub fn postable_alerts(
    messages: &[Message],
    valid_until: Timestamp,
    generator_url: Option<&str>,
    now: Timestamp,
) -> Vec<PostableAlert> {
    messages
        .iter()
        .filter_map(|message| postable(message, valid_until, generator_url, now))
        .map(|(_, alert)| alert)
        .collect()
}

/// One message as Alertmanager takes it, and whether it is firing; `None`
/// for an event or an earlier tick's firing alert.
fn postable(
    message: &Message,
    valid_until: Timestamp,
    generator_url: Option<&str>,
    now: Timestamp,
) -> Option<(bool, PostableAlert)> {
    let (firing, ends_at) = match message.kind {
        MessageKind::Resolved | MessageKind::Restarted => (false, message.at),
        MessageKind::Firing
        | MessageKind::Again
        | MessageKind::Reminder
        | MessageKind::Escalated
        | MessageKind::RestartFailed => {
            if message.at < now {
                return None;
            }
            (true, valid_until)
        }
        MessageKind::Event => return None,
    };
    let alert = PostableAlert {
        labels: labels(message),
        annotations: annotations(message, firing),
        starts_at: message.started_at.map(Timestamp::rfc3339),
        ends_at: ends_at.rfc3339(),
        generator_url: generator_url.map(str::to_string),
    };
    Some((firing, alert))
}

/// The task's labels under valid names, then monitor's own over them.
fn labels(message: &Message) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = message
        .labels
        .iter()
        .filter_map(|(name, value)| Some((label_name(name)?, value.clone())))
        .collect();
    let own = [
        ("alertname", message.rule.clone()),
        ("profile", message.profile.clone()),
        ("task", message.task.clone()),
        ("rule", message.rule.clone()),
        ("severity", message.severity.to_string()),
        ("host", message.host.clone()),
    ];
    labels.extend(own.map(|(name, value)| (name.to_string(), value)));
    labels.retain(|_, value| !value.is_empty());
    labels
}

/// `name` as Alertmanager accepts it: every character outside
/// `[A-Za-z0-9_]` becomes `_`, and a leading digit gets a `_` before it.
fn label_name(name: &str) -> Option<String> {
    let mut valid: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    match valid.chars().next() {
        None => return None,
        Some(first) if first.is_ascii_digit() => valid.insert(0, '_'),
        Some(_) => {}
    }
    Some(valid)
}

/// `summary`, and `description` with the evidence: value and threshold
/// (while firing), what a restart did, the task's other signals.
fn annotations(message: &Message, firing: bool) -> BTreeMap<String, String> {
    let mut lines = Vec::new();
    match (message.value, &message.threshold) {
        (Some(value), Some(threshold)) if firing => lines.push(format!(
            "value {}, threshold {threshold}",
            format_number(value)
        )),
        (Some(value), None) if firing => lines.push(format!("value {}", format_number(value))),
        (None, Some(threshold)) if firing => lines.push(format!("threshold {threshold}")),
        _ => {}
    }
    if let Some(remediation) = &message.remediation {
        lines.push(format!("remediation: {remediation}"));
    }
    if !message.related.is_empty() {
        lines.push(format!("related: {}", message.related.join(", ")));
    }
    let mut annotations = BTreeMap::from([("summary".to_string(), message.summary.clone())]);
    if !lines.is_empty() {
        annotations.insert("description".to_string(), lines.join("\n"));
    }
    annotations
}

/// One POST to one Alertmanager; the error does not repeat the URL.
fn post(agent: &ureq::Agent, url: &str, body: &[u8], timeout: Duration) -> Result<(), Failure> {
    let request = agent
        .post(endpoint(url))
        .header("content-type", "application/json");
    match request.send(body) {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(mut response) => {
            let status = response.status().as_u16();
            let mut excerpt = Vec::new();
            // An unreadable error body only costs the explanation.
            let _ = response
                .body_mut()
                .with_config()
                .limit(u64::MAX)
                .reader()
                .take(ERROR_BODY_LIMIT)
                .read_to_end(&mut excerpt);
            Err(Failure {
                error: format!("answered HTTP {status}{}", explanation(&excerpt)),
                ..Failure::from_status(status)
            })
        }
        Err(error) => Err(Failure {
            error: describe_error(&error, timeout),
            // A malformed URL will not get better by waiting.
            permanent: matches!(error, ureq::Error::BadUri(_)),
            retry_after: None,
        }),
    }
}

/// The alerts endpoint under a base URL (`http://am:9093`); a URL that
/// already ends with it is taken as it is.
fn endpoint(url: &str) -> String {
    let base = url.trim_end_matches('/');
    if base.ends_with(ALERTS_PATH) {
        base.to_string()
    } else {
        format!("{base}{ALERTS_PATH}")
    }
}

/// Alertmanager's reason, `": …"`: its error bodies are a JSON string
/// (`"invalid label set: …"`) or an object with a `message`.
fn explanation(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(serde_json::Value::Object(object)) => match object.get("message") {
            Some(serde_json::Value::String(text)) => text.clone(),
            _ => return body_excerpt(body),
        },
        _ => return body_excerpt(body),
    };
    body_excerpt(text.as_bytes())
}

/// One verdict for the whole batch: delivered when every URL accepted it;
/// permanent only when no URL failed in a way that waiting can fix.
fn combine(results: Vec<Result<(), Failure>>) -> Result<(), Failure> {
    let total = results.len();
    let failures: Vec<Failure> = results.into_iter().filter_map(Result::err).collect();
    if failures.is_empty() {
        return Ok(());
    }
    let reasons = failures
        .iter()
        .map(|f| f.error.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let error = if total > 1 {
        format!(
            "{} of {total} Alertmanagers did not take the alerts: {reasons}",
            failures.len()
        )
    } else {
        reasons
    };
    Err(Failure {
        error,
        permanent: failures.iter().all(|f| f.permanent),
        retry_after: failures.iter().filter_map(|f| f.retry_after).max(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Severity;

    const MINUTE: i64 = 60_000;

    fn message(kind: MessageKind, at: i64) -> Message {
        Message {
            id: "x".into(),
            kind,
            host: "box-1".into(),
            profile: "minutely".into(),
            task: "api".into(),
            rule: "latency".into(),
            severity: Severity::Warning,
            summary: "latency_ms 900 > 500".into(),
            value: Some(900.0),
            threshold: Some("> 500".into()),
            started_at: Some(Timestamp(0)),
            at: Timestamp(at),
            remediation: None,
            labels: BTreeMap::from([("team".to_string(), "node".to_string())]),
            related: vec!["status = 200".into(), "up = 1".into()],
        }
    }

    fn json(alerts: &[PostableAlert]) -> serde_json::Value {
        serde_json::to_value(alerts).unwrap()
    }

    #[test]
    fn a_firing_alert_ends_when_the_batch_stops_being_valid() {
        let alerts = postable_alerts(
            &[message(MessageKind::Firing, 2 * MINUTE)],
            Timestamp(5 * MINUTE),
            Some("http://127.0.0.1:8923/v1/alerts"),
            Timestamp(2 * MINUTE),
        );
        assert_eq!(
            json(&alerts),
            serde_json::json!([{
                "labels": {
                    "alertname": "latency",
                    "host": "box-1",
                    "profile": "minutely",
                    "rule": "latency",
                    "severity": "warning",
                    "task": "api",
                    "team": "node",
                },
                "annotations": {
                    "summary": "latency_ms 900 > 500",
                    "description": "value 900, threshold > 500\nrelated: status = 200, up = 1",
                },
                "startsAt": "1970-01-01T00:00:00Z",
                "endsAt": "1970-01-01T00:05:00Z",
                "generatorURL": "http://127.0.0.1:8923/v1/alerts",
            }])
        );
    }

    #[test]
    fn a_resolved_alert_ends_when_it_resolved_and_keeps_its_labels() {
        let mut restarted = message(MessageKind::Restarted, 3 * MINUTE);
        restarted.remediation = Some("stopped pid 41, started pid 57, healthy after 2s".into());
        let resolved = message(MessageKind::Resolved, 3 * MINUTE);
        let firing = message(MessageKind::Firing, 3 * MINUTE);
        let alerts = postable_alerts(
            &[resolved, restarted, firing],
            Timestamp(6 * MINUTE),
            None,
            Timestamp(3 * MINUTE),
        );
        let body = json(&alerts);
        assert_eq!(body[0]["endsAt"], "1970-01-01T00:03:00Z");
        assert_eq!(body[0]["startsAt"], "1970-01-01T00:00:00Z");
        assert_eq!(body[1]["endsAt"], "1970-01-01T00:03:00Z");
        assert_eq!(body[2]["endsAt"], "1970-01-01T00:06:00Z");
        // The same labels as the firing alert: that is what resolves it.
        assert_eq!(body[0]["labels"], body[2]["labels"]);
        assert_eq!(body[1]["labels"], body[2]["labels"]);
        // No stale value on a resolution; the restart's outcome instead.
        assert_eq!(
            body[0]["annotations"]["description"],
            "related: status = 200, up = 1"
        );
        assert_eq!(
            body[1]["annotations"]["description"],
            "remediation: stopped pid 41, started pid 57, healthy after 2s\nrelated: status = 200, up = 1"
        );
        assert!(body[0].get("generatorURL").is_none());
    }

    #[test]
    fn an_earlier_ticks_batch_sends_only_its_resolutions() {
        let batch = [
            message(MessageKind::Firing, MINUTE),
            message(MessageKind::Reminder, MINUTE),
            message(MessageKind::Resolved, MINUTE),
        ];
        let later = postable_alerts(&batch, Timestamp(4 * MINUTE), None, Timestamp(9 * MINUTE));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].ends_at, "1970-01-01T00:01:00Z");
        let same_tick = postable_alerts(&batch, Timestamp(4 * MINUTE), None, Timestamp(MINUTE));
        assert_eq!(same_tick.len(), 3);
    }

    #[test]
    fn events_are_not_alerts() {
        let event = message(MessageKind::Event, MINUTE);
        assert!(
            postable_alerts(&[event], Timestamp(4 * MINUTE), None, Timestamp(MINUTE)).is_empty()
        );
    }

    #[test]
    fn monitors_labels_win_and_task_label_names_are_made_valid() {
        let mut firing = message(MessageKind::Firing, 0);
        firing.labels = BTreeMap::from([
            ("severity".into(), "page".into()),
            ("alertname".into(), "Other".into()),
            ("team-name".into(), "node".into()),
            ("9zone".into(), "eu".into()),
            ("k8s.io/app".into(), "api".into()),
            ("empty".into(), String::new()),
            (String::new(), "nameless".into()),
        ]);
        let labels = labels(&firing);
        assert_eq!(labels["severity"], "warning");
        assert_eq!(labels["alertname"], "latency");
        assert_eq!(labels["team_name"], "node");
        assert_eq!(labels["_9zone"], "eu");
        assert_eq!(labels["k8s_io_app"], "api");
        assert!(!labels.contains_key("empty"));
        assert!(!labels.values().any(|v| v == "nameless"));
        assert_eq!(labels.len(), 9);
    }

    #[test]
    fn a_message_without_evidence_has_only_a_summary() {
        let mut bare = message(MessageKind::Firing, 0);
        bare.value = None;
        bare.threshold = None;
        bare.related.clear();
        assert_eq!(
            annotations(&bare, true),
            BTreeMap::from([("summary".to_string(), "latency_ms 900 > 500".to_string())])
        );
    }

    #[test]
    fn urls_are_base_urls_or_the_endpoint_itself() {
        assert_eq!(
            endpoint("http://127.0.0.1:9093"),
            "http://127.0.0.1:9093/api/v2/alerts"
        );
        assert_eq!(
            endpoint("http://127.0.0.1:9093/am/"),
            "http://127.0.0.1:9093/am/api/v2/alerts"
        );
        assert_eq!(
            endpoint("http://127.0.0.1:9093/api/v2/alerts"),
            "http://127.0.0.1:9093/api/v2/alerts"
        );
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            shown(&Text("https://ops:s3cret@am.example:9093/x@y".into())),
            "https://ops:***@am.example:9093/x@y"
        );
        assert_eq!(
            shown(&Text("http://127.0.0.1:9093".into())),
            "http://127.0.0.1:9093"
        );
    }

    #[test]
    fn alertmanagers_reasons_are_unquoted() {
        assert_eq!(
            explanation(br#""invalid label set: invalid name \"bad-name\"""#),
            r#": invalid label set: invalid name "bad-name""#
        );
        assert_eq!(
            explanation(br#"{"code":400,"message":"parsing alerts body failed"}"#),
            ": parsing alerts body failed"
        );
        assert_eq!(explanation(b"Bad Gateway\n"), ": Bad Gateway");
        assert_eq!(explanation(b""), "");
    }

    #[test]
    fn a_batch_is_delivered_only_when_every_url_took_it() {
        let refused = || Failure::transient("http://b: connection refused");
        let rejected = || Failure {
            error: "http://c answered HTTP 400: start time must be before end time".into(),
            ..Failure::from_status(400)
        };
        assert_eq!(combine(vec![Ok(()), Ok(())]), Ok(()));
        let failure = combine(vec![Ok(()), Err(refused())]).unwrap_err();
        assert_eq!(
            failure.error,
            "1 of 2 Alertmanagers did not take the alerts: http://b: connection refused"
        );
        assert!(!failure.permanent);
        assert!(combine(vec![Err(rejected())]).unwrap_err().permanent);
        assert!(
            !combine(vec![Err(rejected()), Err(refused())])
                .unwrap_err()
                .permanent
        );
        assert_eq!(
            combine(vec![Err(refused())]).unwrap_err().error,
            "http://b: connection refused"
        );
    }

    /// The alert Alertmanager receives for a firing message.
    #[test]
    fn alert_alertmanager_receives() {
        let alerts = postable_alerts(
            &[message(MessageKind::Firing, 0)],
            Timestamp(5 * MINUTE),
            Some("http://127.0.0.1:8923/v1/alerts"),
            Timestamp(0),
        );
        insta::assert_snapshot!(
            "alertmanager_firing",
            serde_json::to_string_pretty(&json(&alerts)).unwrap()
        );
    }
}
