//! The feishu notifier end to end: a fake custom-bot webhook on 127.0.0.1
//! that checks requests the way Feishu does (the hook key, the signature,
//! the message types) and answers as it does, with result codes in HTTP
//! 200 bodies; the real binary on a pinned clock; the outbox in the real
//! SQLite file.

use crate::common::*;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::process::Output;
use std::sync::{Arc, Mutex};

/// The webhook key: with the URL, the bot's credential.
const KEY: &str = "5e3d587e-d78e-4a07-bd07-265f269f86fd";

// ------------------------------------------------------------ the fake bot

#[derive(Default)]
struct Bot {
    /// The signing secret set on the bot ("" for none).
    secret: String,
    /// The bot's clock, Unix seconds: signatures older than an hour fail.
    now: i64,
    /// Answer every request with this instead.
    forced: Option<(u16, serde_json::Value)>,
    requests: Vec<Request>,
    /// The bodies of the messages it accepted.
    accepted: Vec<serde_json::Value>,
}

impl Bot {
    /// Answers one request as a Feishu custom bot does.
    fn answer(&mut self, request: &Request) -> (u16, serde_json::Value) {
        let code = |code: i64, msg: &str| {
            let status = if code == 9499 { 400 } else { 200 };
            (
                status,
                serde_json::json!({"code": code, "data": {}, "msg": msg}),
            )
        };
        if let Some(forced) = &self.forced {
            return forced.clone();
        }
        if request.method != "POST" || request.path != format!("/open-apis/bot/v2/hook/{KEY}") {
            return code(
                19001,
                "param invalid: incoming webhook access token invalid",
            );
        }
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
            return code(9499, "Bad Request");
        };
        if !self.secret.is_empty() && !self.signed(&body) {
            return code(
                19021,
                "sign match fail or timestamp is not within one hour from current time",
            );
        }
        let valid = match body["msg_type"].as_str() {
            None => return code(19002, "params error, msg_type need"),
            Some("text") => body["content"]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            Some("interactive") => {
                let card = &body["card"];
                card["header"]["title"]["content"].is_string()
                    && card["elements"].as_array().is_some_and(|e| !e.is_empty())
            }
            Some(_) => false,
        };
        if !valid {
            return code(9499, "Bad Request");
        }
        self.accepted.push(body);
        code(0, "success")
    }

    /// Recomputes the signature as Feishu documents it: base64 of
    /// HMAC-SHA256 keyed with `timestamp + "\n" + secret`, empty message.
    fn signed(&self, body: &serde_json::Value) -> bool {
        let (Some(timestamp), Some(sign)) = (body["timestamp"].as_str(), body["sign"].as_str())
        else {
            return false;
        };
        let Ok(seconds) = timestamp.parse::<i64>() else {
            return false;
        };
        if (self.now - seconds).abs() > 3600 {
            return false;
        }
        let key = format!("{timestamp}\n{}", self.secret);
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()) == sign
    }
}

/// The fake bot, serving on 127.0.0.1 until dropped.
struct FakeFeishu {
    api: FakeApi,
    state: Arc<Mutex<Bot>>,
}

impl FakeFeishu {
    fn start(secret: &str) -> FakeFeishu {
        let state = Arc::new(Mutex::new(Bot {
            secret: secret.into(),
            ..Bot::default()
        }));
        let shared = state.clone();
        let api = FakeApi::start(move |request| {
            let mut state = shared.lock().unwrap();
            state.requests.push(request.clone());
            let (status, json) = state.answer(request);
            ApiReply::json(status, json)
        });
        FakeFeishu { api, state }
    }

    fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/open-apis/bot/v2/hook/{KEY}",
            self.api.port
        )
    }

    fn accepted(&self) -> Vec<serde_json::Value> {
        self.state.lock().unwrap().accepted.clone()
    }

    fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    fn force(&self, answer: Option<(u16, serde_json::Value)>) {
        self.state.lock().unwrap().forced = answer;
    }

    /// Ticks `ws` at `at`, the bot's clock set to the same time.
    fn tick(&self, ws: &Workspace, at: i64) -> Output {
        self.state.lock().unwrap().now = at;
        ws.run_at(at, "p", &[])
    }
}

// ------------------------------------------------------------ helpers

/// jobs.yaml: the feishu notifier `lark` (`settings` added to its map),
/// profile `p` notifying console and lark, one http task `api` at `api`.
fn jobs(url: &str, settings: &str, api: &str) -> String {
    format!(
        "version: 1\nhost: test-host\nnotifiers:\n  lark: {{ type: feishu, url: \"{url}\"{settings} }}\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    announce: false\n    notify: [console, lark]\n    tasks:\n      - name: api\n        http: {{ url: \"{api}\", timeout: 2s }}\n"
    )
}

fn outbox(ws: &Workspace) -> Vec<OutboxRow> {
    ws.outbox("lark")
}

// ------------------------------------------------------------ tests

#[test]
fn signed_text_messages_carry_the_console_text() {
    let bot = FakeFeishu::start("S3CR3T");
    let api = TestServer::start(Reply::status(500));
    let ws = Workspace::new(&jobs(
        &bot.url(),
        ", secret: \"S3CR3T\"",
        &api.url("/health"),
    ));

    let out = bot.tick(&ws, minute(0));
    assert_exit(&out, 1);
    let accepted = bot.accepted();
    assert_eq!(accepted.len(), 1, "{:?}", bot.requests());
    let body = &accepted[0];
    assert_eq!(body["msg_type"], "text");
    assert_eq!(body["timestamp"], minute(0).to_string());
    assert_eq!(
        vec![body["content"]["text"].as_str().unwrap().to_string()],
        notifications(&out),
        "the bot posts what the console printed, host first"
    );
    assert_eq!(
        bot.requests()[0].header("content-type"),
        Some("application/json")
    );
    let rows = outbox(&ws);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].delivered_at, Some(minute(0) * 1000), "{rows:?}");
    assert_no_secret(&ws, &[&out], &["S3CR3T", KEY]);
}

#[test]
fn cards_are_red_while_firing_and_green_when_resolved() {
    let bot = FakeFeishu::start("");
    let api = TestServer::start(Reply::status(500));
    let ws = Workspace::new(&jobs(&bot.url(), ", format: card", &api.url("/health")));

    let firing = bot.tick(&ws, minute(0));
    api.set(Reply::status(200));
    let resolved = bot.tick(&ws, minute(1));
    assert_exit(&resolved, 0);

    let accepted = bot.accepted();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    let printed = [notifications(&firing), notifications(&resolved)].concat();
    for ((body, template), line) in accepted.iter().zip(["red", "green"]).zip(&printed) {
        assert_eq!(body["msg_type"], "interactive");
        assert_eq!(body.get("sign"), None, "an unsigned bot gets no signature");
        assert_eq!(body.get("timestamp"), None);
        let header = &body["card"]["header"];
        assert_eq!(header["template"], template, "{body}");
        assert_eq!(header["title"]["tag"], "plain_text");
        assert_eq!(header["title"]["content"].as_str(), Some(line.as_str()));
        let element = &body["card"]["elements"][0];
        assert_eq!(element["tag"], "div");
        assert_eq!(element["text"]["tag"], "lark_md");
        let content = element["text"]["content"].as_str().unwrap();
        assert!(
            content.contains("**Source:** p/api/health on test-host"),
            "{content}"
        );
    }
    assert!(printed[0].contains("FIRING") && printed[1].contains("RESOLVED"));
}

#[test]
fn a_wrong_secret_fails_on_http_200_and_the_backlog_goes_out_once_fixed() {
    let bot = FakeFeishu::start("S3CR3T");
    let api = TestServer::start(Reply::status(500));
    let config = |secret: &str| {
        jobs(
            &bot.url(),
            &format!(", secret: \"{secret}\""),
            &api.url("/health"),
        )
    };
    let ws = Workspace::new(&config("OLD-S3CR3T"));

    let first = bot.tick(&ws, minute(0));
    assert!(
        stdout(&first).contains(
            "NOT sent to lark (Feishu answered HTTP 200, code 19021: sign match fail or timestamp is not within one hour from current time)"
        ),
        "{}",
        stdout(&first)
    );
    let second = bot.tick(&ws, minute(1));
    assert!(
        stdout(&second).contains("NOT sent to lark"),
        "{}",
        stdout(&second)
    );
    let rows = outbox(&ws);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].attempts, 2);
    assert_eq!(rows[0].delivered_at, None);
    assert_eq!(
        rows[0].given_up_at, None,
        "a wrong secret is not a dead letter"
    );
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("code 19021")),
        "{rows:?}"
    );
    assert!(bot.accepted().is_empty());

    ws.write_config(&config("S3CR3T"));
    let fixed = bot.tick(&ws, minute(5));
    let after = bot.tick(&ws, minute(6));
    let accepted = bot.accepted();
    assert_eq!(accepted.len(), 1, "delivered once: {accepted:?}");
    assert_eq!(
        accepted[0]["timestamp"],
        minute(5).to_string(),
        "signed afresh"
    );
    assert!(
        accepted[0]["content"]["text"]
            .as_str()
            .unwrap()
            .starts_with("[test-host] FIRING critical p/api/health")
    );
    let rows = outbox(&ws);
    assert_eq!(rows[0].delivered_at, Some(minute(5) * 1000), "{rows:?}");
    assert_eq!(rows[0].last_error, None);
    assert_no_secret(
        &ws,
        &[&first, &second, &fixed, &after],
        &["S3CR3T", KEY, "/open-apis/bot/v2/hook/"],
    );
}

#[test]
fn a_signature_from_another_hour_is_refused() {
    // The bot's clock is two hours ahead of the monitor's.
    let bot = FakeFeishu::start("S3CR3T");
    let api = TestServer::start(Reply::status(500));
    let ws = Workspace::new(&jobs(
        &bot.url(),
        ", secret: \"S3CR3T\"",
        &api.url("/health"),
    ));
    bot.state.lock().unwrap().now = minute(120);
    let out = ws.run_at(minute(0), "p", &[]);
    assert!(stdout(&out).contains("code 19021"), "{}", stdout(&out));
    assert!(bot.accepted().is_empty());
}

#[test]
fn a_malformed_request_is_dead_lettered() {
    let bot = FakeFeishu::start("");
    bot.force(Some((
        400,
        serde_json::json!({"code": 9499, "msg": "Bad Request", "data": {}}),
    )));
    let api = TestServer::start(Reply::status(500));
    let ws = Workspace::new(&jobs(&bot.url(), "", &api.url("/health")));

    let first = bot.tick(&ws, minute(0));
    assert!(
        stdout(&first).contains(
            "GAVE UP sending to lark (rejected: Feishu answered HTTP 400, code 9499: Bad Request)"
        ),
        "{}",
        stdout(&first)
    );
    let rows = outbox(&ws);
    assert_eq!(rows[0].given_up_at, Some(minute(0) * 1000), "{rows:?}");

    bot.force(None);
    let second = bot.tick(&ws, minute(5));
    assert_eq!(bot.requests().len(), 1, "a dead letter is not retried");
    assert_no_secret(&ws, &[&first, &second], &[KEY]);
}

#[test]
fn a_server_error_is_retried() {
    let bot = FakeFeishu::start("");
    bot.force(Some((
        503,
        serde_json::json!({"code": 500, "msg": "service unavailable"}),
    )));
    let api = TestServer::start(Reply::status(500));
    let ws = Workspace::new(&jobs(&bot.url(), "", &api.url("/health")));

    let first = bot.tick(&ws, minute(0));
    assert!(
        stdout(&first).contains("NOT sent to lark (Feishu answered HTTP 503, code 500"),
        "{}",
        stdout(&first)
    );
    bot.force(None);
    bot.tick(&ws, minute(1));
    assert_eq!(bot.accepted().len(), 1);
    assert!(outbox(&ws)[0].delivered_at.is_some());
}
