//! The `metrics` probe: scrapes Prometheus text or OpenMetrics exposition;
//! every series becomes a signal addressable by name and labels.

use super::{Check, CheckStatus, Context, Observation};
use crate::config::MetricsProbe;

/// Not implemented yet.
pub fn observe(_probe: &MetricsProbe, _context: &Context, out: &mut Observation) {
    out.checks.push(Check {
        probe: "metrics",
        status: CheckStatus::Unsupported,
        summary: "metrics probe is not supported yet".to_string(),
    });
}
