//! The profile's heartbeat (healthchecks.io style): after each tick, a GET
//! of `url` when it found nothing wrong, of `url/fail` otherwise. A dead
//! man's switch: when ticks stop, the receiving end notices.

use crate::config::{self, Secret, values};
use crate::http_client::{ClientSettings, agent, describe_error};
use serde::Deserialize;
use std::time::Duration;

/// `heartbeat: { url }`: GET after each completed tick; `url/fail` when
/// the tick found a problem.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    #[serde(deserialize_with = "values::secret_http_url")]
    pub url: Secret,
    #[serde(default)]
    pub timeout: Option<config::Duration>,
}

/// Pings `heartbeat`; best effort. The note for the summary.
pub fn ping(heartbeat: &Heartbeat, healthy: bool) -> String {
    let base = heartbeat.url.expose().trim_end_matches('/');
    let url = if healthy {
        base.to_string()
    } else {
        format!("{base}/fail")
    };
    let timeout = heartbeat
        .timeout
        .map(|t| t.std())
        .unwrap_or(Duration::from_secs(10));
    let settings = ClientSettings {
        timeout,
        tls_verify: true,
        ca_file: None,
        pin: None,
    };
    let result = agent(&settings).and_then(|agent| match agent.get(&url).call() {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
        Err(e) => Err(describe_error(&e, timeout)),
    });
    let what = if healthy {
        "heartbeat sent"
    } else {
        "heartbeat sent as a failure"
    };
    match result {
        Ok(()) => what.to_string(),
        Err(why) => {
            let why = super::redact(&why, &[heartbeat.url.expose()]);
            log::warn!("heartbeat failed: {why}");
            format!("heartbeat failed: {why}")
        }
    }
}
