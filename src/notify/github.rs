//! The `github` notifier: issues filed, commented and closed per alert.

use super::{Context, Failure, Payload};
use crate::config::{Secret, Severity};
use std::collections::BTreeMap;

/// Where issues go.
pub struct Target<'a> {
    pub repo: &'a str,
    pub token: &'a Secret,
    pub labels: &'a BTreeMap<Severity, Vec<String>>,
    pub api_url: &'a str,
    pub close_on_resolve: bool,
}

/// Not implemented yet.
pub fn send(_target: &Target, _payload: &Payload, _context: &Context) -> Result<(), Failure> {
    Err(Failure::transient("github notifier is not supported yet"))
}
