//! What a profile does before its checks: seed 001's `sync_before_run`, a
//! git fetch and hard reset of a checkout to its tracked branch. Best
//! effort: a failure is reported and the checks run anyway.

use crate::config::GitSync;
use crate::remediate::stop::run_tool;
use std::process::Command;
use std::time::Duration;

/// Fetches `remote branch` and resets the checkout hard onto it. Local
/// edits to tracked files are discarded on purpose: the reviewed branch wins.
pub fn git_sync(sync: &GitSync) -> Result<String, String> {
    let limit = sync
        .timeout
        .map(|t| t.std())
        .unwrap_or(Duration::from_secs(60));
    let repo = &sync.repo;
    // The checkout jobs.yaml names is trusted as the operator's: under the
    // unit's user on a checkout owned by the deploy user, git would refuse
    // it ("dubious ownership") on every sync otherwise.
    let mut trusted = std::ffi::OsString::from("safe.directory=");
    trusted.push(std::path::absolute(repo).unwrap_or_else(|_| repo.clone()));
    let git = || {
        let mut command = Command::new("git");
        command
            .arg("-c")
            .arg(&trusted)
            .arg("-C")
            .arg(repo)
            .env("GIT_TERMINAL_PROMPT", "0");
        command
    };
    let (remote, branch) = (sync.remote.as_str(), sync.branch.as_str());
    run_tool(git().args(["fetch", "--quiet", remote, branch]), limit)
        .map_err(|e| format!("git fetch {remote} {branch} in {}: {e}", repo.display()))?;
    let target = format!("{remote}/{branch}");
    run_tool(git().args(["reset", "--quiet", "--hard", &target]), limit)
        .map_err(|e| format!("git reset --hard {target} in {}: {e}", repo.display()))?;
    let head = git()
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Ok(format!("{} at {target} ({head})", repo.display()))
}

/// Failed syncs in a row before the `git-sync` task fails (a warning
/// alert): one failed fetch is a network blip, three are not.
pub const FAILURES_BEFORE_ALERT: u32 = 3;
const FAILURES_KEY: &str = "git_sync.failures";

/// The `git-sync` task's observation this tick, from the sync's result and
/// the failures in a row before it.
pub fn observe(
    result: &Result<String, String>,
    prior: Option<&crate::probe::TaskState>,
) -> crate::probe::Observation {
    use crate::probe::{Check, CheckStatus, Observation};
    let before: u32 = prior
        .and_then(|s| s.get(FAILURES_KEY))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (failures, status, summary) = match result {
        Ok(done) => (0, CheckStatus::Ok, format!("git sync: {done}")),
        Err(why) => {
            let failures = before + 1;
            let status = if failures >= FAILURES_BEFORE_ALERT {
                CheckStatus::Failed
            } else {
                CheckStatus::Ok
            };
            (
                failures,
                status,
                format!(
                    "git sync failed ({failures} in a row, an alert from {FAILURES_BEFORE_ALERT}): {why}; checks ran against the current checkout"
                ),
            )
        }
    };
    let mut observation = Observation::default();
    observation.checks.push(Check {
        probe: "git",
        status,
        summary,
    });
    observation
        .state
        .insert(FAILURES_KEY.to_string(), failures.to_string());
    observation
}
