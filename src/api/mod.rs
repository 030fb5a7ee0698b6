//! `monitor serve`: the read-only alerts API (`/healthz`, `/v1/alerts`,
//! `/v1/runs`, `/v1/silences`, `/metrics`) over plain HTTP/1.1 on loopback.
//! Owns the HTTP handling, its limits and the API's SQL. It never writes
//! the database nor creates it: each worker reads through its own
//! read-only connection, opened when the file exists and reopened when the
//! file is replaced.
//!
//! Connections, their deadlines and per-client caps live in [`server`];
//! this file turns one request head into one answer.

mod server;

pub use server::{HEAD_DEADLINE, HEAD_LIMIT, MAX_CONNECTIONS, PER_CLIENT, WORKERS};

use crate::clock::{self, Timestamp};
use crate::config::{self, Config, Severity};
use crate::error::Error;
use crate::schedule::CronSchedule;
use crate::store::Store;
use anyhow::Context;
use rusqlite::types::Value as SqlValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// Where `monitor serve` listens unless `--bind` says otherwise.
pub const DEFAULT_BIND: &str = "127.0.0.1:8923";
/// The bearer token every endpoint but `/healthz` requires when set.
pub const TOKEN_VARIABLE: &str = "MONITOR_API_TOKEN";
/// `limit` when none is given, and its bounds.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 1000;

/// `alert_history.status` values: the alert transitions, events, and
/// notifications given up on.
pub const HISTORY_STATUSES: &[&str] = &[
    "pending",
    "firing",
    "reminder",
    "escalated",
    "resolved",
    "cleared",
    "restarted",
    "restart_failed",
    "event",
    "dead_letter",
];

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
        return Err(Error::Usage(format!(
            "refusing to serve the alerts API on {} without a token: {} is not a loopback address, \
             so other hosts could read it. Bind a loopback address (the default is {DEFAULT_BIND}) and put \
             an authenticating reverse proxy in front, or set {TOKEN_VARIABLE} so that every request but \
             /healthz must send `Authorization: Bearer <token>`",
            options.bind,
            exposed[0].ip()
        )));
    }
    let now = clock::now().map_err(Error::Usage)?;
    let listener = TcpListener::bind(&addresses[..])
        .with_context(|| {
            format!(
                "listening on {} (is another `monitor serve` running? choose another address with --bind)",
                options.bind
            )
        })
        .map_err(Error::Tool)?;
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
    let api = Arc::new(Api::new(config, options, now));
    server::serve(listener, api)
        .context("serving the alerts API")
        .map_err(Error::Tool)?;
    Ok(crate::error::exit::OK)
}

fn resolve_bind(bind: &str) -> Result<Vec<SocketAddr>, Error> {
    let usage = |why: String| {
        Error::Usage(format!(
            "--bind {bind:?}: {why}; give host:port, e.g. {DEFAULT_BIND}"
        ))
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

// ---------------------------------------------------------------- HTTP

/// A parsed request line and headers.
#[derive(Debug, PartialEq)]
struct RequestHead {
    method: String,
    /// Path and query, as sent.
    target: String,
    headers: Vec<(String, String)>,
}

impl RequestHead {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client announced a body (which we never read).
    fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some()
            || self
                .header("content-length")
                .is_some_and(|n| n.trim() != "0")
    }
}

fn parse_head(bytes: &[u8]) -> Result<RequestHead, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the request head is not UTF-8")?;
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .skip_while(|l| l.is_empty());
    let request_line = lines.next().ok_or("empty request")?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("malformed request line {request_line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unsupported protocol {version:?}: HTTP/1.x only"));
    }
    if method.is_empty() || !target.starts_with('/') {
        return Err(format!("malformed request line {request_line:?}"));
    }
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line {line:?}"))?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("malformed header name {name:?}"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        headers,
    })
}

/// An answer, written with `Connection: close`.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

const JSON: &str = "application/json";
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Response {
    fn json(status: u16, body: &impl serde::Serialize) -> Response {
        let mut bytes = serde_json::to_vec(body).unwrap_or_default();
        bytes.push(b'\n');
        Response {
            status,
            content_type: JSON,
            headers: Vec::new(),
            body: bytes,
        }
    }

    fn error(status: u16, message: impl Into<String>) -> Response {
        Response::json(status, &json!({ "error": message.into() }))
    }

    fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

// ---------------------------------------------------------------- the API

/// What every worker shares: the configuration (reloaded when jobs.yaml
/// changes) and the token's digest.
struct Api {
    config: ConfigCache,
    token_digest: Option<[u8; 32]>,
}

impl server::Handler for Api {
    type State = Database;

    fn answer(&self, bytes: &[u8], body_follows: bool, database: &mut Database) -> server::Answer {
        let started = Instant::now();
        let head = match parse_head(bytes) {
            Ok(head) => head,
            Err(why) => {
                return server::Answer {
                    bytes: Response::error(400, why).to_bytes(),
                    drain: body_follows,
                };
            }
        };
        let response = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.respond(&head, database)
        }))
        .unwrap_or_else(|_| {
            database.forget();
            Response::error(500, "internal error (a bug in monitor): see its log")
        });
        let mut bytes = response.to_bytes();
        if head.method == "HEAD" {
            // A HEAD answer has the headers of a GET and no body.
            bytes.truncate(bytes.len() - response.body.len());
        }
        log::debug!(
            "{} {} -> {} in {:.1} ms",
            head.method,
            crate::probe::mask_credentials(&head.target),
            response.status,
            started.elapsed().as_secs_f64() * 1000.0
        );
        server::Answer {
            bytes,
            drain: body_follows || head.has_body(),
        }
    }

    fn refusal(&self, status: u16, message: String) -> Vec<u8> {
        Response::error(status, message).to_bytes()
    }
}

impl Api {
    fn new(config: Config, options: &ServeOptions, now: Timestamp) -> Api {
        Api {
            config: ConfigCache::new(config, options.db.clone(), now),
            token_digest: options
                .token
                .as_ref()
                .map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    fn respond(&self, head: &RequestHead, database: &mut Database) -> Response {
        if head.method != "GET" && head.method != "HEAD" {
            return Response::error(
                405,
                format!(
                    "method {} is not allowed: this API is read-only, use GET (or HEAD)",
                    head.method
                ),
            )
            .with_header("Allow", "GET, HEAD");
        }
        let (path, query) = head
            .target
            .split_once('?')
            .unwrap_or((head.target.as_str(), ""));
        if path != "/healthz" && !self.authorized(head) {
            return Response::error(
                401,
                format!(
                    "missing or wrong bearer token: send `Authorization: Bearer <token>` with the value of {TOKEN_VARIABLE}"
                ),
            )
            .with_header("WWW-Authenticate", "Bearer");
        }
        let now = clock::now().unwrap_or_else(|_| clock::system_now());
        let answer = match path {
            "/healthz" => parse_query(query, &[]).map(|_| self.healthz(database, now)),
            "/v1/alerts" => AlertQuery::parse(query).map(|q| self.alerts(database, &q)),
            "/v1/runs" => RunQuery::parse(query).map(|q| self.runs(database, &q)),
            "/v1/silences" => parse_query(query, &[]).map(|_| self.silences(database, now)),
            "/metrics" => parse_query(query, &[]).map(|_| self.metrics(database, now)),
            _ => {
                return Response::error(
                    404,
                    format!(
                        "no such endpoint {path}: try /healthz, /v1/alerts, /v1/runs, /v1/silences or /metrics"
                    ),
                );
            }
        };
        answer.unwrap_or_else(|bad| bad.response())
    }

    /// Whether the request may see more than `/healthz`.
    fn authorized(&self, head: &RequestHead) -> bool {
        self.token_digest
            .as_ref()
            .is_none_or(|expected| carries_token(head, expected))
    }

    /// Runs `read` on the database; `None` when no tick has created it yet.
    /// An error drops the worker's connection, so the next request opens
    /// the file afresh.
    fn read<T>(
        &self,
        database: &mut Database,
        read: impl FnOnce(&rusqlite::Connection) -> anyhow::Result<T>,
    ) -> anyhow::Result<Option<T>> {
        let path = self.config.current().config.state.clone();
        let result = match database.get(&path) {
            Ok(Some(store)) => read(store.connection()).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        if result.is_err() {
            database.forget();
        }
        result
    }

    /// 200 when the database reads and no enabled profile is overdue;
    /// 503 naming why otherwise.
    fn healthz(&self, database: &mut Database, now: Timestamp) -> Response {
        let current = self.config.current();
        let config = &current.config;
        let path = config.state.display().to_string();
        let mut body = json!({ "database": path, "now": now.rfc3339() });
        let health = match self.read(database, |c| profile_health(c, config, now)) {
            Ok(Some(health)) => health,
            Ok(None) => {
                return unhealthy(
                    body,
                    format!(
                        "the database {path} does not exist yet: no tick has run (is the scheduler running?)"
                    ),
                );
            }
            Err(e) => return unhealthy(body, format!("reading the database {path}: {e:#}")),
        };
        // Notifications failing do not make the host unhealthy, but nobody
        // may be hearing about it: a warning, with the figures.
        let read_backlog = |c: &rusqlite::Connection| {
            let backlog = crate::store::backlog(c)?;
            let mut lines = Vec::new();
            for b in backlog {
                // Which URLs of an Alertmanager cluster are the ones failing.
                let mut failing = Vec::new();
                if let Some(config::NotifierKind::Alertmanager { urls, .. }) =
                    config.notifier(&b.notifier).map(|n| &n.kind)
                {
                    for (target, since) in crate::store::failing_targets(c, &b.notifier)? {
                        if let Some(url) = urls
                            .iter()
                            .find(|u| crate::notify::alertmanager::target(u) == target)
                        {
                            failing.push(format!(
                                "{} since {}",
                                crate::notify::alertmanager::shown(url),
                                since.rfc3339()
                            ));
                        }
                    }
                }
                let which = if failing.is_empty() {
                    String::new()
                } else {
                    format!(" at {}", failing.join(", "))
                };
                lines.push(format!(
                    "{} notification{} to {}{which} waiting since {} (last error: {})",
                    b.waiting,
                    if b.waiting == 1 { "" } else { "s" },
                    b.notifier,
                    b.since.rfc3339(),
                    b.error
                ));
            }
            Ok(lines)
        };
        let warnings: Vec<String> = match self.read(database, read_backlog) {
            Ok(Some(lines)) => lines,
            Ok(None) => Vec::new(),
            Err(e) => vec![format!("reading the outbox: {e:#}")],
        };
        let overdue: Vec<&ProfileHealth> = health.iter().filter(|p| p.overdue).collect();
        let mut reasons: Vec<String> = overdue.iter().map(|p| p.reason()).collect();
        if let Some(error) = &current.error {
            reasons.push(format!(
                "jobs.yaml no longer loads (still using the last good one): {error}"
            ));
        }
        merge(
            &mut body,
            json!({
                "profiles": health.iter().map(ProfileHealth::to_json).collect::<Vec<_>>(),
                "overdue": overdue.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
                "warnings": warnings,
            }),
        );
        if reasons.is_empty() {
            merge(&mut body, json!({ "status": "ok" }));
            Response::json(200, &body)
        } else {
            unhealthy(body, reasons.join("; "))
        }
    }

    fn alerts(&self, database: &mut Database, query: &AlertQuery) -> Response {
        #[derive(serde::Serialize)]
        struct Alerts {
            limit: u32,
            alerts: Vec<AlertRow>,
        }
        match self.read(database, |c| query.run(c)) {
            Ok(rows) => Response::json(
                200,
                &Alerts {
                    limit: query.limit,
                    alerts: rows.unwrap_or_default(),
                },
            ),
            Err(e) => database_error(&e),
        }
    }

    fn runs(&self, database: &mut Database, query: &RunQuery) -> Response {
        #[derive(serde::Serialize)]
        struct Runs {
            limit: u32,
            runs: Vec<RunRow>,
        }
        match self.read(database, |c| query.run(c)) {
            Ok(rows) => Response::json(
                200,
                &Runs {
                    limit: query.limit,
                    runs: rows.unwrap_or_default(),
                },
            ),
            Err(e) => database_error(&e),
        }
    }

    fn silences(&self, database: &mut Database, now: Timestamp) -> Response {
        #[derive(serde::Serialize)]
        struct Silences {
            silences: Vec<SilenceRow>,
        }
        match self.read(database, |c| active_silences(c, now)) {
            Ok(rows) => Response::json(
                200,
                &Silences {
                    silences: rows.unwrap_or_default(),
                },
            ),
            Err(e) => database_error(&e),
        }
    }

    fn metrics(&self, database: &mut Database, now: Timestamp) -> Response {
        let current = self.config.current();
        let config = &current.config;
        let read = self.read(database, |c| {
            let mut figures = Figures::read(c, now)?;
            figures.overdue = profile_health(c, config, now)?
                .into_iter()
                .map(|p| (p.name, p.overdue))
                .collect();
            Ok(figures)
        });
        match read {
            Ok(figures) => Response {
                status: 200,
                content_type: EXPOSITION,
                headers: Vec::new(),
                body: figures
                    .unwrap_or_default()
                    .exposition(&config.host)
                    .into_bytes(),
            },
            Err(e) => database_error(&e),
        }
    }
}

/// A worker's read-only connection, kept between requests (with its page
/// cache and prepared statements) while the file at the path stays the
/// same file. Holds no transaction between requests, so it never stands
/// in the way of a tick or a checkpoint.
#[derive(Default)]
struct Database {
    open: Option<OpenDatabase>,
}

struct OpenDatabase {
    path: PathBuf,
    /// Device and inode: a database moved aside and recreated is reopened.
    identity: (u64, u64),
    store: Store,
}

impl Database {
    /// The database at `path`; `None` when it does not exist (yet).
    fn get(&mut self, path: &Path) -> anyhow::Result<Option<&Store>> {
        use std::os::unix::fs::MetadataExt;
        let identity = match std::fs::metadata(path) {
            Ok(metadata) => (metadata.dev(), metadata.ino()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.open = None;
                return Ok(None);
            }
            Err(e) => {
                self.open = None;
                return Err(e).with_context(|| format!("reading {}", path.display()));
            }
        };
        let same = self
            .open
            .as_ref()
            .is_some_and(|open| open.path == path && open.identity == identity);
        if !same {
            self.open = open_database(path)?.map(|store| OpenDatabase {
                path: path.to_path_buf(),
                identity,
                store,
            });
        }
        Ok(self.open.as_ref().map(|open| &open.store))
    }

    fn forget(&mut self) {
        self.open = None;
    }
}

/// Whether the request sends `Authorization: Bearer <token>` for the token
/// whose SHA-256 is `expected`. Comparing digests, the time taken says
/// nothing about how much of the token was right.
fn carries_token(head: &RequestHead, expected: &[u8; 32]) -> bool {
    let Some((scheme, presented)) = head
        .header("authorization")
        .and_then(|value| value.split_once(' '))
    else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let presented: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
    let difference = presented
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

/// `/healthz` failing: the body so far, with status and reason.
fn unhealthy(mut body: Value, reason: String) -> Response {
    merge(
        &mut body,
        json!({ "status": "unavailable", "reason": reason }),
    );
    Response::json(503, &body)
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

fn database_error(error: &anyhow::Error) -> Response {
    log::warn!("API: {error:#}");
    Response::error(503, format!("the database cannot be read: {error:#}"))
}

/// Opens the database read-only. `None` when it does not exist or no
/// migration has run in it yet (a first tick is creating it).
fn open_database(path: &Path) -> anyhow::Result<Option<Store>> {
    let Some(store) = Store::open_read_only(path)? else {
        return Ok(None);
    };
    if store.schema_version()? == 0 {
        return Ok(None);
    }
    Ok(Some(store))
}

/// jobs.yaml as last loaded, reloaded when the file changes, so a profile
/// added or removed by a config sync is seen without restarting the API.
struct ConfigCache {
    path: PathBuf,
    db: Option<PathBuf>,
    state: Mutex<Arc<Loaded>>,
}

struct Loaded {
    config: Config,
    /// Modification time and size of the file when read.
    stamp: Option<(SystemTime, u64)>,
    /// Why the file on disk does not load now, if it does not.
    error: Option<String>,
    /// When this configuration was loaded: a profile that never ran is
    /// judged from here.
    loaded_at: Timestamp,
}

fn file_stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.modified()?, metadata.len()))
}

impl ConfigCache {
    fn new(config: Config, db: Option<PathBuf>, now: Timestamp) -> ConfigCache {
        let path = config.path.clone();
        ConfigCache {
            state: Mutex::new(Arc::new(Loaded {
                stamp: file_stamp(&path).ok(),
                config,
                error: None,
                loaded_at: now,
            })),
            path,
            db,
        }
    }

    /// The configuration to use now, reloading jobs.yaml if it changed. A
    /// file that no longer loads leaves the last good configuration in
    /// place, with the error kept for `/healthz`.
    fn current(&self) -> Arc<Loaded> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stamp = file_stamp(&self.path);
        if let (Ok(stamp), Some(before)) = (&stamp, state.stamp)
            && *stamp == before
        {
            return state.clone();
        }
        let now = clock::now().unwrap_or_else(|_| clock::system_now());
        let next = match stamp {
            Err(e) => Loaded {
                config: state.config.clone(),
                stamp: None,
                error: Some(format!("reading {}: {e}", self.path.display())),
                loaded_at: state.loaded_at,
            },
            Ok(stamp) => match config::load(&self.path, self.db.as_deref()) {
                Ok(config) => {
                    log::info!("reloaded {}", self.path.display());
                    Loaded {
                        config,
                        stamp: Some(stamp),
                        error: None,
                        loaded_at: now,
                    }
                }
                Err(e) => {
                    log::warn!("{e} (the API keeps the last good configuration)");
                    Loaded {
                        config: state.config.clone(),
                        stamp: Some(stamp),
                        error: Some(e.to_string()),
                        loaded_at: state.loaded_at,
                    }
                }
            },
        };
        *state = Arc::new(next);
        state.clone()
    }
}

// ---------------------------------------------------------------- health

/// How one configured profile is keeping to its schedule.
#[derive(Debug, Clone, PartialEq)]
struct ProfileHealth {
    name: String,
    cron: String,
    enabled: bool,
    /// When its newest run started.
    last_run: Option<Timestamp>,
    /// From when its schedule is judged: its newest run, or (never run)
    /// when it first appeared in jobs.yaml.
    since: Option<Timestamp>,
    /// When it counts as overdue if it does not run again (enabled only).
    overdue_after: Option<Timestamp>,
    overdue: bool,
    /// An open maintenance window: its end and reason.
    maintenance: Option<(Timestamp, String)>,
}

impl ProfileHealth {
    /// Why this (overdue) profile makes `/healthz` fail.
    fn reason(&self) -> String {
        match self.last_run {
            Some(last) => format!(
                "profile {} is overdue: its last run started {} (cron \"{}\"), and three fire times have passed since",
                self.name,
                last.rfc3339(),
                self.cron
            ),
            None => format!(
                "profile {} is overdue: it never ran since it appeared in jobs.yaml by {} (cron \"{}\"); is it in the crontab?",
                self.name,
                self.since.map(Timestamp::rfc3339).unwrap_or_default(),
                self.cron
            ),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "profile": self.name,
            "cron": self.cron,
            "enabled": self.enabled,
            "last_run": self.last_run.map(Timestamp::rfc3339),
            "overdue_after": self.overdue_after.map(Timestamp::rfc3339),
            "overdue": self.overdue,
            "maintenance": self.maintenance.as_ref().map(|(until, reason)| {
                json!({ "until": until.rfc3339(), "reason": reason })
            }),
        })
    }
}

/// Each configured profile's last run and whether it is overdue. Disabled
/// profiles are listed but never overdue: nothing is meant to run them. A
/// profile that never ran is judged from when this configuration was
/// loaded, so one added to jobs.yaml but missing from the crontab shows.
fn profile_health(
    connection: &rusqlite::Connection,
    config: &Config,
    now: Timestamp,
) -> anyhow::Result<Vec<ProfileHealth>> {
    // A run stored by a clock that ran ahead is not the last run.
    let mut statement = connection.prepare_cached(
        "SELECT max(started_at) FROM runs WHERE profile = ?1 AND started_at <= ?2",
    )?;
    let first_seen = crate::store::first_seen(connection)?;
    let mut health = Vec::new();
    let latest = now.0 + crate::clock::FUTURE_SLACK_MS;
    for profile in &config.profiles {
        let last_run: Option<Timestamp> = statement
            .query_row(rusqlite::params![&profile.name, latest], |r| {
                r.get::<_, Option<i64>>(0)
            })?
            .map(Timestamp);
        let since =
            crate::schedule::watched_since(last_run, first_seen.get(&profile.name).copied());
        let overdue_after = since
            .filter(|_| profile.enabled)
            .and_then(|since| overdue_after(&profile.cron, since));
        health.push(ProfileHealth {
            name: profile.name.clone(),
            cron: profile.cron.as_str().to_string(),
            enabled: profile.enabled,
            last_run,
            since,
            overdue_after,
            overdue: overdue_after.is_some_and(|after| now > after),
            maintenance: crate::silence::maintenance(&profile.maintenance, now),
        });
    }
    Ok(health)
}

fn overdue_after(cron: &CronSchedule, last: Timestamp) -> Option<Timestamp> {
    cron.overdue_after(last)
}

// ---------------------------------------------------------------- parameters

/// A request parameter that cannot be used: answered 400, naming it.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRequest {
    pub parameter: String,
    pub value: String,
    pub message: String,
}

impl BadRequest {
    fn response(&self) -> Response {
        Response::json(
            400,
            &json!({ "error": self.message, "parameter": self.parameter, "value": self.value }),
        )
    }
}

/// Splits and decodes `a=1&b=2`, refusing names not in `allowed` and names
/// given twice.
fn parse_query(
    query: &str,
    allowed: &[&'static str],
) -> Result<BTreeMap<&'static str, String>, BadRequest> {
    let mut parameters = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(raw_name).map_err(|why| BadRequest {
            parameter: raw_name.to_string(),
            value: raw_value.to_string(),
            message: format!("parameter name {raw_name:?}: {why}"),
        })?;
        let value = percent_decode(raw_value).map_err(|why| BadRequest {
            parameter: name.clone(),
            value: raw_value.to_string(),
            message: format!("{name}={raw_value:?}: {why}"),
        })?;
        let Some(known) = allowed.iter().find(|a| **a == name) else {
            let takes = if allowed.is_empty() {
                "this endpoint takes no parameters".to_string()
            } else {
                format!("this endpoint takes {}", allowed.join(", "))
            };
            return Err(BadRequest {
                message: format!("unknown parameter {name:?} (value {value:?}): {takes}"),
                parameter: name,
                value,
            });
        };
        if parameters.insert(*known, value.clone()).is_some() {
            return Err(BadRequest {
                message: format!("{known} is given twice (last {value:?}): give it once"),
                parameter: name,
                value,
            });
        }
    }
    Ok(parameters)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("a % is not followed by two hex digits")?;
                out.push(hex);
                index += 2;
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_string())
}

/// `limit`: a whole number, clamped to 1..=1000.
fn parse_limit(value: &str) -> Result<u32, String> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "limit={value:?} is not a whole number: give 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})"
        ));
    }
    if value.starts_with('-') {
        return Ok(1);
    }
    Ok(digits
        .parse::<u64>()
        .map_or(MAX_LIMIT, |n| n.clamp(1, u64::from(MAX_LIMIT)) as u32))
}

/// `since`: Unix seconds (fractions allowed) or RFC 3339.
fn parse_since(value: &str) -> Result<Timestamp, String> {
    let bad = || {
        format!(
            "since={value:?} is not a time: give Unix seconds (1790000000) or RFC 3339 (2026-09-21T12:00:00Z)"
        )
    };
    let (whole, fraction) = value.split_once('.').unwrap_or((value, "0"));
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if numeric(whole) && numeric(fraction) {
        // Up to year 9999: keeps the milliseconds well inside i64.
        return match value.parse::<f64>() {
            Ok(secs) if secs <= 253_402_300_799.0 => Ok(Timestamp((secs * 1000.0).round() as i64)),
            _ => Err(bad()),
        };
    }
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64))
        .map_err(|_| bad())
}

fn non_empty(name: &str, value: &str) -> Result<String, String> {
    if value.is_empty() {
        Err(format!(
            "{name}=\"\" is empty: give a name or leave {name} out"
        ))
    } else {
        Ok(value.to_string())
    }
}

// ---------------------------------------------------------------- queries

/// A row of `alert_history` as `/v1/alerts` shows it.
#[derive(Debug, serde::Serialize)]
pub struct AlertRow {
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub host: String,
    pub profile: String,
    pub task: String,
    pub rule: String,
    /// The task name.
    pub source: String,
    pub status: String,
    pub severity: String,
    pub summary: String,
    pub value: Option<f64>,
    pub threshold: Option<String>,
}

/// A row of `runs` as `/v1/runs` shows it.
#[derive(Debug, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub profile: String,
    pub host: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: i64,
    /// `ok` or `failing`.
    pub status: String,
    pub tasks: i64,
    pub failing: i64,
    pub summary: String,
}

/// An active silence as `/v1/silences` shows it; no profile or rule means
/// every profile or every rule.
#[derive(Debug, serde::Serialize)]
pub struct SilenceRow {
    pub id: i64,
    pub profile: Option<String>,
    pub task: String,
    pub rule: Option<String>,
    pub starts_at: String,
    pub ends_at: String,
    pub reason: String,
    pub created_by: String,
}

/// `GET /v1/alerts`: which history rows, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertQuery {
    pub limit: u32,
    /// The task name.
    pub source: Option<String>,
    pub severity: Option<Severity>,
    pub status: Option<String>,
    pub since: Option<Timestamp>,
}

impl AlertQuery {
    pub const PARAMETERS: &'static [&'static str] =
        &["limit", "source", "severity", "status", "since"];

    /// Parses the query string (without `?`).
    pub fn parse(query: &str) -> Result<AlertQuery, BadRequest> {
        let mut parsed = AlertQuery {
            limit: DEFAULT_LIMIT,
            source: None,
            severity: None,
            status: None,
            since: None,
        };
        for (name, value) in parse_query(query, Self::PARAMETERS)? {
            let bad = |message: String| BadRequest {
                parameter: name.to_string(),
                value: value.clone(),
                message,
            };
            match name {
                "limit" => parsed.limit = parse_limit(&value).map_err(bad)?,
                "source" => parsed.source = Some(non_empty(name, &value).map_err(bad)?),
                "severity" => {
                    parsed.severity = Some(value.parse::<Severity>().map_err(|_| {
                        bad(format!(
                            "severity={value:?} is not a severity: give info, warning or critical"
                        ))
                    })?);
                }
                "status" => {
                    if !HISTORY_STATUSES.contains(&value.as_str()) {
                        return Err(bad(format!(
                            "status={value:?} is not a history status: give one of {}",
                            HISTORY_STATUSES.join(", ")
                        )));
                    }
                    parsed.status = Some(value.clone());
                }
                "since" => parsed.since = Some(parse_since(&value).map_err(bad)?),
                _ => {}
            }
        }
        Ok(parsed)
    }

    /// The exact SQL `/v1/alerts` runs, and its parameters. Only the given
    /// filters appear, so SQLite can walk one `(filter, at DESC, id DESC)`
    /// index in order and stop after `limit` rows, with no sort.
    pub fn sql(&self) -> (String, Vec<SqlValue>) {
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        let mut filter = |condition: &str, value: SqlValue| {
            values.push(value);
            conditions.push(format!("{condition} ?{}", values.len()));
        };
        if let Some(source) = &self.source {
            filter("source =", SqlValue::Text(source.clone()));
        }
        if let Some(severity) = self.severity {
            filter("severity =", SqlValue::Text(severity.as_str().to_string()));
        }
        if let Some(status) = &self.status {
            filter("status =", SqlValue::Text(status.clone()));
        }
        if let Some(since) = self.since {
            filter("at >=", SqlValue::Integer(since.0));
        }
        let mut sql = String::from(
            "SELECT id, at, host, profile, task, rule, source, status, severity, summary, value, threshold FROM alert_history",
        );
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        values.push(SqlValue::Integer(i64::from(self.limit)));
        sql.push_str(&format!(
            " ORDER BY at DESC, id DESC LIMIT ?{}",
            values.len()
        ));
        (sql, values)
    }

    fn run(&self, connection: &rusqlite::Connection) -> anyhow::Result<Vec<AlertRow>> {
        let (sql, values) = self.sql();
        let mut statement = connection.prepare_cached(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(values), |r| {
            Ok(AlertRow {
                id: r.get(0)?,
                at: Timestamp(r.get(1)?).rfc3339(),
                host: r.get(2)?,
                profile: r.get(3)?,
                task: r.get(4)?,
                rule: r.get(5)?,
                source: r.get(6)?,
                status: r.get(7)?,
                severity: r.get(8)?,
                summary: r.get(9)?,
                value: r.get(10)?,
                threshold: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

/// `GET /v1/runs`: which ticks, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RunQuery {
    pub limit: u32,
    pub profile: Option<String>,
}

impl RunQuery {
    pub const PARAMETERS: &'static [&'static str] = &["limit", "profile"];

    pub fn parse(query: &str) -> Result<RunQuery, BadRequest> {
        let mut parsed = RunQuery {
            limit: DEFAULT_LIMIT,
            profile: None,
        };
        for (name, value) in parse_query(query, Self::PARAMETERS)? {
            let bad = |message: String| BadRequest {
                parameter: name.to_string(),
                value: value.clone(),
                message,
            };
            match name {
                "limit" => parsed.limit = parse_limit(&value).map_err(bad)?,
                "profile" => parsed.profile = Some(non_empty(name, &value).map_err(bad)?),
                _ => {}
            }
        }
        Ok(parsed)
    }

    /// The exact SQL `/v1/runs` runs, and its parameters.
    pub fn sql(&self) -> (String, Vec<SqlValue>) {
        let mut sql = String::from(
            "SELECT id, profile, host, started_at, finished_at, duration_ms, status, tasks, failing, summary FROM runs",
        );
        let mut values = Vec::new();
        if let Some(profile) = &self.profile {
            values.push(SqlValue::Text(profile.clone()));
            sql.push_str(" WHERE profile = ?1");
        }
        values.push(SqlValue::Integer(i64::from(self.limit)));
        sql.push_str(&format!(
            " ORDER BY started_at DESC, id DESC LIMIT ?{}",
            values.len()
        ));
        (sql, values)
    }

    fn run(&self, connection: &rusqlite::Connection) -> anyhow::Result<Vec<RunRow>> {
        let (sql, values) = self.sql();
        let mut statement = connection.prepare_cached(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(values), |r| {
            Ok(RunRow {
                id: r.get(0)?,
                profile: r.get(1)?,
                host: r.get(2)?,
                started_at: Timestamp(r.get(3)?).rfc3339(),
                finished_at: Timestamp(r.get(4)?).rfc3339(),
                duration_ms: r.get(5)?,
                status: r.get(6)?,
                tasks: r.get(7)?,
                failing: r.get(8)?,
                summary: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

/// Silences not removed and not over at `now`, soonest to end first. A
/// null profile or rule means every profile or every rule.
fn active_silences(
    connection: &rusqlite::Connection,
    now: Timestamp,
) -> anyhow::Result<Vec<SilenceRow>> {
    let mut statement = connection.prepare_cached(
        "SELECT id, profile, task, rule, starts_at, ends_at, reason, created_by FROM silences
         WHERE removed_at IS NULL AND ends_at > ?1 ORDER BY ends_at, id",
    )?;
    let rows = statement.query_map([now.0], |r| {
        Ok(SilenceRow {
            id: r.get(0)?,
            profile: r.get(1)?,
            task: r.get(2)?,
            rule: r.get(3)?,
            starts_at: Timestamp(r.get(4)?).rfc3339(),
            ends_at: Timestamp(r.get(5)?).rfc3339(),
            reason: r.get(6)?,
            created_by: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

// ---------------------------------------------------------------- metrics

/// The newest run of a profile and how many runs are kept.
#[derive(Debug, Clone, PartialEq)]
struct ProfileFigures {
    profile: String,
    runs: i64,
    started_at: Timestamp,
    duration_ms: i64,
    ok: bool,
}

/// Restarts per profile, task and result for `/metrics`: read from the
/// covering index `alert_history_restarts`, not the whole history.
pub const RESTART_COUNTS_SQL: &str = "SELECT profile, task, status, count(*) FROM alert_history
     WHERE status IN ('restarted', 'restart_failed') GROUP BY profile, task, status";

/// monitor's own figures for `/metrics`, read in one snapshot.
#[derive(Debug, Default, PartialEq)]
struct Figures {
    profiles: Vec<ProfileFigures>,
    /// Firing alerts by severity.
    firing: BTreeMap<String, i64>,
    outbox_backlog: i64,
    /// (profile, task, result) → restarts in the history.
    restarts: BTreeMap<(String, String, &'static str), i64>,
    silences_active: i64,
    /// Each configured profile and whether it is overdue (never-run ones
    /// judged from when they appeared in jobs.yaml).
    overdue: Vec<(String, bool)>,
}

impl Figures {
    fn read(connection: &rusqlite::Connection, now: Timestamp) -> anyhow::Result<Figures> {
        // One read transaction: every figure from the same snapshot.
        let snapshot = connection.unchecked_transaction()?;
        let mut figures = Figures::default();
        let mut statement = snapshot.prepare(
            "SELECT c.profile, c.runs, r.started_at, r.duration_ms, r.status
             FROM (SELECT profile, count(*) AS runs FROM runs GROUP BY profile) AS c
             JOIN runs AS r ON r.id = (SELECT id FROM runs WHERE profile = c.profile
                                       ORDER BY started_at DESC, id DESC LIMIT 1)
             ORDER BY c.profile",
        )?;
        let rows = statement.query_map([], |r| {
            Ok(ProfileFigures {
                profile: r.get(0)?,
                runs: r.get(1)?,
                started_at: Timestamp(r.get(2)?),
                duration_ms: r.get(3)?,
                ok: r.get::<_, String>(4)? == "ok",
            })
        })?;
        figures.profiles = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        let mut statement = snapshot.prepare(
            "SELECT severity, count(*) FROM alert_state WHERE status = 'firing' GROUP BY severity",
        )?;
        for row in statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))? {
            let (severity, count) = row?;
            figures.firing.insert(severity, count);
        }
        figures.outbox_backlog = snapshot.query_row(
            "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        let mut statement = snapshot.prepare(RESTART_COUNTS_SQL)?;
        let rows = statement.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (profile, task, status, count) = row?;
            let result = if status == "restarted" {
                "ok"
            } else {
                "failed"
            };
            figures.restarts.insert((profile, task, result), count);
        }
        figures.silences_active = snapshot.query_row(
            "SELECT count(*) FROM silences WHERE removed_at IS NULL AND ends_at > ?1",
            [now.0],
            |r| r.get(0),
        )?;
        Ok(figures)
    }

    /// Prometheus text exposition format 0.0.4; every series carries
    /// `host` (as the Alertmanager alerts do), so a fleet's Prometheus
    /// can `sum by (host)` and join without relabelling.
    fn exposition(&self, host: &str) -> String {
        let mut out = Exposition {
            text: String::new(),
            host: host.to_string(),
        };
        out.family(
            "monitor_profile_overdue",
            "gauge",
            "1 if the enabled profile missed three fire times since its last run (or, never run, since it appeared in jobs.yaml), else 0.",
        );
        for (profile, overdue) in &self.overdue {
            out.sample(
                "monitor_profile_overdue",
                &[("profile", profile)],
                if *overdue { 1.0 } else { 0.0 },
            );
        }
        out.family(
            "monitor_last_run_timestamp_seconds",
            "gauge",
            "When the newest run (tick) of the profile started, in Unix seconds.",
        );
        for p in &self.profiles {
            out.sample(
                "monitor_last_run_timestamp_seconds",
                &[("profile", &p.profile)],
                p.started_at.0 as f64 / 1000.0,
            );
        }
        out.family(
            "monitor_last_run_duration_seconds",
            "gauge",
            "How long the newest run of the profile took, in seconds.",
        );
        for p in &self.profiles {
            out.sample(
                "monitor_last_run_duration_seconds",
                &[("profile", &p.profile)],
                p.duration_ms as f64 / 1000.0,
            );
        }
        out.family(
            "monitor_last_run_ok",
            "gauge",
            "1 if every task of the newest run of the profile was healthy, else 0.",
        );
        for p in &self.profiles {
            out.sample(
                "monitor_last_run_ok",
                &[("profile", &p.profile)],
                if p.ok { 1.0 } else { 0.0 },
            );
        }
        // Gauges, not counters: retention deletes old rows, so these can fall.
        out.family(
            "monitor_runs_recorded",
            "gauge",
            "Runs of the profile kept in the database (retention prunes old ones, so this can fall).",
        );
        for p in &self.profiles {
            out.sample(
                "monitor_runs_recorded",
                &[("profile", &p.profile)],
                p.runs as f64,
            );
        }
        out.family(
            "monitor_alerts_firing",
            "gauge",
            "Alerts firing now, by severity.",
        );
        // Every severity, even at 0, so a query for one never finds nothing.
        let mut firing: BTreeMap<&str, i64> =
            [Severity::Info, Severity::Warning, Severity::Critical]
                .iter()
                .map(|s| (s.as_str(), 0))
                .collect();
        firing.extend(self.firing.iter().map(|(s, n)| (s.as_str(), *n)));
        for (severity, count) in &firing {
            out.sample(
                "monitor_alerts_firing",
                &[("severity", severity)],
                *count as f64,
            );
        }
        out.family(
            "monitor_outbox_backlog",
            "gauge",
            "Notifications waiting for delivery (not delivered, not given up).",
        );
        out.sample("monitor_outbox_backlog", &[], self.outbox_backlog as f64);
        out.family(
            "monitor_restarts_recorded",
            "gauge",
            "Restarts in the alert history kept in the database, by result (ok or failed); retention prunes old ones.",
        );
        for ((profile, task, result), count) in &self.restarts {
            out.sample(
                "monitor_restarts_recorded",
                &[("profile", profile), ("task", task), ("result", result)],
                *count as f64,
            );
        }
        out.family(
            "monitor_silences_active",
            "gauge",
            "Silences not removed and not yet over.",
        );
        out.sample("monitor_silences_active", &[], self.silences_active as f64);
        out.text
    }
}

/// Writes the text exposition format; every sample gets the `host` label.
struct Exposition {
    text: String,
    host: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        self.text
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = std::iter::once(("host", self.host.as_str()))
            .chain(labels.iter().copied())
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
            .collect();
        self.text.push_str(&format!(
            "{name}{{{}}} {}\n",
            labels.join(","),
            sample_value(value)
        ));
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn sample_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_parse_with_crlf_or_bare_lf() {
        let head = parse_head(
            b"GET /v1/alerts?limit=5 HTTP/1.1\r\nHost: x\r\nAuthorization:  Bearer abc \r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/v1/alerts?limit=5");
        assert_eq!(head.header("authorization"), Some("Bearer abc"));
        assert!(!head.has_body());
        let head = parse_head(b"\r\nPOST / HTTP/1.0\nContent-Length: 3\n\n").unwrap();
        assert_eq!(head.method, "POST");
        assert!(head.has_body());
        for bad in [
            &b""[..],
            b"GET /\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad name: x\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn query_strings_decode_and_refuse_unknown_or_repeated_names() {
        let parsed = parse_query("source=a+b%2Fc&limit=5", AlertQuery::PARAMETERS).unwrap();
        assert_eq!(parsed["source"], "a b/c");
        assert_eq!(parsed["limit"], "5");
        assert!(parse_query("", &[]).unwrap().is_empty());
        assert!(parse_query("&&", &[]).unwrap().is_empty());
        let unknown = parse_query("colour=red", AlertQuery::PARAMETERS).unwrap_err();
        assert_eq!(
            (unknown.parameter.as_str(), unknown.value.as_str()),
            ("colour", "red")
        );
        assert!(
            unknown
                .message
                .contains("limit, source, severity, status, since")
        );
        let none = parse_query("x=1", &[]).unwrap_err();
        assert!(
            none.message.contains("takes no parameters"),
            "{}",
            none.message
        );
        let twice = parse_query("limit=1&limit=2", AlertQuery::PARAMETERS).unwrap_err();
        assert!(twice.message.contains("twice"), "{}", twice.message);
        for bad in ["source=%G0", "source=%4", "source=%ff", "%zz=1"] {
            assert!(parse_query(bad, AlertQuery::PARAMETERS).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_whole_numbers_clamped_to_1_through_1000() {
        for (text, limit) in [
            ("1", 1),
            ("50", 50),
            ("1000", 1000),
            ("1001", 1000),
            ("0", 1),
            ("-5", 1),
            ("007", 7),
            ("99999999999999999999999999", 1000),
        ] {
            assert_eq!(parse_limit(text), Ok(limit), "{text}");
        }
        for text in ["", "-", "1.5", "ten", " 5", "5 ", "+5", "1e3", "0x10"] {
            let error = parse_limit(text).unwrap_err();
            assert!(error.contains(&format!("limit={text:?}")), "{error}");
        }
    }

    #[test]
    fn since_takes_unix_seconds_or_rfc3339() {
        assert_eq!(parse_since("1790000000"), Ok(Timestamp(1_790_000_000_000)));
        assert_eq!(
            parse_since("1790000000.25"),
            Ok(Timestamp(1_790_000_000_250))
        );
        assert_eq!(
            parse_since("2026-11-26T18:00:00Z"),
            Ok(Timestamp(1_795_716_000_000))
        );
        assert_eq!(
            parse_since("2026-11-26T19:00:00+01:00"),
            Ok(Timestamp(1_795_716_000_000))
        );
        for text in [
            "",
            "yesterday",
            "NaN",
            "inf",
            "-1",
            "1e9",
            "1.",
            ".5",
            "2026-11-26",
            "2026-13-01T00:00:00Z",
            "99999999999999999999",
        ] {
            let error = parse_since(text).unwrap_err();
            assert!(error.contains(&format!("since={text:?}")), "{error}");
        }
    }

    #[test]
    fn alert_queries_parse_every_parameter_and_name_the_bad_one() {
        let query = AlertQuery::parse("").unwrap();
        assert_eq!(query.limit, DEFAULT_LIMIT);
        assert_eq!(query.source, None);
        let query = AlertQuery::parse(
            "limit=10&source=node&severity=warn&status=restart_failed&since=1790000000",
        )
        .unwrap();
        assert_eq!(query.limit, 10);
        assert_eq!(query.source.as_deref(), Some("node"));
        assert_eq!(query.severity, Some(Severity::Warning));
        assert_eq!(query.status.as_deref(), Some("restart_failed"));
        assert_eq!(query.since, Some(Timestamp(1_790_000_000_000)));
        for (text, parameter) in [
            ("severity=fatal", "severity"),
            ("status=ok", "status"),
            ("source=", "source"),
            ("since=later", "since"),
            ("limit=all", "limit"),
        ] {
            let bad = AlertQuery::parse(text).unwrap_err();
            assert_eq!(bad.parameter, parameter, "{text}");
            assert!(bad.message.contains(parameter), "{}", bad.message);
        }
    }

    #[test]
    fn alert_sql_names_only_the_given_filters() {
        let (sql, values) = AlertQuery::parse("limit=50&source=x").unwrap().sql();
        assert!(
            sql.ends_with(
                "FROM alert_history WHERE source = ?1 ORDER BY at DESC, id DESC LIMIT ?2"
            ),
            "{sql}"
        );
        assert_eq!(
            values,
            vec![SqlValue::Text("x".into()), SqlValue::Integer(50)]
        );
        let (sql, values) = AlertQuery::parse("").unwrap().sql();
        assert!(
            sql.ends_with("FROM alert_history ORDER BY at DESC, id DESC LIMIT ?1"),
            "{sql}"
        );
        assert_eq!(values, vec![SqlValue::Integer(50)]);
        let (sql, values) = AlertQuery::parse("since=1&status=firing&severity=info&source=s")
            .unwrap()
            .sql();
        assert!(
            sql.contains("WHERE source = ?1 AND severity = ?2 AND status = ?3 AND at >= ?4 ORDER BY at DESC, id DESC LIMIT ?5"),
            "{sql}"
        );
        assert_eq!(values.len(), 5);
        let (sql, _) = RunQuery::parse("profile=p&limit=3").unwrap().sql();
        assert!(
            sql.ends_with(
                "FROM runs WHERE profile = ?1 ORDER BY started_at DESC, id DESC LIMIT ?2"
            ),
            "{sql}"
        );
    }

    fn local(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Timestamp {
        use chrono::TimeZone;
        let at = chrono::Local
            .with_ymd_and_hms(year, month, day, hour, minute, second)
            .single()
            .unwrap();
        Timestamp(at.timestamp_millis())
    }

    #[test]
    fn a_profile_is_overdue_after_its_third_fire_time_since_its_last_run() {
        let minutely: CronSchedule = "* * * * *".parse().unwrap();
        assert_eq!(
            overdue_after(&minutely, local(2026, 11, 26, 10, 0, 20)),
            Some(local(2026, 11, 26, 10, 3, 0))
        );
        let hourly: CronSchedule = "0 * * * *".parse().unwrap();
        assert_eq!(
            overdue_after(&hourly, local(2026, 11, 26, 10, 0, 1)),
            Some(local(2026, 11, 26, 13, 0, 0))
        );
        // Weekdays at 09:00: a Friday run is overdue on Wednesday, not on
        // Sunday evening.
        let weekdays: CronSchedule = "0 9 * * 1-5".parse().unwrap();
        assert_eq!(
            overdue_after(&weekdays, local(2026, 11, 27, 9, 0, 5)),
            Some(local(2026, 12, 2, 9, 0, 0))
        );
    }

    #[test]
    fn label_values_and_samples_follow_the_text_format() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("line\nbreak"), "line\\nbreak");
        assert_eq!(escape_label_value("plain ünïcode"), "plain ünïcode");
        assert_eq!(sample_value(3.0), "3");
        assert_eq!(sample_value(0.25), "0.25");
        assert_eq!(sample_value(1_790_000_000.5), "1790000000.5");
        assert_eq!(sample_value(f64::NAN), "NaN");
        assert_eq!(sample_value(f64::INFINITY), "+Inf");
        assert_eq!(sample_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn the_exposition_parses_back_with_our_parser() {
        use crate::probe::metrics::parse::{Dialect, parse};
        let mut figures = Figures {
            profiles: vec![ProfileFigures {
                profile: "we\"ird\\name\n".into(),
                runs: 12,
                started_at: Timestamp(1_790_000_000_500),
                duration_ms: 1250,
                ok: true,
            }],
            outbox_backlog: 3,
            silences_active: 1,
            ..Figures::default()
        };
        figures.firing.insert("critical".into(), 2);
        figures
            .restarts
            .insert(("p".into(), "node".into(), "failed"), 4);
        let text = figures.exposition("we\"b-1");
        let series =
            parse(text.as_bytes(), Dialect::Text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        // Every series carries the host; the rest of its labels as given.
        let find = |name: &str| {
            series
                .iter()
                .filter(|s| s.name == name)
                .map(|s| {
                    let (host, rest): (Vec<_>, Vec<_>) =
                        s.labels.iter().cloned().partition(|(k, _)| k == "host");
                    assert_eq!(host, [("host".to_string(), "we\"b-1".to_string())]);
                    (rest, s.value)
                })
                .collect::<Vec<_>>()
        };
        let profile = vec![("profile".to_string(), "we\"ird\\name\n".to_string())];
        assert_eq!(
            find("monitor_last_run_timestamp_seconds"),
            [(profile.clone(), 1_790_000_000.5)]
        );
        assert_eq!(
            find("monitor_last_run_duration_seconds"),
            [(profile.clone(), 1.25)]
        );
        assert_eq!(find("monitor_last_run_ok"), [(profile.clone(), 1.0)]);
        assert_eq!(find("monitor_runs_recorded"), [(profile, 12.0)]);
        let firing: Vec<(String, f64)> = find("monitor_alerts_firing")
            .into_iter()
            .map(|(labels, value)| (labels[0].1.clone(), value))
            .collect();
        assert_eq!(
            firing,
            [
                ("critical".to_string(), 2.0),
                ("info".to_string(), 0.0),
                ("warning".to_string(), 0.0)
            ]
        );
        assert_eq!(find("monitor_outbox_backlog"), [(vec![], 3.0)]);
        assert_eq!(find("monitor_silences_active"), [(vec![], 1.0)]);
        assert_eq!(find("monitor_restarts_recorded").len(), 1);
        for name in ["monitor_outbox_backlog", "monitor_restarts_recorded"] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(text.contains(&format!("# TYPE {name} gauge")), "{name}");
        }
    }

    #[test]
    fn the_token_is_checked_by_digest_and_scheme() {
        let expected: [u8; 32] = Sha256::digest(b"s3cret").into();
        let with = |value: &str| RequestHead {
            method: "GET".into(),
            target: "/v1/runs".into(),
            headers: vec![("Authorization".into(), value.into())],
        };
        assert!(carries_token(&with("Bearer s3cret"), &expected));
        assert!(carries_token(&with("bearer  s3cret "), &expected));
        assert!(!carries_token(&with("Bearer s3cre"), &expected));
        assert!(!carries_token(&with("Bearer s3cret2"), &expected));
        assert!(!carries_token(&with("Basic s3cret"), &expected));
        assert!(!carries_token(&with("s3cret"), &expected));
        assert!(!carries_token(
            &RequestHead {
                method: "GET".into(),
                target: "/".into(),
                headers: Vec::new(),
            },
            &expected
        ));
    }

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

    #[test]
    fn responses_carry_their_length_and_close() {
        let bytes = Response::error(404, "no such endpoint").to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Connection: close"));
        assert_eq!(
            serde_json::from_str::<Value>(body).unwrap()["error"],
            "no such endpoint"
        );
    }
}
