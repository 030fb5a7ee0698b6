//! The `process` probe: is the target alive, who is it, how big is it.

use super::{Check, CheckStatus, Context, Observation};
use crate::config::ProcessProbe;

/// Not implemented yet.
pub fn observe(_probe: &ProcessProbe, _context: &Context, out: &mut Observation) {
    out.checks.push(Check {
        probe: "process",
        status: CheckStatus::Unsupported,
        summary: "process probe is not supported yet".to_string(),
    });
}
