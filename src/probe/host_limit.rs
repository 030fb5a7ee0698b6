//! At most `connections_per_host` requests of a tick to one host and port
//! at a time. Thirty-two tasks connecting at once to one small server
//! overflow its listen backlog; the dropped SYNs come back a second later,
//! and latency rules then measure us, not the service.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// `defaults.connections_per_host` when the config does not say.
pub const DEFAULT_PER_HOST: usize = 6;

static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_PER_HOST);
static BUSY: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);
static FREED: Condvar = Condvar::new();

/// Sets the limit for this tick (at least 1).
pub fn set_limit(per_host: usize) {
    LIMIT.store(per_host.max(1), Ordering::Relaxed);
}

/// A connection slot to one host, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    host: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut busy = BUSY.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = busy.get_or_insert_with(HashMap::new).get_mut(&self.host) {
            *count = count.saturating_sub(1);
        }
        FREED.notify_all();
    }
}

/// The `host:port` a URL connects to (its scheme's port when it names none).
pub fn host_of(url: &str) -> String {
    match url.parse::<ureq::http::Uri>() {
        Ok(uri) => {
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            // One machine under several names is one listen backlog.
            let spelt = uri.host().unwrap_or("").to_ascii_lowercase();
            let host = match spelt.as_str() {
                "localhost" | "[::1]" | "::1" | "[::ffff:127.0.0.1]" => "loopback",
                h if h.starts_with("127.") || h.ends_with(".localhost") => "loopback",
                h => h,
            };
            format!("{host}:{port}")
        }
        Err(_) => url.to_string(),
    }
}

/// Waits, until `deadline` at the latest, for a slot to the host of `url`.
/// The error says how long it waited and what limits it.
pub fn acquire(url: &str, deadline: Instant) -> Result<Slot, String> {
    let host = host_of(url);
    let limit = LIMIT.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut busy = BUSY.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let count = busy
            .get_or_insert_with(HashMap::new)
            .entry(host.clone())
            .or_insert(0);
        if *count < limit {
            *count += 1;
            return Ok(Slot { host });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no connection to {host} within {:.1} s: {limit} other checks of this tick were using it (defaults.connections_per_host: {limit})",
                started.elapsed().as_secs_f64()
            ));
        }
        busy = FREED
            .wait_timeout(busy, left.min(Duration::from_millis(500)))
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// [`acquire`] within `budget`; the slot and the budget left after the wait.
pub fn within(url: &str, budget: Duration) -> Result<(Slot, Duration), String> {
    let deadline = Instant::now() + budget;
    let slot = acquire(url, deadline)?;
    Ok((slot, deadline.saturating_duration_since(Instant::now())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_their_ports() {
        assert_eq!(host_of("http://127.0.0.1:8545/x"), "loopback:8545");
        assert_eq!(host_of("http://localhost:8545/"), "loopback:8545");
        assert_eq!(host_of("https://example.org/metrics"), "example.org:443");
        assert_eq!(host_of("http://[::1]/"), "loopback:80");
        assert_eq!(host_of("http://10.0.0.2:80/"), "10.0.0.2:80");
    }

    #[test]
    fn a_full_host_waits_and_then_says_why() {
        let url = "http://127.0.0.1:1/limit-test";
        let slots: Vec<Slot> = (0..LIMIT.load(Ordering::Relaxed))
            .map(|_| acquire(url, Instant::now()).unwrap())
            .collect();
        let why = acquire(url, Instant::now() + Duration::from_millis(50)).unwrap_err();
        assert!(why.contains("connections_per_host"), "{why}");
        assert!(
            acquire("http://127.0.0.1:2/", Instant::now()).is_ok(),
            "other hosts are free"
        );
        drop(slots);
        assert!(acquire(url, Instant::now()).is_ok());
    }
}
