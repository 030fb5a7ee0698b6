//! The generic `webhook` notifier: a JSON POST per message.

use super::{Failure, Message};
use crate::config::Secret;
use crate::probe::http::{ClientSettings, agent, describe_error};
use std::collections::BTreeMap;
use std::time::Duration;

/// POSTs the message as JSON. Any 2xx is delivered; the URL (which often
/// carries a key) never appears in the error.
pub fn send(
    url: &Secret,
    headers: &BTreeMap<String, Secret>,
    message: &Message,
    timeout: Duration,
) -> Result<(), Failure> {
    let agent = agent(&ClientSettings {
        timeout,
        tls_verify: true,
        ca_file: None,
    })
    .map_err(Failure::transient)?;
    let body = message.to_json().to_string();
    let mut request = agent
        .post(url.expose())
        .header("content-type", "application/json")
        .header("idempotency-key", message.id.as_str());
    for (name, value) in headers {
        request = request.header(name.as_str(), value.expose());
    }
    match request.send(body.as_bytes()) {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(Failure::from_status(response.status().as_u16())),
        Err(e) => Err(Failure::transient(
            describe_error(&e, timeout).replace(url.expose(), "[webhook url]"),
        )),
    }
}
