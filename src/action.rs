//! Action tasks: things done on schedule rather than watched — trimming a
//! log in place, running a command.

use crate::config::Action;
use crate::probe::{Check, CheckStatus, Context, Observation};

/// Not implemented yet.
pub fn run(action: &Action, _context: &Context, out: &mut Observation) {
    let what = if action.trim_log.is_some() {
        "trim_log"
    } else {
        "command"
    };
    out.checks.push(Check {
        probe: "action",
        status: CheckStatus::Unsupported,
        summary: format!("{what} action is not supported yet"),
    });
}
