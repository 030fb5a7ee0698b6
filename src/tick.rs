//! One tick, top to bottom: lock → prior state → observe → evaluate →
//! restart → commit → deliver → heartbeat → prune. This file only
//! sequences; each step's work lives in its own module.

mod prior;
mod record;
mod watchers;

use crate::clock::Timestamp;
use crate::config::{Config, Profile, Task};
use crate::error::Error;
use crate::evaluate::{self, Observed, Outcome, Prior};
use crate::lock::{self, Lock};
use crate::notify::outbox::{self, Delivery, Undelivered};
use crate::notify::{self, heartbeat};
use crate::probe::{self, Observation};
use crate::remediate;
use crate::store::Store;
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

/// How a tick ended.
#[derive(Debug)]
pub enum TickResult {
    /// Another run of the profile holds the lock.
    Skipped,
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
    pub tasks: Vec<TaskObservation>,
    pub skipped_tasks: Vec<String>,
    /// Tasks with `every:` not due this tick.
    pub not_due: Vec<NotDue>,
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

/// A task with `every:` that does not run this tick.
#[derive(Debug, Clone)]
pub struct NotDue {
    pub task: String,
    /// When it runs next.
    pub next: Timestamp,
    /// Its rules still firing from its last run.
    pub firing: Vec<String>,
}

impl TickReport {
    pub fn healthy(&self) -> bool {
        self.outcome.healthy() && self.not_due.iter().all(|n| n.firing.is_empty())
    }
}

#[derive(Debug)]
pub struct TaskObservation {
    pub name: String,
    pub observation: Observation,
}

/// Runs one tick of `options.profile`.
pub fn run(config: &Config, options: &RunOptions, now: Timestamp) -> Result<TickResult, Error> {
    let started = Instant::now();
    let profile = find_profile(config, &options.profile)?;
    let tasks = select_tasks(config, profile, options.task.as_deref())?;
    let lock = if options.dry_run {
        None
    } else {
        match lock::acquire(&config.state_dir(), &profile.name)? {
            Lock::Acquired(lock) => Some(lock),
            Lock::Busy { pid, .. } => {
                let holder = pid.map_or_else(|| "pid unknown".into(), |p| format!("pid {p}"));
                log::info!("skipped: {} already running ({holder})", profile.name);
                return Ok(TickResult::Skipped);
            }
        }
    };
    let unclean = lock.as_ref().and_then(|lock| lock.unclean);
    let mut notes: Vec<String> =
        probe::children::begin_tick(&profile.name, &config.state_dir(), unclean)
            .into_iter()
            .collect();
    probe::host_limit::set_limit(config.defaults.connections_per_host);
    let mut store = if options.dry_run {
        Store::open_snapshot(&config.state)?
    } else {
        Some(Store::open(&config.state)?)
    };
    let loaded = prior::load(store.as_mut(), profile, now, options.dry_run)?;
    let (prior, newest) = (loaded.prior, loaded.newest);
    notes.extend(loaded.notes);
    let watchers = watchers::observe(profile, options, &prior, &mut notes);
    if let Some((ends, reason)) = crate::silence::maintenance(&profile.maintenance, now) {
        notes.push(format!(
            "maintenance until {ends} ({reason}): alerts are recorded, nothing is sent or restarted"
        ));
    }
    let mode = if options.dry_run {
        probe::Mode::DryRun
    } else {
        probe::Mode::Tick
    };
    let (tasks, not_due) = due_tasks(tasks, &prior, options.task.is_some(), now);
    let concurrency = profile.concurrency.unwrap_or(config.defaults.concurrency);
    let mut observations =
        probe::pool::observe_all(config, &tasks, &prior.tasks, now, mode, concurrency);
    for (task, observation) in tasks.iter().zip(&mut observations) {
        if task.every.is_some() {
            observation
                .state
                .insert(LAST_RUN_KEY.to_string(), now.millis().to_string());
        }
    }
    probe::children::kill_orphans();
    let (watcher_tasks, watcher_observations): (Vec<Task>, Vec<Observation>) =
        watchers.into_iter().unzip();
    let tasks: Vec<&Task> = watcher_tasks.iter().chain(tasks).collect();
    let observations: Vec<Observation> = watcher_observations
        .into_iter()
        .chain(observations)
        .collect();
    let runs: Vec<Observed> = tasks
        .iter()
        .zip(&observations)
        .map(|(task, observation)| Observed {
            task,
            observation: observation.clone(),
        })
        .collect();
    for run in &runs {
        log::debug!(
            "{}/{}: {}",
            profile.name,
            run.task.name,
            run.observation.describe()
        );
    }
    let evaluation =
        evaluate::evaluate(config, profile, &prior, &runs, options.task.is_none(), now);
    let plans = evaluation.plans();
    notes.extend(prior::unconcluded_restarts(
        writable(&mut store, options.dry_run),
        profile,
        &prior,
        &tasks,
        now,
    ));
    if let Some(store) = writable(&mut store, options.dry_run) {
        prior::book_restarts(store, profile, &prior, &tasks, &plans, now);
    }
    let carried =
        remediate::carry_out_plans(config, profile, &prior, &runs, &plans, options.dry_run, now);
    let outcome = evaluation.conclude(&carried);
    let finished_at = now.plus_millis(i64::try_from(started.elapsed().as_millis()).unwrap_or(0));
    let mut report = TickReport {
        profile: profile.name.clone(),
        host: config.host.clone(),
        dry_run: options.dry_run,
        started_at: now,
        elapsed: Duration::ZERO,
        tasks: tasks
            .iter()
            .zip(observations)
            .map(|(task, observation)| TaskObservation {
                name: task.name.clone(),
                observation,
            })
            .collect(),
        skipped_tasks: profile
            .tasks
            .iter()
            .filter(|t| !t.enabled)
            .map(|t| t.name.clone())
            .collect(),
        not_due,
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
            record::commit(
                &mut store,
                config,
                profile,
                &report,
                &envelopes,
                now,
                finished_at,
            )?;
            let delivered = outbox::deliver(&mut store, config, profile, now)?;
            report.deliveries = delivered.deliveries;
            report.console = delivered.console;
            report.undelivered = delivered.undelivered;
            if let Some(heartbeat) = &profile.heartbeat {
                report
                    .notes
                    .push(heartbeat::ping(heartbeat, report.healthy()));
            }
            // At most an hour past what was stored before this tick: a
            // clock that jumped ahead must not prune everything.
            let horizon = newest.map_or(now, |newest| now.min(newest.plus_millis(3_600_000)));
            record::prune(&mut store, config, horizon);
            store.trim_log();
        }
        snapshot => {
            report.deliveries = outbox::preview(snapshot.as_ref(), &profile.name, &envelopes)?;
        }
    }
    probe::children::kill_leftovers();
    report.elapsed = started.elapsed();
    Ok(TickResult::Ran(Box::new(report)))
}

fn find_profile<'c>(config: &'c Config, name: &str) -> Result<&'c Profile, Error> {
    config.profile(name).ok_or_else(|| Error::UnknownProfile {
        name: name.to_string(),
        config: config.path.clone(),
        known: config.profiles.iter().map(|p| p.name.clone()).collect(),
    })
}

/// Where a task with `every:` keeps when it last ran.
pub const LAST_RUN_KEY: &str = "cadence.last_run";

/// The tasks due this tick, and those with `every:` that are not (with
/// when they next are). A task asked for by name (`--task`) always runs.
fn due_tasks<'c>(
    tasks: Vec<&'c Task>,
    prior: &Prior,
    asked: bool,
    now: Timestamp,
) -> (Vec<&'c Task>, Vec<NotDue>) {
    let mut due = Vec::new();
    let mut not_due = Vec::new();
    for task in tasks {
        let next = task.every.and_then(|every| {
            let last = prior
                .tasks
                .get(&task.name)?
                .get(LAST_RUN_KEY)?
                .parse::<i64>()
                .ok()
                .map(Timestamp)
                // A last run in the future was written by a clock that ran
                // ahead: not trusted.
                .filter(|last| *last <= now)?;
            let millis = i64::try_from(every.0.as_millis()).unwrap_or(i64::MAX);
            (!now.reached(last, millis)).then(|| last.plus_millis(millis))
        });
        match next {
            Some(next) if !asked => {
                let firing = prior
                    .alerts
                    .values()
                    .filter(|a| a.key.task == task.name && a.status == crate::alert::Status::Firing)
                    .map(|a| a.key.rule.clone())
                    .collect();
                not_due.push(NotDue {
                    task: task.name.clone(),
                    next,
                    firing,
                });
            }
            _ => due.push(task),
        }
    }
    (due, not_due)
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
            None => Err(Error::UnknownTask {
                name: name.to_string(),
                profile: profile.name.clone(),
                config: config.path.clone(),
                known: profile.tasks.iter().map(|t| t.name.clone()).collect(),
            }),
        },
    }
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

/// The store to write to: none in a dry run, which only reads.
fn writable(store: &mut Option<Store>, dry_run: bool) -> Option<&mut Store> {
    store.as_mut().filter(|_| !dry_run)
}
