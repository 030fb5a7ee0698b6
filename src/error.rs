//! Errors the program branches on, each a variant with its own message,
//! and the exit code derived from the variant ([`Error::exit_code`]), in
//! the manner of just's `src/error.rs`. I/O failures keep their `anyhow`
//! context and are [`Error::Tool`].

use crate::clock::Timestamp;
use crate::config::ConfigError;
use std::path::PathBuf;

/// Exit codes, as documented in README.md and `monitor --help`.
pub mod exit {
    /// The tick ran and every task is healthy, or another run held the lock.
    pub const OK: u8 = 0;
    /// The tick ran and some task is unhealthy or a remediation failed.
    pub const UNHEALTHY: u8 = 1;
    /// Usage or configuration error.
    pub const USAGE: u8 = 2;
    /// monitor itself could not work (database unusable, lock dir unwritable).
    pub const TOOL: u8 = 3;
    /// The tick ran, every task is healthy, but notifications are failing.
    pub const UNDELIVERED: u8 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// jobs.yaml does not load.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A profile named on the command line that jobs.yaml does not have.
    #[error("no profile `{name}` in {}: the profiles are {}", config.display(), known.join(", "))]
    UnknownProfile {
        name: String,
        config: PathBuf,
        known: Vec<String>,
    },
    /// `--task NAME` that the profile does not have.
    #[error(
        "no task `{name}` in profile `{profile}` of {}: its tasks are {}",
        config.display(),
        known.join(", ")
    )]
    UnknownTask {
        name: String,
        profile: String,
        config: PathBuf,
        known: Vec<String>,
    },
    /// `monitor silence add --task NAME` for a task no profile has.
    #[error("no task `{name}` in {}: the tasks are {}", config.display(), known.join(", "))]
    NoSuchTask {
        name: String,
        config: PathBuf,
        known: Vec<String>,
    },
    /// `monitor silence add --rule NAME` that the task does not have.
    #[error("task `{task}` has no rule `{rule}`")]
    UnknownRule { task: String, rule: String },
    /// `monitor silence remove ID` of no active silence.
    #[error("no active silence {0}: see `monitor silence list`")]
    UnknownSilence(i64),
    /// `monitor state get|delete` of a key that holds nothing.
    #[error("no value for {namespace}/{key}")]
    NoStateValue { namespace: String, key: String },
    /// `monitor state export` into the state folder itself.
    #[error(
        "{} is monitor's state folder (its database lives there): export to another folder",
        .0.display()
    )]
    ExportIntoStateFolder(PathBuf),
    /// A clock far ahead of the newest stored tick.
    #[error(
        "the clock says {}, {} after the last tick ({}): if that is right (the host was off that long), run once with MONITOR_CLOCK_JUMP_OK=1; otherwise fix the clock (timedatectl, NTP)",
        now.rfc3339(),
        crate::clock::human_duration(now.0 - newest.0),
        newest.rfc3339()
    )]
    ClockJump { now: Timestamp, newest: Timestamp },
    /// `MONITOR_NOW` unreadable, or a clock at 1970.
    #[error("{0}")]
    Clock(String),
    /// `--env-file` unreadable or malformed.
    #[error("{0}")]
    EnvFile(String),
    /// `MONITOR_LOG_LEVEL` (or the like) that names no level.
    #[error("{variable}={value:?} is not a log level: use off, error, warn, info, debug or trace")]
    LogLevel { variable: String, value: String },
    /// A schedule `render-crontab` cannot write for the chosen format.
    #[error("{0}")]
    Crontab(String),
    /// `monitor serve --bind` that names no address to listen on.
    #[error(
        "--bind {bind:?}: {why}; give host:port, e.g. {}",
        crate::api::DEFAULT_BIND
    )]
    Bind { bind: String, why: String },
    /// The API on a non-loopback address with no token.
    #[error(
        "refusing to serve the alerts API on {bind} without a token: {exposed} is not a loopback address, \
         so other hosts could read it. Bind a loopback address (the default is {}) and put \
         an authenticating reverse proxy in front, or set {} so that every request but \
         /healthz must send `Authorization: Bearer <token>`",
        crate::api::DEFAULT_BIND,
        crate::api::TOKEN_VARIABLE
    )]
    ExposedWithoutToken { bind: String, exposed: String },
    /// `monitor history` of a task or signal with nothing recorded, or a
    /// `--since` that is no time.
    #[error("{0}")]
    History(String),
    /// monitor itself could not work: the database, the lock, a file.
    #[error("{0:#}")]
    Tool(#[from] anyhow::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::UnknownProfile { .. }
            | Error::UnknownTask { .. }
            | Error::NoSuchTask { .. }
            | Error::UnknownRule { .. }
            | Error::UnknownSilence(_)
            | Error::NoStateValue { .. }
            | Error::ExportIntoStateFolder(_)
            | Error::ClockJump { .. }
            | Error::Clock(_)
            | Error::EnvFile(_)
            | Error::LogLevel { .. }
            | Error::Crontab(_)
            | Error::Bind { .. }
            | Error::ExposedWithoutToken { .. }
            | Error::History(_) => exit::USAGE,
            Error::Tool(_) => exit::TOOL,
        }
    }
}
