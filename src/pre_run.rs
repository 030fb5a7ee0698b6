//! What a profile does before its checks: seed 001's `sync_before_run`, a
//! git fetch and hard reset of a checkout to its tracked branch. Best
//! effort: a failure is reported and the checks run anyway.

use crate::config::{Duration as Span, Text};
use crate::remediate::stop::run_tool;
use serde::Deserialize;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// `pre_run: { git_sync: { repo, remote, branch } }`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PreRun {
    pub git_sync: GitSync,
}

/// Fetch and hard-reset a checkout to its tracked branch, best effort.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct GitSync {
    pub repo: PathBuf,
    #[serde(default = "origin")]
    pub remote: Text,
    #[serde(default = "main_branch")]
    pub branch: Text,
    #[serde(default)]
    pub timeout: Option<Span>,
}

fn origin() -> Text {
    Text("origin".into())
}

fn main_branch() -> Text {
    Text("main".into())
}

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
    // A remote that is a folder on this host (a local bare origin) is the
    // operator's too.
    let checkout = std::path::absolute(repo).unwrap_or_else(|_| repo.clone());
    let mut trusted = vec![checkout.clone()];
    let git_with = |trusted: &[std::path::PathBuf]| {
        let mut command = Command::new("git");
        for path in trusted {
            let mut setting = std::ffi::OsString::from("safe.directory=");
            setting.push(path);
            command.arg("-c").arg(setting);
        }
        command.arg("-C").arg(repo).env("GIT_TERMINAL_PROMPT", "0");
        command
    };
    let (remote, branch) = (sync.remote.as_str(), sync.branch.as_str());
    if let Ok(out) = git_with(&trusted)
        .args(["remote", "get-url", remote])
        .output()
    {
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let local = url.strip_prefix("file://").unwrap_or(&url);
        let is_path = !local.is_empty()
            && !local.contains("://")
            && !local.split('/').next().unwrap_or("").contains(':');
        if out.status.success() && is_path {
            let path = std::path::Path::new(local);
            trusted.push(if path.is_absolute() {
                path.to_path_buf()
            } else {
                checkout.join(path)
            });
        }
    }
    // git reads safe.directory for the origin's side of a local fetch
    // (upload-pack) from the global config only, not from `-c`: a private
    // global config that includes the user's own and adds the two.
    let global = trusted_global_config(&trusted);
    let git = || {
        let mut command = git_with(&trusted);
        if let Some(file) = &global {
            command.env("GIT_CONFIG_GLOBAL", file.path());
        }
        command
    };
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

/// A temporary global git config: the user's own (included, so ssh and
/// credential settings still apply) and `safe.directory` for `trusted`.
fn trusted_global_config(trusted: &[std::path::PathBuf]) -> Option<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new().ok()?;
    let own = std::env::var_os("GIT_CONFIG_GLOBAL")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".gitconfig"))
        })
        .filter(|path| path.is_file());
    let mut text = String::new();
    if let Some(own) = own {
        text.push_str(&format!(
            "[include]\n\tpath = {}\n",
            quoted(&own.display().to_string())
        ));
    }
    text.push_str("[safe]\n");
    for path in trusted {
        text.push_str(&format!(
            "\tdirectory = {}\n",
            quoted(&path.display().to_string())
        ));
    }
    file.write_all(text.as_bytes()).ok()?;
    Some(file)
}

/// A git config value in double quotes.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Failed syncs in a row before the `git-sync` task fails (a warning
/// alert): one failed fetch is a network blip, three are not.
pub const FAILURES_BEFORE_ALERT: u32 = 3;
const FAILURES_KEY: &str = "git_sync.failures";

/// The `git-sync` task's observation this tick, from the sync's result and
/// the failures in a row before it.
pub fn observe(
    result: &Result<String, String>,
    prior: Option<&crate::probe::TaskMemory>,
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
