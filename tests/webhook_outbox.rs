//! The webhook notifier and its outbox end to end: a receiver on 127.0.0.1
//! that is down for a while, the real binary ticking once a minute on a
//! pinned clock, and the outbox table in the real SQLite file.

use crate::common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;

/// jobs.yaml: profile `p` notifying `console` and the webhook `hook`; one
/// http task per name in `tasks`, all probing `api`.
fn jobs(hook: &str, api: &str, tasks: &[&str], defaults: &str) -> String {
    let mut yaml = format!(
        "version: 1\nhost: test-host\n{defaults}notifiers:\n  hook: {{ type: webhook, url: \"{hook}\" }}\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    announce: false\n    notify: [console, hook]\n    tasks:\n"
    );
    for name in tasks {
        yaml.push_str(&format!(
            "      - name: {name}\n        http: {{ url: \"{api}\", timeout: 2s }}\n"
        ));
    }
    yaml
}

fn outbox(ws: &Workspace, notifier: &str) -> Vec<OutboxRow> {
    ws.outbox(notifier)
}

/// Unix milliseconds of tick `n`.
fn millis(n: i64) -> i64 {
    minute(n) * 1000
}

/// Ticks one minute apart, keeping every console notification.
struct Ticker {
    ws: Workspace,
    next: i64,
    console: Vec<String>,
}

impl Ticker {
    fn new(config: &str) -> Ticker {
        Ticker {
            ws: Workspace::new(config),
            next: 0,
            console: Vec::new(),
        }
    }

    fn tick(&mut self) -> Output {
        let out = self.ws.run_at(minute(self.next), "p", &[]);
        self.next += 1;
        self.console.extend(notifications(&out));
        out
    }
}

/// The POSTs a receiver accepted, checked for one per message: every body's
/// id equals its idempotency-key, no id twice, and together they are
/// exactly the messages the console printed and the outbox holds.
#[track_caller]
fn assert_each_message_once(ws: &Workspace, console: &[String], posts: &[Request]) {
    let mut ids = BTreeSet::new();
    let mut texts = Vec::new();
    for post in posts {
        let body = post.json();
        let id = body["id"].as_str().expect("an id").to_string();
        assert_eq!(post.header("idempotency-key"), Some(id.as_str()), "{body}");
        assert!(
            ids.insert(id.clone()),
            "message {id} was delivered twice: {body}"
        );
        texts.push(body["text"].as_str().unwrap().to_string());
    }
    let rows = outbox(ws, "hook");
    let stored: BTreeSet<String> = rows.iter().map(|r| r.message_id.clone()).collect();
    assert_eq!(
        ids, stored,
        "the receiver got exactly the outbox's messages"
    );
    let mut printed = console.to_vec();
    printed.sort();
    texts.sort();
    assert_eq!(
        texts, printed,
        "the receiver got exactly what the console printed"
    );
    for row in &rows {
        assert!(row.delivered_at.is_some(), "undelivered: {row:?}");
        assert_eq!(row.given_up_at, None, "{row:?}");
        assert_eq!(row.last_error, None, "{row:?}");
    }
    let console_rows = outbox(ws, "console");
    assert_eq!(console_rows.len(), rows.len());
    assert!(
        console_rows
            .iter()
            .all(|r| r.delivered_at.is_some() && r.notifier == "console")
    );
}

// ------------------------------------------------------------ tests

/// Three ticks with the receiver down produce three messages: firing,
/// resolved, firing again. Returns the ticker after them.
fn three_messages_while_the_receiver_is_down(hook_url: &str, api: &TestServer) -> Ticker {
    let mut ticker = Ticker::new(&jobs(hook_url, &api.url("/health"), &["api"], ""));
    let mut codes = Vec::new();
    for reply in [500, 200, 500] {
        api.set(Reply::status(reply));
        let out = ticker.tick();
        codes.push(out.status.code());
        assert!(
            stdout(&out).contains("NOT sent to hook"),
            "the failed delivery is reported\n{}",
            stdout(&out)
        );
    }
    assert_eq!(
        codes,
        vec![Some(1), Some(4), Some(1)],
        "unhealthy stays 1; healthy with a webhook that is not hearing is 4, not 0"
    );
    assert_eq!(
        ticker.console.len(),
        3,
        "the console is not held back: {:?}",
        ticker.console
    );
    let rows = outbox(&ticker.ws, "hook");
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r.delivered_at.is_none() && (r.last_error.is_some() || r.attempts == 0)),
        "{rows:?}"
    );
    ticker
}

#[test]
fn receiver_answering_503_for_three_ticks_then_up_gets_every_message_once() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(503));
    let mut ticker = three_messages_while_the_receiver_is_down(&hook.url("/hook"), &api);
    assert!(
        !hook.requests().is_empty(),
        "deliveries were attempted while down"
    );

    hook.clear();
    hook.set(Reply::status(200));
    for _ in 0..6 {
        ticker.tick();
    }
    assert_each_message_once(&ticker.ws, &ticker.console, &hook.requests());
    assert_eq!(hook.requests().len(), 3);
}

#[test]
fn receiver_refusing_connections_for_three_ticks_then_up_gets_every_message_once() {
    let api = TestServer::start(Reply::status(500));
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let mut ticker = three_messages_while_the_receiver_is_down(&url, &api);
    let errors: Vec<String> = outbox(&ticker.ws, "hook")
        .into_iter()
        .filter_map(|r| r.last_error)
        .collect();
    assert!(
        errors
            .iter()
            .all(|e| e.contains("connection refused") && !e.contains(&url)),
        "errors say why, without the URL: {errors:?}"
    );

    let receiver = TestServer::start_on(port, Reply::status(200));
    for _ in 0..6 {
        ticker.tick();
    }
    assert_each_message_once(&ticker.ws, &ticker.console, &receiver.requests());
    assert!(
        receiver
            .requests()
            .iter()
            .all(|r| r.method == "POST" && r.path == "/hook")
    );
}

#[test]
fn a_delivered_message_is_never_sent_again() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(200));
    let mut ticker = Ticker::new(&jobs(&hook.url("/hook"), &api.url("/health"), &["api"], ""));
    let mut posts_after_each_tick = Vec::new();
    for n in 0..10 {
        if n == 6 {
            api.set(Reply::status(200));
        }
        ticker.tick();
        posts_after_each_tick.push(hook.requests().len());
    }
    // Firing at tick 0, resolved at tick 6, nothing else.
    assert_eq!(posts_after_each_tick, vec![1, 1, 1, 1, 1, 1, 2, 2, 2, 2]);
    let kinds: Vec<String> = hook
        .requests()
        .iter()
        .map(|r| r.json()["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, vec!["firing", "resolved"]);
    let rows = outbox(&ticker.ws, "hook");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows.iter()
            .map(|r| (r.attempts, r.delivered_at))
            .collect::<Vec<_>>(),
        vec![(1, Some(millis(0))), (1, Some(millis(6)))]
    );
    assert_each_message_once(&ticker.ws, &ticker.console, &hook.requests());
}

#[test]
fn failed_deliveries_are_retried_after_30s_60s_120s_240s() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(503));
    let mut ticker = Ticker::new(&jobs(&hook.url("/hook"), &api.url("/health"), &["api"], ""));
    let mut attempted = Vec::new();
    for n in 0..=8 {
        let before = hook.requests().len();
        ticker.tick();
        if hook.requests().len() > before {
            attempted.push(n);
        }
    }
    // Due 30 s after tick 0 (tick 1), then 60 s (tick 2), 120 s (tick 4), 240 s (tick 8).
    assert_eq!(attempted, vec![0, 1, 2, 4, 8]);
    assert_eq!(hook.requests().len(), 5, "one attempt per due tick");
    let rows = outbox(&ticker.ws, "hook");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].attempts, 5);
    assert_eq!(rows[0].next_attempt_at, millis(8) + 480_000);
    assert_eq!(rows[0].delivered_at, None);
    assert!(
        rows[0].last_error.as_deref().unwrap_or("").contains("503"),
        "{rows:?}"
    );
    // Every attempt carries the same message.
    let ids: BTreeSet<String> = hook
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1);
}

#[test]
fn after_one_failure_a_notifiers_other_messages_wait_for_the_next_tick() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(503));
    let mut ticker = Ticker::new(&jobs(
        &hook.url("/hook"),
        &api.url("/health"),
        &["a", "b"],
        "",
    ));
    ticker.tick();
    assert_eq!(ticker.console.len(), 2, "both alerts reach the console");
    assert_eq!(
        hook.requests().len(),
        1,
        "one failed POST, then the hook is left alone"
    );
    let attempts: Vec<i64> = outbox(&ticker.ws, "hook")
        .iter()
        .map(|r| r.attempts)
        .collect();
    assert_eq!(attempts, vec![1, 0]);

    ticker.tick();
    assert_eq!(hook.requests().len(), 2);

    hook.clear();
    hook.set(Reply::status(200));
    ticker.tick(); // tick 2: the first message is due again (60 s backoff), the second was never tried
    assert_eq!(
        hook.requests().len(),
        2,
        "both delivered as soon as the hook answers"
    );
    assert_each_message_once(&ticker.ws, &ticker.console, &hook.requests());
}

#[test]
fn an_undeliverable_message_is_given_up_after_max_age_and_recorded() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(503));
    let mut ticker = Ticker::new(&jobs(
        &hook.url("/hook"),
        &api.url("/health"),
        &["api"],
        "defaults: { max_age: 5m }\n",
    ));
    let mut gave_up_at = None;
    for n in 0..=10 {
        let out = ticker.tick();
        if stdout(&out).contains("GAVE UP sending to hook") {
            assert_eq!(gave_up_at, None, "given up twice\n{}", stdout(&out));
            gave_up_at = Some(n);
        }
    }
    // Tried at ticks 0, 1, 2 and 4; given up at the first tick past max_age
    // (tick 6, 6 min old), without waiting for its next retry (tick 8).
    assert_eq!(gave_up_at, Some(6));
    assert_eq!(
        hook.requests().len(),
        4,
        "nothing is sent once it is given up"
    );
    let rows = outbox(&ticker.ws, "hook");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].given_up_at, Some(millis(6)));
    assert_eq!(rows[0].delivered_at, None);
    assert_eq!(
        ticker
            .ws
            .count("SELECT count(*) FROM alert_history WHERE status = 'dead_letter'"),
        1
    );
    assert_eq!(
        ticker.ws.count(
            "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL"
        ),
        0,
        "no backlog left"
    );
}

#[test]
fn webhook_body_and_idempotency_key_describe_the_alert() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(204));
    let mut ticker = Ticker::new(&jobs(&hook.url("/hook"), &api.url("/health"), &["api"], ""));
    ticker.tick();
    ticker.tick();
    api.set(Reply::status(200));
    ticker.tick();

    let posts = hook.requests();
    assert_eq!(
        posts.len(),
        2,
        "firing and resolved; any 2xx counts as delivered"
    );
    let bodies: Vec<serde_json::Value> = posts.iter().map(Request::json).collect();
    for (post, body) in posts.iter().zip(&bodies) {
        assert_eq!(post.method, "POST");
        assert_eq!(post.path, "/hook");
        assert!(
            post.header("content-type")
                .unwrap_or("")
                .starts_with("application/json"),
            "{:?}",
            post.headers
        );
        let id = body["id"].as_str().unwrap();
        assert_eq!(post.header("idempotency-key"), Some(id));
        assert!(
            id.len() >= 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
        for key in ["value", "threshold", "started_at", "at", "summary", "text"] {
            assert!(body.get(key).is_some(), "no `{key}` in {body}");
        }
        assert_eq!(body["host"], "test-host");
        assert_eq!(body["profile"], "p");
        assert_eq!(body["task"], "api");
        assert_eq!(body["rule"], "health");
        assert_eq!(body["severity"], "critical");
    }
    let (firing, resolved) = (&bodies[0], &bodies[1]);
    assert_eq!(
        (firing["kind"].as_str(), firing["status"].as_str()),
        (Some("firing"), Some("firing"))
    );
    assert_eq!(
        (resolved["kind"].as_str(), resolved["status"].as_str()),
        (Some("resolved"), Some("resolved"))
    );
    assert_ne!(firing["id"], resolved["id"]);
    assert!(
        firing["summary"].as_str().unwrap().contains("HTTP 500"),
        "{firing}"
    );
    assert_eq!(firing["started_at"], firing["at"]);
    assert_eq!(
        resolved["started_at"], firing["at"],
        "the resolution says when it started"
    );
    assert_ne!(resolved["at"], firing["at"]);
    let texts: BTreeMap<&str, &str> = bodies
        .iter()
        .map(|b| (b["kind"].as_str().unwrap(), b["text"].as_str().unwrap()))
        .collect();
    assert_eq!(texts["firing"], ticker.console[0]);
    assert_eq!(texts["resolved"], ticker.console[1]);
    assert!(texts["resolved"].starts_with("[test-host] RESOLVED after 2m 0s p/api/health"));
}

#[test]

fn a_receiver_gets_an_alerts_messages_in_order() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(503));
    let mut ticker = Ticker::new(&jobs(&hook.url("/hook"), &api.url("/health"), &["api"], ""));
    for _ in 0..3 {
        ticker.tick(); // the FIRING fails at ticks 0, 1, 2: next try at tick 4
    }
    hook.clear();
    hook.set(Reply::status(200));
    api.set(Reply::status(200));
    for _ in 0..3 {
        ticker.tick(); // tick 3: RESOLVED
    }
    let kinds: Vec<String> = hook
        .requests()
        .iter()
        .map(|r| r.json()["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        vec!["firing", "resolved"],
        "the receiver's last word is the resolution"
    );
}

#[test]
fn messages_for_a_notifier_removed_from_jobs_yaml_are_given_up_and_recorded() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(503));
    let mut ticker = Ticker::new(&jobs(&hook.url("/hook"), &api.url("/health"), &["api"], ""));
    ticker.tick();
    assert_eq!(hook.requests().len(), 1);

    ticker.ws.write_config(&format!(
        "version: 1\nhost: test-host\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    announce: false\n    tasks:\n      - name: api\n        http: {{ url: \"{}\", timeout: 2s }}\n",
        api.url("/health")
    ));
    let out = ticker.tick();
    assert_exit(&out, 1);
    assert!(
        stdout(&out)
            .contains("GAVE UP sending to hook (notifier `hook` is no longer in jobs.yaml)"),
        "{}",
        stdout(&out)
    );
    for _ in 0..3 {
        ticker.tick();
    }
    assert_eq!(
        hook.requests().len(),
        1,
        "nothing more is sent to the old receiver"
    );
    let rows = outbox(&ticker.ws, "hook");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].given_up_at, Some(millis(1)));
    assert_eq!(
        ticker
            .ws
            .count("SELECT count(*) FROM alert_history WHERE status = 'dead_letter'"),
        1
    );
}

#[test]
fn dry_run_sends_nothing_and_stores_nothing() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(200));
    let ws = Workspace::new(&jobs(&hook.url("/hook"), &api.url("/health"), &["api"], ""));
    let out = ws.run_at(minute(0), "p", &["--dry-run"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains("would send to hook: [test-host] FIRING critical p/api/health"),
        "{text}"
    );
    assert!(
        notifications(&out).is_empty(),
        "nothing printed as sent\n{text}"
    );
    assert!(hook.requests().is_empty(), "nothing POSTed");
    if ws.db().exists() {
        assert_eq!(ws.count("SELECT count(*) FROM outbox"), 0);
        assert_eq!(ws.count("SELECT count(*) FROM alert_history"), 0);
    }

    // The real tick that follows fires as if the dry run never happened.
    let out = ws.run_at(minute(1), "p", &[]);
    assert_exit(&out, 1);
    assert_eq!(notifications(&out).len(), 1, "{}", stdout(&out));
    assert_eq!(hook.requests().len(), 1);
}

#[test]
fn a_message_the_receiver_rejects_is_dead_lettered_at_once_and_does_not_block_the_next() {
    let api = TestServer::start(Reply::status(500));
    let hook = TestServer::start(Reply::status(400));
    let mut ticker = Ticker::new(&jobs(&hook.url("/hook"), &api.url("/health"), &["api"], ""));
    let out = ticker.tick();
    assert!(
        stdout(&out).contains("GAVE UP sending to hook (rejected: the receiver answered HTTP 400)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        ticker
            .ws
            .count("SELECT count(*) FROM alert_history WHERE status = 'dead_letter'"),
        1
    );
    hook.set(Reply::status(200));
    api.set(Reply::status(200));
    ticker.tick();
    let posts = hook.requests();
    assert_eq!(
        posts.len(),
        2,
        "the rejected firing once, then the resolution"
    );
    assert_eq!(posts[1].json()["kind"], "resolved");
    assert_eq!(
        hook.requests().len(),
        2,
        "the rejected message is not retried"
    );
}

/// The backlog line says since when a receiver's messages wait (second
/// review of issue 12: it said "since" the tick that printed it).
#[test]
fn the_backlog_line_says_when_the_oldest_waiting_message_was_queued() {
    let hook = TestServer::start(Reply::status(500));
    let api = TestServer::start(Reply::status(500));
    let ws = Workspace::new(&jobs(&hook.url("/hook"), &api.url("/health"), &["api"], ""));
    assert_exit(&ws.run_at(minute(0), "p", &[]), 1);
    let out = ws.run_at(minute(1), "p", &[]);
    let since = monitor::clock::Timestamp::from_secs(minute(0)).to_string();
    assert!(
        stdout(&out).contains(&format!(
            "UNDELIVERED: 1 notification to hook waiting since {since}"
        )),
        "{}",
        stdout(&out)
    );
}
