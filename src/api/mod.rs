//! `monitor serve`: the read-only alerts API (`/healthz`, `/v1/alerts`,
//! `/v1/runs`, `/v1/silences`, `/metrics`) over plain HTTP/1.1 on loopback.
//! It never writes the database nor creates it: each worker reads through
//! its own read-only connection (the store's queries), opened when the file
//! exists and reopened when the file is replaced.
//!
//! This file starts the server and guards where it listens; [`server`]
//! owns connections, deadlines and per-client caps; [`http`] parses request
//! heads and query strings; [`routes`] turns a request into an answer;
//! [`health`] is `/healthz`, [`metrics`] is `/metrics`.

mod health;
mod http;
mod metrics;
mod page;
mod peers;
mod routes;
mod server;

pub use http::BadRequest;

/// A time as the API reads `since=`: Unix seconds or RFC 3339.
pub fn parse_time(value: &str) -> Result<crate::clock::Timestamp, String> {
    http::parse_since(value)
}
pub use routes::{ALERT_PARAMETERS, parse_alert_query, parse_run_query};
pub use server::{HEAD_DEADLINE, HEAD_LIMIT, MAX_CONNECTIONS, PER_CLIENT, WORKERS};

use crate::clock;
use crate::config::Config;
use crate::error::Error;
use anyhow::Context;
use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

/// Where `monitor serve` listens unless `--bind` says otherwise.
pub const DEFAULT_BIND: &str = "127.0.0.1:8923";
/// The bearer token every endpoint but `/healthz` requires when set.
pub const TOKEN_VARIABLE: &str = "MONITOR_API_TOKEN";
/// `limit` when none is given, and its bounds.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 1000;

/// How `monitor serve` was asked to run.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `host:port`; a name must resolve to loopback addresses only.
    pub bind: String,
    /// `--db`, kept so a reloaded jobs.yaml still honours it.
    pub db: Option<PathBuf>,
    /// From `$MONITOR_API_TOKEN`; empty counts as unset.
    pub token: Option<String>,
}

/// The bearer token from `$MONITOR_API_TOKEN`, if set and not blank.
pub fn token_from_env() -> Option<String> {
    std::env::var(TOKEN_VARIABLE)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Runs the API until the process is killed. Refuses (exit 2) to listen
/// beyond loopback without a token.
pub fn serve(config: Config, options: &ServeOptions) -> Result<u8, Error> {
    let addresses = resolve_bind(&options.bind)?;
    let exposed: Vec<SocketAddr> = addresses
        .iter()
        .copied()
        .filter(|a| !is_loopback(a.ip()))
        .collect();
    if !exposed.is_empty() && options.token.is_none() {
        return Err(Error::ExposedWithoutToken {
            bind: options.bind.clone(),
            exposed: exposed[0].ip().to_string(),
        });
    }
    let now = clock::now().map_err(Error::Clock)?;
    let listener = TcpListener::bind(&addresses[..])
        .with_context(|| {
            format!(
                "listening on {} (is another `monitor serve` running? choose another address with --bind)",
                options.bind
            )
        })?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| options.bind.clone());
    if !exposed.is_empty() {
        log::warn!(
            "serving on {local}, beyond loopback: the bearer token travels in plain HTTP; prefer a TLS proxy in front"
        );
    }
    log::info!(
        "serving the read-only alerts API on http://{local}/ (database {}, token {})",
        config.state.display(),
        if options.token.is_some() {
            "required"
        } else {
            "not required"
        }
    );
    let api = Arc::new(routes::Api::new(config, options, now));
    server::serve(listener, api).context("serving the alerts API")?;
    Ok(crate::error::exit::OK)
}

fn resolve_bind(bind: &str) -> Result<Vec<SocketAddr>, Error> {
    let usage = |why: String| Error::Bind {
        bind: bind.to_string(),
        why,
    };
    if let Ok(address) = bind.parse::<SocketAddr>() {
        return Ok(vec![address]);
    }
    let addresses: Vec<SocketAddr> = bind
        .to_socket_addrs()
        .map_err(|e| usage(e.to_string()))?
        .collect();
    if addresses.is_empty() {
        return Err(usage("the name resolves to no address".into()));
    }
    Ok(addresses)
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_means_127_8_and_the_ipv6_loopback() {
        for (bind, loopback) in [
            ("127.0.0.1:8923", true),
            ("127.1.2.3:8923", true),
            ("[::1]:8923", true),
            ("[::ffff:127.0.0.1]:8923", true),
            ("0.0.0.0:8923", false),
            ("[::]:8923", false),
            ("192.168.1.10:8923", false),
        ] {
            let addresses = resolve_bind(bind).unwrap();
            assert_eq!(
                addresses.iter().all(|a| is_loopback(a.ip())),
                loopback,
                "{bind}"
            );
        }
        assert!(
            resolve_bind("localhost:8923")
                .unwrap()
                .iter()
                .all(|a| is_loopback(a.ip()))
        );
        for bad in ["8923", "127.0.0.1", "nowhere.invalid:80"] {
            let error = resolve_bind(bad).unwrap_err().to_string();
            assert!(error.contains("--bind"), "{error}");
        }
    }
}
