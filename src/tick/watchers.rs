//! monitor watching itself: the `git-sync` task of a profile's pre-run
//! sync and the `jobs.yaml` task while the file is rejected, observed
//! before the profile's own tasks and judged like them.

use super::{Rejected, RunOptions};
use crate::config::{CONFIG_TASK, GIT_SYNC_TASK, Profile, Task};
use crate::evaluate::Prior;
use crate::probe::{self, Observation};

/// The watcher tasks of this tick with their observations; what they did
/// goes to `notes`.
pub(super) fn observe(
    profile: &Profile,
    options: &RunOptions,
    prior: &Prior,
    notes: &mut Vec<String>,
) -> Vec<(Task, Observation)> {
    let mut watchers = Vec::new();
    if let Some(pre_run) = &profile.pre_run {
        let (note, result) = pre_run_sync(pre_run, options.dry_run);
        notes.push(note);
        if let Some(result) = result {
            let observation = crate::pre_run::observe(&result, prior.tasks.get(GIT_SYNC_TASK));
            watchers.push((Task::watcher(GIT_SYNC_TASK), observation));
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
    let config_alert_open = prior.alerts.keys().any(|k| k.task == CONFIG_TASK);
    if options.rejected.is_some() || config_alert_open {
        watchers.push((
            Task::watcher(CONFIG_TASK),
            config_observation(options.rejected.as_ref()),
        ));
    }
    watchers
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

/// Seed 001's sync before run: best effort, logged, never blocking checks.
/// The note for the summary, and what the sync did (none in a dry run).
fn pre_run_sync(
    pre_run: &crate::pre_run::PreRun,
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
