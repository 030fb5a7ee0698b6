//! The prior state, made trustworthy before anything is judged on it: a
//! clock far ahead of the newest stored tick is refused, one set back
//! clamps every stored time to now, and a restart a killed tick began but
//! never concluded is named (it still counts for the cooldown and `max`).

use crate::clock::Timestamp;
use crate::config::{Profile, Task};
use crate::error::Error;
use crate::evaluate::{Prior, RestartPlan};
use crate::remediate;
use crate::store::Store;

/// What the tick starts from.
pub(super) struct Loaded {
    pub prior: Prior,
    /// The newest stored tick's time, when there is one.
    pub newest: Option<Timestamp>,
    pub notes: Vec<String>,
}

/// Loads `profile`'s prior state (none without a store: a dry run on a
/// fresh host), checking the clock against the newest stored tick.
pub(super) fn load(
    store: Option<&mut Store>,
    profile: &Profile,
    now: Timestamp,
    dry_run: bool,
) -> Result<Loaded, Error> {
    let Some(store) = store else {
        return Ok(Loaded {
            prior: Prior::default(),
            newest: None,
            notes: Vec::new(),
        });
    };
    // A safety net, not a reason to stop: an unreadable answer skips it
    // (the hourly self check reports a damaged database).
    let newest = store.newest_run().unwrap_or_else(|e| {
        log::warn!("reading the newest tick's time: {e:#}; the clock is not checked");
        None
    });
    if let Some(newest) = newest {
        check_clock(now, newest)?;
    }
    let mut prior = store.load_prior(&profile.name, now)?;
    let mut notes = Vec::new();
    if let Some(newest) = newest.filter(|newest| newest.0 - now.0 > crate::clock::FUTURE_SLACK_MS) {
        let why = format!(
            "the clock says {}, {} before the newest stored tick ({}): a clock that ran ahead and was set back; times after now count as now (cooldowns, restarts, settle times)",
            now.rfc3339(),
            crate::clock::human_duration(newest.0 - now.0),
            newest.rfc3339()
        );
        log::warn!("{why}");
        notes.push(why);
        let books = clamp_to(&mut prior, now);
        // Stored at once: the restart book is written only by a restart,
        // and a future restart time clamped in memory alone would be "just
        // now" again every tick, holding restarts for as long as the clock
        // had been ahead.
        if !dry_run {
            for (task, entries) in books {
                let namespace = format!("{}/{task}", profile.name);
                for (key, value) in entries {
                    store.set_state(&namespace, &key, Some(&value), now)?;
                }
            }
        }
    }
    log::debug!(
        "{}: {} alert states, {} silences and the state of {} tasks loaded",
        profile.name,
        prior.alerts.len(),
        prior.silences.len(),
        prior.tasks.len(),
    );
    Ok(Loaded {
        prior,
        newest,
        notes,
    })
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
        if let Some(book) = remediate::RestartBook::clamped(task, now) {
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
        return Err(Error::ClockJump { now, newest });
    }
    Ok(())
}

/// Names each restart a tick that never finished began and did not
/// conclude, and marks it concluded (it already counts in the book).
pub(super) fn unconcluded_restarts(
    store: Option<&mut Store>,
    profile: &Profile,
    prior: &Prior,
    tasks: &[&Task],
    now: Timestamp,
) -> Vec<String> {
    let mut notes = Vec::new();
    let mut store = store;
    for task in tasks {
        let Some(begun) = prior
            .tasks
            .get(&task.name)
            .and_then(|s| s.get(remediate::BEGUN_KEY))
            .filter(|v| !v.is_empty() && *v != "0")
        else {
            continue;
        };
        let note = format!(
            "a restart of {} begun at {} by a tick that never finished (killed?) was not concluded; it counts for the cooldown and max",
            task.name,
            begun.parse().map(Timestamp).unwrap_or(now)
        );
        log::warn!("{note}");
        notes.push(note);
        if let Some(store) = store.as_deref_mut() {
            let namespace = format!("{}/{}", profile.name, task.name);
            let _ = store.set_state(&namespace, remediate::BEGUN_KEY, Some("0"), now);
        }
    }
    notes
}

/// Books each planned restart before it is carried out: a tick killed
/// while restarting leaves the restart counted (cooldown, max), not
/// forgotten.
pub(super) fn book_restarts(
    store: &mut Store,
    profile: &Profile,
    prior: &Prior,
    tasks: &[&Task],
    plans: &[RestartPlan],
    now: Timestamp,
) {
    for plan in plans {
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
