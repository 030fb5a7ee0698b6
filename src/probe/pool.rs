//! The tick's workers: every task observed concurrently, at most
//! `concurrency` at once, each under its own timeout. A task still running
//! at its deadline (plus a short grace) is reported as timed out and
//! abandoned, never waited for.

use super::{Mode, Observation, TaskMemory};
use crate::clock::Timestamp;
use crate::config::{Config, Task};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Gap between the starts of consecutive tasks of a tick.
const START_SPACING: Duration = Duration::from_millis(1);

/// One task waiting for a worker: owned, because a worker that outlives its
/// deadline is abandoned rather than joined.
struct Job {
    index: usize,
    task: Task,
    timeout: Duration,
    state: TaskMemory,
}

/// Observes every task concurrently, at most `concurrency` at once, each
/// under its own timeout. A task still running at its deadline (plus a
/// short grace) is reported as timed out and abandoned.
pub fn observe_all(
    config: &Config,
    tasks: &[&Task],
    task_state: &BTreeMap<String, TaskMemory>,
    now: Timestamp,
    mode: Mode,
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
                let context = super::Context {
                    now,
                    mode,
                    deadline,
                    timeout: job.timeout,
                    state: &job.state,
                };
                let observation = super::observe(&job.task, &context);
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
