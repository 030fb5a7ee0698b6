//! The github notifier end to end: a fake GitHub REST API on 127.0.0.1 that
//! keeps issues, comments, labels and states; the real binary ticking once
//! a minute on a pinned clock against a failing http task; the outbox in the
//! real SQLite file.
//!
//! Over 800 lines: it is one area of the integration suite (one module of
//! `tests/main.rs`), each test a scenario with its own fixture; the helpers
//! they share live in `tests/common/`.

use crate::common::*;

use std::process::Output;
use std::sync::{Arc, Mutex};

const TOKEN: &str = "ghp_TEST";
const SIGNATURE: &str = "monitor:p/api/health@test-host";

// ------------------------------------------------------------ fake GitHub

#[derive(Clone, Debug, Default)]
struct Issue {
    number: u64,
    title: String,
    body: String,
    state: String,
    state_reason: Option<String>,
    labels: Vec<String>,
    comments: Vec<String>,
}

impl Issue {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "number": self.number,
            "title": self.title,
            "body": self.body,
            "state": self.state,
            "state_reason": self.state_reason,
            "labels": self.labels.iter().map(|l| serde_json::json!({ "name": l })).collect::<Vec<_>>(),
            "comments": self.comments.len(),
            "html_url": format!("https://github.com/org/node/issues/{}", self.number),
        })
    }
}

/// A request the fake received.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: String,
}

impl Call {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

/// A canned answer for the next `times` requests to `method path`.
struct Scripted {
    method: String,
    path: String,
    times: usize,
    answer: Answer,
}

#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn answer(status: u16, body: serde_json::Value) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

#[derive(Default)]
struct Repo {
    issues: Vec<Issue>,
    calls: Vec<Call>,
    script: Vec<Scripted>,
}

/// A stateful stand-in for api.github.com serving repository `org/node`.
/// Search is a case-insensitive substring match of the quoted phrase in
/// titles (looser than GitHub's word match, so the notifier's own check
/// of the title is exercised), with `is:open`/`is:closed` filtering and
/// newest first. Listing comments ignores `since` (the fake cannot know
/// the pinned clock) and returns them all.
struct FakeGithub {
    api: FakeApi,
    repo: Arc<Mutex<Repo>>,
}

impl FakeGithub {
    fn start() -> FakeGithub {
        let repo = Arc::new(Mutex::new(Repo::default()));
        let shared = repo.clone();
        let api = FakeApi::start(move |request| {
            let call = Call::from(request);
            let mut repo = shared.lock().unwrap();
            repo.calls.push(call.clone());
            let reply = respond(&mut repo, &call);
            ApiReply {
                status: reply.status,
                headers: reply.headers,
                body: reply.body,
            }
        });
        FakeGithub { api, repo }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api.port)
    }

    fn issues(&self) -> Vec<Issue> {
        self.repo.lock().unwrap().issues.clone()
    }

    fn issue(&self, number: u64) -> Issue {
        self.issues()
            .into_iter()
            .find(|i| i.number == number)
            .unwrap_or_else(|| panic!("no issue #{number}"))
    }

    fn calls(&self) -> Vec<Call> {
        self.repo.lock().unwrap().calls.clone()
    }

    fn clear_calls(&self) {
        self.repo.lock().unwrap().calls.clear();
    }

    /// Files an issue as a person would.
    fn file_by_hand(&self, number: u64, title: &str, state: &str) {
        self.repo.lock().unwrap().issues.push(Issue {
            number,
            title: title.into(),
            body: "Seen by hand.".into(),
            state: state.into(),
            ..Issue::default()
        });
    }

    fn script(&self, method: &str, path: &str, times: usize, answer: Answer) {
        self.repo.lock().unwrap().script.push(Scripted {
            method: method.into(),
            path: path.into(),
            times,
            answer,
        });
    }
}

impl From<&Request> for Call {
    fn from(request: &Request) -> Call {
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        Call {
            method: request.method.clone(),
            path: path.to_string(),
            query: query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
            headers: request.headers.clone(),
            body: String::from_utf8_lossy(&request.body).into_owned(),
        }
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(repo: &mut Repo, call: &Call) -> Answer {
    if call.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return answer(401, serde_json::json!({ "message": "Bad credentials" }));
    }
    if let Some(scripted) = repo
        .script
        .iter_mut()
        .find(|s| s.times > 0 && call.is(&s.method, &s.path))
    {
        scripted.times -= 1;
        return scripted.answer.clone();
    }
    let segments: Vec<&str> = call.path.trim_start_matches('/').split('/').collect();
    let number = |n: &str| n.parse::<u64>().ok();
    let not_found = || answer(404, serde_json::json!({ "message": "Not Found" }));
    match (call.method.as_str(), segments.as_slice()) {
        ("GET", ["search", "issues"]) => search(repo, call.param("q").unwrap_or("")),
        ("POST", ["repos", "org", "node", "issues"]) => {
            let document = call.json();
            let title = document["title"].as_str().unwrap_or("").to_string();
            if title.is_empty() {
                return answer(422, serde_json::json!({ "message": "Validation Failed" }));
            }
            let issue = Issue {
                number: repo.issues.iter().map(|i| i.number).max().unwrap_or(0) + 1,
                title,
                body: document["body"].as_str().unwrap_or("").to_string(),
                state: "open".into(),
                state_reason: None,
                labels: document["labels"]
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
                comments: Vec::new(),
            };
            let json = issue.json();
            repo.issues.push(issue);
            answer(201, json)
        }
        (method, ["repos", "org", "node", "issues", n, rest @ ..]) => {
            let Some(issue) =
                number(n).and_then(|n| repo.issues.iter_mut().find(|i| i.number == n))
            else {
                return not_found();
            };
            match (method, rest) {
                ("GET", ["comments"]) => answer(
                    200,
                    serde_json::Value::Array(
                        issue
                            .comments
                            .iter()
                            .enumerate()
                            .map(|(id, body)| serde_json::json!({ "id": id, "body": body }))
                            .collect(),
                    ),
                ),
                ("POST", ["comments"]) => {
                    let body = call.json()["body"].as_str().unwrap_or("").to_string();
                    issue.comments.push(body.clone());
                    answer(
                        201,
                        serde_json::json!({ "id": issue.comments.len(), "body": body }),
                    )
                }
                ("POST", ["labels"]) => {
                    for label in call.json()["labels"].as_array().into_iter().flatten() {
                        let label = label.as_str().unwrap_or("").to_string();
                        if !issue.labels.contains(&label) {
                            issue.labels.push(label);
                        }
                    }
                    answer(200, serde_json::json!(issue.json()["labels"]))
                }
                ("PATCH", []) => {
                    let document = call.json();
                    if let Some(state) = document["state"].as_str() {
                        issue.state = state.into();
                    }
                    issue.state_reason = document["state_reason"].as_str().map(String::from);
                    answer(200, issue.json())
                }
                _ => not_found(),
            }
        }
        _ => not_found(),
    }
}

/// `GET /search/issues`: qualifiers outside quotes, phrases inside.
fn search(repo: &Repo, q: &str) -> Answer {
    let mut phrases = Vec::new();
    let mut words = Vec::new();
    for (n, part) in q.split('"').enumerate() {
        if n % 2 == 1 {
            phrases.push(part.to_lowercase());
        } else {
            words.extend(part.split_whitespace().map(str::to_lowercase));
        }
    }
    let mut state = None;
    let mut kind = None;
    for word in &words {
        match word.split_once(':') {
            Some(("repo", name)) if name != "org/node" => {
                return answer(
                    422,
                    serde_json::json!({ "message": "Validation Failed", "errors": [{ "message": "The listed users and repositories cannot be searched either because the resources do not exist or you do not have permission to view them." }] }),
                );
            }
            Some(("is", "open" | "closed")) => {
                state = word.split_once(':').map(|(_, s)| s.to_string())
            }
            Some(("is", "issue")) => kind = Some("issue"),
            Some(_) => {}
            None => phrases.push(word.clone()),
        }
    }
    if kind.is_none() {
        return answer(
            422,
            serde_json::json!({ "message": "Query must include 'is:issue' or 'is:pull-request'" }),
        );
    }
    let mut items: Vec<&Issue> = repo
        .issues
        .iter()
        .filter(|i| state.as_deref().is_none_or(|s| i.state == s))
        .filter(|i| phrases.iter().all(|p| i.title.to_lowercase().contains(p)))
        .collect();
    items.sort_by_key(|i| std::cmp::Reverse(i.number));
    answer(
        200,
        serde_json::json!({
            "total_count": items.len(),
            "incomplete_results": false,
            "items": items.iter().map(|i| i.json()).collect::<Vec<_>>(),
        }),
    )
}

// ------------------------------------------------------------ the monitor

/// jobs.yaml: task `api` probing `api`, notifying the console and `gh`.
fn jobs(github: &FakeGithub, api: &TestServer, task_extra: &str) -> String {
    format!(
        r#"version: 1
host: test-host
notifiers:
  gh: {{ type: github, repo: org/node, token: "{TOKEN}", api_url: "{}", labels: {{ critical: [urgent], warning: [monitoring, low-priority] }}, close_on_resolve: true }}
profiles:
  p:
    cron: "* * * * *"
    announce: false
    notify: [console, gh]
    tasks:
      - name: api
        http: {{ url: "{}", timeout: 2s }}
{task_extra}"#,
        github.url(),
        api.url("/health")
    )
}

struct Ticker {
    ws: Workspace,
    outputs: Vec<Output>,
}

impl Ticker {
    fn new(config: &str) -> Ticker {
        Ticker {
            ws: Workspace::new(config),
            outputs: Vec::new(),
        }
    }

    /// Runs the tick of minute `n`.
    fn at(&mut self, n: i64) -> &Output {
        let out = self.ws.run_at(minute(n), "p", &[]);
        self.outputs.push(out);
        self.outputs.last().unwrap()
    }
}

/// Unix milliseconds of tick `n`.
fn millis(n: i64) -> i64 {
    minute(n) * 1000
}

fn outbox(ws: &Workspace) -> Vec<OutboxRow> {
    ws.outbox("gh")
}

#[track_caller]
fn assert_all_delivered(ws: &Workspace) {
    let rows = outbox(ws);
    assert!(
        rows.iter().all(|r| r.delivered_at.is_some()),
        "undelivered: {rows:?}"
    );
}

fn count(calls: &[Call], method: &str, path: &str) -> usize {
    calls.iter().filter(|c| c.is(method, path)).count()
}

/// A failing API, a fake GitHub, and a ticker for them.
fn setup(task_extra: &str) -> (TestServer, FakeGithub, Ticker) {
    let api = TestServer::start(Reply::status(500));
    let github = FakeGithub::start();
    let ticker = Ticker::new(&jobs(&github, &api, task_extra));
    (api, github, ticker)
}

// ------------------------------------------------------------ tests

#[test]
fn first_firing_files_one_issue_with_the_seed_003_body_and_urgent_label() {
    let (_api, github, mut ticker) = setup("");
    assert_exit(ticker.at(0), 1);

    let issues = github.issues();
    assert_eq!(issues.len(), 1, "{issues:?}");
    let issue = &issues[0];
    assert_eq!(issue.number, 1);
    assert_eq!(issue.state, "open");
    assert_eq!(issue.labels, vec!["urgent"]);
    let rows = outbox(&ticker.ws);
    assert_eq!(rows.len(), 1);
    let summary = rows[0].payload["summary"].as_str().unwrap_or("");
    assert!(summary.contains("HTTP 500 (expected 200-399)"), "{summary}");
    assert_eq!(issue.title, format!("{SIGNATURE} — {summary}"));
    let body = &issue.body;
    let symptom = body.find(&format!("## Symptom\n`{summary}`\n"));
    let evidence = body.find("## Evidence\n- Host: test-host\n");
    let related = body.find("## Related signals\n```text\n");
    assert!(
        symptom < evidence && evidence < related && symptom.is_some(),
        "{body}"
    );
    for part in [
        &format!("- Alert: `{SIGNATURE}` (critical, firing)\n"),
        "- Time: 2026-09-21T14:13:20Z\n",
        &format!("- Message id: `{}`\n", rows[0].message_id),
        "status = 500\n",
        &format!("<!-- monitor:message={} -->", rows[0].message_id),
    ] {
        assert!(body.contains(part), "{part:?} in\n{body}");
    }
    assert!(!body.contains("Related to #"), "{body}");
    assert_all_delivered(&ticker.ws);

    let calls = github.calls();
    let searches: Vec<&Call> = calls
        .iter()
        .filter(|c| c.is("GET", "/search/issues"))
        .collect();
    assert_eq!(
        searches
            .iter()
            .map(|c| c.param("q").unwrap_or(""))
            .collect::<Vec<_>>(),
        vec![
            format!("repo:org/node is:issue is:open in:title \"{SIGNATURE}\""),
            format!("repo:org/node is:issue is:closed in:title \"{SIGNATURE}\""),
        ]
    );
    for call in &calls {
        assert_eq!(call.header("authorization"), Some("Bearer ghp_TEST"));
        assert_eq!(call.header("accept"), Some("application/vnd.github+json"));
        assert_eq!(call.header("x-github-api-version"), Some("2022-11-28"));
        assert!(
            call.header("user-agent")
                .unwrap_or("")
                .starts_with("monitor/"),
            "{call:?}"
        );
    }
    assert_eq!(
        calls.len(),
        3,
        "search open, search closed, create: {calls:?}"
    );

    // Still failing a minute later: no message, no request.
    github.clear_calls();
    ticker.at(1);
    assert!(github.calls().is_empty(), "{:?}", github.calls());
}

#[test]
fn a_reminder_after_the_cooldown_comments_on_the_open_issue() {
    let (_api, github, mut ticker) = setup("");
    ticker.at(0);
    ticker.at(1);
    ticker.at(119);
    assert!(github.issue(1).comments.is_empty());
    ticker.at(120);

    let issues = github.issues();
    assert_eq!(issues.len(), 1, "no new issue: {issues:?}");
    let comments = &issues[0].comments;
    assert_eq!(comments.len(), 1, "{comments:?}");
    let comment = &comments[0];
    assert!(
        comment
            .starts_with("**Still firing** on test-host at 2026-09-21T16:13:20Z.\n\n## Symptom\n"),
        "{comment}"
    );
    assert!(
        comment.contains("- Firing since: 2026-09-21T14:13:20Z (2h 0m)\n"),
        "{comment}"
    );
    assert!(comment.contains("## Related signals\n"), "{comment}");
    let rows = outbox(&ticker.ws);
    assert_eq!(rows.len(), 2);
    assert!(comment.contains(&format!("monitor:message={}", rows[1].message_id)));
    assert_all_delivered(&ticker.ws);
    assert_eq!(github.issue(1).state, "open");
}

#[test]
fn a_warning_files_a_non_critical_issue_with_its_labels() {
    let (_api, github, mut ticker) = setup("        severity: warning\n");
    ticker.at(0);
    let issues = github.issues();
    assert_eq!(issues.len(), 1);
    assert!(
        issues[0]
            .title
            .starts_with(&format!("Non-critical: {SIGNATURE} — http: ")),
        "{}",
        issues[0].title
    );
    assert_eq!(issues[0].labels, vec!["monitoring", "low-priority"]);
    assert!(
        issues[0]
            .body
            .contains(&format!("- Alert: `{SIGNATURE}` (warning, firing)")),
        "{}",
        issues[0].body
    );
}

#[test]
fn a_resolution_comments_and_closes_the_issue() {
    let (api, github, mut ticker) = setup("");
    ticker.at(0);
    api.set(Reply::status(200));
    assert_exit(ticker.at(1), 0);

    let issue = github.issue(1);
    assert_eq!(issue.state, "closed");
    assert_eq!(issue.state_reason.as_deref(), Some("completed"));
    assert_eq!(issue.comments.len(), 1, "{:?}", issue.comments);
    assert!(
        issue.comments[0].starts_with("Resolved at 2026-09-21T14:14:20Z: `"),
        "{}",
        issue.comments[0]
    );
    assert!(issue.comments[0].contains("(firing for 1m 0s)"));
    assert_eq!(github.issues().len(), 1);
    let patch = github
        .calls()
        .into_iter()
        .find(|c| c.is("PATCH", "/repos/org/node/issues/1"))
        .expect("a PATCH");
    assert_eq!(
        patch.json(),
        serde_json::json!({ "state": "closed", "state_reason": "completed" })
    );
    assert_all_delivered(&ticker.ws);
}

#[test]
fn a_recurrence_after_the_close_files_a_new_issue_related_to_the_closed_one() {
    let (api, github, mut ticker) = setup("");
    ticker.at(0);
    api.set(Reply::status(200));
    ticker.at(1);
    api.set(Reply::status(500));
    ticker.at(5);

    let issues = github.issues();
    assert_eq!(issues.len(), 2, "{issues:?}");
    let new = github.issue(2);
    assert_eq!(new.state, "open");
    assert_eq!(new.labels, vec!["urgent"]);
    assert!(new.title.starts_with(SIGNATURE), "{}", new.title);
    assert!(
        new.body.starts_with("Related to #1 (closed)"),
        "{}",
        new.body
    );
    assert!(new.body.contains("## Symptom\n"), "{}", new.body);
    let old = github.issue(1);
    assert_eq!(old.state, "closed", "the closed issue stays closed");
    assert_eq!(old.comments.len(), 2, "{:?}", old.comments);
    assert!(
        old.comments[1].starts_with("Recurred as #2 on test-host at 2026-09-21T14:18:20Z: `"),
        "{}",
        old.comments[1]
    );
    assert_all_delivered(&ticker.ws);

    // It flaps: down again two minutes later is the same incident — no
    // new issue, no new comment; #2 stays open until it holds.
    api.set(Reply::status(200));
    ticker.at(6);
    api.set(Reply::status(500));
    ticker.at(7);
    api.set(Reply::status(200));
    ticker.at(8);
    assert_eq!(github.issues().len(), 2, "{:?}", github.issues());
    assert_eq!(github.issue(2).state, "open");
    // Steady for the cooldown (2 h): resolved and closed.
    ticker.at(8 + 120);
    assert_eq!(github.issue(2).state, "closed");
    // A failure after that is a new incident: the most recent closed
    // issue is the one referenced.
    api.set(Reply::status(500));
    ticker.at(200);
    assert!(
        github.issue(3).body.starts_with("Related to #2 (closed)"),
        "{}",
        github.issue(3).body
    );
    assert_eq!(github.issue(1).comments.len(), 2);
    assert!(
        github
            .issue(2)
            .comments
            .iter()
            .any(|c| c.starts_with("Recurred as #3")),
        "{:?}",
        github.issue(2).comments
    );
    assert_all_delivered(&ticker.ws);
}

#[test]
fn an_open_issue_filed_by_hand_is_commented_on_not_duplicated() {
    let (api, github, mut ticker) = setup("");
    github.file_by_hand(3, &format!("Old outage ({SIGNATURE})"), "closed");
    // Older, and found by the search, but another host's and another
    // rule's alerts: not this one.
    github.file_by_hand(5, &format!("{SIGNATURE}2 — another host"), "open");
    github.file_by_hand(6, &format!("{SIGNATURE}-latency — slow"), "open");
    github.file_by_hand(
        7,
        &format!("API flapping since deploy: {SIGNATURE}"),
        "open",
    );
    ticker.at(0);

    assert_eq!(
        github.issues().len(),
        4,
        "no issue filed: {:?}",
        github.issues()
    );
    let by_hand = github.issue(7);
    assert_eq!(by_hand.comments.len(), 1, "{by_hand:?}");
    assert!(
        by_hand.comments[0]
            .starts_with("**Firing** on test-host at 2026-09-21T14:13:20Z.\n\n## Symptom\n"),
        "{}",
        by_hand.comments[0]
    );
    assert_eq!(
        by_hand.labels,
        vec!["urgent"],
        "the severity's label is added"
    );
    for other in [3, 5, 6] {
        let issue = github.issue(other);
        assert!(
            issue.comments.is_empty() && issue.labels.is_empty(),
            "{issue:?}"
        );
    }
    assert_all_delivered(&ticker.ws);

    api.set(Reply::status(200));
    ticker.at(1);
    let by_hand = github.issue(7);
    assert_eq!(by_hand.state, "closed");
    assert!(by_hand.comments[1].starts_with("Resolved at "));
    assert_eq!(github.issue(5).state, "open");
    assert_eq!(github.issue(6).state, "open");
}

#[test]
fn a_secondary_rate_limit_is_retried_after_its_retry_after() {
    let (_api, github, mut ticker) = setup("");
    github.script(
        "GET",
        "/search/issues",
        1,
        Answer {
            status: 403,
            headers: vec![
                ("retry-after".into(), "600".into()),
                ("x-ratelimit-remaining".into(), "4990".into()),
            ],
            body: r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#.into(),
        },
    );
    let out = ticker.at(0);
    assert!(stdout(out).contains("NOT sent to gh"), "{}", stdout(out));
    let rows = outbox(&ticker.ws);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].attempts, 1);
    assert_eq!(rows[0].next_attempt_at, millis(0) + 600_000, "{rows:?}");
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("rate limit"),
        "{rows:?}"
    );
    assert!(github.issues().is_empty());

    github.clear_calls();
    ticker.at(1);
    ticker.at(5);
    ticker.at(9);
    assert!(github.calls().is_empty(), "held until the wait is over");
    ticker.at(10);
    assert_eq!(github.issues().len(), 1);
    assert_all_delivered(&ticker.ws);
}

#[test]
fn an_exhausted_quota_is_retried_at_its_reset_time() {
    let (_api, github, mut ticker) = setup("");
    github.script(
        "POST",
        "/repos/org/node/issues",
        1,
        Answer {
            status: 403,
            headers: vec![
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ratelimit-reset".into(), (minute(0) + 900).to_string()),
            ],
            body: r#"{"message":"API rate limit exceeded for user ID 1."}"#.into(),
        },
    );
    ticker.at(0);
    let rows = outbox(&ticker.ws);
    assert_eq!(rows[0].next_attempt_at, millis(0) + 900_000, "{rows:?}");
    ticker.at(14);
    assert!(github.issues().is_empty());
    ticker.at(15);
    assert_eq!(github.issues().len(), 1);
    assert_all_delivered(&ticker.ws);
}

#[test]
fn a_validation_error_is_dead_lettered() {
    let (_api, github, mut ticker) = setup("");
    github.script(
        "POST",
        "/repos/org/node/issues",
        usize::MAX,
        answer(
            422,
            serde_json::json!({
                "message": "Validation Failed",
                "errors": [{ "resource": "Issue", "code": "invalid", "field": "labels" }],
            }),
        ),
    );
    let out = ticker.at(0);
    assert!(
        stdout(out).contains("GAVE UP sending to gh"),
        "{}",
        stdout(out)
    );
    let rows = outbox(&ticker.ws);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].given_up_at, Some(millis(0)));
    assert_eq!(rows[0].delivered_at, None);
    let error = rows[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("HTTP 422") && error.contains("Validation Failed; Issue labels invalid"),
        "{error}"
    );
    assert_eq!(
        ticker
            .ws
            .count("SELECT count(*) FROM alert_history WHERE status = 'dead_letter'"),
        1
    );
    github.clear_calls();
    ticker.at(1);
    ticker.at(5);
    assert!(github.calls().is_empty(), "never tried again");
}

#[test]
fn a_send_repeated_after_a_failed_step_posts_nothing_twice() {
    let (api, github, mut ticker) = setup("");
    ticker.at(0);

    // The resolution's comment lands, closing fails: the retry only closes.
    github.script(
        "PATCH",
        "/repos/org/node/issues/1",
        1,
        answer(502, serde_json::json!({ "message": "Server Error" })),
    );
    api.set(Reply::status(200));
    ticker.at(1);
    assert_eq!(github.issue(1).state, "open");
    assert_eq!(github.issue(1).comments.len(), 1);
    ticker.at(2);
    let issue = github.issue(1);
    assert_eq!(issue.state, "closed");
    assert_eq!(issue.comments.len(), 1, "{:?}", issue.comments);

    // The recurrence's issue lands, the back-link fails: the retry finds
    // its issue and only links back.
    github.script(
        "POST",
        "/repos/org/node/issues/1/comments",
        1,
        answer(500, serde_json::json!({ "message": "Server Error" })),
    );
    api.set(Reply::status(500));
    ticker.at(3);
    assert_eq!(github.issues().len(), 2);
    assert_eq!(github.issue(1).comments.len(), 1);
    ticker.at(4);
    assert_eq!(github.issues().len(), 2, "{:?}", github.issues());
    let old = github.issue(1);
    assert_eq!(old.comments.len(), 2, "{:?}", old.comments);
    assert!(old.comments[1].starts_with("Recurred as #2"));
    assert!(github.issue(2).comments.is_empty());
    assert_all_delivered(&ticker.ws);
    assert_eq!(
        count(&github.calls(), "POST", "/repos/org/node/issues"),
        2,
        "one issue per incident"
    );
}

#[test]
fn a_locked_closed_issue_gets_no_back_link_but_the_new_issue_is_filed() {
    let (api, github, mut ticker) = setup("");
    ticker.at(0);
    api.set(Reply::status(200));
    ticker.at(1);
    github.script(
        "POST",
        "/repos/org/node/issues/1/comments",
        usize::MAX,
        answer(
            403,
            serde_json::json!({ "message": "Unable to create comment because issue is locked." }),
        ),
    );
    api.set(Reply::status(500));
    ticker.at(2);
    assert!(github.issue(2).body.starts_with("Related to #1 (closed)"));
    assert_all_delivered(&ticker.ws);
}

#[test]
fn the_token_never_appears_in_outputs_or_the_database() {
    let (api, github, mut ticker) = setup("");
    // A proxy that echoes what it was given.
    github.script(
        "GET",
        "/search/issues",
        2,
        answer(
            401,
            serde_json::json!({ "message": format!("Bad credentials: Bearer {TOKEN}") }),
        ),
    );
    ticker.at(0);
    let rows = outbox(&ticker.ws);
    let error = rows[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("HTTP 401") && error.contains("[redacted]"),
        "{error}"
    );
    ticker.at(1);
    ticker.at(3);
    api.set(Reply::status(200));
    ticker.at(4);
    assert_all_delivered(&ticker.ws);
    assert_eq!(github.issue(1).state, "closed");

    let mut texts: Vec<String> = ticker
        .outputs
        .iter()
        .flat_map(|o| [stdout(o), stderr(o)])
        .collect();
    for args in [
        vec!["alerts", "--format", "json"],
        vec!["alerts"],
        vec!["state", "list"],
    ] {
        let out = ticker.ws.command().args(&args).output().unwrap();
        texts.push(stdout(&out));
        texts.push(stderr(&out));
    }
    let json = ticker.ws.run_at(minute(5), "p", &["--format", "json"]);
    texts.push(stdout(&json));
    texts.push(stderr(&json));
    for text in &texts {
        assert!(!text.contains(TOKEN), "the token leaked:\n{text}");
    }
    let state = ticker.ws.db().parent().unwrap().to_path_buf();
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
                "the token is in {}",
                path.display()
            );
        }
    }
    assert!(
        github
            .calls()
            .iter()
            .all(|c| c.header("authorization") == Some("Bearer ghp_TEST")),
        "it was used, in the header only"
    );
}

// ------------------------------------------------ seed 003 over two hours

/// Seed 003's node for two simulated hours against the GitHub fake: a
/// counter that grows every other tick, and a labelled counter the client
/// creates on its first increment (a burst of 12). Each is one incident,
/// one issue; the absent series is never "no data"; the first burst is
/// alerted; the bursty counter is commented on once its 2 h cooldown
/// has passed, not re-filed every other tick — even with close_on_resolve.
#[test]
fn seed_003_node_over_two_hours_files_one_issue_per_incident() {
    let node = TestServer::start(Reply::status(200));
    let github = FakeGithub::start();
    let config = format!(
        r#"version: 1
host: test-host
notifiers:
  gh: {{ type: github, repo: org/node, token: "{TOKEN}", api_url: "{}", labels: {{ critical: [urgent], warning: [monitoring] }}, close_on_resolve: true }}
profiles:
  p:
    cron: "* * * * *"
    announce: false
    notify: [gh]
    tasks:
      - name: node
        metrics: {{ url: "{}" }}
        rules:
          - {{ name: lost-sync, counter: stellar_herder_lost_sync_total, delta: ">= 1" }}
          - {{ name: recovery-stalled, counter: 'henyey_recovery_stalled_tick_total{{reason="forcing_catchup_behind"}}', delta: ">= 1", streak: 3, burst: 10, severity: warning }}
"#,
        github.url(),
        node.url("/metrics")
    );
    let mut ticker = Ticker::new(&config);
    for n in 0..=125 {
        let mut body = format!(
            "# TYPE stellar_herder_lost_sync_total counter\nstellar_herder_lost_sync_total {}\n# TYPE henyey_recovery_stalled_tick_total counter\nhenyey_recovery_stalled_tick_total{{reason=\"other\"}} 1\n",
            n / 2
        );
        if n >= 40 {
            body.push_str(
                "henyey_recovery_stalled_tick_total{reason=\"forcing_catchup_behind\"} 12\n",
            );
        }
        node.set(Reply {
            status: 200,
            body,
            delay: std::time::Duration::ZERO,
        });
        let out = ticker.at(n);
        let code = out.status.code();
        let expected = if n >= 2 && n % 2 == 0 || n == 40 {
            1
        } else {
            0
        };
        assert_eq!(code, Some(expected), "minute {n}:\n{}", stdout(out));
    }
    let issues = github.issues();
    assert_eq!(issues.len(), 2, "{issues:#?}");
    let lost_sync = issues
        .iter()
        .find(|i| i.title.contains("p/node/lost-sync"))
        .unwrap();
    let stalled = issues
        .iter()
        .find(|i| i.title.contains("p/node/recovery-stalled"))
        .unwrap();
    assert!(
        stalled.title.starts_with("Non-critical: ") && stalled.body.contains("rose by 12"),
        "the first burst is alerted: {stalled:#?}"
    );
    assert_eq!(lost_sync.state, "open");
    assert_eq!(
        lost_sync.comments.len(),
        1,
        "one comment, after the 2 h cooldown: {:#?}",
        lost_sync.comments
    );
    assert!(
        lost_sync.comments[0].starts_with("**Firing again**"),
        "{}",
        lost_sync.comments[0]
    );
    assert!(stalled.comments.is_empty(), "{:#?}", stalled.comments);
    assert_eq!(
        count(&github.calls(), "POST", "/repos/org/node/issues"),
        2,
        "two issues filed, never more"
    );
    assert_eq!(
        ticker
            .ws
            .count("SELECT count(*) FROM alert_history WHERE rule LIKE '%:no-data'"),
        0,
        "the absent labelled series is 0, not no data"
    );
    // Every occurrence is in the history.
    assert_eq!(
        ticker.ws.count(
            "SELECT count(*) FROM alert_history WHERE rule = 'lost-sync' AND status = 'firing'"
        ),
        62
    );
    assert_all_delivered(&ticker.ws);
}
