//! The `telegram` notifier: Bot API `sendMessage`.

use super::{Context, Failure, Payload};
use crate::config::Secret;

/// Where a telegram message goes.
pub struct Target<'a> {
    pub token: &'a Secret,
    pub chat_id: &'a str,
    pub topic_id: Option<i64>,
    pub api_url: &'a str,
}

/// Not implemented yet.
pub fn send(_target: &Target, _payload: &Payload, _context: &Context) -> Result<(), Failure> {
    Err(Failure::transient("telegram notifier is not supported yet"))
}
