//! The `feishu` notifier: a Feishu/Lark custom bot webhook, as a text
//! message or an interactive card, signed when the bot has a secret. It
//! only sends and classifies the bot's answer; the outbox decides when to
//! try and when to give up. The webhook URL is the bot's credential, so
//! neither it, its key nor the secret ever appears in an error.

use super::kinds::{NotifierConfig, converted};
use super::{Context, Failure, Message, MessageKind, Payload, Sent, escape_html as escape, redact};
use crate::clock::Timestamp;
use crate::config::{Secret, Severity, Text, format_number, values};
use crate::http_client::{ClientSettings, agent, body_excerpt, describe_error};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Read;

/// `type: feishu`: a Feishu/Lark custom bot, signed when it has a secret.
#[derive(Debug, Clone)]
pub struct FeishuConfig {
    pub url: Secret,
    pub secret: Secret,
    pub format: FeishuFormat,
}

/// A Feishu/Lark message style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeishuFormat {
    Text,
    Card,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeishu {
    #[serde(default)]
    url: Option<Secret>,
    #[serde(default)]
    secret: Secret,
    #[serde(default)]
    format: Option<Text>,
}

impl TryFrom<RawFeishu> for FeishuConfig {
    type Error = String;
    fn try_from(raw: RawFeishu) -> Result<Self, String> {
        Ok(FeishuConfig {
            url: values::required_secret_url(raw.url, "feishu", "url")?,
            secret: raw.secret,
            format: match raw.format.as_ref().map(Text::as_str) {
                None | Some("text") => FeishuFormat::Text,
                Some("card") => FeishuFormat::Card,
                Some(other) => {
                    return Err(format!(
                        "feishu format{} is not text or card",
                        values::word(other)
                    ));
                }
            },
        })
    }
}

impl NotifierConfig for FeishuConfig {
    fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        converted::<D, RawFeishu, Self>(d)
    }

    fn keys() -> &'static [&'static str] {
        crate::config::tagged::field_names::<RawFeishu>()
    }

    fn send(&self, payload: &Payload, context: &Context) -> Result<Sent, Failure> {
        send(&self.url, &self.secret, self.format, payload, context).map(|()| Sent::Done)
    }

    fn secrets(&self) -> Vec<&str> {
        vec![self.url.expose(), self.secret.expose()]
    }
}

/// Feishu refuses request bodies over 20 KB; texts are cut well below.
const MAX_TEXT_BYTES: usize = 16 * 1024;

/// Enough of an answer to read `code` and `msg`.
const MAX_ANSWER: u64 = 64 * 1024;

/// Result codes saying the request itself is malformed: sending it again
/// cannot help. Every other code (a wrong signature or key, an IP or
/// keyword restriction, rate limiting) is fixed by an operator or by time,
/// and the backlog then goes out.
const PERMANENT_CODES: [i64; 2] = [
    9499,  // Bad Request
    19002, // params error (no msg_type)
];

/// POSTs `payload` to the bot at `url`, signed with `secret` when it has
/// one. HTTP 2xx with `code` (or the older `StatusCode`) 0 is delivered.
pub fn send(
    url: &Secret,
    secret: &Secret,
    format: FeishuFormat,
    payload: &Payload,
    context: &Context,
) -> Result<(), Failure> {
    let signature = if secret.is_empty() {
        None
    } else {
        let signature = sign(secret.expose(), context.now);
        Some(signature.ok_or_else(|| Failure::transient("Feishu: could not sign the request"))?)
    };
    let body = render(format, payload, signature.as_ref());
    let result = post(url.expose(), &body, context);
    result.map_err(|mut failure| {
        // Too short a secret would blank ordinary words; the URL holds the key anyway.
        let secrets = [url.expose(), secret.expose(), hook_key(url.expose())];
        let secrets: Vec<&str> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        failure.error = redact(&failure.error, &secrets);
        failure
    })
}

fn post(url: &str, body: &serde_json::Value, context: &Context) -> Result<(), Failure> {
    let agent = agent(&ClientSettings {
        timeout: context.timeout,
        tls_verify: true,
        ca_file: None,
        pin: None,
    })
    .map_err(Failure::transient)?;
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string().as_bytes())
        .map_err(|e| {
            Failure::transient(format!("Feishu: {}", describe_error(&e, context.timeout)))
        })?;
    let status = response.status().as_u16();
    let mut answer = Vec::new();
    // An unreadable answer is judged by its status alone.
    let _ = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .reader()
        .take(MAX_ANSWER)
        .read_to_end(&mut answer);
    judge(status, &answer)
}

/// The key part of a webhook URL (`…/bot/v2/hook/<key>`), which alone is
/// enough to post to the bot.
fn hook_key(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    match path.rsplit_once("/hook/") {
        Some((_, key)) if key.len() >= 8 => key.trim_end_matches('/'),
        _ => "",
    }
}

/// What a signed request carries: `timestamp` (Unix seconds, as a string)
/// and `sign`.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub timestamp: String,
    pub sign: String,
}

/// Feishu's custom-bot signature at `now`: base64 of HMAC-SHA256 keyed
/// with `timestamp + "\n" + secret` over an empty message. Feishu accepts
/// it for an hour, so every attempt signs afresh.
pub fn sign(secret: &str, now: Timestamp) -> Option<Signature> {
    let timestamp = now.millis().div_euclid(1000).to_string();
    let key = format!("{timestamp}\n{secret}");
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).ok()?;
    let sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Some(Signature { timestamp, sign })
}

/// The JSON body for `payload`: a text message, or a card whose header
/// colour says what happened.
pub fn render(
    format: FeishuFormat,
    payload: &Payload,
    signature: Option<&Signature>,
) -> serde_json::Value {
    let text = truncate(&payload.text(), MAX_TEXT_BYTES);
    let mut body = match format {
        FeishuFormat::Text => serde_json::json!({
            "msg_type": "text",
            "content": { "text": text },
        }),
        FeishuFormat::Card => {
            let (title, rest) = text.split_once('\n').unwrap_or((&text, ""));
            let content = match payload {
                Payload::Single(message) => details(message),
                _ => escape(rest),
            };
            serde_json::json!({
                "msg_type": "interactive",
                "card": {
                    "header": {
                        "title": { "tag": "plain_text", "content": title },
                        "template": color(payload),
                    },
                    "elements": [
                        { "tag": "div", "text": { "tag": "lark_md", "content": content } },
                    ],
                },
            })
        }
    };
    if let Some(signature) = signature {
        body["timestamp"] = signature.timestamp.as_str().into();
        body["sign"] = signature.sign.as_str().into();
    }
    body
}

/// The card header's colour: red or orange while something fires
/// (critical or warning), green when it resolved, blue for events.
pub fn color(payload: &Payload) -> &'static str {
    let messages = payload.messages();
    let firing = messages
        .iter()
        .filter(|m| m.kind.status() == "firing")
        .map(|m| m.severity)
        .max();
    match firing {
        Some(Severity::Critical) => "red",
        Some(Severity::Warning) => "orange",
        Some(Severity::Info) => "blue",
        None if messages.iter().any(|m| m.kind.status() == "resolved") => "green",
        None => "blue",
    }
}

/// A card's body for one message: where, how bad, since when, evidence.
fn details(message: &Message) -> String {
    let mut lines = vec![format!(
        "**Source:** {}/{}/{} on {}",
        escape(&message.profile),
        escape(&message.task),
        escape(&message.rule),
        escape(&message.host)
    )];
    if message.kind != MessageKind::Event {
        lines.push(format!("**Severity:** {}", message.severity));
    }
    if let Some(value) = message.value {
        let threshold = message
            .threshold
            .as_deref()
            .map(|t| format!(" (threshold {})", escape(t)))
            .unwrap_or_default();
        lines.push(format!("**Value:** {}{threshold}", format_number(value)));
    }
    if let Some(started) = message.started_at {
        lines.push(format!("**Since:** {started}"));
    }
    lines.push(format!("**At:** {}", message.at));
    if let Some(remediation) = &message.remediation {
        lines.push(format!("**Remediation:** {}", escape(remediation)));
    }
    if !message.related.is_empty() {
        lines.push(format!(
            "**Related:** {}",
            escape(&message.related.join(", "))
        ));
    }
    lines.join("\n")
}

/// `text` cut to at most `limit` bytes at a character boundary, a note
/// saying so at the end when it was cut.
pub fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let note = format!(
        "\n… (cut: the message has {} characters)",
        text.chars().count()
    );
    let mut end = limit.saturating_sub(note.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{note}", &text[..end])
}

/// Classifies the bot's answer: a result code other than 0 is a failure
/// even on HTTP 200 (permanent only for a malformed request); without a
/// code, HTTP 429 and 5xx are retried, as are 401/403/404 (a wrong URL an
/// operator fixes), other 4xx are permanent.
pub fn judge(status: u16, body: &[u8]) -> Result<(), Failure> {
    let answer: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |names: [&str; 2]| {
        answer
            .as_ref()
            .and_then(|a| names.iter().find_map(|name| a.get(*name)))
    };
    let code = field(["code", "StatusCode"]).and_then(serde_json::Value::as_i64);
    let message = field(["msg", "StatusMessage"])
        .and_then(serde_json::Value::as_str)
        .map(|m| format!(": {}", one_line(m)))
        .unwrap_or_else(|| body_excerpt(body));
    let success = (200..300).contains(&status);
    match code {
        Some(0) if success => Ok(()),
        Some(code) if code != 0 => Err(Failure {
            error: format!("Feishu answered HTTP {status}, code {code}{message}"),
            permanent: PERMANENT_CODES.contains(&code),
            retry_after: None,
        }),
        _ if success => Err(Failure::transient(format!(
            "Feishu answered HTTP {status} without a result code{message}"
        ))),
        _ => Err(Failure {
            error: format!("Feishu answered HTTP {status}{message}"),
            permanent: !matches!(status, 401 | 403 | 404) && Failure::from_status(status).permanent,
            retry_after: None,
        }),
    }
}

/// A message from the network on one line, within reason.
fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::MessageKind;

    fn message(task: &str, kind: MessageKind, severity: Severity) -> Message {
        Message {
            id: format!("id-{task}"),
            kind,
            host: "box-1".into(),
            profile: "p".into(),
            task: task.into(),
            rule: "health".into(),
            severity,
            summary: "HTTP 500: <b> & c".into(),
            value: Some(500.0),
            threshold: Some("< 400".into()),
            started_at: None,
            at: Timestamp(0),
            remediation: None,
            labels: Default::default(),
            related: Vec::new(),
        }
    }

    fn single(kind: MessageKind, severity: Severity) -> Payload {
        Payload::Single(Box::new(message("api", kind, severity)))
    }

    #[test]
    fn signs_as_feishu_documents() {
        // python3 -c 'import hmac, hashlib, base64;
        //   print(base64.b64encode(hmac.new(b"1790000000\nS3CR3T", b"", hashlib.sha256).digest()).decode())'
        let signature = sign("S3CR3T", Timestamp::from_secs(1_790_000_000)).unwrap();
        assert_eq!(
            signature,
            Signature {
                timestamp: "1790000000".into(),
                sign: "5OeQ7qpLRMWg5Ykt6n3W6hqRjboB0eAgysaPWpOx04w=".into(),
            }
        );
        // Milliseconds are dropped, not rounded.
        let later = sign("S3CR3T", Timestamp(1_790_000_000_999)).unwrap();
        assert_eq!(later, signature);
    }

    #[test]
    fn text_messages_carry_the_text_and_the_signature() {
        let signature = Signature {
            timestamp: "1790000000".into(),
            sign: "c2lnbg==".into(),
        };
        let body = render(
            FeishuFormat::Text,
            &single(MessageKind::Firing, Severity::Critical),
            Some(&signature),
        );
        assert_eq!(
            body,
            serde_json::json!({
                "msg_type": "text",
                "content": { "text": "[box-1] FIRING critical p/api/health: HTTP 500: <b> & c [value 500, threshold < 400]" },
                "timestamp": "1790000000",
                "sign": "c2lnbg==",
            })
        );
        let unsigned = render(
            FeishuFormat::Text,
            &single(MessageKind::Event, Severity::Info),
            None,
        );
        assert_eq!(unsigned.get("sign"), None);
        assert_eq!(unsigned.get("timestamp"), None);
    }

    #[test]
    fn cards_have_a_title_a_colour_and_an_escaped_body() {
        let body = render(
            FeishuFormat::Card,
            &single(MessageKind::Firing, Severity::Critical),
            None,
        );
        assert_eq!(body["msg_type"], "interactive");
        let header = &body["card"]["header"];
        assert_eq!(header["template"], "red");
        assert_eq!(header["title"]["tag"], "plain_text");
        assert!(
            header["title"]["content"]
                .as_str()
                .unwrap()
                .starts_with("[box-1] FIRING critical p/api/health")
        );
        let element = &body["card"]["elements"][0];
        assert_eq!(element["tag"], "div");
        assert_eq!(element["text"]["tag"], "lark_md");
        let content = element["text"]["content"].as_str().unwrap();
        assert!(
            content.contains("**Source:** p/api/health on box-1"),
            "{content}"
        );
        assert!(
            content.contains("**Value:** 500 (threshold &lt; 400)"),
            "{content}"
        );

        let digest = Payload::Digest {
            digest: vec![
                message("a", MessageKind::Firing, Severity::Warning),
                message("b", MessageKind::Resolved, Severity::Critical),
            ],
        };
        let body = render(FeishuFormat::Card, &digest, None);
        assert_eq!(
            body["card"]["header"]["title"]["content"],
            "[box-1] p: 2 changes"
        );
        let content = body["card"]["elements"][0]["text"]["content"]
            .as_str()
            .unwrap();
        assert!(
            content.starts_with("• FIRING warning p/a/health: HTTP 500: &lt;b&gt; &amp; c"),
            "{content}"
        );
        assert!(content.contains("\n• RESOLVED p/b/health"), "{content}");
    }

    #[test]
    fn colours_follow_what_happened() {
        let cases = [
            (MessageKind::Firing, Severity::Critical, "red"),
            (MessageKind::Reminder, Severity::Critical, "red"),
            (MessageKind::RestartFailed, Severity::Critical, "red"),
            (MessageKind::Firing, Severity::Warning, "orange"),
            (MessageKind::Resolved, Severity::Critical, "green"),
            (MessageKind::Restarted, Severity::Warning, "green"),
            (MessageKind::Event, Severity::Info, "blue"),
        ];
        for (kind, severity, expected) in cases {
            assert_eq!(
                color(&single(kind, severity)),
                expected,
                "{kind:?} {severity}"
            );
        }
        // A digest takes its worst firing message's colour.
        let digest = Payload::Digest {
            digest: vec![
                message("a", MessageKind::Resolved, Severity::Critical),
                message("b", MessageKind::Firing, Severity::Warning),
            ],
        };
        assert_eq!(color(&digest), "orange");
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("short", 100), "short");
        let long = "é".repeat(20_000);
        let cut = truncate(&long, MAX_TEXT_BYTES);
        assert!(cut.len() <= MAX_TEXT_BYTES);
        assert!(cut.ends_with("\n… (cut: the message has 20000 characters)"));
    }

    #[test]
    fn result_codes_decide_even_on_http_200() {
        assert_eq!(
            judge(200, br#"{"code":0,"data":{},"msg":"success"}"#),
            Ok(())
        );
        assert_eq!(
            judge(200, br#"{"StatusCode":0,"StatusMessage":"success"}"#),
            Ok(())
        );

        let sign = judge(
            200,
            br#"{"code":19021,"data":{},"msg":"sign match fail or timestamp is not within one hour from current time"}"#,
        )
        .unwrap_err();
        assert!(!sign.permanent);
        assert_eq!(
            sign.error,
            "Feishu answered HTTP 200, code 19021: sign match fail or timestamp is not within one hour from current time"
        );
        let bad = judge(400, br#"{"code":9499,"msg":"Bad Request","data":{}}"#).unwrap_err();
        assert!(bad.permanent, "{bad:?}");
        let frequency = judge(200, br#"{"code":11232,"msg":"frequency limited"}"#).unwrap_err();
        assert!(!frequency.permanent);

        let odd = judge(200, b"fine").unwrap_err();
        assert!(!odd.permanent);
        assert!(odd.error.contains("without a result code: fine"), "{odd:?}");
    }

    #[test]
    fn http_statuses_without_a_code() {
        for status in [429, 500, 502, 503, 401, 403, 404, 408] {
            assert!(!judge(status, b"").unwrap_err().permanent, "{status}");
        }
        for status in [400, 413, 422] {
            assert!(judge(status, b"").unwrap_err().permanent, "{status}");
        }
    }

    #[test]
    fn errors_never_name_the_webhook_or_its_key() {
        let url = "http://127.0.0.1:1/open-apis/bot/v2/hook/0a1b2c3d-key";
        assert_eq!(hook_key(url), "0a1b2c3d-key");
        assert_eq!(hook_key("http://127.0.0.1:1/x"), "");
        let failure = Failure::transient(format!("bad URL {url}; key 0a1b2c3d-key"));
        let error = redact(&failure.error, &[url, hook_key(url)]);
        assert_eq!(error, "bad URL [redacted]; key [redacted]");
    }

    /// The text and card a Feishu/Lark chat gets for a firing alert.
    #[test]
    fn bodies_a_chat_reads() {
        let payload = single(MessageKind::Firing, Severity::Critical);
        let text = render(FeishuFormat::Text, &payload, None);
        insta::assert_snapshot!("feishu_text", serde_json::to_string_pretty(&text).unwrap());
        let card = render(FeishuFormat::Card, &payload, None);
        insta::assert_snapshot!("feishu_card", serde_json::to_string_pretty(&card).unwrap());
    }
}
