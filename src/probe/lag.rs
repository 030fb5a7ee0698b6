//! The `lag` probe: local height against a reference height.

use super::{Check, CheckStatus, Context, Observation};
use crate::config::LagProbe;

/// Not implemented yet.
pub fn observe(_probe: &LagProbe, _context: &Context, out: &mut Observation) {
    out.checks.push(Check {
        probe: "lag",
        status: CheckStatus::Unsupported,
        summary: "lag probe is not supported yet".to_string(),
    });
}
