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
    let git = || {
        let mut command = Command::new("git");
        command.arg("-C").arg(repo).env("GIT_TERMINAL_PROMPT", "0");
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
