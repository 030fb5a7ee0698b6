//! Remediation: whether a task's restart is due (pure: cooldown, `max`
//! restarts within a window, `settle`) and carrying it out (stop → start →
//! wait until the task's own probes pass). What it did is concluded by the
//! evaluator ([`crate::evaluate::Evaluation::conclude`]).

pub mod identity;
pub mod start;
pub mod stop;

use crate::alert::AlertKey;
use crate::clock::Timestamp;
use crate::config::{self, Config, Profile, Task};
use crate::config::{Why, within_mapping};
use crate::evaluate::{Observed, Prior, RestartPlan};
use crate::probe::command::CommandConfig;
use crate::probe::{self, TaskMemory};
use serde::Deserialize;
use serde::de::Deserializer;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What to do when the task's alert fires.
#[derive(Debug, Clone)]
pub struct Remediate {
    pub how: Remedy,
    pub cooldown: config::Duration,
    pub max: Option<MaxRestarts>,
}

/// How a task is repaired: exactly one of `restart` and `command`.
#[derive(Debug, Clone)]
pub enum Remedy {
    Restart(Restart),
    Command(CommandConfig),
}

impl Remediate {
    /// Paths written relative to jobs.yaml's folder, to resolve at load.
    pub fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        match &mut self.how {
            Remedy::Command(command) => command.cwd.iter_mut().collect(),
            Remedy::Restart(restart) => {
                let mut paths = Vec::new();
                if let StopMethod::Pidfile(pidfile) = &mut restart.stop.method {
                    paths.push(pidfile);
                }
                if let Some(identity) = &mut restart.identity {
                    paths.extend(identity.pidfile.iter_mut());
                }
                match &mut restart.start {
                    Start::Command { cwd, output, .. } => {
                        paths.extend(cwd.iter_mut().chain(output.iter_mut()));
                    }
                    Start::Tmux { cwd, .. } => paths.extend(cwd.iter_mut()),
                    Start::Systemd(_) | Start::Docker(_) => {}
                }
                paths
            }
        }
    }

    /// The restart, when that is how the task is repaired.
    pub fn restart(&self) -> Option<&Restart> {
        match &self.how {
            Remedy::Restart(restart) => Some(restart),
            Remedy::Command(_) => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemediate {
    #[serde(default)]
    restart: Option<Restart>,
    #[serde(default)]
    command: Option<CommandConfig>,
    #[serde(default = "default_restart_cooldown")]
    cooldown: config::Duration,
    #[serde(default)]
    max: Option<MaxRestarts>,
}

impl<'de> Deserialize<'de> for Remediate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within_mapping(d, |raw: RawRemediate| {
            let how = match (raw.restart, raw.command) {
                (Some(restart), None) => Remedy::Restart(restart),
                (None, Some(command)) => Remedy::Command(command),
                _ => return Err(Why("`remediate` takes either `restart` or `command`".into())),
            };
            Ok(Remediate {
                how,
                cooldown: raw.cooldown,
                max: raw.max,
            })
        })
    }
}

fn default_restart_cooldown() -> config::Duration {
    config::Duration::from_secs(300)
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct MaxRestarts {
    pub restarts: u32,
    pub within: config::Duration,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Restart {
    pub stop: Stop,
    pub start: Start,
    /// A pause between stop and start (seed 000's `sleep 30`).
    #[serde(default)]
    pub delay: Option<config::Duration>,
    #[serde(default)]
    pub wait_healthy: Option<config::Duration>,
    #[serde(default)]
    pub settle: Option<config::Duration>,
    /// What marks the target as running, checked after the stop: while any
    /// of it still runs, no second copy is started. Default: the stop's
    /// own pattern or pidfile, the task's `process:` probe, and the start
    /// command's program in its `cwd`.
    #[serde(default)]
    pub identity: Option<Identity>,
}

/// `wait_healthy` when the config does not say.
pub const DEFAULT_WAIT_HEALTHY: Duration = Duration::from_secs(30);
pub use identity::Identity;
pub use start::Start;
pub use stop::{Stop, StopMethod};

const RESTARTS_KEY: &str = "remediate.restarts";
const SETTLE_KEY: &str = "remediate.settle_until";

/// What remediation did or will do for a task this tick.
#[derive(Clone, Debug, PartialEq)]
pub enum Remediation {
    /// A restart is due: carry it out.
    Due { trigger: AlertKey, summary: String },
    /// Due, but the cooldown since the last restart has not passed.
    Held { why: String },
    /// `max` restarts are spent: no restart, a restart-loop alert instead.
    Exhausted { why: String },
    /// A recent restart's `settle` time: the task's alerts hold still.
    Settling { until: Timestamp },
    /// Carried out.
    Done { what: String, healthy: bool },
    /// `--dry-run`: what would have been done.
    WouldDo { what: String },
}

/// Whether a restart may go ahead now.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Go,
    Cooldown {
        next: Timestamp,
    },
    Exhausted {
        frees_at: Timestamp,
        restarts: usize,
    },
}

/// A task's restart history, kept in its state between ticks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RestartBook {
    /// When recent restarts happened, oldest first.
    pub restarts: Vec<Timestamp>,
    pub settle_until: Option<Timestamp>,
}

impl RestartBook {
    pub fn load(state: Option<&TaskMemory>) -> RestartBook {
        let Some(state) = state else {
            return RestartBook::default();
        };
        let restarts = state
            .get(RESTARTS_KEY)
            .and_then(|v| serde_json::from_str::<Vec<i64>>(v).ok())
            .unwrap_or_default()
            .into_iter()
            .map(Timestamp)
            .collect();
        let settle_until = state
            .get(SETTLE_KEY)
            .and_then(|v| v.parse().ok())
            .map(Timestamp);
        RestartBook {
            restarts,
            settle_until,
        }
    }

    /// The end of the settle time, while it lasts.
    pub fn settling(&self, now: Timestamp) -> Option<Timestamp> {
        self.settle_until.filter(|until| *until > now)
    }

    /// Whether a restart may happen at `now`.
    pub fn decide(&self, remediate: &Remediate, now: Timestamp) -> Decision {
        if let Some(max) = &remediate.max {
            let recent: Vec<Timestamp> = self
                .restarts
                .iter()
                .copied()
                .filter(|t| !now.reached(*t, max.within.as_millis()))
                .collect();
            if recent.len() >= max.restarts as usize {
                let oldest = recent.first().copied().unwrap_or(now);
                return Decision::Exhausted {
                    frees_at: oldest.plus_millis(max.within.as_millis()),
                    restarts: recent.len(),
                };
            }
        }
        match self.restarts.last() {
            Some(last) if !now.reached(*last, remediate.cooldown.as_millis()) => {
                Decision::Cooldown {
                    next: last.plus_millis(remediate.cooldown.as_millis()),
                }
            }
            _ => Decision::Go,
        }
    }

    /// The book after a restart at `now`, keeping only what the guards need.
    pub fn after_restart(
        &self,
        remediate: &Remediate,
        settle: Option<crate::config::Duration>,
        now: Timestamp,
    ) -> RestartBook {
        let keep = remediate
            .max
            .as_ref()
            .map(|m| m.within)
            .unwrap_or(remediate.cooldown)
            .max(remediate.cooldown);
        let horizon = now.plus_millis(-keep.as_millis());
        let mut restarts: Vec<Timestamp> = self
            .restarts
            .iter()
            .copied()
            .filter(|t| *t > horizon)
            .collect();
        restarts.push(now);
        RestartBook {
            restarts,
            settle_until: settle.map(|s| now.plus_millis(s.as_millis())),
        }
    }

    /// The book with every time after `now` made `now` (a restart) or
    /// dropped (a settle time): what a clock that ran ahead left. `None`
    /// when `state` holds no book.
    pub fn clamped(state: &TaskMemory, now: Timestamp) -> Option<RestartBook> {
        if !state.contains_key(RESTARTS_KEY) && !state.contains_key(SETTLE_KEY) {
            return None;
        }
        let mut book = RestartBook::load(Some(state));
        book.restarts.iter_mut().for_each(|t| *t = (*t).min(now));
        book.settle_until = book.settle_until.filter(|until| *until <= now);
        Some(book)
    }

    pub(crate) fn entries(&self) -> Vec<(String, String)> {
        let restarts: Vec<i64> = self.restarts.iter().map(|t| t.0).collect();
        vec![
            (
                RESTARTS_KEY.to_string(),
                serde_json::to_string(&restarts).unwrap_or_else(|_| "[]".into()),
            ),
            (
                SETTLE_KEY.to_string(),
                self.settle_until.map(|t| t.0).unwrap_or(0).to_string(),
            ),
        ]
    }
}

/// Set while a restart is being carried out (its start time), `0` once it
/// is concluded: a tick killed in between leaves it set.
pub const BEGUN_KEY: &str = "remediate.begun";

/// The state to store before a restart is carried out: the book with this
/// restart in it, and that it has begun.
pub fn begun(
    state: Option<&TaskMemory>,
    remediate: &Remediate,
    now: Timestamp,
) -> Vec<(String, String)> {
    let settle = remediate.restart().and_then(|r| r.settle);
    let mut entries = RestartBook::load(state)
        .after_restart(remediate, settle, now)
        .entries();
    entries.push((BEGUN_KEY.to_string(), now.0.to_string()));
    entries
}

/// What became of a planned restart, for [`crate::evaluate::Evaluation::conclude`].
#[derive(Clone, Debug, PartialEq)]
pub enum Carried {
    Attempted(Attempt),
    /// `--dry-run`: what would have been done.
    Described(String),
}

/// What running a remediation did.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    /// Stop and start, in words.
    pub steps: Vec<String>,
    /// `Ok(seconds to healthy)` or why it is not healthy.
    pub result: Result<Duration, String>,
}

impl Attempt {
    pub fn describe(&self) -> String {
        let mut text = self.steps.join("; ");
        if !text.is_empty() {
            text.push_str("; ");
        }
        match &self.result {
            Ok(after) => text.push_str(&format!("healthy after {:.1} s", after.as_secs_f64())),
            // Nothing done yet (a failed `systemctl restart`): its error
            // is the whole story, after RESTART FAILED.
            Err(why) if self.steps.is_empty() => text.push_str(why),
            Err(why) => text.push_str(&format!("restart failed: {why}")),
        }
        // A start command's argv or its last lines may carry a key or a
        // terminal escape: shown masked and inert, like a check's summary.
        crate::probe::mask_credentials(&crate::probe::inert(&text))
    }
}

/// Where things of a restart go, besides its config.
pub struct Environment<'a> {
    /// A detached start command's output when the config names no file.
    pub default_output: &'a Path,
    pub now: Timestamp,
    /// The task's state after this tick's observation (for rechecks).
    pub state: &'a TaskMemory,
    /// The task's timeout: each recheck runs under it.
    pub timeout: Duration,
}

/// Carries out the restarts `evaluate` planned, each on its own thread (they
/// wait for health), and says what became of each, by task. A dry run only
/// describes them.
pub fn carry_out_plans(
    config: &Config,
    profile: &Profile,
    prior: &Prior,
    runs: &[Observed],
    plans: &[RestartPlan],
    dry_run: bool,
    now: Timestamp,
) -> BTreeMap<String, Carried> {
    for plan in plans {
        log::debug!(
            "{}/{}: a restart is due ({}): {}",
            profile.name,
            plan.task,
            plan.trigger,
            plan.summary
        );
    }
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
                        let what = self::plan(remediate, &default_output);
                        return (run.task.name.clone(), Carried::Described(what));
                    }
                    let environment = Environment {
                        default_output: &default_output,
                        now,
                        state: &state,
                        timeout,
                    };
                    let attempt = execute(run.task, remediate, &environment);
                    (run.task.name.clone(), Carried::Attempted(attempt))
                }))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

/// Describes the remediation without doing it, for `--dry-run`.
pub fn plan(remediate: &Remediate, default_output: &Path) -> String {
    match &remediate.how {
        Remedy::Restart(restart) => plan_restart(restart, default_output),
        Remedy::Command(command) => format!(
            "would run `{}`, then wait up to {} for health",
            command.command,
            config::Duration(DEFAULT_WAIT_HEALTHY)
        ),
    }
}

fn plan_restart(restart: &Restart, default_output: &Path) -> String {
    {
        let wait = wait_for(restart);
        let delay = restart
            .delay
            .filter(|d| !d.std().is_zero())
            .map(|d| format!("; then wait {d}"))
            .unwrap_or_default();
        if let Some(unit) = one_unit(restart) {
            return format!(
                "would restart: systemctl restart {unit}; then wait up to {} for health",
                crate::config::Duration(wait)
            );
        }
        format!(
            "would restart: {}{delay}; then {}; then wait up to {} for health",
            stop::plan(&restart.stop),
            start::plan(&restart.start, default_output),
            crate::config::Duration(wait)
        )
    }
}

/// Carries out the task's remediation and waits for its probes to pass.
pub fn execute(task: &Task, remediate: &Remediate, environment: &Environment) -> Attempt {
    let mut steps = Vec::new();
    let result = carry_out(task, remediate, environment, &mut steps)
        .and_then(|(started, wait)| wait_healthy(task, started, wait, environment));
    Attempt { steps, result }
}

/// Stops and starts (or runs the remediation command), noting each step
/// done in `steps`; what was started and how long to wait for its health.
fn carry_out(
    task: &Task,
    remediate: &Remediate,
    environment: &Environment,
    steps: &mut Vec<String>,
) -> Result<(Option<start::Started>, Duration), String> {
    let command = match &remediate.how {
        Remedy::Restart(restart) => return restart_once(task, restart, environment, steps),
        Remedy::Command(command) => command,
    };
    let mut run = probe::command::build(&command.command);
    if let Some(cwd) = &command.cwd {
        run.current_dir(cwd);
    }
    let limit = command
        .timeout
        .map(|t| t.std())
        .unwrap_or(Duration::from_secs(60));
    stop::run_tool(&mut run, limit)?;
    steps.push(format!("ran `{}`", command.command));
    Ok((None, DEFAULT_WAIT_HEALTHY))
}

/// Stops and starts the target (one `systemctl restart` for one unit).
fn restart_once(
    task: &Task,
    restart: &Restart,
    environment: &Environment,
    steps: &mut Vec<String>,
) -> Result<(Option<start::Started>, Duration), String> {
    let started = if let Some(unit) = one_unit(restart) {
        // One unit stopped and started with no pause between: systemd
        // does both in one job, in the unit's own order.
        log::info!("{}: systemctl restart {unit}", task.name);
        start::restart_unit(unit, restart.stop.grace.std())?
    } else {
        log::info!("{}: stopping", task.name);
        let stopped = stop::stop(&restart.stop)?;
        steps.push(stopped.description.clone());
        if let Some(delay) = restart.delay.filter(|d| !d.std().is_zero()) {
            std::thread::sleep(delay.std());
            steps.push(format!("waited {delay}"));
        }
        // A stop that missed the target (wrong session, socket,
        // pidfile) must not lead to a second copy beside the hung one.
        let running = identity::still_running(task, restart, stopped.found_nothing);
        if !running.is_empty() {
            let why = identity::refusal(&stopped.description, &running, &restart.stop.method);
            return Err(why);
        }
        start::start(&restart.start, environment.default_output)?
    };
    steps.push(started.description().to_string());
    Ok((Some(started), wait_for(restart)))
}

/// How long to wait for health after a start: `wait_healthy`, and at
/// least the settle time (a slow starter gets that long to show up).
fn wait_for(restart: &Restart) -> Duration {
    restart
        .wait_healthy
        .map(|w| w.std())
        .unwrap_or(DEFAULT_WAIT_HEALTHY)
        .max(restart.settle.map(|s| s.std()).unwrap_or_default())
}

/// The systemd unit a restart stops and starts, when it is one and the
/// same with no `delay` between.
fn one_unit(restart: &Restart) -> Option<&str> {
    match (&restart.stop.method, &restart.start) {
        (StopMethod::Systemd(a), Start::Systemd(b))
            if a == b && restart.delay.is_none_or(|d| d.std().is_zero()) =>
        {
            Some(a)
        }
        _ => None,
    }
}

/// Re-runs the task's probes (in recheck mode) until they all pass while
/// what was started still runs, and has run for [`STEADY`].
fn wait_healthy(
    task: &Task,
    mut started: Option<start::Started>,
    wait: Duration,
    environment: &Environment,
) -> Result<Duration, String> {
    use start::Liveness;
    let begun = Instant::now();
    let deadline = begun + wait;
    let look = |started: &mut Option<start::Started>| -> Result<Liveness, String> {
        match started.as_mut().map(start::Started::liveness) {
            Some(Liveness::Dead(why)) => Err(why),
            Some(alive) => Ok(alive),
            None => Ok(Liveness::Running),
        }
    };
    // Be kind to a target that is starting: rechecks back off (250 ms,
    // 500 ms, 1 s … up to 5 s apart), while whether what was started
    // still runs is watched every 100 ms (that costs the target nothing).
    let mut pause = Duration::from_millis(250);
    loop {
        look(&mut started)?;
        let context = probe::Context {
            now: environment
                .now
                .plus_millis(i64::try_from(begun.elapsed().as_millis()).unwrap_or(0)),
            mode: probe::Mode::Recheck,
            deadline: (Instant::now() + environment.timeout)
                .min(deadline.max(Instant::now() + Duration::from_millis(500))),
            timeout: environment.timeout,
            state: environment.state,
        };
        let observation = probe::observe(task, &context);
        // A failure outside the target (the lag probe's reference node) is
        // no verdict on the restarted node.
        let failing =
            |c: &&probe::Check| !c.status.is_ok() && !observation.outside.contains(c.probe);
        let mut last = observation
            .checks
            .iter()
            .filter(failing)
            .map(|c| format!("{}: {}", c.probe, c.summary))
            .collect::<Vec<_>>()
            .join("; ");
        if last.is_empty() {
            // The probes pass. A start that dies right after its first
            // line (a log that moved, a port still answering) is no
            // success: what was started must still run, a while on.
            let steady = begun + STEADY;
            while Instant::now() < steady {
                look(&mut started)?;
                std::thread::sleep(
                    Duration::from_millis(100)
                        .min(steady.saturating_duration_since(Instant::now())),
                );
            }
            match look(&mut started)? {
                Liveness::Running => return Ok(begun.elapsed()),
                Liveness::Starting(why) | Liveness::Dead(why) => last = why,
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not healthy after {} ({last})",
                crate::config::Duration(wait)
            ));
        }
        let next = (Instant::now() + pause).min(deadline);
        while Instant::now() < next {
            look(&mut started)?;
            std::thread::sleep(
                Duration::from_millis(100).min(next.saturating_duration_since(Instant::now())),
            );
        }
        pause = (pause * 2).min(MAX_RECHECK_PAUSE);
    }
}

/// How long what a restart started must be seen running before its
/// probes passing count as healthy.
pub const STEADY: Duration = Duration::from_secs(2);

/// The longest pause between two health rechecks after a restart.
const MAX_RECHECK_PAUSE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Duration as ConfigDuration;

    #[test]
    fn a_restarts_description_is_masked_and_inert() {
        crate::probe::hide_values(vec![(
            "NODE_TOKEN".into(),
            "n0de-t0ken-for-the-test".into(),
        )]);
        let attempt = Attempt {
            steps: vec!["started `node --token n0de-t0ken-for-the-test` (pid 7)".into()],
            result: Err("its last lines: \u{1b}]0;pwned\u{7} ready".into()),
        };
        assert_eq!(
            attempt.describe(),
            "started `node --token ${NODE_TOKEN}` (pid 7); restart failed: its last lines: \\u{1b}]0;pwned\\u{7} ready"
        );
    }

    fn remediate(cooldown_s: u64, max: Option<(u32, u64)>) -> Remediate {
        Remediate {
            how: Remedy::Command(CommandConfig {
                command: crate::config::CommandLine::Shell("true".into()),
                cwd: None,
                env: Default::default(),
                timeout: None,
                thresholds: None,
            }),
            cooldown: ConfigDuration::from_secs(cooldown_s),
            max: max.map(|(restarts, within)| MaxRestarts {
                restarts,
                within: ConfigDuration::from_secs(within),
            }),
        }
    }

    const MIN: i64 = 60_000;

    #[test]
    fn cooldown_then_go() {
        let r = remediate(300, None);
        let book = RestartBook::default().after_restart(&r, None, Timestamp(0));
        assert_eq!(
            book.decide(&r, Timestamp(4 * MIN)),
            Decision::Cooldown {
                next: Timestamp(5 * MIN)
            }
        );
        assert_eq!(book.decide(&r, Timestamp(5 * MIN)), Decision::Go);
    }

    #[test]
    fn max_restarts_within_a_window_then_it_frees() {
        let r = remediate(60, Some((3, 3600)));
        let mut book = RestartBook::default();
        for minute in [0, 5, 10] {
            assert_eq!(
                book.decide(&r, Timestamp(minute * MIN)),
                Decision::Go,
                "minute {minute}"
            );
            book = book.after_restart(&r, None, Timestamp(minute * MIN));
        }
        assert_eq!(
            book.decide(&r, Timestamp(15 * MIN)),
            Decision::Exhausted {
                frees_at: Timestamp(60 * MIN),
                restarts: 3
            }
        );
        assert_eq!(
            book.decide(&r, Timestamp(60 * MIN + 1)),
            Decision::Go,
            "the first restart left the window"
        );
    }

    #[test]
    fn settle_holds_until_its_end_and_the_book_round_trips() {
        let r = remediate(300, Some((3, 3600)));
        let book = RestartBook::default().after_restart(
            &r,
            Some(ConfigDuration::from_secs(120)),
            Timestamp(MIN),
        );
        assert_eq!(book.settling(Timestamp(2 * MIN)), Some(Timestamp(3 * MIN)));
        assert_eq!(book.settling(Timestamp(3 * MIN)), None);
        let state: TaskMemory = book.entries().into_iter().collect();
        assert_eq!(RestartBook::load(Some(&state)), book);
        assert_eq!(RestartBook::load(None), RestartBook::default());
    }

    #[test]
    fn old_restarts_are_forgotten() {
        let r = remediate(300, Some((2, 600)));
        let book = RestartBook {
            restarts: vec![Timestamp(0), Timestamp(MIN)],
            settle_until: None,
        };
        let later = book.after_restart(&r, None, Timestamp(30 * MIN));
        assert_eq!(later.restarts, vec![Timestamp(30 * MIN)]);
    }
}
