//! The status page of `monitor serve` (`/`, `/task/PROFILE/TASK`) and its
//! badges (`/badge/PROFILE/TASK.svg`, `…/uptime.svg`): server-rendered
//! HTML and SVG from `templates/` (askama, escaped by default), charts as
//! inline SVG, no script and no outside asset, so it works offline.

use super::http::Response;
use super::routes::{Api, Database};
use crate::clock::Timestamp;
use crate::config::{Config, Profile, Threshold, format_value};
use crate::rule::RuleKind;
use crate::store::{HEALTHY, HistoryQuery, Point, Store, TaskStatus};
use askama::Template;

const CSS: &str = include_str!("../../templates/base.css");
const DAY_MS: i64 = 86_400_000;
/// Cells of a task's uptime bar: one a day.
const UPTIME_DAYS: i64 = 90;

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    title: String,
    css: &'static str,
    host: String,
    headline: String,
    now: Timestamp,
    /// The zone the page's times are in (`UTC+01:00`).
    zone: String,
    profiles: Vec<ProfileView>,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct ProfileView {
    pub(super) name: String,
    /// The host it runs on, when it is a peer's.
    pub(super) peer: Option<String>,
    pub(super) schedule: String,
    /// The zone its times are in (a peer's may not be this host's).
    #[serde(default)]
    pub(super) zone: String,
    pub(super) overdue: bool,
    pub(super) unreachable: Option<String>,
    pub(super) notices: Vec<String>,
    pub(super) tasks: Vec<TaskView>,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct TaskView {
    pub(super) name: String,
    pub(super) link: Option<String>,
    pub(super) verdict: String,
    pub(super) why: String,
    pub(super) summary: String,
    pub(super) since: String,
    /// "silenced until …" when a silence covers the task or one of its
    /// rules (its alerts are held, its verdict is still shown).
    #[serde(default)]
    pub(super) silenced: Option<String>,
    pub(super) days: Vec<DayCell>,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct DayCell {
    pub(super) class: String,
    pub(super) title: String,
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    title: String,
    css: &'static str,
    profile: String,
    task: String,
    verdict: String,
    why: String,
    summary: String,
    since: String,
    range: &'static str,
    ranges: Vec<RangeLink>,
    notices: Vec<String>,
    charts: Vec<Chart>,
    timeline: Vec<TimelineRow>,
}

struct RangeLink {
    label: &'static str,
    link: String,
    current: bool,
}

struct Chart {
    signal: String,
    min: String,
    avg: String,
    max: String,
    /// The scale's ends, and the window's start (its end is now).
    top: String,
    bottom: String,
    from: String,
    /// `x,y x,y …` in a 1000×200 box: the values (a bucket's average).
    points: String,
    /// Buckets' max, then their min back: the band between (empty for
    /// raw samples).
    band: String,
    thresholds: Vec<Mark>,
    restarts: Vec<Mark>,
}

struct Mark {
    x: String,
    y: String,
    title: String,
}

struct TimelineRow {
    at: Timestamp,
    rule: String,
    status: String,
    class: &'static str,
    summary: String,
}

#[derive(Template)]
#[template(path = "badge.svg")]
struct Badge {
    label: String,
    message: String,
    color: &'static str,
    width: usize,
    label_width: usize,
    message_width: usize,
}

/// The spans a task page shows: label, span, bucket (`None`: every sample).
const RANGES: [(&str, i64, Option<i64>); 3] = [
    ("24h", DAY_MS, None),
    ("7d", 7 * DAY_MS, Some(3_600_000)),
    ("90d", 90 * DAY_MS, Some(3_600_000)),
];

impl Api {
    /// `/`: every profile, every task's verdict and uptime bar.
    pub(super) fn status_page(&self, database: &mut Database, now: Timestamp) -> Response {
        let current = self.config.current();
        let config = &current.config;
        let read = self.read(database, |store| local_profiles(store, config, now));
        let ran = matches!(read, Ok(Some(_)));
        let mut profiles = match read {
            Ok(profiles) => profiles.unwrap_or_else(|| never_run(config)),
            Err(e) => return super::routes::database_error(&e),
        };
        profiles.extend(self.peers.profiles(&config.peers));
        let headline = headline(&profiles, ran);
        let page = StatusPage {
            title: format!("{} — {headline}", config.host),
            css: CSS,
            host: config.host.clone(),
            headline,
            now,
            zone: zone(now),
            profiles,
        };
        html(page.render())
    }

    /// `/task/PROFILE/TASK?range=24h|7d|90d`.
    pub(super) fn task_page(
        &self,
        database: &mut Database,
        profile: &str,
        task: &str,
        range: &str,
        now: Timestamp,
    ) -> Response {
        let current = self.config.current();
        let config = &current.config;
        let Some(range) = RANGES.iter().find(|(label, ..)| *label == range) else {
            return Response::error(400, format!("range={range:?}: give 24h, 7d or 90d"));
        };
        let read = self.read(database, |store| {
            task_page(store, config, profile, task, *range, now)
        });
        match read {
            Ok(Some(Some(page))) => html(page.render()),
            Ok(Some(None)) | Ok(None) => Response::error(
                404,
                format!("no task `{task}` in profile `{profile}` has been recorded: see /"),
            ),
            Err(e) => super::routes::database_error(&e),
        }
    }

    /// `/badge/PROFILE/TASK.svg` (`uptime`: `…/uptime.svg`, the last 30 days).
    pub(super) fn badge(
        &self,
        database: &mut Database,
        profile: &str,
        task: &str,
        uptime: bool,
        now: Timestamp,
    ) -> Response {
        if configured_task(&self.config.current().config, profile, task).is_none() {
            // A task gone from jobs.yaml has no status, only a past.
            return Response::error(
                404,
                format!("no task `{task}` in profile `{profile}` of jobs.yaml: see /"),
            );
        }
        let read = self.read(database, |store| {
            if uptime {
                let points = store.signal_points(
                    profile,
                    task,
                    HEALTHY,
                    now.plus_millis(-30 * DAY_MS),
                    now,
                    Some(30 * DAY_MS),
                )?;
                let share = crate::history::figures(&points).map(|f| f.1);
                return Ok(Some(match share {
                    Some(share) => badge("uptime 30d", &percent(share), uptime_color(share)),
                    None => badge("uptime 30d", "no data", "#9f9f9f"),
                }));
            }
            let status = store
                .task_statuses(Some(profile))?
                .into_iter()
                .find(|s| s.task == task);
            Ok(Some(match status {
                Some(s) => badge(task, &s.verdict, verdict_color(&s.verdict)),
                None => badge(task, "not run yet", verdict_color("none")),
            }))
        });
        let svg = match read {
            Ok(Some(Some(svg))) => svg,
            // No tick has made the database yet.
            Ok(_) if uptime => badge("uptime 30d", "no data", verdict_color("none")),
            Ok(_) => badge(task, "not run yet", verdict_color("none")),
            Err(e) => return super::routes::database_error(&e),
        };
        match svg.render() {
            Ok(svg) => Response {
                status: 200,
                content_type: "image/svg+xml",
                headers: vec![("Cache-Control", "max-age=60".to_string())],
                body: svg.into_bytes(),
            },
            Err(e) => Response::error(500, format!("rendering the badge: {e}")),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    css: &'static str,
    status: u16,
    message: String,
}

/// A page route's error (JSON from the API's helpers) as a page a person
/// reads, with its status kept.
pub(super) fn as_page(answer: Response) -> Response {
    if answer.status < 400 || !answer.content_type.starts_with("application/json") {
        return answer;
    }
    let message = serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default();
    let page = ErrorPage {
        css: CSS,
        status: answer.status,
        message,
    };
    match page.render() {
        Ok(page) => Response {
            status: answer.status,
            content_type: "text/html; charset=utf-8",
            headers: answer.headers,
            body: page.into_bytes(),
        },
        Err(_) => answer,
    }
}

fn html(rendered: askama::Result<String>) -> Response {
    match rendered {
        Ok(page) => Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            headers: Vec::new(),
            body: page.into_bytes(),
        },
        Err(e) => Response::error(500, format!("rendering the page: {e}")),
    }
}

/// The zone times are shown in: this host's (`TZ`), as an offset.
fn zone(now: Timestamp) -> String {
    let offset = now
        .to_chrono()
        .map(|at| at.with_timezone(&chrono::Local).offset().local_minus_utc())
        .unwrap_or(0);
    if offset == 0 {
        return "UTC".to_string();
    }
    let sign = if offset < 0 { '-' } else { '+' };
    let minutes = offset.unsigned_abs() / 60;
    format!("UTC{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The page's first line: what is not well, or that all is.
fn headline(profiles: &[ProfileView], ran: bool) -> String {
    let plural = |n: usize, one: &str, many: &str| match n {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    };
    let failing = profiles
        .iter()
        .flat_map(|p| &p.tasks)
        .filter(|t| t.verdict != "ok" && t.verdict != "none")
        .count();
    let overdue = profiles.iter().filter(|p| p.overdue).count();
    let mut peers: Vec<&str> = profiles
        .iter()
        .filter(|p| p.unreachable.is_some())
        .map(|p| p.name.as_str())
        .collect();
    peers.dedup();
    let mut parts = Vec::new();
    if !ran {
        parts.push("no tick has run yet".to_string());
    }
    if failing > 0 {
        parts.push(plural(failing, "task not healthy", "tasks not healthy"));
    }
    if overdue > 0 {
        parts.push(plural(overdue, "profile overdue", "profiles overdue"));
    }
    if !peers.is_empty() {
        parts.push(plural(peers.len(), "peer unreachable", "peers unreachable"));
    }
    if parts.is_empty() {
        "all tasks healthy".to_string()
    } else {
        parts.join(", ")
    }
}

/// The enabled profiles of a host where no tick has run (its database
/// is not there yet), with their tasks.
fn never_run(config: &Config) -> Vec<ProfileView> {
    config
        .profiles
        .iter()
        .filter(|p| p.enabled)
        .map(|p| ProfileView {
            name: p.name.clone(),
            peer: None,
            schedule: format!(
                "schedule {} · no tick has run yet (no database at {})",
                p.cron.as_str(),
                config.state.display()
            ),
            zone: String::new(),
            overdue: false,
            unreachable: None,
            notices: Vec::new(),
            tasks: p
                .tasks
                .iter()
                .map(|t| {
                    let days = (0..UPTIME_DAYS)
                        .map(|_| DayCell {
                            class: "none".into(),
                            title: "no ticks recorded".into(),
                        })
                        .collect();
                    task_view(&p.name, &t.name, None, days)
                })
                .collect(),
        })
        .collect()
}

impl Api {
    /// `/v1/status`: what this host's page shows of its profiles, for a
    /// peer's page.
    pub(super) fn status_json(&self, database: &mut Database, now: Timestamp) -> Response {
        let current = self.config.current();
        let config = &current.config;
        match self.read(database, |store| local_profiles(store, config, now)) {
            Ok(profiles) => Response::json(
                200,
                &serde_json::json!({
                    "host": config.host,
                    "profiles": profiles.unwrap_or_else(|| never_run(config)),
                }),
            ),
            Err(e) => super::routes::database_error(&e),
        }
    }
}

/// This host's enabled profiles as the page shows them.
pub(super) fn local_profiles(
    store: &Store,
    config: &Config,
    now: Timestamp,
) -> anyhow::Result<Vec<ProfileView>> {
    let health = super::health::profile_health(store, config, now)?;
    let statuses = store.task_statuses(None)?;
    let silences = store.silences(Some(now))?;
    let mut views = Vec::new();
    for profile in config.profiles.iter().filter(|p| p.enabled) {
        let health = health.iter().find(|h| h.name == profile.name);
        let last = health.and_then(|h| h.last_run);
        let next = next_run(profile, now);
        let mut schedule = format!("schedule {}", profile.cron.as_str());
        match last {
            Some(last) => schedule.push_str(&format!(" · last run {last}")),
            None => schedule.push_str(" · no tick has run yet"),
        }
        if let Some(next) = next {
            schedule.push_str(&format!(" · next {next}"));
        }
        let mut notices = Vec::new();
        if let Some((ends, reason)) = crate::silence::maintenance(&profile.maintenance, now) {
            notices.push(format!("maintenance until {ends}: {reason}"));
        }
        // A silence of a task of this profile (one given no profile
        // covers the task wherever it is).
        for silence in silences.iter().filter(|s| {
            profile
                .tasks
                .iter()
                .any(|t| s.of_task(&profile.name, &t.name))
        }) {
            notices.push(format!(
                "{} {} until {} by {}: {}",
                silence.task,
                silence.held(),
                silence.ends_at,
                silence.created_by,
                silence.reason
            ));
        }
        let tasks = profile
            .tasks
            .iter()
            .map(|task| {
                let status = statuses
                    .iter()
                    .find(|s| s.profile == profile.name && s.task == task.name);
                let days = uptime_days(store, &profile.name, &task.name, now)?;
                let mut view = task_view(&profile.name, &task.name, status, days);
                view.silenced = silences
                    .iter()
                    .find(|s| s.of_task(&profile.name, &task.name))
                    .map(|s| format!("{} until {}", s.held(), s.ends_at));
                Ok(view)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        views.push(ProfileView {
            name: profile.name.clone(),
            peer: None,
            schedule,
            zone: zone(now),
            overdue: health.is_some_and(|h| h.overdue),
            unreachable: None,
            notices,
            tasks,
        });
    }
    Ok(views)
}

fn next_run(profile: &Profile, now: Timestamp) -> Option<Timestamp> {
    let at = now.to_chrono()?.with_timezone(&chrono::Local);
    let next = profile.cron.next_after(&at)?;
    Some(Timestamp(next.timestamp_millis()))
}

fn task_view(
    profile: &str,
    task: &str,
    status: Option<&TaskStatus>,
    days: Vec<DayCell>,
) -> TaskView {
    TaskView {
        name: task.to_string(),
        link: status.map(|_| format!("/task/{}/{}", escape_path(profile), escape_path(task))),
        verdict: status.map_or("none".to_string(), |s| s.verdict.clone()),
        why: status.map(|s| s.why.clone()).unwrap_or_default(),
        summary: status.map_or("no tick of it yet".to_string(), |s| s.summary.clone()),
        since: status.map(|s| s.since.to_string()).unwrap_or_default(),
        silenced: None,
        days,
    }
}

/// One cell a day for the last 90 days (UTC days), from the history of
/// the task's health: all ticks healthy, most, or fewer.
fn uptime_days(
    store: &Store,
    profile: &str,
    task: &str,
    now: Timestamp,
) -> anyhow::Result<Vec<DayCell>> {
    let today = now.0.div_euclid(DAY_MS) * DAY_MS;
    let first = today - (UPTIME_DAYS - 1) * DAY_MS;
    let points =
        store.signal_points(profile, task, HEALTHY, Timestamp(first), now, Some(DAY_MS))?;
    Ok((0..UPTIME_DAYS)
        .map(|day| {
            let start = first + day * DAY_MS;
            let date = Timestamp(start).rfc3339();
            let date = date.get(..10).unwrap_or(&date).to_string();
            match points.iter().find(|p| p.at.0 == start) {
                None => DayCell {
                    class: "none".into(),
                    title: format!("{date}: no ticks recorded"),
                },
                Some(point) => DayCell {
                    class: uptime_class(point.avg).into(),
                    title: format!(
                        "{date}: {} up ({} of {} ticks healthy)",
                        percent(point.avg),
                        (point.avg * point.count as f64).round() as i64,
                        point.count
                    ),
                },
            }
        })
        .collect())
}

/// A day's class: every tick healthy, at least 99 %, or fewer.
fn uptime_class(share: f64) -> &'static str {
    if share >= 1.0 {
        "ok"
    } else if share >= 0.99 {
        "warning"
    } else {
        "failing"
    }
}

fn percent(share: f64) -> String {
    let value = share * 100.0;
    if value >= 99.995 || value == 0.0 {
        format!("{value:.0}%")
    } else {
        format!("{value:.2}%")
    }
}

fn task_page(
    store: &Store,
    config: &Config,
    profile_name: &str,
    task_name: &str,
    (label, span, step): (&'static str, i64, Option<i64>),
    now: Timestamp,
) -> anyhow::Result<Option<TaskPage>> {
    let status = store
        .task_statuses(Some(profile_name))?
        .into_iter()
        .find(|s| s.task == task_name);
    let Some(status) = status else {
        return Ok(None);
    };
    let since = now.plus_millis(-span);
    let task = configured_task(config, profile_name, task_name);
    let history: Vec<_> = store
        .history(&HistoryQuery {
            source: Some(task_name.to_string()),
            since: Some(since),
            ..HistoryQuery::newest(500)
        })?
        .into_iter()
        .filter(|row| row.profile == profile_name)
        .collect();
    let restarts: Vec<Mark> = history
        .iter()
        .filter(|row| row.status == "restarted" || row.status == "restart_failed")
        .map(|row| Mark {
            x: x_at(row.at, since, span),
            y: String::new(),
            title: format!("{} {}: {}", row.at, row.status, row.summary),
        })
        .collect();
    let mut charts = Vec::new();
    // Its health first (1 healthy, 0 not), restarts marked on every chart.
    let mut series = store.signal_series(Some(profile_name), Some(task_name))?;
    series.sort_by_key(|s| s.signal != HEALTHY);
    for series in series {
        let points =
            store.signal_points(profile_name, task_name, &series.signal, since, now, step)?;
        let Some((min, avg, max, _)) = crate::history::figures(&points) else {
            continue;
        };
        let limits = task
            .map(|t| thresholds(t, &series.signal))
            .unwrap_or_default();
        charts.push(chart(
            &series.signal,
            &points,
            (min, avg, max),
            &limits,
            since,
            span,
            &restarts,
        ));
    }
    let ranges = RANGES
        .iter()
        .map(|(other, ..)| RangeLink {
            label: other,
            link: format!(
                "/task/{}/{}?range={other}",
                escape_path(profile_name),
                escape_path(task_name)
            ),
            current: *other == label,
        })
        .collect();
    let timeline = history
        .into_iter()
        .map(|row| TimelineRow {
            class: match row.status.as_str() {
                "firing" | "escalated" | "restart_failed" => "failing",
                "reminder" | "pending" => "warning",
                "resolved" | "cleared" => "ok",
                "restarted" => "held",
                _ => "none",
            },
            at: row.at,
            rule: row.rule,
            status: row.status,
            summary: row.summary,
        })
        .collect();
    let mut notices: Vec<String> = store
        .silences(Some(now))?
        .into_iter()
        .filter(|s| s.of_task(profile_name, task_name))
        .map(|s| {
            format!(
                "{} until {} by {}: {}",
                s.held(),
                s.ends_at,
                s.created_by,
                s.reason
            )
        })
        .collect();
    if task.is_none() {
        notices.insert(
            0,
            format!(
                "not in jobs.yaml any more: not watched since its last tick ({})",
                status.at
            ),
        );
    }
    Ok(Some(TaskPage {
        title: format!("{profile_name}/{task_name}: {}", status.verdict),
        css: CSS,
        profile: profile_name.to_string(),
        task: task_name.to_string(),
        verdict: status.verdict,
        why: status.why,
        summary: status.summary,
        since: status.since.to_string(),
        range: label,
        ranges,
        notices,
        charts,
        timeline,
    }))
}

/// The values a task's rules compare `signal` with (a rule on the signal,
/// or the rule whose value the series is), with the rule's name.
fn thresholds(task: &crate::config::Task, signal: &str) -> Vec<(f64, String)> {
    let mut out = Vec::new();
    for rule in &task.rules {
        let reads = match &rule.kind {
            RuleKind::Signal { signal: s, .. } => s.signal_name() == Some(signal),
            RuleKind::Text { .. } | RuleKind::Age { .. } => false,
            _ => rule.name == signal,
        };
        let Some(condition) = rule.condition.filter(|_| reads) else {
            continue;
        };
        match condition.threshold {
            Threshold::Value(limit) => out.push((limit, format!("{}: {condition}", rule.name))),
            Threshold::Range(range) => {
                for end in [range.start, range.end]
                    .into_iter()
                    .filter(|v| v.is_finite())
                {
                    out.push((end, format!("{}: {condition}", rule.name)));
                }
            }
            Threshold::TimesPrevious(_) => {}
        }
    }
    out
}

/// A signal's chart in a 1000×200 box: the line of its values (of each
/// bucket's average, with the band from its min to its max, so an hour's
/// breach is never averaged away), its thresholds and restarts.
fn chart(
    signal: &str,
    points: &[Point],
    (min, avg, max): (f64, f64, f64),
    limits: &[(f64, String)],
    since: Timestamp,
    span: i64,
    restarts: &[Mark],
) -> Chart {
    // The scale holds the values and the thresholds drawn on them; halves
    // are compared, so values near f64's limits stay on the chart.
    let low = limits.iter().map(|l| l.0).fold(min, f64::min);
    let high = limits.iter().map(|l| l.0).fold(max, f64::max);
    let (low, high) = crate::history::scale(signal, low, high);
    let y_of = |v: f64| format!("{:.1}", 190.0 - crate::history::share(v, low, high) * 180.0);
    let line = |value: fn(&Point) -> f64, points: &mut dyn Iterator<Item = &Point>| {
        points
            .map(|p| format!("{},{}", x_at(p.at, since, span), y_of(value(p))))
            .collect::<Vec<_>>()
    };
    let band = if points.iter().any(|p| p.max > p.min) {
        let mut edge = line(|p| p.max, &mut points.iter());
        edge.extend(line(|p| p.min, &mut points.iter().rev()));
        edge.join(" ")
    } else {
        String::new()
    };
    Chart {
        signal: signal.to_string(),
        min: format_value(signal, min),
        avg: format_value(signal, crate::history::thousandths(avg)),
        max: format_value(signal, max),
        top: format_value(signal, high),
        bottom: format_value(signal, low),
        from: since.to_string(),
        points: line(|p| p.avg, &mut points.iter()).join(" "),
        band,
        thresholds: limits
            .iter()
            .map(|(value, title)| Mark {
                x: String::new(),
                y: y_of(*value),
                title: title.clone(),
            })
            .collect(),
        restarts: restarts
            .iter()
            .map(|m| Mark {
                x: m.x.clone(),
                y: String::new(),
                title: m.title.clone(),
            })
            .collect(),
    }
}

/// Where `at` is across a chart of `span` ms from `since` (0–1000).
fn x_at(at: Timestamp, since: Timestamp, span: i64) -> String {
    let x = (at.0 - since.0) as f64 / span as f64 * 1000.0;
    format!("{:.1}", x.clamp(0.0, 1000.0))
}

/// Task `task` of profile `profile` in jobs.yaml, if it is there.
fn configured_task<'c>(
    config: &'c Config,
    profile: &str,
    task: &str,
) -> Option<&'c crate::config::Task> {
    config
        .profile(profile)?
        .tasks
        .iter()
        .find(|t| t.name == task)
}

/// A shields-style badge: grey label, coloured message.
fn badge(label: &str, message: &str, color: &'static str) -> Badge {
    // Verdana 11px: about 7 px a character, 10 px of padding each side.
    let width_of = |text: &str| text.chars().count() * 7 + 10;
    let label_width = width_of(label);
    let message_width = width_of(message);
    Badge {
        label: label.to_string(),
        message: message.to_string(),
        color,
        width: label_width + message_width,
        label_width,
        message_width,
    }
}

/// The shields colours by verdict.
pub(super) fn verdict_color(verdict: &str) -> &'static str {
    match verdict {
        "ok" => "#4c1",
        "warning" => "#dfb317",
        "failing" => "#e05d44",
        "held" => "#8957e5",
        "pending" => "#007ec6",
        _ => "#9f9f9f",
    }
}

fn uptime_color(share: f64) -> &'static str {
    match uptime_class(share) {
        "ok" => "#4c1",
        "warning" => "#dfb317",
        _ => "#e05d44",
    }
}

/// A name as one path segment of a link.
fn escape_path(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(minute: i64, value: f64) -> Point {
        Point::sample(Timestamp(minute * 60_000), value)
    }

    #[test]
    fn values_near_the_limits_of_f64_stay_on_the_chart() {
        let points = [
            point(0, 1e308),
            point(1, -1.797_693_134_862_315_7e308),
            point(2, 5.0),
        ];
        let (min, avg, max, _) = crate::history::figures(&points).unwrap();
        let limits = [(10.0, "high".to_string()), (-1e300, "low".to_string())];
        let drawn = chart(
            "v",
            &points,
            (min, avg, max),
            &limits,
            Timestamp(0),
            180_000,
            &[],
        );
        let numbers: Vec<f64> = drawn
            .points
            .split([' ', ','])
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(numbers.iter().all(|n| n.is_finite()), "{}", drawn.points);
        assert!(!drawn.avg.contains("inf"), "{}", drawn.avg);
        for line in &drawn.thresholds {
            let y: f64 = line.y.parse().unwrap();
            assert!((10.0..=190.0).contains(&y), "{}", line.y);
        }
    }

    #[test]
    fn a_flat_series_is_drawn_mid_chart_and_a_healthy_one_at_the_top() {
        let flat = [point(0, 7.0), point(1, 7.0)];
        let drawn = chart(
            "lag",
            &flat,
            (7.0, 7.0, 7.0),
            &[],
            Timestamp(0),
            120_000,
            &[],
        );
        assert_eq!(drawn.points, "0.0,100.0 500.0,100.0");
        let up = [point(0, 1.0), point(1, 1.0)];
        let drawn = chart(
            HEALTHY,
            &up,
            (1.0, 1.0, 1.0),
            &[],
            Timestamp(0),
            120_000,
            &[],
        );
        assert_eq!(drawn.points, "0.0,10.0 500.0,10.0");
        assert_eq!((drawn.top.as_str(), drawn.bottom.as_str()), ("1", "0"));
    }
}
