//! The `feishu` notifier.

use super::{Context, Failure, Payload};
use crate::config::{FeishuFormat, Secret};

/// Not implemented yet.
pub fn send(
    _url: &Secret,
    _secret: &Secret,
    _format: FeishuFormat,
    _payload: &Payload,
    _context: &Context,
) -> Result<(), Failure> {
    Err(Failure::transient("feishu notifier is not supported yet"))
}
