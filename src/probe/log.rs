//! The `log` probe: a file followed across ticks, or a command's output.

use super::{Check, CheckStatus, Context, Observation};
use crate::config::LogProbe;

/// Not implemented yet.
pub fn observe(_probe: &LogProbe, _context: &Context, out: &mut Observation) {
    out.checks.push(Check {
        probe: "log",
        status: CheckStatus::Unsupported,
        summary: "log probe is not supported yet".to_string(),
    });
}
