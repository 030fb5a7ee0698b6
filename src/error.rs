//! Errors the program branches on, and the exit codes they map to.

use crate::config::ConfigError;

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
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("{0:#}")]
    Tool(anyhow::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) => exit::USAGE,
            Error::Tool(_) => exit::TOOL,
        }
    }
}
