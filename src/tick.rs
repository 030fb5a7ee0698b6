//! One tick, top to bottom: lock → prior state → observe → evaluate →
//! commit → deliver. The only function that sequences the pipeline.

use crate::clock::Timestamp;
use crate::config::{Config, Profile, Task};
use crate::config::{Notifier, NotifierKind};
use crate::error::Error;
use crate::evaluate::{self, Outcome, Prior, RestartPlan, TaskRun};
use crate::lock::{self, Lock};
use crate::notify::{self, Sent};
use crate::notify::{Envelope, MessageKind, Payload};
use crate::probe::{self, Observation, TaskState};
use crate::remediate::{self, Carried};
use crate::store::{OutboxRow, Store, TickRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// What `monitor run` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub profile: String,
    pub dry_run: bool,
    pub task: Option<String>,
    /// jobs.yaml no longer loads: this tick runs on the last good one.
    pub rejected: Option<Rejected>,
}

/// Why jobs.yaml was rejected, and since when the last good one is kept.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// file:line:column and key, as `check-config` says it.
    pub error: String,
    pub saved_at: Timestamp,
}

/// The `jobs.yaml` task's observation: failing while the file is rejected,
/// ok once it loads again (which resolves its alert).
fn config_observation(rejected: Option<&Rejected>) -> Observation {
    let (status, summary) = match rejected {
        Some(rejected) => (
            probe::CheckStatus::Failed,
            format!(
                "jobs.yaml is rejected, so the checks run on the last good one (saved {}) until it loads: {}",
                rejected.saved_at, rejected.error
            ),
        ),
        None => (probe::CheckStatus::Ok, "jobs.yaml loads again".to_string()),
    };
    let mut observation = Observation::default();
    observation.checks.push(probe::Check {
        probe: "config",
        status,
        summary,
    });
    observation
}

/// How a tick ended.
#[derive(Debug)]
pub enum TickResult {
    /// Another run of the profile holds the lock.
    Skipped {
        pid: Option<u32>,
    },
    Ran(Box<TickReport>),
}

/// What a tick saw and did, for the summary.
#[derive(Debug)]
pub struct TickReport {
    pub profile: String,
    pub host: String,
    pub dry_run: bool,
    pub started_at: Timestamp,
    pub elapsed: Duration,
    pub tasks: Vec<TaskReport>,
    pub skipped_tasks: Vec<String>,
    pub outcome: Outcome,
    pub deliveries: Vec<Delivery>,
    /// Messages of stdout notifiers, printed with the summary.
    pub console: Vec<String>,
    /// What happened around the checks: pre-run sync, heartbeat, holds.
    pub notes: Vec<String>,
    /// Receivers with notifications waiting after failing, this tick or
    /// earlier: nobody heard what they should have.
    pub undelivered: Vec<Undelivered>,
}

impl TickReport {
    pub fn healthy(&self) -> bool {
        self.outcome.healthy()
    }
}

/// One receiver's backlog of failed notifications.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Undelivered {
    pub receiver: String,
    pub waiting: usize,
    /// When the oldest of them was queued.
    pub since: Timestamp,
    pub error: String,
}

#[derive(Debug)]
pub struct TaskReport {
    pub name: String,
    pub observation: Observation,
}

/// One outbox entry's fate this tick.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    pub notifier: String,
    /// The one URL of an Alertmanager notifier this went to, as shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub message_id: String,
    pub text: String,
    #[serde(flatten)]
    pub result: DeliveryResult,
    /// `(task, rule)` of every message it carried.
    #[serde(skip)]
    pub carries: Vec<(String, String)>,
    /// When each outbox row it carried was queued.
    #[serde(skip)]
    pub queued: Vec<Timestamp>,
    /// Since when its receiver has been failing, when known.
    #[serde(skip)]
    pub failing_since: Option<Timestamp>,
}

impl Delivery {
    fn of(notifier: &str, payload: &Payload, result: DeliveryResult) -> Delivery {
        Delivery {
            notifier: notifier.to_string(),
            to: None,
            message_id: payload.id(),
            text: payload.text(),
            result,
            carries: payload
                .messages()
                .iter()
                .map(|m| (m.task.clone(), m.rule.clone()))
                .collect(),
            queued: Vec::new(),
            failing_since: None,
        }
    }

    /// `am`, or `am at http://127.0.0.1:9093` for one URL of a notifier.
    pub fn receiver(&self) -> String {
        match &self.to {
            Some(to) => format!("{} at {to}", self.notifier),
            None => self.notifier.clone(),
        }
    }

    pub fn failed(&self) -> bool {
        matches!(
            self.result,
            DeliveryResult::Failed { .. } | DeliveryResult::GaveUp { .. }
        )
    }
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DeliveryResult {
    Delivered,
    Failed {
        error: String,
        retry_at: Timestamp,
    },
    GaveUp {
        error: String,
    },
    /// `--dry-run`: what would have been sent.
    WouldSend,
}

/// Runs one tick of `options.profile`.
pub fn run(config: &Config, options: &RunOptions, now: Timestamp) -> Result<TickResult, Error> {
    let started = Instant::now();
    let profile = find_profile(config, &options.profile)?;
    let tasks = select_tasks(config, profile, options.task.as_deref())?;
    let _lock = if options.dry_run {
        None
    } else {
        match lock::acquire(&config.state_dir(), &profile.name).map_err(Error::Tool)? {
            Lock::Acquired(lock) => Some(lock),
            Lock::Busy { pid, .. } => {
                let holder = pid
                    .map(|p| format!("pid {p}"))
                    .unwrap_or_else(|| "pid unknown".into());
                log::info!("skipped: {} already running ({holder})", profile.name);
                return Ok(TickResult::Skipped { pid });
            }
        }
    };
    let mark = probe::process_group::mark_of(&profile.name, &config.state_dir());
    let mut notes = Vec::new();
    if let Some(lock) = &_lock
        && let Some(pid) = lock.unclean
    {
        let killed = probe::process_group::sweep_marked(&mark);
        if !killed.is_empty() {
            let note = format!(
                "the tick of pid {pid} was killed before it ended; what it started for probes still ran and is now killed: {}",
                killed.join(", ")
            );
            log::warn!("{note}");
            notes.push(note);
        }
    }
    probe::process_group::stop_note_for(&profile.name);
    probe::process_group::mark_probes(mark);
    probe::host_limit::set_limit(config.defaults.connections_per_host);
    let mut store = if options.dry_run {
        Store::open_snapshot(&config.state).map_err(Error::Tool)?
    } else {
        Some(Store::open(&config.state).map_err(Error::Tool)?)
    };
    // A safety net, not a reason to stop: an unreadable answer skips it
    // (the hourly self check reports a damaged database).
    let newest = match &store {
        Some(store) => store.newest_run().unwrap_or_else(|e| {
            log::warn!("reading the newest tick's time: {e:#}; the clock is not checked");
            None
        }),
        None => None,
    };
    if let Some(newest) = newest {
        check_clock(now, newest)?;
    }
    let mut prior = match &store {
        Some(store) => store.load_prior(&profile.name, now).map_err(Error::Tool)?,
        None => Prior::default(),
    };
    let clock_back = newest
        .filter(|newest| newest.0 - now.0 > crate::clock::FUTURE_SLACK_MS)
        .map(|newest| {
            let why = format!(
                "the clock says {}, {} before the newest stored tick ({}): a clock that ran ahead and was set back; times after now count as now (cooldowns, restarts, settle times)",
                now.rfc3339(),
                crate::clock::human_duration(newest.0 - now.0),
                newest.rfc3339()
            );
            log::warn!("{why}");
            why
        });
    if clock_back.is_some() {
        let books = clamp_to(&mut prior, now);
        // Stored at once: the restart book is written only by a restart,
        // and a future restart time clamped in memory alone would be "just
        // now" again every tick, holding restarts for as long as the clock
        // had been ahead.
        if let Some(store) = store.as_mut().filter(|_| !options.dry_run) {
            for (task, entries) in books {
                let namespace = format!("{}/{task}", profile.name);
                for (key, value) in entries {
                    store
                        .set_state(&namespace, &key, Some(&value), now)
                        .map_err(Error::Tool)?;
                }
            }
        }
    }
    notes.extend(clock_back);
    log::debug!(
        "{}: {} alert states, {} silences and the state of {} tasks loaded from {}",
        profile.name,
        prior.alerts.len(),
        prior.silences.len(),
        prior.tasks.len(),
        config.state.display()
    );
    // monitor watching itself: its git sync, and a jobs.yaml it rejected.
    let mut watchers: Vec<(Task, Observation)> = Vec::new();
    if let Some(pre_run) = &profile.pre_run {
        let (note, result) = pre_run_sync(pre_run, options.dry_run);
        notes.push(note);
        if let Some(result) = result {
            let observation =
                crate::pre_run::observe(&result, prior.tasks.get(crate::config::GIT_SYNC_TASK));
            watchers.push((Task::watcher(crate::config::GIT_SYNC_TASK), observation));
        }
    }
    if let Some(rejected) = &options.rejected {
        log::error!(
            "{}: jobs.yaml is rejected; running on the last good one (saved {}): {}",
            profile.name,
            rejected.saved_at,
            rejected.error
        );
    }
    let config_alert_open = prior
        .alerts
        .keys()
        .any(|k| k.task == crate::config::CONFIG_TASK);
    if options.rejected.is_some() || config_alert_open {
        watchers.push((
            Task::watcher(crate::config::CONFIG_TASK),
            config_observation(options.rejected.as_ref()),
        ));
    }
    if let Some((ends, reason)) = crate::silence::maintenance(&profile.maintenance, now) {
        notes.push(format!(
            "maintenance until {ends} ({reason}): alerts are recorded, nothing is sent or restarted"
        ));
    }
    let concurrency = profile.concurrency.unwrap_or(config.defaults.concurrency);
    let mode = if options.dry_run {
        probe::Mode::DryRun
    } else {
        probe::Mode::Tick
    };
    let observations = observe_all(config, &tasks, &prior.tasks, now, mode, concurrency);
    probe::process_group::kill_orphans();
    let tasks: Vec<&Task> = watchers.iter().map(|(t, _)| t).chain(tasks).collect();
    let observations: Vec<Observation> = watchers
        .iter()
        .map(|(_, o)| o.clone())
        .chain(observations)
        .collect();
    let runs: Vec<TaskRun> = tasks
        .iter()
        .zip(&observations)
        .map(|(task, observation)| TaskRun {
            task,
            observation: observation.clone(),
        })
        .collect();
    for run in &runs {
        log::debug!(
            "{}/{}: observed in {} ms: {}",
            profile.name,
            run.task.name,
            run.observation.elapsed_ms,
            run.observation
                .checks
                .iter()
                .map(|c| format!("{} {}", c.probe, c.status.label()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let whole_profile = options.task.is_none();
    let evaluation = evaluate::evaluate(config, profile, &prior, &runs, whole_profile, now);
    let plans = evaluation.plans();
    for plan in &plans {
        log::debug!(
            "{}/{}: a restart is due ({}): {}",
            profile.name,
            plan.task,
            plan.trigger,
            plan.summary
        );
    }
    for task in &tasks {
        if let Some(begun) = prior
            .tasks
            .get(&task.name)
            .and_then(|s| s.get(remediate::BEGUN_KEY))
            .filter(|v| !v.is_empty() && *v != "0")
        {
            let note = format!(
                "a restart of {} begun at {} by a tick that never finished (killed?) was not concluded; it counts for the cooldown and max",
                task.name,
                begun.parse().map(Timestamp).unwrap_or(now)
            );
            log::warn!("{note}");
            notes.push(note);
            if let Some(store) = store.as_mut().filter(|_| !options.dry_run) {
                let namespace = format!("{}/{}", profile.name, task.name);
                let _ = store.set_state(&namespace, remediate::BEGUN_KEY, Some("0"), now);
            }
        }
    }
    if let Some(store) = store.as_mut().filter(|_| !options.dry_run) {
        // Booked before it is carried out: a tick killed while restarting
        // leaves the restart counted (cooldown, max), not forgotten.
        for plan in &plans {
            let Some(task) = tasks.iter().find(|t| t.name == plan.task) else {
                continue;
            };
            let Some(remediate) = &task.remediate else {
                continue;
            };
            let namespace = format!("{}/{}", profile.name, task.name);
            for (key, value) in remediate::begun(prior.tasks.get(&task.name), remediate, now) {
                if let Err(e) = store.set_state(&namespace, &key, Some(&value), now) {
                    log::warn!("booking the restart of {}: {e:#}", task.name);
                }
            }
        }
    }
    let carried = remediate_all(config, profile, &prior, &runs, &plans, options.dry_run, now);
    let outcome = evaluation.conclude(&carried);
    let finished_at = now.plus_millis(i64::try_from(started.elapsed().as_millis()).unwrap_or(0));
    let skipped_tasks = profile
        .tasks
        .iter()
        .filter(|t| !t.enabled)
        .map(|t| t.name.clone())
        .collect();
    let mut report = TickReport {
        profile: profile.name.clone(),
        host: config.host.clone(),
        dry_run: options.dry_run,
        started_at: now,
        elapsed: Duration::ZERO,
        tasks: tasks
            .iter()
            .zip(observations)
            .map(|(task, observation)| TaskReport {
                name: task.name.clone(),
                observation,
            })
            .collect(),
        skipped_tasks,
        outcome,
        deliveries: Vec::new(),
        console: Vec::new(),
        notes,
        undelivered: Vec::new(),
    };
    let envelopes = notify::envelopes(
        config,
        profile,
        &report.outcome.outgoing,
        &alerts_after(&prior, &report.outcome),
        now,
    );
    match store {
        Some(mut store) if !options.dry_run => {
            commit(
                &mut store,
                config,
                profile,
                &report,
                &envelopes,
                now,
                finished_at,
            )?;
            deliver(&mut store, config, profile, now, &mut report)?;
            if let Some(heartbeat) = &profile.heartbeat {
                report.notes.push(ping(heartbeat, report.healthy()));
            }
            // At most an hour past what was stored before this tick: a
            // clock that jumped ahead must not prune everything.
            prune(
                &mut store,
                config,
                newest.map_or(now, |newest| now.min(newest.plus_millis(3_600_000))),
            );
        }
        snapshot => preview_deliveries(snapshot.as_ref(), &profile.name, &envelopes, &mut report)?,
    }
    probe::process_group::kill_leftovers();
    report.elapsed = started.elapsed();
    Ok(TickResult::Ran(Box::new(report)))
}

/// A tick more than this after the newest stored one is refused unless
/// MONITOR_CLOCK_JUMP_OK=1 says the clock is right (a host off a month).
const CLOCK_JUMP: i64 = 30 * 86_400_000;

/// Makes every time a clock that ran ahead left in `prior` at most `now`:
/// a notification "sent" in the future would hold reminders, a restart or
/// a settle time there would hold restarts and alerts, until real time
/// caught up.
/// Returns each task's clamped restart book, to store.
fn clamp_to(prior: &mut Prior, now: Timestamp) -> Vec<(String, Vec<(String, String)>)> {
    for state in prior.alerts.values_mut() {
        state.since = state.since.min(now);
        state.bad_since = state.bad_since.min(now);
        for time in [
            &mut state.good_since,
            &mut state.last_notified,
            &mut state.opened_at,
        ] {
            *time = time.map(|t| t.min(now));
        }
    }
    let mut books = Vec::new();
    for (name, task) in prior.tasks.iter_mut() {
        if let Some(book) = remediate::Book::clamped(task, now) {
            task.extend(book.entries());
            books.push((name.clone(), book.entries()));
        }
    }
    books
}

/// Refuses a clock far ahead of the newest stored tick (a bad RTC, a typo
/// in MONITOR_NOW): acting on it would expire every cooldown and silence.
fn check_clock(now: Timestamp, newest: Timestamp) -> Result<(), Error> {
    let trusted = std::env::var("MONITOR_CLOCK_JUMP_OK").is_ok_and(|v| v.trim() == "1");
    if now.0 - newest.0 > CLOCK_JUMP && !trusted {
        return Err(Error::Usage(format!(
            "the clock says {}, {} after the last tick ({}): if that is right (the host was off that long), run once with MONITOR_CLOCK_JUMP_OK=1; otherwise fix the clock (timedatectl, NTP)",
            now.rfc3339(),
            crate::clock::human_duration(now.0 - newest.0),
            newest.rfc3339()
        )));
    }
    Ok(())
}

/// Seed 001's sync before run: best effort, logged, never blocking checks.
/// The note for the summary, and what the sync did (none in a dry run).
fn pre_run_sync(
    pre_run: &crate::config::PreRun,
    dry_run: bool,
) -> (String, Option<Result<String, String>>) {
    let sync = &pre_run.git_sync;
    if dry_run {
        let note = format!(
            "pre-run git sync: would fetch {} {} and reset {} hard",
            sync.remote,
            sync.branch,
            sync.repo.display()
        );
        return (note, None);
    }
    let result = crate::pre_run::git_sync(sync);
    let note = match &result {
        Ok(done) => {
            log::info!("pre-run git sync: {done}");
            format!("pre-run git sync: {done}")
        }
        Err(why) => {
            log::warn!("pre-run git sync failed: {why}; checking against the current checkout");
            format!("pre-run git sync failed: {why}; checks ran against the current checkout")
        }
    };
    (note, Some(result))
}

/// Pings the profile's heartbeat URL (healthchecks.io style): `url` when the
/// tick found nothing wrong, `url/fail` otherwise. Best effort.
fn ping(heartbeat: &crate::config::Heartbeat, healthy: bool) -> String {
    let base = heartbeat.url.expose().trim_end_matches('/');
    let url = if healthy {
        base.to_string()
    } else {
        format!("{base}/fail")
    };
    let timeout = heartbeat
        .timeout
        .map(|t| t.std())
        .unwrap_or(Duration::from_secs(10));
    let settings = crate::probe::http::ClientSettings {
        timeout,
        tls_verify: true,
        ca_file: None,
    };
    let result =
        crate::probe::http::agent(&settings).and_then(|agent| match agent.get(&url).call() {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
            Err(e) => Err(crate::probe::http::describe_error(&e, timeout)),
        });
    let what = if healthy {
        "heartbeat sent"
    } else {
        "heartbeat sent as a failure"
    };
    match result {
        Ok(()) => what.to_string(),
        Err(why) => {
            let why = notify::redact(&why, &[heartbeat.url.expose()]);
            log::warn!("heartbeat failed: {why}");
            format!("heartbeat failed: {why}")
        }
    }
}

/// Rows deleted per table and tick by retention: enough to keep up with
/// any tick rate, small enough to cost milliseconds.
const PRUNE_BATCH: usize = 2_000;

/// Retention: history, runs and finished outbox entries older than
/// `retention` go, a bounded batch per tick. A failure only logs.
fn prune(store: &mut Store, config: &Config, now: Timestamp) {
    let cutoff = now.plus_millis(-config.defaults.retention.as_millis());
    // Batch after batch (each its own transaction) while there is more and
    // the tick's budget for it lasts: a backlog shrinks fast, a tick stays
    // short.
    let started = Instant::now();
    let mut total = 0;
    while started.elapsed() < PRUNE_BUDGET {
        match store.prune(cutoff, PRUNE_BATCH) {
            Ok(0) => break,
            Ok(deleted) => total += deleted,
            Err(e) => {
                log::warn!("retention: pruning failed: {e:#}");
                break;
            }
        }
    }
    if total > 0 {
        log::debug!(
            "retention: pruned {total} rows older than {cutoff} in {} ms",
            started.elapsed().as_millis()
        );
    }
}

/// How long a tick may spend pruning (it stops after the batch running).
const PRUNE_BUDGET: Duration = Duration::from_millis(250);

/// Carries out the restarts `evaluate` planned, each on its own thread (they
/// wait for health), and says what became of each, by task. A dry run only
/// describes them.
fn remediate_all(
    config: &Config,
    profile: &Profile,
    prior: &Prior,
    runs: &[TaskRun],
    plans: &[RestartPlan],
    dry_run: bool,
    now: Timestamp,
) -> BTreeMap<String, Carried> {
    let output_dir = config.state_dir().join("output");
    std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .iter()
            .filter_map(|plan| {
                let run = runs.iter().find(|r| r.task.name == plan.task)?;
                let remediate = run.task.remediate.as_ref()?;
                if !dry_run {
                    // Said before it starts: a restart can take minutes, and
                    // a tick killed during it leaves this line behind.
                    log::warn!(
                        "{}/{}: restarting because {}",
                        profile.name,
                        run.task.name,
                        plan.summary
                    );
                }
                let default_output =
                    output_dir.join(format!("{}.{}.log", profile.name, run.task.name));
                let mut state = prior.tasks.get(&run.task.name).cloned().unwrap_or_default();
                state.extend(run.observation.state.clone());
                let timeout = run.task.timeout.unwrap_or(config.defaults.timeout).std();
                Some(scope.spawn(move || {
                    if dry_run {
                        let what = remediate::plan(remediate, &default_output);
                        return (run.task.name.clone(), Carried::Described(what));
                    }
                    let environment = remediate::Environment {
                        default_output: &default_output,
                        now,
                        state: &state,
                        timeout,
                    };
                    let attempt = remediate::execute(run.task, remediate, &environment);
                    (run.task.name.clone(), Carried::Attempted(attempt))
                }))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

fn find_profile<'c>(config: &'c Config, name: &str) -> Result<&'c Profile, Error> {
    config.profile(name).ok_or_else(|| {
        let known: Vec<&str> = config.profiles.iter().map(|p| p.name.as_str()).collect();
        Error::Usage(format!(
            "no profile `{name}` in {}: the profiles are {}",
            config.path.display(),
            known.join(", ")
        ))
    })
}

fn select_tasks<'c>(
    config: &'c Config,
    profile: &'c Profile,
    only: Option<&str>,
) -> Result<Vec<&'c Task>, Error> {
    match only {
        None => Ok(profile.tasks.iter().filter(|t| t.enabled).collect()),
        Some(name) => match profile.tasks.iter().find(|t| t.name == name) {
            Some(task) => Ok(vec![task]),
            None => {
                let known: Vec<&str> = profile.tasks.iter().map(|t| t.name.as_str()).collect();
                Err(Error::Usage(format!(
                    "no task `{name}` in profile `{}` of {}: its tasks are {}",
                    profile.name,
                    config.path.display(),
                    known.join(", ")
                )))
            }
        },
    }
}

/// Gap between the starts of consecutive tasks of a tick.
const START_SPACING: Duration = Duration::from_millis(1);

/// One task waiting for a worker: owned, because a worker that outlives its
/// deadline is abandoned rather than joined.
struct Job {
    index: usize,
    task: Task,
    timeout: Duration,
    state: TaskState,
}

/// Observes every task concurrently, at most `concurrency` at once, each
/// under its own timeout. A task still running at its deadline (plus a
/// short grace) is reported as timed out and abandoned.
fn observe_all(
    config: &Config,
    tasks: &[&Task],
    task_state: &BTreeMap<String, TaskState>,
    now: Timestamp,
    mode: probe::Mode,
    concurrency: usize,
) -> Vec<Observation> {
    let timeouts: Vec<Duration> = tasks
        .iter()
        .map(|t| t.timeout.unwrap_or(config.defaults.timeout).std())
        .collect();
    let workers = concurrency.clamp(1, tasks.len().max(1));
    let jobs: Vec<Job> = tasks
        .iter()
        .enumerate()
        .map(|(index, task)| Job {
            index,
            task: (*task).clone(),
            timeout: timeouts[index],
            state: task_state.get(&task.name).cloned().unwrap_or_default(),
        })
        .collect();
    let queue = Arc::new(Mutex::new(jobs.into_iter()));
    let (sender, receiver) = mpsc::channel::<Progress>();
    let started = Instant::now();
    for _ in 0..workers {
        let queue = Arc::clone(&queue);
        let sender = sender.clone();
        std::thread::spawn(move || {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some(job) = next else {
                    break;
                };
                // Spread task starts a little, so twenty checks of one
                // service do not hit its listen queue in the same instant.
                let start_at =
                    started + START_SPACING * u32::try_from(job.index).unwrap_or(u32::MAX).min(200);
                std::thread::sleep(start_at.saturating_duration_since(Instant::now()));
                let deadline = Instant::now() + job.timeout;
                if sender.send(Progress::Started(job.index, deadline)).is_err() {
                    break;
                }
                let context = probe::Context {
                    now,
                    mode,
                    deadline,
                    timeout: job.timeout,
                    state: &job.state,
                };
                let observation = probe::observe(&job.task, &context);
                if sender
                    .send(Progress::Done(job.index, Box::new(observation)))
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    drop(sender);
    // The latest a task can finish: every wave of workers using its whole timeout.
    let waves = u32::try_from(tasks.len().div_ceil(workers)).unwrap_or(u32::MAX);
    let longest = timeouts.iter().copied().max().unwrap_or_default();
    let give_up_at = started + longest * waves + TASK_GRACE;
    let mut results: Vec<Option<Observation>> = vec![None; tasks.len()];
    // Tasks running, with the instant each is cut at: its own deadline
    // plus a little grace, never the slowest task's.
    let mut running: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut pending = tasks.len();
    while pending > 0 {
        let cut_at = running
            .values()
            .copied()
            .min()
            .unwrap_or(give_up_at)
            .min(give_up_at);
        let wait = cut_at.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(wait) {
            Ok(Progress::Started(index, deadline)) => {
                running.insert(index, deadline + TASK_GRACE);
            }
            Ok(Progress::Done(index, observation)) => {
                if running.remove(&index).is_some() || results[index].is_none() {
                    results[index] = Some(*observation);
                    pending -= 1;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now_instant = Instant::now();
                if now_instant >= give_up_at {
                    break;
                }
                let late: Vec<usize> = running
                    .iter()
                    .filter(|(_, cut)| **cut <= now_instant)
                    .map(|(index, _)| *index)
                    .collect();
                for index in late {
                    running.remove(&index);
                    // Abandoned: its worker may still be stuck in a system
                    // call; the tick does not wait for it.
                    results[index] = Some(timed_out(timeouts[index]));
                    pending -= 1;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| timed_out(timeouts[i])))
        .collect()
}

/// How long past its own deadline a task may take to report.
const TASK_GRACE: Duration = Duration::from_secs(1);

/// What a worker tells the tick.
enum Progress {
    /// A task began, to be done by this instant.
    Started(usize, Instant),
    Done(usize, Box<Observation>),
}

fn timed_out(timeout: Duration) -> Observation {
    Observation::failed(
        "task",
        format!("timed out after {}", crate::config::Duration(timeout)),
    )
}

/// The profile's alert states once this tick's changes apply.
fn alerts_after(prior: &Prior, outcome: &Outcome) -> Vec<crate::alert::AlertState> {
    let mut alerts = prior.alerts.clone();
    for (key, state) in &outcome.alerts {
        match state {
            Some(state) => alerts.insert(key.clone(), state.clone()),
            None => alerts.remove(key),
        };
    }
    alerts.into_values().collect()
}

fn commit(
    store: &mut Store,
    config: &Config,
    profile: &Profile,
    report: &TickReport,
    envelopes: &[Envelope],
    now: Timestamp,
    finished_at: Timestamp,
) -> Result<(), Error> {
    let failing = report.outcome.tasks.iter().filter(|t| !t.healthy).count();
    let named = |pending: bool| -> Vec<&str> {
        report
            .outcome
            .tasks
            .iter()
            .filter(|t| !t.healthy && (crate::report::task_tag(t) == "PEND") == pending)
            .map(|t| t.name.as_str())
            .collect()
    };
    let summary = if failing == 0 {
        let count = report.tasks.len();
        format!("{count} task{} healthy", if count == 1 { "" } else { "s" })
    } else {
        let mut parts = Vec::new();
        for (label, names) in [("failing", named(false)), ("pending", named(true))] {
            if !names.is_empty() {
                parts.push(format!("{label}: {}", names.join(", ")));
            }
        }
        parts.join("; ")
    };
    let namespace = |task: &str| format!("{}/{task}", profile.name);
    let state = report
        .tasks
        .iter()
        .flat_map(|t| {
            t.observation
                .state
                .iter()
                .map(|(k, v)| (namespace(&t.name), k.clone(), Some(v.clone())))
        })
        .chain(
            report
                .outcome
                .state
                .iter()
                .map(|(task, k, v)| (namespace(task), k.clone(), Some(v.clone()))),
        )
        .collect();
    let record = TickRecord {
        profile: &profile.name,
        host: &config.host,
        started_at: now,
        finished_at,
        tasks: report.tasks.len(),
        failing,
        summary,
        outcome: &report.outcome,
        envelopes,
        state,
        enabled_profiles: config
            .profiles
            .iter()
            .filter(|p| p.enabled)
            .map(|p| p.name.as_str())
            .collect(),
        config: (&config.path, config.source_to_keep()),
    };
    store.commit_tick(&record, now).map_err(Error::Tool)?;
    Ok(())
}

/// Retry delay after the n-th failed attempt: 30 s, doubling, at most 30 min.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(6);
    Duration::from_secs(30 * (1u64 << doublings)).min(Duration::from_secs(1800))
}

/// How long delivery may take in one tick; the rest waits for the next.
const DELIVERY_BUDGET: Duration = Duration::from_secs(30);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivers this profile's waiting outbox entries (this tick's and older
/// ones), oldest first. A notifier's entries go out in order: while its
/// oldest entry waits for a retry (or its rate limit is spent) the newer
/// ones wait behind it, so a receiver never sees a resolution before the
/// alert it resolves.
fn deliver(
    store: &mut Store,
    config: &Config,
    profile: &Profile,
    now: Timestamp,
    report: &mut TickReport,
) -> Result<(), Error> {
    let started = Instant::now();
    let waiting = store.waiting_outbox(&profile.name).map_err(Error::Tool)?;
    let telegram_test = notify::TelegramTestRoute::from_env();
    let context = notify::Context {
        timeout: DELIVERY_TIMEOUT,
        now,
        telegram_test: telegram_test.as_ref(),
    };
    let (queues, waiting): (Vec<OutboxRow>, Vec<OutboxRow>) = waiting
        .into_iter()
        .partition(|row| matches!(row.payload, Payload::Alerts { to: Some(_), .. }));
    deliver_queues(store, config, queues, &context, now, report)?;
    let mut held: BTreeSet<String> = BTreeSet::new();
    let mut held_failing: BTreeMap<String, Undelivered> = BTreeMap::new();
    let mut sent: BTreeMap<String, u32> = BTreeMap::new();
    let mut behind: BTreeMap<String, usize> = BTreeMap::new();
    for row in waiting {
        if held.contains(&row.notifier) {
            *behind.entry(row.notifier.clone()).or_default() += 1;
            continue;
        }
        if started.elapsed() > DELIVERY_BUDGET {
            break;
        }
        let age = now.since(row.created_at);
        let notifier = config.notifier(&row.notifier);
        let expired = match notifier {
            None => Some(format!(
                "notifier `{}` is no longer in jobs.yaml",
                row.notifier
            )),
            Some(_) if age > config.defaults.max_age.as_millis() => Some(format!(
                "undelivered for {} (max_age {})",
                crate::clock::human_duration(age),
                config.defaults.max_age
            )),
            Some(_) => None,
        };
        let result = match (expired, notifier) {
            (Some(error), _) => give_up(store, &row, error, now)?,
            (None, Some(_)) if row.next_attempt_at > now => {
                held.insert(row.notifier.clone());
                if let Some(error) = &row.last_error {
                    let entry =
                        held_failing
                            .entry(row.notifier.clone())
                            .or_insert_with(|| Undelivered {
                                receiver: row.notifier.clone(),
                                waiting: 0,
                                since: row.created_at,
                                error: error.clone(),
                            });
                    entry.waiting += 1;
                }
                continue;
            }
            (None, Some(notifier)) if rate_limited(store, notifier, &sent, now)? => {
                held.insert(row.notifier.clone());
                continue;
            }
            (None, Some(notifier)) => match notify::deliver(notifier, &row.payload, &context) {
                Ok(outcome) => {
                    if let Sent::Console(text) = outcome {
                        report.console.push(text);
                    }
                    store.mark_delivered(row.id, now).map_err(Error::Tool)?;
                    *sent.entry(row.notifier.clone()).or_default() += 1;
                    DeliveryResult::Delivered
                }
                Err(failure) if failure.permanent => {
                    give_up(store, &row, format!("rejected: {}", failure.error), now)?
                }
                Err(failure) => {
                    let delay =
                        backoff(row.attempts + 1).max(failure.retry_after.unwrap_or_default());
                    let retry_at =
                        now.plus_millis(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                    store
                        .mark_failed(row.id, &failure.error, retry_at)
                        .map_err(Error::Tool)?;
                    held.insert(row.notifier.clone());
                    DeliveryResult::Failed {
                        error: failure.error,
                        retry_at,
                    }
                }
            },
            (None, None) => continue,
        };
        let mut delivery = Delivery::of(&row.notifier, &row.payload, result);
        delivery.queued = vec![row.created_at];
        report.deliveries.push(delivery);
    }
    report
        .undelivered
        .extend(backlog(report, &held_failing, &behind));
    Ok(())
}

/// The receivers whose notifications wait after failing: those that failed
/// this tick, and those held back by an earlier failure (`held`), each with
/// the notifications queued `behind` them.
fn backlog(
    report: &TickReport,
    held: &BTreeMap<String, Undelivered>,
    behind: &BTreeMap<String, usize>,
) -> Vec<Undelivered> {
    let mut backlog: BTreeMap<String, Undelivered> = held.clone();
    for delivery in &report.deliveries {
        if let DeliveryResult::Failed { error, .. } = &delivery.result {
            let entry = backlog
                .entry(delivery.receiver())
                .or_insert_with(|| Undelivered {
                    receiver: delivery.receiver(),
                    waiting: 0,
                    since: report.started_at,
                    error: error.clone(),
                });
            entry.waiting += delivery.queued.len().max(1);
            if let Some(oldest) = delivery.queued.iter().chain(&delivery.failing_since).min() {
                entry.since = entry.since.min(*oldest);
            }
            entry.error = error.clone();
        }
    }
    for (receiver, entry) in &mut backlog {
        entry.waiting += behind.get(receiver).copied().unwrap_or(0);
    }
    backlog.into_values().collect()
}

/// One Alertmanager URL's waiting batches, about to go out as one POST.
struct Queue<'a> {
    notifier: &'a Notifier,
    url: &'a crate::config::Text,
    rows: Vec<OutboxRow>,
    alerts: Vec<notify::alertmanager::PostableAlert>,
}

/// Delivers each Alertmanager URL's own queue (see `notify::alertmanager`):
/// every URL at once, each once per tick whatever its earlier failures.
fn deliver_queues(
    store: &mut Store,
    config: &Config,
    rows: Vec<OutboxRow>,
    context: &notify::Context,
    now: Timestamp,
    report: &mut TickReport,
) -> Result<(), Error> {
    let mut by_url: BTreeMap<(String, String), Vec<OutboxRow>> = BTreeMap::new();
    for row in rows {
        if let Payload::Alerts { to: Some(to), .. } = &row.payload {
            let key = (row.notifier.clone(), to.clone());
            by_url.entry(key).or_default().push(row);
        }
    }
    let mut queues = Vec::new();
    for ((name, to), rows) in by_url {
        let notifier = config.notifier(&name);
        let found = notifier.and_then(|n| match &n.kind {
            NotifierKind::Alertmanager {
                urls,
                generator_url,
            } => urls
                .iter()
                .find(|url| notify::alertmanager::target(url) == to)
                .map(|url| (n, url, generator_url.as_ref().map(|u| u.as_str()))),
            _ => None,
        });
        let Some((notifier, url, generator_url)) = found else {
            let why = match notifier {
                None => format!("notifier `{name}` is no longer in jobs.yaml"),
                Some(_) => format!("its URL is no longer among notifier `{name}`'s urls"),
            };
            for row in rows {
                let result = give_up(store, &row, why.clone(), now)?;
                report
                    .deliveries
                    .push(Delivery::of(&name, &row.payload, result));
            }
            continue;
        };
        let max_age = config.defaults.max_age.as_millis();
        let (expired, rows): (Vec<OutboxRow>, Vec<OutboxRow>) = rows
            .into_iter()
            .partition(|row| now.since(row.created_at) > max_age);
        for row in expired {
            let error = format!(
                "undelivered for {} (max_age {})",
                crate::clock::human_duration(now.since(row.created_at)),
                config.defaults.max_age
            );
            let result = give_up(store, &row, error, now)?;
            let mut delivery = Delivery::of(&name, &row.payload, result);
            delivery.to = Some(notify::alertmanager::shown(url));
            report.deliveries.push(delivery);
        }
        // An earlier tick's batch with no resolution says nothing the
        // current one does not: done with, sent or not.
        let (stale, rows): (Vec<OutboxRow>, Vec<OutboxRow>) = rows.into_iter().partition(|row| {
            row.created_at < now
                && !row
                    .payload
                    .messages()
                    .iter()
                    .any(|m| matches!(m.kind, MessageKind::Resolved | MessageKind::Restarted))
        });
        for row in stale {
            store.mark_delivered(row.id, now).map_err(Error::Tool)?;
        }
        let batches: Vec<&Payload> = rows.iter().map(|row| &row.payload).collect();
        let alerts = notify::alertmanager::merged(&batches, generator_url, now);
        if alerts.is_empty() {
            for row in &rows {
                store.mark_delivered(row.id, now).map_err(Error::Tool)?;
            }
            continue;
        }
        queues.push(Queue {
            notifier,
            url,
            rows,
            alerts,
        });
    }
    let results: Vec<Result<(), notify::Failure>> = std::thread::scope(|scope| {
        let posts: Vec<_> = queues
            .iter()
            .map(|queue| {
                scope.spawn(|| notify::alertmanager::send_to(queue.url, &queue.alerts, context))
            })
            .collect();
        posts
            .into_iter()
            .map(|post| {
                post.join().unwrap_or_else(|_| {
                    Err(notify::Failure::transient("the request thread panicked"))
                })
            })
            .collect()
    });
    for (queue, result) in queues.into_iter().zip(results) {
        let newest = queue.rows.last().map(|row| row.payload.clone());
        let result = match result {
            Ok(()) => {
                for row in &queue.rows {
                    store.mark_delivered(row.id, now).map_err(Error::Tool)?;
                }
                DeliveryResult::Delivered
            }
            Err(failure) if failure.permanent => {
                let error = format!("rejected: {}", failure.error);
                for row in &queue.rows {
                    store.give_up(row, &error, now).map_err(Error::Tool)?;
                }
                DeliveryResult::GaveUp { error }
            }
            Err(failure) => {
                for row in &queue.rows {
                    store
                        .mark_failed(row.id, &failure.error, now)
                        .map_err(Error::Tool)?;
                }
                DeliveryResult::Failed {
                    error: failure.error,
                    retry_at: now,
                }
            }
        };
        // When this URL began to fail: its rows are replaced every tick,
        // so the oldest waiting one does not say.
        let namespace = crate::store::failing_namespace(&queue.notifier.name);
        let target = notify::alertmanager::target(queue.url);
        let failing_since = match &result {
            DeliveryResult::Failed { .. } => {
                let known = store
                    .state_rows(Some(&namespace))
                    .map_err(Error::Tool)?
                    .into_iter()
                    .find(|(_, key, _)| *key == target)
                    .and_then(|(_, _, value)| value.parse().ok())
                    .map(Timestamp);
                let since = known.unwrap_or_else(|| {
                    queue
                        .rows
                        .iter()
                        .map(|row| row.created_at)
                        .min()
                        .unwrap_or(now)
                });
                if known.is_none() {
                    store
                        .set_state(&namespace, &target, Some(&since.0.to_string()), now)
                        .map_err(Error::Tool)?;
                }
                Some(since)
            }
            _ => {
                store
                    .set_state(&namespace, &target, None, now)
                    .map_err(Error::Tool)?;
                None
            }
        };
        let Some(newest) = newest else { continue };
        let mut delivery = Delivery::of(&queue.notifier.name, &newest, result);
        delivery.to = Some(notify::alertmanager::shown(queue.url));
        delivery.queued = queue.rows.iter().map(|row| row.created_at).collect();
        delivery.failing_since = failing_since;
        delivery.carries = queue
            .rows
            .iter()
            .flat_map(|row| row.payload.messages())
            .map(|m| (m.task.clone(), m.rule.clone()))
            .collect();
        if queue.rows.len() > 1 {
            delivery.text.push_str(&format!(
                " (with what {} earlier batch{} held)",
                queue.rows.len() - 1,
                if queue.rows.len() == 2 { "" } else { "es" }
            ));
        }
        report.deliveries.push(delivery);
    }
    Ok(())
}

/// Whether `notifier` has spent its `rate_limit` (sends in the window,
/// earlier ticks' and this one's).
fn rate_limited(
    store: &Store,
    notifier: &Notifier,
    sent: &BTreeMap<String, u32>,
    now: Timestamp,
) -> Result<bool, Error> {
    let Some(limit) = notifier.rate_limit else {
        return Ok(false);
    };
    let since = now.plus_millis(-limit.per.as_millis());
    let earlier = store
        .delivered_since(&notifier.name, since)
        .map_err(Error::Tool)?;
    let spent = earlier.max(sent.get(&notifier.name).copied().unwrap_or(0));
    Ok(spent >= limit.messages)
}

fn give_up(
    store: &mut Store,
    row: &OutboxRow,
    error: String,
    now: Timestamp,
) -> Result<DeliveryResult, Error> {
    store.give_up(row, &error, now).map_err(Error::Tool)?;
    Ok(DeliveryResult::GaveUp { error })
}

/// `--dry-run`: list what a real tick would send — the entries still
/// waiting in the outbox, then this tick's — and send nothing.
fn preview_deliveries(
    store: Option<&Store>,
    profile: &str,
    envelopes: &[Envelope],
    report: &mut TickReport,
) -> Result<(), Error> {
    let waiting = match store {
        Some(store) => store.waiting_outbox(profile).map_err(Error::Tool)?,
        None => Vec::new(),
    };
    let earlier = waiting.into_iter().map(|row| (row.notifier, row.payload));
    let this_tick = envelopes
        .iter()
        .map(|e| (e.notifier.clone(), e.payload.clone()));
    let previews: Vec<Delivery> = earlier
        .chain(this_tick)
        .map(|(notifier, payload)| Delivery::of(&notifier, &payload, DeliveryResult::WouldSend))
        .collect();
    report.deliveries.extend(previews);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_half_an_hour() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
    }
}
