//! The telegram notifier end to end: a fake Bot API on 127.0.0.1 that
//! checks requests the way Telegram does (bots, chats, topics, HTML
//! entities, the 4096-character limit) and answers as it does, the real
//! binary on a pinned clock, and the outbox in the real SQLite file.

use crate::common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ------------------------------------------------------------ the fake Bot API

/// A message the fake Bot API accepted.
#[derive(Clone, Debug)]
struct Sent {
    token: String,
    chat_id: String,
    thread: Option<i64>,
    /// The `text` as sent (HTML).
    html: String,
    /// What the chat shows: tags dropped, entities decoded.
    shown: String,
    body: serde_json::Value,
}

#[derive(Default)]
struct Telegram {
    /// Bot tokens that exist.
    bots: BTreeSet<String>,
    /// Chats the bots are in, and each chat's forum topics.
    chats: BTreeMap<String, Vec<i64>>,
    /// Flood control: answer 429 with this `retry_after`.
    flood: Option<u64>,
    requests: Vec<Request>,
    sent: Vec<Sent>,
}

impl Telegram {
    /// Answers one request as the Bot API does.
    fn answer(&mut self, request: &Request) -> (u16, serde_json::Value) {
        let error = |code: u16, description: &str| {
            (
                code,
                serde_json::json!({"ok": false, "error_code": code, "description": description}),
            )
        };
        let Some((token, method)) = request
            .path
            .strip_prefix("/bot")
            .and_then(|p| p.rsplit_once('/'))
        else {
            return error(404, "Not Found");
        };
        if !self.bots.contains(token) {
            return error(401, "Unauthorized");
        }
        if method != "sendMessage" || request.method != "POST" {
            return error(404, "Not Found");
        }
        if let Some(retry_after) = self.flood {
            return (
                429,
                serde_json::json!({
                    "ok": false,
                    "error_code": 429,
                    "description": format!("Too Many Requests: retry after {retry_after}"),
                    "parameters": { "retry_after": retry_after },
                }),
            );
        }
        if !request
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
        {
            return error(400, "Bad Request: message text is empty");
        }
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
            return error(400, "Bad Request: message text is empty");
        };
        let chat_id = match &body["chat_id"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return error(400, "Bad Request: chat_id is empty"),
        };
        let Some(topics) = self.chats.get(&chat_id) else {
            return error(400, "Bad Request: chat not found");
        };
        let thread = match body.get("message_thread_id") {
            None => None,
            Some(serde_json::Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
            Some(_) => return error(400, "Bad Request: invalid message thread identifier"),
        };
        if thread.is_some_and(|t| !topics.contains(&t)) {
            return error(400, "Bad Request: message thread not found");
        }
        let html = body["text"].as_str().unwrap_or_default().to_string();
        let shown = match body["parse_mode"].as_str() {
            Some("HTML") => match parse_html(&html) {
                Ok(shown) => shown,
                Err(why) => {
                    return error(400, &format!("Bad Request: can't parse entities: {why}"));
                }
            },
            _ => html.clone(),
        };
        if shown.trim().is_empty() {
            return error(400, "Bad Request: message text is empty");
        }
        if shown.encode_utf16().count() > 4096 {
            return error(400, "Bad Request: message is too long");
        }
        self.sent.push(Sent {
            token: token.to_string(),
            chat_id: chat_id.clone(),
            thread,
            html,
            shown: shown.clone(),
            body,
        });
        (
            200,
            serde_json::json!({
                "ok": true,
                "result": {
                    "message_id": self.sent.len(),
                    "date": 1_790_000_000,
                    "chat": { "id": chat_id, "type": "supergroup" },
                    "message_thread_id": thread,
                    "text": shown,
                },
            }),
        )
    }
}

/// Reads Telegram's HTML parse mode: the text a chat shows, or why
/// Telegram refuses it. Every `<`, `>` and `&` outside a tag or entity must
/// be escaped.
fn parse_html(html: &str) -> Result<String, String> {
    const TAGS: [&str; 15] = [
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "a",
        "code",
        "pre",
        "span",
        "tg-spoiler",
        "blockquote",
    ];
    let mut shown = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        let offset = html.len() - rest.len();
        match c {
            '<' => {
                let end = rest
                    .find('>')
                    .ok_or(format!("Can't find end of the tag at byte offset {offset}"))?;
                let tag = &rest[1..end];
                match tag.strip_prefix('/') {
                    Some(name) => {
                        if open.pop().as_deref() != Some(name) {
                            return Err(format!("Unexpected end tag at byte offset {offset}"));
                        }
                    }
                    None => {
                        let name = tag.split_whitespace().next().unwrap_or_default();
                        if !TAGS.contains(&name) {
                            return Err(format!(
                                "Unsupported start tag \"{name}\" at byte offset {offset}"
                            ));
                        }
                        open.push(name.to_string());
                    }
                }
                rest = &rest[end + 1..];
            }
            '&' => {
                let end = rest.find(';').filter(|e| *e <= 8).ok_or(format!(
                    "Can't find end of the entity starting at byte offset {offset}"
                ))?;
                shown.push(match &rest[1..end] {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    other => {
                        return Err(format!(
                            "Unsupported HTML entity \"&{other};\" at byte offset {offset}"
                        ));
                    }
                });
                rest = &rest[end + 1..];
            }
            '>' => return Err(format!("Unescaped \">\" at byte offset {offset}")),
            c => {
                shown.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    match open.last() {
        Some(tag) => Err(format!(
            "Can't find end tag corresponding to start tag \"{tag}\""
        )),
        None => Ok(shown),
    }
}

/// The fake Bot API, serving on 127.0.0.1 until dropped.
struct FakeTelegram {
    api: FakeApi,
    state: Arc<Mutex<Telegram>>,
}

impl FakeTelegram {
    /// Bots `bots`; chats `(chat_id, topics)` that every bot is in.
    fn start(bots: &[&str], chats: &[(&str, &[i64])]) -> FakeTelegram {
        let state = Arc::new(Mutex::new(Telegram {
            bots: bots.iter().map(|b| b.to_string()).collect(),
            chats: chats
                .iter()
                .map(|(chat, topics)| (chat.to_string(), topics.to_vec()))
                .collect(),
            ..Telegram::default()
        }));
        let shared = state.clone();
        let api = FakeApi::start(move |request| {
            let mut state = shared.lock().unwrap();
            state.requests.push(request.clone());
            let (status, json) = state.answer(request);
            ApiReply::json(status, json)
        });
        FakeTelegram { api, state }
    }

    fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api.port)
    }

    fn sent(&self) -> Vec<Sent> {
        self.state.lock().unwrap().sent.clone()
    }

    fn requests(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    fn flood(&self, retry_after: Option<u64>) {
        self.state.lock().unwrap().flood = retry_after;
    }
}

// ------------------------------------------------------------ helpers

/// The failing service's answer: markup a Telegram message must escape.
const BROKEN_PAGE: &str = "<html> a & b";

fn broken_api() -> TestServer {
    TestServer::start(Reply {
        status: 500,
        body: BROKEN_PAGE.into(),
        delay: Duration::ZERO,
    })
}

/// jobs.yaml: `notifiers` (lines under `notifiers:`), profile `p`
/// notifying `notify`, one http task per name in `tasks` probing `api`.
fn jobs(notifiers: &[String], notify: &str, tasks: &[&str], api: &str) -> String {
    let mut yaml = String::from("version: 1\nhost: test-host\nnotifiers:\n");
    for notifier in notifiers {
        yaml.push_str(&format!("  {notifier}\n"));
    }
    yaml.push_str(&format!(
        "profiles:\n  p:\n    cron: \"* * * * *\"\n    announce: false\n    notify: [{notify}]\n    tasks:\n"
    ));
    for name in tasks {
        yaml.push_str(&format!(
            "      - name: {name}\n        http: {{ url: \"{api}\", timeout: 2s }}\n"
        ));
    }
    yaml
}

fn telegram(name: &str, token: &str, chat: &str, extra: &str, api_url: &str) -> String {
    format!(
        "{name}: {{ type: telegram, token: \"{token}\", chat_id: \"{chat}\", api_url: \"{api_url}\"{extra} }}"
    )
}

/// `monitor run p` at `at`, with the test route's variables only as given.
fn tick(ws: &Workspace, at: i64, env: &[(&str, &str)]) -> Output {
    let mut command = ws.command();
    command
        .env_remove("TELEGRAM_TEST_CHAT_ID")
        .env_remove("TELEGRAM_BOT_TOKEN_DEFAULT")
        .env("MONITOR_NOW", at.to_string());
    for (name, value) in env {
        command.env(name, value);
    }
    command.arg("run").arg("p").output().unwrap()
}

fn outbox(ws: &Workspace, notifier: &str) -> Vec<OutboxRow> {
    ws.outbox(notifier)
}

// ------------------------------------------------------------ tests

#[test]
fn alerts_reach_the_chat_and_topic_as_escaped_html() {
    let bot = FakeTelegram::start(&["123:ABC"], &[("-100111", &[12])]);
    let api = broken_api();
    let tg = telegram("tg", "123:ABC", "-100111", ", topic_id: 12", &bot.api_url());
    let ws = Workspace::new(&jobs(&[tg], "console, tg", &["api"], &api.url("/health")));

    let out = tick(&ws, minute(0), &[]);
    assert_exit(&out, 1);
    let requests = bot.state.lock().unwrap().requests.clone();
    assert_eq!(requests.len(), 1, "{:?}", bot.sent());
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/bot123:ABC/sendMessage");
    assert_eq!(requests[0].header("content-type"), Some("application/json"));

    let sent = bot.sent();
    assert_eq!(sent.len(), 1);
    let message = &sent[0];
    assert_eq!(message.chat_id, "-100111");
    assert_eq!(message.thread, Some(12));
    assert_eq!(message.body["parse_mode"], "HTML");
    assert_eq!(message.body["disable_web_page_preview"], true);
    assert!(
        message
            .html
            .starts_with("[test-host] <b>FIRING</b> critical p/api/health: "),
        "{}",
        message.html
    );
    assert!(
        message.html.ends_with(": &lt;html&gt; a &amp; b"),
        "{}",
        message.html
    );
    // The chat shows exactly what the console printed.
    assert_eq!(vec![message.shown.clone()], notifications(&out));
    assert!(message.shown.contains(BROKEN_PAGE));

    let rows = outbox(&ws, "tg");
    assert_eq!(rows.len(), 1);
    assert!(rows[0].delivered_at.is_some(), "{rows:?}");
    assert_no_secret(&ws, &[&out], &["123:ABC"]);
}

#[test]
fn flood_control_holds_the_message_for_as_long_as_telegram_asks() {
    let bot = FakeTelegram::start(&["123:ABC"], &[("-100111", &[])]);
    bot.flood(Some(120));
    let api = broken_api();
    let tg = telegram("tg", "123:ABC", "-100111", "", &bot.api_url());
    let ws = Workspace::new(&jobs(&[tg], "tg", &["api"], &api.url("/health")));

    let first = tick(&ws, minute(0), &[]);
    assert_exit(&first, 1);
    assert!(
        stdout(&first).contains(
            "NOT sent to tg (Telegram answered HTTP 429: Too Many Requests: retry after 120)"
        ),
        "{}",
        stdout(&first)
    );
    let rows = outbox(&ws, "tg");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].attempts, 1);
    assert!(
        rows[0].next_attempt_at >= (minute(0) + 120) * 1000,
        "the retry waits as Telegram asked: {rows:?}"
    );
    assert_eq!(bot.requests(), 1);

    bot.flood(None);
    let early = tick(&ws, minute(0) + 60, &[]);
    assert_eq!(bot.requests(), 1, "no send before retry_after has passed");
    assert!(outbox(&ws, "tg")[0].delivered_at.is_none());

    let later = tick(&ws, minute(0) + 180, &[]);
    assert_eq!(bot.sent().len(), 1);
    let rows = outbox(&ws, "tg");
    assert_eq!(
        rows[0].delivered_at,
        Some((minute(0) + 180) * 1000),
        "{rows:?}"
    );
    assert_eq!(rows[0].last_error, None);
    assert_no_secret(&ws, &[&first, &early, &later], &["123:ABC"]);
}

#[test]
fn a_chat_that_does_not_exist_dead_letters_the_message() {
    let bot = FakeTelegram::start(&["123:ABC"], &[("-100111", &[])]);
    let api = broken_api();
    let tg = telegram("tg", "123:ABC", "-100404", "", &bot.api_url());
    let ws = Workspace::new(&jobs(&[tg], "tg", &["api"], &api.url("/health")));

    let first = tick(&ws, minute(0), &[]);
    assert!(
        stdout(&first)
            .contains("GAVE UP sending to tg (rejected: Telegram answered HTTP 400: Bad Request: chat not found)"),
        "{}",
        stdout(&first)
    );
    let rows = outbox(&ws, "tg");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].given_up_at, Some(minute(0) * 1000), "{rows:?}");
    assert_eq!(rows[0].delivered_at, None);
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("chat not found")),
        "{rows:?}"
    );

    let second = tick(&ws, minute(5), &[]);
    assert_eq!(bot.requests(), 1, "a dead letter is not retried");
    assert!(bot.sent().is_empty());
    assert_no_secret(&ws, &[&first, &second], &["123:ABC"]);
}

#[test]
fn a_revoked_token_is_retried_until_an_operator_fixes_it() {
    let bot = FakeTelegram::start(&["123:NEW"], &[("-100111", &[])]);
    let api = broken_api();
    let config = |token: &str| {
        let tg = telegram("tg", token, "-100111", "", &bot.api_url());
        jobs(&[tg], "tg", &["api"], &api.url("/health"))
    };
    let ws = Workspace::new(&config("123:OLD"));

    let first = tick(&ws, minute(0), &[]);
    assert!(
        stdout(&first).contains("NOT sent to tg (Telegram answered HTTP 401: Unauthorized)"),
        "{}",
        stdout(&first)
    );
    let second = tick(&ws, minute(1), &[]);
    assert!(
        stdout(&second).contains("NOT sent to tg"),
        "{}",
        stdout(&second)
    );
    assert!(bot.sent().is_empty());

    ws.write_config(&config("123:NEW"));
    let fixed = tick(&ws, minute(5), &[]);
    let sent = bot.sent();
    assert_eq!(sent.len(), 1, "the backlog goes out once the token works");
    assert_eq!(sent[0].token, "123:NEW");
    assert!(outbox(&ws, "tg")[0].delivered_at.is_some());
    assert_no_secret(&ws, &[&first, &second, &fixed], &["123:OLD", "123:NEW"]);
}

#[test]
fn the_test_route_sends_every_message_to_the_test_chat_labelled_with_its_task() {
    let bot = FakeTelegram::start(
        &["123:ABC", "456:XYZ", "999:DEF"],
        &[("-100111", &[12]), ("-100222", &[]), ("-100999", &[])],
    );
    let api = broken_api();
    let notifiers = [
        telegram(
            "ops",
            "123:ABC",
            "-100111",
            ", topic_id: 12",
            &bot.api_url(),
        ),
        telegram("team", "456:XYZ", "-100222", "", &bot.api_url()),
    ];
    let ws = Workspace::new(&jobs(
        &notifiers,
        "ops, team",
        &["api", "db"],
        &api.url("/health"),
    ));
    let route = [
        ("TELEGRAM_TEST_CHAT_ID", "-100999"),
        ("TELEGRAM_BOT_TOKEN_DEFAULT", "999:DEF"),
    ];

    let out = tick(&ws, minute(0), &route);
    assert_exit(&out, 1);
    let sent = bot.sent();
    assert_eq!(sent.len(), 4, "two tasks to two notifiers: {sent:?}");
    assert_eq!(bot.requests(), 4, "nothing else was attempted");
    let mut labels = Vec::new();
    for message in &sent {
        assert_eq!(message.token, "999:DEF", "{message:?}");
        assert_eq!(message.chat_id, "-100999", "{message:?}");
        assert_eq!(message.thread, None, "{message:?}");
        assert_eq!(message.body.get("message_thread_id"), None);
        let (label, rest) = message.shown.split_once(' ').unwrap();
        assert!(
            rest.starts_with("[test-host] FIRING critical p/"),
            "{}",
            message.shown
        );
        assert!(rest.contains(&format!("p/{}/health", &label[1..label.len() - 1])));
        labels.push(label.to_string());
    }
    labels.sort();
    assert_eq!(labels, ["[api]", "[api]", "[db]", "[db]"]);
    for row in outbox(&ws, "ops").iter().chain(&outbox(&ws, "team")) {
        assert!(row.delivered_at.is_some(), "{row:?}");
    }
    assert_no_secret(&ws, &[&out], &["123:ABC", "456:XYZ", "999:DEF"]);
}

#[test]
fn a_digest_notifier_sends_one_message_listing_every_task() {
    let bot = FakeTelegram::start(&["123:ABC"], &[("-100111", &[])]);
    let api = broken_api();
    let tg = telegram("tg", "123:ABC", "-100111", ", digest: true", &bot.api_url());
    let ws = Workspace::new(&jobs(
        &[tg],
        "tg",
        &["api", "db", "web"],
        &api.url("/health"),
    ));

    let out = tick(&ws, minute(0), &[]);
    assert_exit(&out, 1);
    let sent = bot.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let lines: Vec<&str> = sent[0].shown.lines().collect();
    assert_eq!(lines[0], "[test-host] p: 3 changes");
    let mut tasks: Vec<&str> = lines[1..]
        .iter()
        .map(|line| {
            assert!(line.starts_with("• FIRING critical p/"), "{line}");
            line.split('/').nth(1).unwrap()
        })
        .collect();
    tasks.sort();
    assert_eq!(tasks, ["api", "db", "web"]);
    assert_eq!(sent[0].html.matches("<b>FIRING</b>").count(), 3);
}

/// Issue 11, item 8: a digest over Telegram's 4096 limit was cut, so most
/// of 60 failing tasks never reached anyone. It arrives whole, in several
/// messages, each within the limit (the fake refuses longer texts).
#[test]
fn a_digest_longer_than_telegram_allows_arrives_whole_in_several_messages() {
    let bot = FakeTelegram::start(&["123:ABC"], &[("-100111", &[])]);
    let api = broken_api();
    let tg = telegram("tg", "123:ABC", "-100111", ", digest: true", &bot.api_url());
    let names: Vec<String> = (0..60).map(|i| format!("service-{i:02}")).collect();
    let tasks: Vec<&str> = names.iter().map(String::as_str).collect();
    let ws = Workspace::new(&jobs(&[tg], "tg", &tasks, &api.url("/health")));

    let out = tick(&ws, minute(0), &[]);
    assert_exit(&out, 1);
    let sent = bot.sent();
    assert!(sent.len() >= 2, "several messages: {}", stdout(&out));
    let count = sent.len();
    let mut seen = Vec::new();
    for (i, message) in sent.iter().enumerate() {
        let shown = &message.shown;
        assert!(shown.encode_utf16().count() <= 4096, "part {i}");
        let head = format!("[test-host] p: 60 changes (part {} of {count})\n", i + 1);
        assert!(shown.starts_with(&head), "{shown}");
        assert!(!shown.contains("(cut"), "nothing is cut: {shown}");
        for line in shown.lines().skip(1) {
            assert!(line.starts_with("• FIRING critical p/"), "{line}");
            seen.push(line.split('/').nth(1).unwrap().to_string());
        }
    }
    seen.sort();
    assert_eq!(seen, names, "every task, once");
    // One outbox entry, delivered.
    let rows = outbox(&ws, "tg");
    assert_eq!(rows.len(), 1);
    assert!(rows[0].delivered_at.is_some());
}
