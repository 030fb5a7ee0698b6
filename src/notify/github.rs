//! The `github` notifier: one issue per alert, found again by the alert's
//! signature in its title (seed 003's bug filing workflow). A firing alert
//! comments on the open issue that carries its signature or opens one; when
//! only a closed issue matches it opens a new one that says `Related to #N
//! (closed)` and leaves a back-link on #N; a resolution comments and, with
//! `close_on_resolve`, closes. It only talks to the GitHub REST API: what is
//! due and when to retry is the outbox's business.
//!
//! Decisions:
//! - The signature is `monitor:<profile>/<task>/<rule>@<host>`. The hosts of
//!   a fleet share one jobs.yaml and so one repository: with the host in the
//!   signature each host's alert has its own issue, and one host recovering
//!   never closes the issue of another that still fails.
//! - GitHub's search is word-based, so its hits are only candidates: an
//!   issue matches when its title holds the signature between characters
//!   that cannot be part of a name (`…/health` is not `…/health2`).
//! - Delivery is at least once, so every issue and comment carries the
//!   message id in a hidden HTML comment. A repeated send (a crash before
//!   the outbox recorded it, or a later step that failed) finds the issue it
//!   opened and the comments it posted, and does only the steps still
//!   missing. Comments are looked up among the first 100 posted since a
//!   day before the message. The search index lags writes by seconds and
//!   retries come 30 s or more later, so a retry that misses its own new
//!   issue (or sees a just-closed issue as open) is unlikely, not impossible.
//! - Evidence on an existing issue adds the labels of its severity that the
//!   issue lacks (seed 003: new evidence that raises the severity adds
//!   `urgent`). A back-link GitHub refuses (closed issues are often locked)
//!   is logged and skipped: the new issue already names the old one.
//! - Rate limits, a rejected token and a refused write (403) are transient:
//!   the quota refills, the operator fixes the token, the message waits. A
//!   missing repository (404) and a rejected request (422) are permanent.
//!
//! Over 800 lines: GitHub's issue lifecycle (find by signature, file,
//! comment, close, each safe to repeat after a failed step) is one
//! protocol with its own failure rules, about 930 lines; its unit tests
//! (about 280) stay beside it.

use super::kinds::{NotifierConfig, converted};
use super::{Context, Failure, Message, MessageKind, Payload, Sent};
use crate::clock::{Timestamp, human_duration};
use crate::config::{Secret, Severity, Text, format_number, values};
use crate::http_client::{ClientSettings, agent, describe_error};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::time::Duration;

/// `type: github`: an issue per alert, commented on while it lasts.
#[derive(Debug, Clone)]
pub struct GithubConfig {
    pub repo: Text,
    pub token: Secret,
    pub labels: BTreeMap<Severity, Vec<String>>,
    pub api_url: Text,
    /// Comment on and close the issue when the alert resolves.
    pub close_on_resolve: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    #[serde(default)]
    repo: Option<Text>,
    #[serde(default)]
    token: Option<Secret>,
    #[serde(default)]
    labels: BTreeMap<Severity, Vec<String>>,
    #[serde(default)]
    api_url: Option<Text>,
    #[serde(default)]
    close_on_resolve: bool,
}

impl TryFrom<RawGithub> for GithubConfig {
    type Error = String;
    fn try_from(raw: RawGithub) -> Result<Self, String> {
        if let Some(url) = &raw.api_url {
            values::checked_url(url, "api_url")?;
        }
        Ok(GithubConfig {
            repo: raw
                .repo
                .filter(|r| r.0.split('/').count() == 2)
                .ok_or("a github notifier needs `repo: owner/name`")?,
            token: values::required_secret(raw.token, "github", "token")?,
            labels: raw.labels,
            api_url: raw.api_url.unwrap_or(Text("https://api.github.com".into())),
            close_on_resolve: raw.close_on_resolve,
        })
    }
}

impl NotifierConfig for GithubConfig {
    fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        converted::<D, RawGithub, Self>(d)
    }

    fn keys() -> &'static [&'static str] {
        crate::config::tagged::field_names::<RawGithub>()
    }

    fn send(&self, payload: &Payload, context: &Context) -> Result<Sent, Failure> {
        let target = Target {
            repo: self.repo.as_str(),
            token: &self.token,
            labels: &self.labels,
            api_url: self.api_url.as_str(),
            close_on_resolve: self.close_on_resolve,
        };
        send(&target, payload, context).map(|()| Sent::Done)
    }

    fn secrets(&self) -> Vec<&str> {
        vec![self.token.expose()]
    }

    fn takes_digest(&self) -> bool {
        false
    }
}

/// Where issues go.
pub struct Target<'a> {
    pub repo: &'a str,
    pub token: &'a Secret,
    pub labels: &'a BTreeMap<Severity, Vec<String>>,
    pub api_url: &'a str,
    pub close_on_resolve: bool,
}

/// The REST API version the requests are written against.
const API_VERSION: &str = "2022-11-28";
/// Search results hold issue bodies (up to 64 KiB each).
const MAX_ANSWER: u64 = 8 * 1024 * 1024;
/// Matches per search; the signature is specific, a few are expected.
const SEARCH_PAGE: &str = "50";
/// GitHub takes 256 characters; leave room for a person's edits.
const TITLE_LIMIT: usize = 200;
/// GitHub's advice when a rate limit names no time: wait a minute.
const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(60);
/// A proxy's absurd wait is not followed beyond this.
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);
/// How far before a message its own comment is looked for (clock skew
/// between this host and GitHub).
const COMMENT_LOOKBACK_MS: i64 = 24 * 3600 * 1000;

/// Files, comments on or closes the issue of the alert in `payload`.
pub fn send(target: &Target, payload: &Payload, context: &Context) -> Result<(), Failure> {
    let message = match payload {
        Payload::Single(message) => message.as_ref(),
        Payload::Digest { .. } => return Err(misuse("a digest of several messages")),
        Payload::Alerts { .. } => return Err(misuse("an Alertmanager batch")),
    };
    let workflow: fn(&Client, &Message) -> Result<(), ApiError> = match message.kind {
        MessageKind::Event => return Ok(()),
        MessageKind::Firing
        | MessageKind::Again
        | MessageKind::Reminder
        | MessageKind::Escalated
        | MessageKind::RestartFailed => file,
        MessageKind::Resolved | MessageKind::Restarted => resolve,
    };
    let client = Client::new(target, context).map_err(|e| e.failure)?;
    workflow(&client, message).map_err(|e| e.failure)
}

fn misuse(what: &str) -> Failure {
    Failure {
        error: format!(
            "the github notifier files one issue per alert and cannot take {what} (digest is not allowed for github notifiers)"
        ),
        permanent: true,
        retry_after: None,
    }
}

/// The alert's stable signature, carried in its issue's title.
pub fn signature(message: &Message) -> String {
    let mut signature = format!(
        "monitor:{}/{}/{}",
        message.profile, message.task, message.rule
    );
    if !message.host.is_empty() {
        signature.push('@');
        signature.push_str(&message.host);
    }
    signature
}

/// `[Non-critical: ]<signature> — <summary>`: seed 003 prefixes everything
/// below critical so triage can put it last.
pub fn title(message: &Message) -> String {
    let prefix = if message.severity < Severity::Critical {
        "Non-critical: "
    } else {
        ""
    };
    let head = format!("{prefix}{} — ", signature(message));
    let room = TITLE_LIMIT.saturating_sub(head.chars().count());
    format!("{head}{}", shorten(&one_line(&message.summary), room))
}

/// Whether `title` carries `signature` as a whole (not as the start of a
/// longer name).
pub fn title_carries(title: &str, signature: &str) -> bool {
    if signature.is_empty() {
        return false;
    }
    title.match_indices(signature).any(|(at, _)| {
        let before = title[..at].chars().next_back();
        let after = title[at + signature.len()..].chars().next();
        !before.is_some_and(name_character) && !after.is_some_and(name_character)
    })
}

fn name_character(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '@')
}

/// A new issue's body, seed 003's template: Symptom, Evidence, Related
/// signals. `prior` is the closed issue this alert had before.
pub fn issue_body(message: &Message, prior: Option<u64>) -> String {
    let mut body = String::new();
    if let Some(prior) = prior {
        body.push_str(&format!(
            "Related to #{prior} (closed): the same alert fires again after that issue was closed, so its fix did not cover this recurrence.\n\n"
        ));
    }
    body.push_str(&sections(message));
    body.push_str(&marker(&message.id));
    body
}

/// A comment with the new evidence of a firing alert.
pub fn evidence_comment(message: &Message) -> String {
    let lead = match message.kind {
        MessageKind::Reminder => "Still firing".to_string(),
        MessageKind::Again => "Firing again".to_string(),
        MessageKind::Escalated => format!("Escalated to {}", message.severity),
        MessageKind::RestartFailed => "Restarted, still failing".to_string(),
        _ => "Firing".to_string(),
    };
    format!(
        "**{lead}** on {} at {}.\n\n{}{}",
        message.host,
        message.at.rfc3339(),
        sections(message),
        marker(&message.id)
    )
}

/// The comment of a resolution: `Resolved at …: <summary>`.
pub fn resolution_comment(message: &Message) -> String {
    let what = match message.kind {
        MessageKind::Restarted => "Restarted",
        _ => "Resolved",
    };
    let mut text = format!(
        "{what} at {}: {}",
        message.at.rfc3339(),
        code(&one_line(&message.summary))
    );
    if let Some(started) = message.started_at {
        text.push_str(&format!(
            " (firing for {})",
            human_duration(message.at.since(started))
        ));
    }
    text.push_str(&format!("\n\n- Host: {}\n", message.host));
    if let Some(remediation) = &message.remediation {
        text.push_str(&format!("- Remediation: {}\n", code(remediation)));
    }
    text.push_str(&format!("- Message id: `{}`\n", message.id));
    text.push_str(&marker(&message.id));
    text
}

/// The back-link left on the closed issue an alert recurred after.
fn back_link(message: &Message, new_issue: u64) -> String {
    format!(
        "Recurred as #{new_issue} on {} at {}: {}\n{}",
        message.host,
        message.at.rfc3339(),
        code(&one_line(&message.summary)),
        marker(&message.id)
    )
}

/// Symptom, Evidence and Related signals.
fn sections(message: &Message) -> String {
    let mut text = format!("## Symptom\n{}\n\n## Evidence\n", symptom(message));
    let mut item = |name: &str, value: String| text.push_str(&format!("- {name}: {value}\n"));
    item("Host", message.host.clone());
    item(
        "Alert",
        format!(
            "`{}` ({}, {})",
            signature(message),
            message.severity,
            message.kind.status()
        ),
    );
    item("Time", message.at.rfc3339());
    if let Some(started) = message.started_at.filter(|s| *s != message.at) {
        item(
            "Firing since",
            format!(
                "{} ({})",
                started.rfc3339(),
                human_duration(message.at.since(started))
            ),
        );
    }
    if let Some(value) = message.value {
        item("Current value", format_number(value));
    }
    if let Some(threshold) = &message.threshold {
        item("Threshold", code(threshold));
    }
    if let Some(remediation) = &message.remediation {
        item("Remediation", code(remediation));
    }
    if !message.labels.is_empty() {
        let labels: Vec<String> = message
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        item("Labels", code(&labels.join(", ")));
    }
    item("Message id", format!("`{}`", message.id));
    text.push_str("\n## Related signals\n");
    if message.related.is_empty() {
        text.push_str("none recorded\n");
    } else {
        // A code block: signal names and values are never markdown, and
        // nothing in them mentions a person or links an issue.
        let lines = message.related.join("\n");
        let fence = "`".repeat(longest_backtick_run(&lines).max(2) + 1);
        text.push_str(&format!("{fence}text\n{lines}\n{fence}\n"));
    }
    text
}

/// One line: the summary with its value and threshold.
fn symptom(message: &Message) -> String {
    let mut line = code(&one_line(&message.summary));
    match (message.value, &message.threshold) {
        (Some(value), Some(threshold)) => line.push_str(&format!(
            " (value {}, threshold {threshold})",
            format_number(value)
        )),
        (Some(value), None) => line.push_str(&format!(" (value {})", format_number(value))),
        (None, Some(threshold)) => line.push_str(&format!(" (threshold {threshold})")),
        (None, None) => {}
    }
    line
}

/// The hidden mark that lets a repeated send recognise its own writing.
fn marker(id: &str) -> String {
    format!("\n<!-- monitor:message={id} -->\n")
}

fn carries_marker(text: &str, id: &str) -> bool {
    text.contains(&format!("monitor:message={id} "))
}

/// The closed issue a body this notifier wrote says it is related to.
fn related_prior(body: &str) -> Option<u64> {
    let rest = body.strip_prefix("Related to #")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    rest[digits.len()..]
        .starts_with(" (closed)")
        .then(|| digits.parse().ok())
        .flatten()
}

/// Inline code: log lines and summaries may hold `@name` or `#12`, which
/// GitHub would turn into mentions and links outside code.
fn code(text: &str) -> String {
    let fence = "`".repeat(longest_backtick_run(text) + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn shorten(text: &str, room: usize) -> String {
    if text.chars().count() <= room {
        return text.to_string();
    }
    let mut short: String = text.chars().take(room.saturating_sub(1)).collect();
    short.push('…');
    short
}

// ------------------------------------------------------------ the workflow

/// Seed 003's filing workflow for a firing alert.
fn file(client: &Client, message: &Message) -> Result<(), ApiError> {
    let signature = signature(message);
    let open = client.search(&signature, IssueState::Open)?;
    if let Some(own) = open
        .iter()
        .find(|i| carries_marker(i.body.as_deref().unwrap_or(""), &message.id))
    {
        // A repeat of a send that opened this issue: finish what it began.
        log::info!(
            "github: {}#{} is already filed for message {}",
            client.repo(),
            own.number,
            message.id
        );
        if let Some(prior) = own.body.as_deref().and_then(related_prior) {
            link_back(client, message, prior, own.number)?;
        }
        return Ok(());
    }
    if let Some(issue) = open.iter().min_by_key(|i| i.number) {
        client.comment_once(issue.number, message, &evidence_comment(message))?;
        let missing: Vec<String> = client
            .labels_for(message.severity)
            .iter()
            .filter(|l| !issue.labels.iter().any(|have| have.name == **l))
            .cloned()
            .collect();
        if !missing.is_empty() {
            // Seed 003: new evidence that raises the severity adds its label.
            client.add_labels(issue.number, &missing)?;
        }
        log::info!(
            "github: commented on {}#{} for {signature}",
            client.repo(),
            issue.number
        );
        return Ok(());
    }
    let prior = client
        .search(&signature, IssueState::Closed)?
        .iter()
        .map(|i| i.number)
        .max();
    let number = client.create(
        &title(message),
        &issue_body(message, prior),
        client.labels_for(message.severity),
    )?;
    log::info!("github: filed {}#{number} for {signature}", client.repo());
    if let Some(prior) = prior {
        link_back(client, message, prior, number)?;
    }
    Ok(())
}

/// Leaves the back-link on the closed issue. A closed issue is often
/// locked: a refusal is logged, the new issue already says where it came
/// from.
fn link_back(
    client: &Client,
    message: &Message,
    prior: u64,
    new_issue: u64,
) -> Result<(), ApiError> {
    match client.comment_once(prior, message, &back_link(message, new_issue)) {
        Err(e) if e.refused() => {
            log::warn!(
                "github: no back-link on {}#{prior}: {}",
                client.repo(),
                e.failure.error
            );
            Ok(())
        }
        other => other,
    }
}

/// A resolution: comment on the open issue and, if asked, close it.
fn resolve(client: &Client, message: &Message) -> Result<(), ApiError> {
    let signature = signature(message);
    let open = client.search(&signature, IssueState::Open)?;
    let Some(issue) = open.iter().min_by_key(|i| i.number) else {
        return Ok(());
    };
    client.comment_once(issue.number, message, &resolution_comment(message))?;
    if client.target.close_on_resolve {
        client.close(issue.number)?;
        log::info!("github: closed {}#{}", client.repo(), issue.number);
    }
    Ok(())
}

// ------------------------------------------------------------ the API

#[derive(Clone, Copy, PartialEq, Eq)]
enum IssueState {
    Open,
    Closed,
}

impl IssueState {
    fn as_str(self) -> &'static str {
        match self {
            IssueState::Open => "open",
            IssueState::Closed => "closed",
        }
    }
}

#[derive(Deserialize)]
struct SearchAnswer {
    #[serde(default)]
    incomplete_results: bool,
    #[serde(default)]
    items: Vec<Issue>,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    labels: Vec<Label>,
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Label {
    name: String,
}

#[derive(Deserialize)]
struct Comment {
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
struct Created {
    number: u64,
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Patch,
}

struct Client<'a> {
    agent: ureq::Agent,
    target: &'a Target<'a>,
    base: &'a str,
    now: Timestamp,
    timeout: Duration,
}

impl<'a> Client<'a> {
    fn new(target: &'a Target<'a>, context: &Context) -> Result<Client<'a>, ApiError> {
        let agent = agent(&ClientSettings {
            timeout: context.timeout,
            tls_verify: true,
            ca_file: None,
            pin: None,
        })
        .map_err(|e| ApiError::transient(format!("building the HTTP client: {e}")))?;
        Ok(Client {
            agent,
            target,
            base: target.api_url.trim_end_matches('/'),
            now: context.now,
            timeout: context.timeout,
        })
    }

    fn repo(&self) -> &str {
        self.target.repo
    }

    fn labels_for(&self, severity: Severity) -> &[String] {
        self.target
            .labels
            .get(&severity)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Issues of `state` whose title carries `signature`.
    fn search(&self, signature: &str, state: IssueState) -> Result<Vec<Issue>, ApiError> {
        let query = format!(
            "repo:{} is:issue is:{} in:title \"{}\"",
            self.repo(),
            state.as_str(),
            signature.replace('"', "")
        );
        let doing = format!("searching {} for {} issues", self.repo(), state.as_str());
        let answer: SearchAnswer = self.call(
            Method::Get,
            "/search/issues",
            &[
                ("q", query.as_str()),
                ("sort", "created"),
                ("order", "desc"),
                ("per_page", SEARCH_PAGE),
            ],
            None,
            &doing,
        )?;
        let matches: Vec<Issue> = answer
            .items
            .into_iter()
            .filter(|i| i.pull_request.is_none() && i.state == state.as_str())
            .filter(|i| title_carries(&i.title, signature))
            .collect();
        if matches.is_empty() && answer.incomplete_results {
            // Filing now could duplicate an issue the search did not reach.
            return Err(ApiError::transient(format!(
                "{doing}: GitHub's search timed out (incomplete results)"
            )));
        }
        Ok(matches)
    }

    fn create(&self, title: &str, body: &str, labels: &[String]) -> Result<u64, ApiError> {
        let mut document = serde_json::json!({ "title": title, "body": body });
        if !labels.is_empty() {
            document["labels"] = serde_json::json!(labels);
        }
        let created: Created = self.call(
            Method::Post,
            &format!("/repos/{}/issues", self.repo()),
            &[],
            Some(&document),
            &format!("creating an issue in {}", self.repo()),
        )?;
        Ok(created.number)
    }

    /// Posts `body` on issue `number` unless this message already did.
    fn comment_once(&self, number: u64, message: &Message, body: &str) -> Result<(), ApiError> {
        let since = message.at.plus_millis(-COMMENT_LOOKBACK_MS);
        let since = Timestamp(since.0 - since.0.rem_euclid(1000)).rfc3339();
        let comments: Vec<Comment> = self.call(
            Method::Get,
            &format!("/repos/{}/issues/{number}/comments", self.repo()),
            &[("since", since.as_str()), ("per_page", "100")],
            None,
            &format!("reading the comments of {}#{number}", self.repo()),
        )?;
        if comments
            .iter()
            .any(|c| carries_marker(c.body.as_deref().unwrap_or(""), &message.id))
        {
            log::info!(
                "github: {}#{number} already has the comment of message {}",
                self.repo(),
                message.id
            );
            return Ok(());
        }
        let _: serde_json::Value = self.call(
            Method::Post,
            &format!("/repos/{}/issues/{number}/comments", self.repo()),
            &[],
            Some(&serde_json::json!({ "body": body })),
            &format!("commenting on {}#{number}", self.repo()),
        )?;
        Ok(())
    }

    fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), ApiError> {
        let _: serde_json::Value = self.call(
            Method::Post,
            &format!("/repos/{}/issues/{number}/labels", self.repo()),
            &[],
            Some(&serde_json::json!({ "labels": labels })),
            &format!("labelling {}#{number}", self.repo()),
        )?;
        Ok(())
    }

    fn close(&self, number: u64) -> Result<(), ApiError> {
        let _: serde_json::Value = self.call(
            Method::Patch,
            &format!("/repos/{}/issues/{number}", self.repo()),
            &[],
            Some(&serde_json::json!({ "state": "closed", "state_reason": "completed" })),
            &format!("closing {}#{number}", self.repo()),
        )?;
        Ok(())
    }

    /// One request; a 2xx answer's JSON, or why there is none. `doing`
    /// names the step for the error ("commenting on org/node#3").
    fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        document: Option<&serde_json::Value>,
        doing: &str,
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base);
        let bytes = document.map(|d| d.to_string()).unwrap_or_default();
        let result = match method {
            Method::Get => self
                .headers(self.agent.get(&url))
                .query_pairs(query.iter().copied())
                .call(),
            Method::Post => self
                .headers(self.agent.post(&url))
                .header("content-type", "application/json")
                .send(bytes.as_bytes()),
            Method::Patch => self
                .headers(self.agent.patch(&url))
                .header("content-type", "application/json")
                .send(bytes.as_bytes()),
        };
        let mut response = result.map_err(|e| {
            ApiError::transient(format!("{doing}: {}", describe_error(&e, self.timeout)))
        })?;
        let status = response.status().as_u16();
        let limits = RateLimits::from_headers(response.headers());
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .lossy_utf8(true)
            .read_to_string()
            .map_err(|e| ApiError::transient(format!("{doing}: reading the answer: {e}")))?;
        if !(200..300).contains(&status) {
            return Err(rejection(
                doing,
                self.repo(),
                status,
                &limits,
                &text,
                self.now,
            ));
        }
        serde_json::from_str(&text).map_err(|e| {
            ApiError::transient(format!(
                "{doing}: GitHub's answer is not the expected JSON ({e})"
            ))
        })
    }

    fn headers<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        request
            .header(
                "authorization",
                format!("Bearer {}", self.target.token.expose()),
            )
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
    }
}

/// What the rate-limit headers of an answer say.
#[derive(Debug, Default, Clone, Copy)]
struct RateLimits {
    /// `retry-after`: seconds to wait (secondary limits).
    retry_after: Option<u64>,
    /// `x-ratelimit-remaining`.
    remaining: Option<u64>,
    /// `x-ratelimit-reset`: Unix seconds when the quota refills.
    reset: Option<i64>,
}

impl RateLimits {
    fn from_headers(headers: &ureq::http::HeaderMap) -> RateLimits {
        fn number<T: std::str::FromStr>(headers: &ureq::http::HeaderMap, name: &str) -> Option<T> {
            headers.get(name)?.to_str().ok()?.trim().parse().ok()
        }
        RateLimits {
            retry_after: number(headers, "retry-after"),
            remaining: number(headers, "x-ratelimit-remaining"),
            reset: number(headers, "x-ratelimit-reset"),
        }
    }

    /// How long to wait when a 403/429 is a rate limit; None when it is
    /// not one. Follows GitHub's guide: `retry-after`, else the reset time
    /// when no request is left, else a minute.
    fn wait(&self, status: u16, detail: &str, now: Timestamp) -> Option<Duration> {
        if !matches!(status, 403 | 429) {
            return None;
        }
        if let Some(seconds) = self.retry_after {
            return Some(Duration::from_secs(seconds).min(LONGEST_WAIT));
        }
        if self.remaining == Some(0) {
            let until_reset = self
                .reset
                .map(|reset| reset.saturating_mul(1000).saturating_sub(now.millis()))
                .and_then(|millis| u64::try_from(millis).ok())
                .map(Duration::from_millis);
            return Some(until_reset.unwrap_or(RATE_LIMIT_PAUSE).min(LONGEST_WAIT));
        }
        (status == 429 || detail.to_ascii_lowercase().contains("rate limit"))
            .then_some(RATE_LIMIT_PAUSE)
    }
}

/// A failed request: the failure for the outbox, and what the workflow
/// needs to tell a refusal from a hiccup.
#[derive(Debug)]
struct ApiError {
    status: Option<u16>,
    rate_limited: bool,
    failure: Failure,
}

impl ApiError {
    fn transient(error: String) -> ApiError {
        ApiError {
            status: None,
            rate_limited: false,
            failure: Failure::transient(error),
        }
    }

    /// GitHub will not do this (locked, gone, invalid), whatever the wait.
    fn refused(&self) -> bool {
        matches!(self.status, Some(403 | 404 | 410 | 422)) && !self.rate_limited
    }
}

/// Classifies a non-2xx answer: rate limits and a bad token are transient
/// (the limit refills, the operator fixes the token and the message is
/// still there); a missing repository and a rejected request are not.
fn rejection(
    doing: &str,
    repo: &str,
    status: u16,
    limits: &RateLimits,
    body: &str,
    now: Timestamp,
) -> ApiError {
    let detail = error_detail(body);
    let says = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    let wait = limits.wait(status, &detail, now);
    let (error, permanent) = match (status, wait) {
        (_, Some(wait)) => (
            format!(
                "{doing}: GitHub rate limit (HTTP {status}{says}); waiting {}",
                human_duration(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
            ),
            false,
        ),
        (401, None) => (
            format!(
                "{doing}: GitHub rejected the token (HTTP 401{says}); check the notifier's token"
            ),
            false,
        ),
        (403, None) => (
            format!(
                "{doing}: GitHub refused (HTTP 403{says}); the token may lack write access to issues of {repo}"
            ),
            false,
        ),
        (404, None) => (
            format!(
                "{doing}: not found (HTTP 404{says}); check that {repo} exists and the token can see it"
            ),
            true,
        ),
        (422, None) => (
            format!("{doing}: GitHub rejected the request (HTTP 422{says})"),
            true,
        ),
        (_, None) => (
            format!("{doing}: GitHub answered HTTP {status}{says}"),
            (400..500).contains(&status) && status != 408,
        ),
    };
    ApiError {
        status: Some(status),
        rate_limited: wait.is_some(),
        failure: Failure {
            error,
            permanent,
            retry_after: wait.filter(|w| !w.is_zero()),
        },
    }
}

/// GitHub's `message` and `errors` of an error answer, on one short line.
fn error_detail(body: &str) -> String {
    #[derive(Deserialize)]
    struct ErrorAnswer {
        #[serde(default)]
        message: String,
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    let text = match serde_json::from_str::<ErrorAnswer>(body) {
        Ok(answer) => {
            let mut parts = vec![answer.message];
            parts.extend(answer.errors.iter().map(|e| {
                match e {
                    serde_json::Value::String(text) => text.clone(),
                    other => other
                        .get("message")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| {
                            let field =
                                |k: &str| other.get(k).and_then(|v| v.as_str()).unwrap_or("");
                            format!("{} {} {}", field("resource"), field("field"), field("code"))
                        }),
                }
            }));
            parts.retain(|p| !p.trim().is_empty());
            parts.join("; ")
        }
        Err(_) => body.to_string(),
    };
    shorten(&one_line(&text), 300)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::TelegramTestRoute;

    fn message(kind: MessageKind, severity: Severity) -> Message {
        Message {
            id: "0123456789abcdef01234567".into(),
            kind,
            host: "box-1".into(),
            profile: "minutely".into(),
            task: "api".into(),
            rule: "health".into(),
            severity,
            summary: "http: http://127.0.0.1:8080/: HTTP 500 (expected 200-399)".into(),
            value: Some(500.0),
            threshold: Some("200-399".into()),
            started_at: Some(Timestamp::from_secs(1_790_000_000)),
            at: Timestamp::from_secs(1_790_000_000),
            remediation: None,
            labels: BTreeMap::new(),
            related: vec!["status = 500".into(), "up = 1".into()],
        }
    }

    fn context() -> Context<'static> {
        Context {
            timeout: Duration::from_secs(2),
            now: Timestamp::from_secs(1_790_000_000),
            telegram_test: None::<&TelegramTestRoute>,
        }
    }

    #[test]
    fn the_signature_names_profile_task_rule_and_host() {
        let m = message(MessageKind::Firing, Severity::Critical);
        assert_eq!(signature(&m), "monitor:minutely/api/health@box-1");
        assert_eq!(
            title(&m),
            "monitor:minutely/api/health@box-1 — http: http://127.0.0.1:8080/: HTTP 500 (expected 200-399)"
        );
    }

    #[test]
    fn warnings_and_infos_are_non_critical_in_the_title() {
        for severity in [Severity::Warning, Severity::Info] {
            let title = title(&message(MessageKind::Firing, severity));
            assert!(
                title.starts_with("Non-critical: monitor:minutely/api/health@box-1 — "),
                "{title}"
            );
        }
    }

    #[test]
    fn long_summaries_are_cut_to_fit_the_title() {
        let mut m = message(MessageKind::Firing, Severity::Critical);
        m.summary = format!("line one\n{}", "é".repeat(500));
        let title = title(&m);
        assert_eq!(title.chars().count(), TITLE_LIMIT);
        assert!(title.ends_with('…') && !title.contains('\n'), "{title}");
    }

    #[test]
    fn a_title_carries_the_signature_only_as_a_whole_name() {
        let signature = "monitor:p/api/health@box-1";
        for title in [
            "monitor:p/api/health@box-1 — down",
            "Non-critical: monitor:p/api/health@box-1 — down",
            "API down (monitor:p/api/health@box-1)",
            "[monitor:p/api/health@box-1]: flapping",
            "monitor:p/api/health@box-1",
        ] {
            assert!(title_carries(title, signature), "{title}");
        }
        for title in [
            "monitor:p/api/health@box-10 — down",
            "monitor:p/api/health@box-1.example — down",
            "xmonitor:p/api/health@box-1 — down",
            "monitor:q/p/api/health@box-1",
            "monitor:p/api/health — no host",
        ] {
            assert!(!title_carries(title, signature), "{title}");
        }
    }

    #[test]
    fn the_issue_body_follows_seed_003() {
        let mut m = message(MessageKind::Firing, Severity::Critical);
        m.remediation = Some("restarted: pid 12 → 14".into());
        let body = issue_body(&m, None);
        let symptom = body.find("## Symptom\n`http: http://127.0.0.1:8080/: HTTP 500 (expected 200-399)` (value 500, threshold 200-399)\n");
        let evidence = body.find("## Evidence\n- Host: box-1\n");
        let related = body.find("## Related signals\n```text\nstatus = 500\nup = 1\n```\n");
        assert!(
            symptom.is_some() && evidence.is_some() && related.is_some(),
            "{body}"
        );
        assert!(symptom < evidence && evidence < related, "{body}");
        for line in [
            "- Time: 2026-09-21T14:13:20Z\n",
            "- Current value: 500\n",
            "- Threshold: `200-399`\n",
            "- Remediation: `restarted: pid 12 → 14`\n",
            "- Message id: `0123456789abcdef01234567`\n",
        ] {
            assert!(body.contains(line), "{line:?} in\n{body}");
        }
        assert!(carries_marker(&body, &m.id));
        assert!(!carries_marker(&body, "0123456789abcdef0123456"));
        assert_eq!(related_prior(&body), None);
    }

    #[test]
    fn a_recurrence_body_starts_with_the_closed_issue() {
        let body = issue_body(&message(MessageKind::Firing, Severity::Critical), Some(41));
        assert!(body.starts_with("Related to #41 (closed): "), "{body}");
        assert_eq!(related_prior(&body), Some(41));
    }

    #[test]
    fn summaries_cannot_mention_people_or_link_issues() {
        let mut m = message(MessageKind::Firing, Severity::Critical);
        m.summary = "panic by @alice in `worker` see #12".into();
        let body = issue_body(&m, None);
        assert!(
            body.contains("## Symptom\n``panic by @alice in `worker` see #12`` (value 500"),
            "{body}"
        );
    }

    #[test]
    fn comments_say_what_changed() {
        let mut reminder = message(MessageKind::Reminder, Severity::Critical);
        reminder.at = Timestamp::from_secs(1_790_007_200);
        let text = evidence_comment(&reminder);
        assert!(
            text.starts_with("**Still firing** on box-1 at 2026-09-21T16:13:20Z.\n\n## Symptom\n"),
            "{text}"
        );
        assert!(text.contains("- Firing since: 2026-09-21T14:13:20Z (2h 0m)\n"));
        let mut resolved = message(MessageKind::Resolved, Severity::Critical);
        resolved.at = Timestamp::from_secs(1_790_000_300);
        resolved.summary = "HTTP 200".into();
        let text = resolution_comment(&resolved);
        assert!(
            text.starts_with("Resolved at 2026-09-21T14:18:20Z: `HTTP 200` (firing for 5m 0s)"),
            "{text}"
        );
        assert!(carries_marker(&text, &resolved.id));
    }

    fn limits(retry_after: Option<u64>, remaining: Option<u64>, reset: Option<i64>) -> RateLimits {
        RateLimits {
            retry_after,
            remaining,
            reset,
        }
    }

    #[test]
    fn answers_are_classified_as_github_documents_them() {
        let now = Timestamp::from_secs(1_790_000_000);
        let classify = |status, limits: RateLimits, body: &str| {
            rejection("x", "org/node", status, &limits, body, now)
        };
        let secondary = classify(
            403,
            limits(Some(90), None, None),
            r#"{"message":"You have exceeded a secondary rate limit."}"#,
        );
        assert!(!secondary.failure.permanent && secondary.rate_limited);
        assert_eq!(secondary.failure.retry_after, Some(Duration::from_secs(90)));
        let primary = classify(403, limits(None, Some(0), Some(1_790_000_600)), "{}");
        assert_eq!(primary.failure.retry_after, Some(Duration::from_secs(600)));
        assert!(!primary.failure.permanent);
        let unnamed = classify(
            403,
            limits(None, Some(4000), None),
            r#"{"message":"You have exceeded a secondary rate limit"}"#,
        );
        assert_eq!(unnamed.failure.retry_after, Some(RATE_LIMIT_PAUSE));
        let too_many = classify(429, RateLimits::default(), "");
        assert!(too_many.rate_limited && !too_many.failure.permanent);

        let token = classify(
            401,
            RateLimits::default(),
            r#"{"message":"Bad credentials"}"#,
        );
        assert!(!token.failure.permanent && token.failure.retry_after.is_none());
        assert!(token.failure.error.contains("Bad credentials"), "{token:?}");
        let locked = classify(
            403,
            limits(None, Some(4000), None),
            r#"{"message":"Locked"}"#,
        );
        assert!(!locked.failure.permanent && locked.refused() && !locked.rate_limited);

        let missing = classify(404, RateLimits::default(), r#"{"message":"Not Found"}"#);
        assert!(missing.failure.permanent && missing.refused());
        let invalid = classify(
            422,
            RateLimits::default(),
            r#"{"message":"Validation Failed","errors":[{"resource":"Issue","code":"missing_field","field":"title"}]}"#,
        );
        assert!(invalid.failure.permanent);
        assert_eq!(
            invalid.failure.error,
            "x: GitHub rejected the request (HTTP 422: Validation Failed; Issue title missing_field)"
        );
        for status in [500, 502, 503] {
            let server = classify(status, RateLimits::default(), "<html>oops</html>");
            assert!(!server.failure.permanent && !server.refused(), "{server:?}");
        }
    }

    #[test]
    fn a_reset_already_past_waits_a_minute() {
        // Our clock runs ahead of GitHub's: the quota is still spent there.
        let now = Timestamp::from_secs(1_790_000_000);
        let e = rejection(
            "x",
            "org/node",
            403,
            &limits(None, Some(0), Some(1_789_999_000)),
            "{}",
            now,
        );
        assert!(e.rate_limited && !e.failure.permanent);
        assert_eq!(e.failure.retry_after, Some(RATE_LIMIT_PAUSE));
    }

    fn target<'a>(token: &'a Secret, labels: &'a BTreeMap<Severity, Vec<String>>) -> Target<'a> {
        Target {
            repo: "org/node",
            token,
            labels,
            // Nothing listens on port 1: a request would fail the send.
            api_url: "http://127.0.0.1:1",
            close_on_resolve: true,
        }
    }

    #[test]
    fn events_are_not_filed() {
        let (token, labels) = (Secret::new("ghp_TEST"), BTreeMap::new());
        let event = Payload::Single(Box::new(message(MessageKind::Event, Severity::Info)));
        assert_eq!(send(&target(&token, &labels), &event, &context()), Ok(()));
    }

    #[test]
    fn digests_and_batches_are_refused_for_good() {
        let (token, labels) = (Secret::new("ghp_TEST"), BTreeMap::new());
        let m = message(MessageKind::Firing, Severity::Critical);
        for payload in [
            Payload::Digest {
                digest: vec![m.clone(), m.clone()],
            },
            Payload::Alerts {
                alerts: vec![m.clone()],
                valid_until: Timestamp(0),
                to: None,
            },
        ] {
            let failure = send(&target(&token, &labels), &payload, &context()).unwrap_err();
            assert!(failure.permanent, "{failure:?}");
            assert!(failure.error.contains("one issue per alert"), "{failure:?}");
        }
    }

    #[test]
    fn an_unreachable_api_is_a_transient_failure_naming_the_step() {
        let (token, labels) = (Secret::new("ghp_TEST"), BTreeMap::new());
        let payload = Payload::Single(Box::new(message(MessageKind::Firing, Severity::Critical)));
        let failure = send(&target(&token, &labels), &payload, &context()).unwrap_err();
        assert!(!failure.permanent, "{failure:?}");
        assert!(
            failure
                .error
                .starts_with("searching org/node for open issues: "),
            "{failure:?}"
        );
        assert!(!failure.error.contains("ghp_TEST"));
    }

    /// The issue a firing alert files and the comment its resolution adds.
    #[test]
    fn issue_and_comments_a_person_reads() {
        let firing = message(MessageKind::Firing, Severity::Critical);
        let issue = format!("{}\n\n{}", title(&firing), issue_body(&firing, None));
        insta::assert_snapshot!("github_issue", issue);
        let resolved = message(MessageKind::Resolved, Severity::Critical);
        insta::assert_snapshot!("github_resolution", resolution_comment(&resolved));
    }
}
