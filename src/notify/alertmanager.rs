//! The `alertmanager` notifier.

use super::{Context, Failure, Payload};
use crate::config::Text;

/// Not implemented yet.
pub fn send(
    _urls: &[Text],
    _generator_url: Option<&str>,
    _payload: &Payload,
    _context: &Context,
) -> Result<(), Failure> {
    Err(Failure::transient(
        "alertmanager notifier is not supported yet",
    ))
}
