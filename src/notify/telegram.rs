//! The `telegram` notifier: one Bot API `sendMessage` per payload, as HTML,
//! to the configured chat and topic — or, with seed 001's test route, to the
//! test chat. It only sends and classifies Telegram's answer; the outbox
//! decides when to try and when to give up. The bot token is in the request
//! path, so neither it nor the URL ever appears in an error.

use super::kinds::{NotifierConfig, converted};
use super::{Context, Failure, Payload, Sent, TelegramTestRoute, escape_html as escape, redact};
use crate::config::{Secret, Text, values};
use crate::http_client::{ClientSettings, agent, body_excerpt, describe_error};
use serde::Deserialize;
use serde::de::Deserializer;
use std::io::Read;
use std::time::Duration;

/// `type: telegram`: a bot's message to a chat (or a topic of it).
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    pub token: Secret,
    pub chat_id: Text,
    pub topic_id: Option<i64>,
    pub api_url: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelegram {
    #[serde(default)]
    token: Option<Secret>,
    #[serde(default)]
    chat_id: Option<Text>,
    #[serde(default)]
    topic_id: Option<Text>,
    #[serde(default)]
    api_url: Option<Text>,
}

impl TryFrom<RawTelegram> for TelegramConfig {
    type Error = String;
    fn try_from(raw: RawTelegram) -> Result<Self, String> {
        if let Some(url) = &raw.api_url {
            values::checked_url(url, "api_url")?;
        }
        Ok(TelegramConfig {
            token: values::required_secret(raw.token, "telegram", "token")?,
            chat_id: raw
                .chat_id
                .filter(|c| !c.0.is_empty())
                .ok_or("a telegram notifier needs `chat_id`")?,
            topic_id: match raw.topic_id {
                Some(t) if !t.0.is_empty() => Some(t.0.parse().map_err(|_| {
                    "topic_id is not a number (the thread id of the topic)".to_string()
                })?),
                _ => None,
            },
            api_url: raw
                .api_url
                .unwrap_or(Text("https://api.telegram.org".into())),
        })
    }
}

impl NotifierConfig for TelegramConfig {
    fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        converted::<D, RawTelegram, Self>(d)
    }

    fn keys() -> &'static [&'static str] {
        crate::config::tagged::field_names::<RawTelegram>()
    }

    fn send(&self, payload: &Payload, context: &Context) -> Result<Sent, Failure> {
        let target = Target {
            token: &self.token,
            chat_id: self.chat_id.as_str(),
            topic_id: self.topic_id,
            api_url: self.api_url.as_str(),
        };
        send(&target, payload, context).map(|()| Sent::Done)
    }

    fn secrets(&self) -> Vec<&str> {
        vec![self.token.expose()]
    }
}

/// Where a telegram message goes.
pub struct Target<'a> {
    pub token: &'a Secret,
    pub chat_id: &'a str,
    pub topic_id: Option<i64>,
    pub api_url: &'a str,
}

/// Telegram's limit on a message's text after entity parsing, counted (as
/// Telegram counts) in UTF-16 code units.
const MAX_TEXT: usize = 4096;

/// Enough of an answer to read `ok`, `description` and `parameters`.
const MAX_ANSWER: u64 = 64 * 1024;

/// The longest wait honoured: a garbled `retry_after` must not park the
/// outbox for years (messages give up after `max_age` anyway).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Status words that open a line, bolded so a chat list shows them; longer
/// ones first where one starts another.
const STATUS_WORDS: [&str; 6] = [
    "STILL FIRING",
    "RESTART FAILED",
    "RESTARTED",
    "ESCALATED",
    "RESOLVED",
    "FIRING",
];

/// Sends `payload` through `target` (or the test route of `context`).
/// Telegram's `ok: true` is delivered; see [`judge`] for the failures.
pub fn send(target: &Target, payload: &Payload, context: &Context) -> Result<(), Failure> {
    let request = render(target, payload, context.telegram_test);
    let url = format!(
        "{}/bot{}/sendMessage",
        target.api_url.trim_end_matches('/'),
        request.token.expose()
    );
    // A digest over Telegram's limit goes as several messages, in order.
    let result = request
        .bodies
        .iter()
        .try_for_each(|body| post(&url, body, context.timeout));
    result.map_err(|mut failure| {
        failure.error = redact(&failure.error, &[&url, request.token.expose()]);
        failure
    })
}

fn post(url: &str, body: &serde_json::Value, timeout: Duration) -> Result<(), Failure> {
    let agent = agent(&ClientSettings {
        timeout,
        tls_verify: true,
        ca_file: None,
        pin: None,
    })
    .map_err(Failure::transient)?;
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string().as_bytes())
        .map_err(|e| Failure::transient(format!("Telegram: {}", describe_error(&e, timeout))))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut answer = Vec::new();
    // An unreadable answer is judged by its status alone.
    let _ = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .reader()
        .take(MAX_ANSWER)
        .read_to_end(&mut answer);
    judge(status, &answer, retry_after)
}

/// A `sendMessage` call: the bot that sends it and the JSON body.
#[derive(Debug)]
pub struct Request<'a> {
    pub token: &'a Secret,
    /// One sendMessage call each: a text over the limit is split.
    pub bodies: Vec<serde_json::Value>,
}

/// The call for `payload`: to the configured chat and topic, or with a test
/// route to its chat (via its bot when it names one), untopiced, the text
/// prefixed with the payload's source.
pub fn render<'a>(
    target: &Target<'a>,
    payload: &Payload,
    test: Option<&'a TelegramTestRoute>,
) -> Request<'a> {
    let mut body = serde_json::json!({
        "parse_mode": "HTML",
        "disable_web_page_preview": true,
    });
    let (token, text) = match test {
        Some(route) => {
            body["chat_id"] = route.chat_id.as_str().into();
            let text = format!("[{}] {}", source(payload), payload.text());
            (route.token.as_ref().unwrap_or(target.token), text)
        }
        None => {
            body["chat_id"] = target.chat_id.into();
            if let Some(topic) = target.topic_id {
                body["message_thread_id"] = topic.into();
            }
            (target.token, payload.text())
        }
    };
    let bodies = split(&text, MAX_TEXT)
        .iter()
        .map(|part| {
            let mut body = body.clone();
            body["text"] = html(part).into();
            body
        })
        .collect();
    Request { token, bodies }
}

/// UTF-16 code units: what Telegram counts.
fn units(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// `text` in parts of at most `limit` units, split between lines: the
/// first line (a digest's `[host] profile: N changes`) heads each part,
/// with `(part i of n)`. A single line longer than a part is cut.
pub fn split(text: &str, limit: usize) -> Vec<String> {
    if units(text) <= limit {
        return vec![text.to_string()];
    }
    let (head, rest) = text.split_once('\n').unwrap_or((text, ""));
    // Room for " (part 99 of 99)" and the line break after the head.
    let room = limit.saturating_sub(units(head) + 18).max(limit / 2);
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in rest.split('\n') {
        let line = if units(line) > room {
            truncate(line, room)
        } else {
            line.to_string()
        };
        if !current.is_empty() && units(&current) + 1 + units(&line) > room {
            parts.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
    }
    parts.push(current);
    let count = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            truncate(
                &format!("{head} (part {} of {count})\n{part}", i + 1),
                limit,
            )
        })
        .collect()
}

/// What the test route names a payload by: its task, or for a digest of
/// several tasks its profile.
fn source(payload: &Payload) -> &str {
    let messages = payload.messages();
    match messages.first() {
        None => "",
        Some(first) if messages.iter().all(|m| m.task == first.task) => first.source(),
        Some(first) => &first.profile,
    }
}

/// `text` as Telegram HTML (a part of at most the limit: see [`split`]),
/// `&`, `<` and `>`
/// escaped, and each line's opening status word in bold.
pub fn html(text: &str) -> String {
    truncate(text, MAX_TEXT)
        .split('\n')
        .map(html_line)
        .collect::<Vec<_>>()
        .join("\n")
}

fn html_line(line: &str) -> String {
    let rest = skip_prefixes(line);
    let start = line.len() - rest.len();
    let word = STATUS_WORDS.iter().find(|word| {
        rest.strip_prefix(**word)
            .is_some_and(|after| after.is_empty() || after.starts_with(' '))
    });
    match word {
        Some(word) => format!(
            "{}<b>{word}</b>{}",
            escape(&line[..start]),
            escape(&rest[word.len()..])
        ),
        None => escape(line),
    }
}

/// `line` after its `[host] ` / `[source] ` labels and digest bullet.
fn skip_prefixes(line: &str) -> &str {
    let mut rest = line;
    loop {
        if let Some(after) = rest.strip_prefix("• ") {
            rest = after;
        } else if let Some(label) = rest.strip_prefix('[')
            && let Some(end) = label.find("] ")
        {
            rest = &label[end + 2..];
        } else {
            return rest;
        }
    }
}

/// `text` cut to at most `limit` UTF-16 code units, a note saying so at
/// the end when it was cut.
pub fn truncate(text: &str, limit: usize) -> String {
    let length: usize = text.chars().map(char::len_utf16).sum();
    if length <= limit {
        return text.to_string();
    }
    let note = format!(
        "\n… (cut: the message has {} characters)",
        text.chars().count()
    );
    let budget = limit.saturating_sub(note.chars().map(char::len_utf16).sum());
    let mut used = 0;
    let mut kept: String = text
        .chars()
        .take_while(|c| {
            used += c.len_utf16();
            used <= budget
        })
        .collect();
    kept.push_str(&note);
    kept
}

/// The Bot API's answer: `{"ok": true, "result": …}` or
/// `{"ok": false, "error_code": 429, "description": …, "parameters": …}`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Answer {
    ok: bool,
    error_code: Option<u16>,
    description: Option<String>,
    parameters: Parameters,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Parameters {
    retry_after: Option<u64>,
    migrate_to_chat_id: Option<i64>,
}

/// Classifies Telegram's answer. 429 waits as long as Telegram asks; 400
/// (chat not found, malformed text) never succeeds; 401/403/404 (token
/// revoked, bot removed) wait for an operator to fix jobs.yaml so the
/// backlog still goes out; 5xx and anything unexpected are retried.
pub fn judge(status: u16, body: &[u8], retry_after: Option<Duration>) -> Result<(), Failure> {
    let answer: Option<Answer> = serde_json::from_slice(body).ok();
    let success = (200..300).contains(&status);
    if success && answer.as_ref().is_some_and(|a| a.ok) {
        return Ok(());
    }
    let answer = answer.unwrap_or_default();
    let code = match answer.error_code {
        Some(code) if success => code,
        _ => status,
    };
    let detail = match &answer.description {
        Some(description) => format!(": {}", one_line(description)),
        None => body_excerpt(body),
    };
    let error = if code != status {
        format!("Telegram answered HTTP {status}, error {code}{detail}")
    } else if success {
        format!("Telegram answered HTTP {status} without \"ok\": true{detail}")
    } else {
        format!("Telegram answered HTTP {status}{detail}")
    };
    let mut failure = Failure::transient(error);
    match code {
        200..=299 => {}
        429 => {
            failure.retry_after = answer
                .parameters
                .retry_after
                .map(Duration::from_secs)
                .or(retry_after)
                .map(|wait| wait.min(MAX_RETRY_AFTER));
        }
        400 => {
            failure.permanent = true;
            if let Some(chat) = answer.parameters.migrate_to_chat_id {
                failure.error.push_str(&format!(
                    " (the group is now chat {chat}: set chat_id to it)"
                ));
            }
        }
        401 | 403 | 404 | 408 | 500..=599 => {}
        other => failure.permanent = Failure::from_status(other).permanent,
    }
    Err(failure)
}

/// A description from the network on one line, within reason.
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
    use crate::clock::Timestamp;
    use crate::config::Severity;
    use crate::notify::{Message, MessageKind};

    fn message(task: &str, kind: MessageKind, summary: &str) -> Message {
        Message {
            id: format!("id-{task}"),
            kind,
            host: "box-1".into(),
            profile: "p".into(),
            task: task.into(),
            rule: "health".into(),
            severity: Severity::Critical,
            summary: summary.into(),
            value: None,
            threshold: None,
            started_at: None,
            at: Timestamp(0),
            remediation: None,
            labels: Default::default(),
            related: Vec::new(),
        }
    }

    fn target(token: &Secret) -> Target<'_> {
        Target {
            token,
            chat_id: "-100111",
            topic_id: Some(12),
            api_url: "http://127.0.0.1:1",
        }
    }

    #[test]
    fn escapes_markup_and_bolds_the_status_word() {
        let text = "[box-1] FIRING critical p/api/health: HTTP 500: <html> a & b";
        assert_eq!(
            html(text),
            "[box-1] <b>FIRING</b> critical p/api/health: HTTP 500: &lt;html&gt; a &amp; b"
        );
        assert_eq!(
            html("[box-1] STILL FIRING for 2h critical p/a/r: x"),
            "[box-1] <b>STILL FIRING</b> for 2h critical p/a/r: x"
        );
        assert_eq!(
            html("[box-1] RESTARTED p/a/r: ok"),
            "[box-1] <b>RESTARTED</b> p/a/r: ok"
        );
        assert_eq!(
            html("[api] [box-1] RESOLVED x"),
            "[api] [box-1] <b>RESOLVED</b> x"
        );
        // An event's text is not a status, and a word merely starting like one is not either.
        assert_eq!(
            html("[box-1] Task Started: <12>"),
            "[box-1] Task Started: &lt;12&gt;"
        );
        assert_eq!(html("[box-1] FIRINGS a"), "[box-1] FIRINGS a");
        assert_eq!(
            html("[<h>] p: 2 changes\n• FIRING a\n• RESOLVED b & c"),
            "[&lt;h&gt;] p: 2 changes\n• <b>FIRING</b> a\n• <b>RESOLVED</b> b &amp; c"
        );
    }

    #[test]
    fn long_texts_are_split_between_lines_with_the_head_on_each_part() {
        assert_eq!(split("head\nshort", 100), ["head\nshort"]);
        let lines: Vec<String> = (0..50).map(|i| format!("• line {i:02} 😀")).collect();
        let text = format!("[h] p: 50 changes\n{}", lines.join("\n"));
        let parts = split(&text, 200);
        assert!(parts.len() > 3, "{parts:?}");
        let mut back = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            assert!(units(part) <= 200, "{part}");
            let head = format!("[h] p: 50 changes (part {} of {})", i + 1, parts.len());
            assert_eq!(part.lines().next(), Some(head.as_str()));
            back.extend(part.lines().skip(1).map(str::to_string));
        }
        assert_eq!(back, lines);
        // One line longer than a part is cut, the others kept.
        let long = format!("head\n{}\nafter", "x".repeat(500));
        let parts = split(&long, 200);
        assert!(parts.iter().all(|p| units(p) <= 200), "{parts:?}");
        assert!(parts.last().unwrap().ends_with("after"), "{parts:?}");
    }

    #[test]
    fn long_texts_are_cut_to_the_limit_with_a_note() {
        let short = "a".repeat(MAX_TEXT);
        assert_eq!(truncate(&short, MAX_TEXT), short);

        let long = "é".repeat(5000);
        let cut = truncate(&long, MAX_TEXT);
        assert_eq!(cut.chars().count(), MAX_TEXT);
        assert!(cut.starts_with("éé"));
        assert!(cut.ends_with("\n… (cut: the message has 5000 characters)"));

        // Emoji take two UTF-16 units: Telegram's count, not chars, is the limit.
        let emoji = "🔥".repeat(3000);
        let cut = truncate(&emoji, MAX_TEXT);
        assert!(cut.chars().map(char::len_utf16).sum::<usize>() <= MAX_TEXT);
        assert!(cut.ends_with("(cut: the message has 3000 characters)"));
    }

    #[test]
    fn escaping_does_not_count_against_the_limit() {
        // `&amp;` is one character once Telegram parses it.
        let text = "&".repeat(MAX_TEXT);
        assert_eq!(html(&text), "&amp;".repeat(MAX_TEXT));
    }

    #[test]
    fn requests_go_to_the_chat_and_topic() {
        let token = Secret::new("123:ABC");
        let payload = Payload::Single(Box::new(message("api", MessageKind::Firing, "a < b")));
        let request = render(&target(&token), &payload, None);
        assert_eq!(request.token.expose(), "123:ABC");
        assert_eq!(
            request.bodies[0],
            serde_json::json!({
                "chat_id": "-100111",
                "message_thread_id": 12,
                "parse_mode": "HTML",
                "disable_web_page_preview": true,
                "text": "[box-1] <b>FIRING</b> critical p/api/health: a &lt; b",
            })
        );
    }

    #[test]
    fn the_test_route_takes_everything_to_its_chat_prefixed_with_the_source() {
        let token = Secret::new("123:ABC");
        let route = TelegramTestRoute {
            chat_id: "-100999".into(),
            token: Some(Secret::new("999:DEF")),
        };
        let payload = Payload::Single(Box::new(message("api", MessageKind::Resolved, "ok")));
        let request = render(&target(&token), &payload, Some(&route));
        assert_eq!(request.token.expose(), "999:DEF");
        assert_eq!(request.bodies[0]["chat_id"], "-100999");
        assert_eq!(request.bodies[0].get("message_thread_id"), None);
        assert_eq!(
            request.bodies[0]["text"],
            "[api] [box-1] <b>RESOLVED</b> p/api/health: ok"
        );

        // Without a default bot, the notifier's own bot sends.
        let own = TelegramTestRoute {
            chat_id: "-100999".into(),
            token: None,
        };
        assert_eq!(
            render(&target(&token), &payload, Some(&own)).token.expose(),
            "123:ABC"
        );

        let digest = Payload::Digest {
            digest: vec![
                message("api", MessageKind::Firing, "x"),
                message("db", MessageKind::Firing, "y"),
            ],
        };
        let request = render(&target(&token), &digest, Some(&route));
        assert!(
            request.bodies[0]["text"]
                .as_str()
                .unwrap()
                .starts_with("[p] [box-1] p: 2 changes\n• <b>FIRING</b>"),
            "{}",
            request.bodies[0]["text"]
        );
    }

    #[test]
    fn ok_answers_are_delivered() {
        assert_eq!(
            judge(200, br#"{"ok":true,"result":{"message_id":1}}"#, None),
            Ok(())
        );
        let odd = judge(200, b"<html>proxy</html>", None).unwrap_err();
        assert!(!odd.permanent, "{odd:?}");
    }

    #[test]
    fn flood_control_waits_as_long_as_telegram_asks() {
        let body = br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 5","parameters":{"retry_after":5}}"#;
        let failure = judge(429, body, None).unwrap_err();
        assert_eq!(
            failure,
            Failure {
                error: "Telegram answered HTTP 429: Too Many Requests: retry after 5".into(),
                permanent: false,
                retry_after: Some(Duration::from_secs(5)),
            }
        );
        // Without parameters, the Retry-After header.
        let failure = judge(429, b"", Some(Duration::from_secs(7))).unwrap_err();
        assert_eq!(failure.retry_after, Some(Duration::from_secs(7)));
        let absurd = br#"{"ok":false,"error_code":429,"parameters":{"retry_after":99999999999}}"#;
        let failure = judge(429, absurd, None).unwrap_err();
        assert_eq!(failure.retry_after, Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn bad_requests_are_permanent_and_auth_errors_wait_for_a_fix() {
        let failure = judge(
            400,
            br#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
            None,
        )
        .unwrap_err();
        assert!(failure.permanent);
        assert_eq!(
            failure.error,
            "Telegram answered HTTP 400: Bad Request: chat not found"
        );

        let migrated = judge(
            400,
            br#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234}}"#,
            None,
        )
        .unwrap_err();
        assert!(migrated.error.contains("set chat_id to it"), "{migrated:?}");
        assert!(migrated.error.contains("-1001234"));

        for (status, description) in [
            (401, "Unauthorized"),
            (403, "Forbidden: bot was kicked from the supergroup chat"),
            (404, "Not Found"),
            (500, "Internal Server Error"),
            (502, "Bad Gateway"),
        ] {
            let body =
                serde_json::json!({"ok": false, "error_code": status, "description": description});
            let failure = judge(status, body.to_string().as_bytes(), None).unwrap_err();
            assert!(!failure.permanent, "{status}: {failure:?}");
            assert!(failure.error.contains(description), "{failure:?}");
        }
        let proxy = judge(502, b"<html>bad gateway</html>", None).unwrap_err();
        assert!(!proxy.permanent);
        assert_eq!(
            proxy.error,
            "Telegram answered HTTP 502: <html>bad gateway</html>"
        );
    }

    /// The sendMessage call a chat gets for a firing alert.
    #[test]
    fn body_a_chat_reads() {
        let token = Secret::new("123:abc");
        let payload = Payload::Single(Box::new(message(
            "api",
            MessageKind::Firing,
            "HTTP 500: <html> a & b",
        )));
        let request = render(&target(&token), &payload, None);
        let body = serde_json::to_string_pretty(&request.bodies[0]).unwrap();
        insta::assert_snapshot!("telegram_firing", body);
    }
}
