//! The `disk` probe: a mount's usage and a folder's size.

use super::{Check, CheckStatus, Context, Observation};
use crate::config::DiskProbe;

/// Not implemented yet.
pub fn observe(_probe: &DiskProbe, _context: &Context, out: &mut Observation) {
    out.checks.push(Check {
        probe: "disk",
        status: CheckStatus::Unsupported,
        summary: "disk probe is not supported yet".to_string(),
    });
}
