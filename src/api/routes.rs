//! Which request gets which answer: the read-only rules (GET and HEAD
//! only, the bearer token), the endpoints, and each worker's database
//! handle and the reloaded jobs.yaml they read through.

use super::http::{
    BadRequest, RequestHead, Response, non_empty, parse_head, parse_limit, parse_query, parse_since,
};
use super::{DEFAULT_LIMIT, ServeOptions, TOKEN_VARIABLE, server};
use crate::alert::HistoryStatus;
use crate::clock::{self, Timestamp};
use crate::config::{self, Config, Severity};
use crate::silence::Silence;
use crate::store::{HistoryQuery, RunQuery, RunRow, Store};
use anyhow::Context;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// What every worker shares: the configuration (reloaded when jobs.yaml
/// changes) and the token's digest.
pub(super) struct Api {
    pub(super) config: ConfigCache,
    token_digest: Option<[u8; 32]>,
    /// `peers:`' last answers, asked in the background.
    pub(super) peers: super::peers::PeerCache,
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
    pub(super) fn new(config: Config, options: &ServeOptions, now: Timestamp) -> Api {
        let peers = super::peers::PeerCache::default();
        peers.start(&config.peers);
        Api {
            config: ConfigCache::new(config, options.db.clone(), now),
            token_digest: options
                .token
                .as_ref()
                .map(|t| Sha256::digest(t.as_bytes()).into()),
            peers,
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
            let page = path == "/" || path.starts_with("/task/") || path.starts_with("/badge/");
            let answer = Response::error(
                401,
                format!(
                    "missing or wrong token: send `Authorization: Bearer <token>` with the value of {TOKEN_VARIABLE} (a browser: any user name, the token as password)"
                ),
            );
            // A page or badge asks a browser for the token as a password.
            return if page {
                answer.with_header(
                    "WWW-Authenticate",
                    "Basic realm=\"monitor\", charset=\"UTF-8\"",
                )
            } else {
                answer.with_header("WWW-Authenticate", "Bearer")
            };
        }
        let now = clock::now().unwrap_or_else(|_| clock::system_now());
        let answer = match path {
            "/healthz" => parse_query(query, &[]).map(|_| self.healthz(database, now)),
            "/v1/alerts" => parse_alert_query(query).map(|q| self.alerts(database, &q)),
            "/v1/runs" => parse_run_query(query).map(|q| self.runs(database, &q)),
            "/v1/silences" => parse_query(query, &[]).map(|_| self.silences(database, now)),
            "/metrics" => parse_query(query, &[]).map(|_| self.metrics(database, now)),
            "/v1/signals" => parse_signal_query(query, now).map(|q| self.signals(database, &q)),
            // A page ignores what it does not read (a link's utm_source).
            "/" => Ok(self.status_page(database, now)),
            "/v1/status" => parse_query(query, &[]).map(|_| self.status_json(database, now)),
            _ if path.starts_with("/task/") || path.starts_with("/badge/") => {
                return self.page_route(path, query, database, now);
            }
            _ => {
                return Response::error(
                    404,
                    format!(
                        "no such endpoint {path}: try /healthz, /v1/alerts, /v1/runs, /v1/silences, /v1/signals or /metrics"
                    ),
                );
            }
        };
        answer.unwrap_or_else(|bad| bad.response())
    }

    /// `/task/PROFILE/TASK`, `/badge/PROFILE/TASK.svg` and
    /// `/badge/PROFILE/TASK/uptime.svg` (names percent-decoded).
    fn page_route(
        &self,
        path: &str,
        query: &str,
        database: &mut Database,
        now: Timestamp,
    ) -> Response {
        let parts: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(|part| {
                percent_encoding::percent_decode_str(part)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        match parts.as_slice() {
            // A person reads a task page's errors: as a page.
            ["task", profile, task] => {
                super::page::as_page(match parse_query(&only(query, &["range"]), &["range"]) {
                    Ok(parameters) => {
                        let range = parameters.get("range").map_or("24h", String::as_str);
                        self.task_page(database, profile, task, range, now)
                    }
                    Err(bad) => bad.response(),
                })
            }
            ["badge", profile, task, "uptime.svg"] => {
                self.badge(database, profile, task, true, now)
            }
            ["badge", profile, task] if task.ends_with(".svg") => {
                self.badge(database, profile, task.trim_end_matches(".svg"), false, now)
            }
            _ => Response::error(
                404,
                format!(
                    "no such page {path}: try /, /task/PROFILE/TASK, /badge/PROFILE/TASK.svg or /badge/PROFILE/TASK/uptime.svg"
                ),
            ),
        }
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
    pub(super) fn read<T>(
        &self,
        database: &mut Database,
        read: impl FnOnce(&Store) -> anyhow::Result<T>,
    ) -> anyhow::Result<Option<T>> {
        let path = self.config.current().config.state.clone();
        let result = match database.get(&path) {
            Ok(Some(store)) => read(store).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        if result.is_err() {
            database.forget();
        }
        result
    }

    fn alerts(&self, database: &mut Database, query: &HistoryQuery) -> Response {
        match self.read(database, |store| store.history(query)) {
            Ok(rows) => Response::json(
                200,
                &json!({
                    "limit": query.limit,
                    "alerts": crate::report::history_json(&rows.unwrap_or_default()),
                }),
            ),
            Err(e) => database_error(&e),
        }
    }

    fn runs(&self, database: &mut Database, query: &RunQuery) -> Response {
        let run_json = |r: &RunRow| {
            json!({
                "id": r.id,
                "profile": r.profile,
                "host": r.host,
                "started_at": r.started_at.rfc3339(),
                "finished_at": r.finished_at.rfc3339(),
                "duration_ms": r.duration_ms,
                "status": r.status,
                "tasks": r.tasks,
                "failing": r.failing,
                "summary": r.summary,
            })
        };
        match self.read(database, |store| store.runs(query)) {
            Ok(rows) => Response::json(
                200,
                &json!({
                    "limit": query.limit,
                    "runs": rows.unwrap_or_default().iter().map(run_json).collect::<Vec<_>>(),
                }),
            ),
            Err(e) => database_error(&e),
        }
    }

    /// `/v1/signals`: the recorded series (of a task), or one series'
    /// points with `signal=`.
    fn signals(&self, database: &mut Database, query: &crate::history::Query) -> Response {
        let read = self.read(database, |store| {
            let Some(signal) = &query.signal else {
                let series =
                    store.signal_series(query.profile.as_deref(), query.task.as_deref())?;
                return Ok(Ok(
                    json!({ "series": crate::history::series_json(&series) }),
                ));
            };
            let task = query.task.as_deref().unwrap_or_default();
            let profile = match crate::history::profile_of(store, task, query.profile.as_deref()) {
                Ok(profile) => profile,
                Err(why) => return Ok(Err(why)),
            };
            if let Err(why) = crate::history::recorded(store, &profile, task, signal)? {
                return Ok(Err(why));
            }
            let points = crate::history::points(store, &profile, task, signal, query)?;
            Ok(Ok(crate::history::points_json(
                &points, &profile, task, signal, query,
            )))
        });
        match read {
            Ok(Some(Ok(body))) => Response::json(200, &body),
            Ok(Some(Err(why))) => Response::error(404, why),
            Ok(None) => Response::json(200, &json!({ "series": [] })),
            Err(e) => database_error(&e),
        }
    }

    fn silences(&self, database: &mut Database, now: Timestamp) -> Response {
        let silence_json = |s: &Silence| {
            json!({
                "id": s.id,
                "profile": s.profile,
                "task": s.task,
                "rule": s.rule,
                "starts_at": s.starts_at.rfc3339(),
                "ends_at": s.ends_at.rfc3339(),
                "reason": s.reason,
                "created_by": s.created_by,
            })
        };
        match self.read(database, |store| store.silences(Some(now))) {
            Ok(rows) => Response::json(
                200,
                &json!({
                    "silences": rows.unwrap_or_default().iter().map(silence_json).collect::<Vec<_>>(),
                }),
            ),
            Err(e) => database_error(&e),
        }
    }
}

/// A worker's read-only connection, kept between requests (with its page
/// cache and prepared statements) while the file at the path stays the
/// same file. Holds no transaction between requests, so it never stands
/// in the way of a tick or a checkpoint.
#[derive(Default)]
pub(super) struct Database {
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
    // A browser has no way to send a bearer token: it sends Basic, whose
    // password is the token (any user name), after the 401's
    // `WWW-Authenticate: Basic` prompt on a page or badge.
    let presented: Vec<u8> = if scheme.eq_ignore_ascii_case("bearer") {
        presented.trim().as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(presented.trim())
            .unwrap_or_default();
        match decoded.iter().position(|&b| b == b':') {
            Some(colon) => decoded[colon + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    let presented: [u8; 32] = Sha256::digest(&presented).into();
    let difference = presented
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

pub(super) fn database_error(error: &anyhow::Error) -> Response {
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
pub(super) struct ConfigCache {
    path: PathBuf,
    db: Option<PathBuf>,
    state: Mutex<Arc<Loaded>>,
}

pub(super) struct Loaded {
    pub(super) config: Config,
    /// Modification time and size of the file when read.
    stamp: Option<(SystemTime, u64)>,
    /// Why the file on disk does not load now, if it does not.
    pub(super) error: Option<String>,
    /// When this configuration was loaded: a profile that never ran is
    /// judged from here.
    pub(super) loaded_at: Timestamp,
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
    pub(super) fn current(&self) -> Arc<Loaded> {
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

/// `/v1/alerts?limit=&source=&severity=&status=&since=`, as a history query.
pub fn parse_alert_query(query: &str) -> Result<HistoryQuery, BadRequest> {
    let mut parsed = HistoryQuery::newest(DEFAULT_LIMIT);
    for (name, value) in parse_query(query, ALERT_PARAMETERS)? {
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
                        "severity={value:?} is not a severity: give {}",
                        Severity::choices()
                    ))
                })?);
            }
            "status" => {
                parsed.status =
                    Some(HistoryStatus::parse(&value).map_err(|why| bad(format!("status={why}")))?);
            }
            "since" => parsed.since = Some(parse_since(&value).map_err(bad)?),
            _ => {}
        }
    }
    Ok(parsed)
}

/// What `/v1/alerts` takes.
pub const ALERT_PARAMETERS: &[&str] = &["limit", "source", "severity", "status", "since"];

/// `/v1/runs?limit=&profile=`.
pub fn parse_run_query(query: &str) -> Result<RunQuery, BadRequest> {
    let mut parsed = RunQuery {
        limit: DEFAULT_LIMIT,
        profile: None,
    };
    for (name, value) in parse_query(query, &["limit", "profile"])? {
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

/// `/v1/signals?profile=&task=&signal=&since=&until=&step=`: `since`
/// (default 24h back) and `until` (default now) are times or spans back
/// from now; `signal=` needs `task=`.
pub fn parse_signal_query(
    query: &str,
    now: Timestamp,
) -> Result<crate::history::Query, BadRequest> {
    let mut parsed = crate::history::Query {
        profile: None,
        task: None,
        signal: None,
        since: now.plus_millis(-86_400_000),
        until: now,
        step_ms: None,
    };
    let parameters = parse_query(query, SIGNAL_PARAMETERS)?;
    for (name, value) in &parameters {
        let bad = |message: String| BadRequest {
            parameter: name.to_string(),
            value: value.clone(),
            message,
        };
        match *name {
            "profile" => parsed.profile = Some(non_empty(name, value).map_err(bad)?),
            "task" => parsed.task = Some(non_empty(name, value).map_err(bad)?),
            "signal" => parsed.signal = Some(non_empty(name, value).map_err(bad)?),
            "since" => {
                parsed.since =
                    crate::history::parse_time_or_span("since", value, now).map_err(bad)?
            }
            "until" => {
                parsed.until =
                    crate::history::parse_time_or_span("until", value, now).map_err(bad)?
            }
            "step" => parsed.step_ms = Some(crate::history::parse_step(value).map_err(bad)?),
            _ => {}
        }
    }
    if parsed.since >= parsed.until {
        return Err(BadRequest {
            parameter: "since".into(),
            value: parameters.get("since").cloned().unwrap_or_default(),
            message: format!(
                "since ({}) is not before until ({}): the window is empty",
                parsed.since, parsed.until
            ),
        });
    }
    if parsed.signal.is_some() && parsed.task.is_none() {
        return Err(BadRequest {
            parameter: "signal".into(),
            value: parsed.signal.clone().unwrap_or_default(),
            message: "signal= needs task= (the task the signal is of)".into(),
        });
    }
    Ok(parsed)
}

/// The parameters of `query` named in `names` (a page ignores the rest).
fn only(query: &str, names: &[&str]) -> String {
    query
        .split('&')
        .filter(|pair| names.contains(&pair.split('=').next().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("&")
}

/// What `/v1/signals` takes.
pub const SIGNAL_PARAMETERS: &[&str] = &["profile", "task", "signal", "since", "until", "step"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_queries_parse_every_parameter_and_name_the_bad_one() {
        let query = parse_alert_query("").unwrap();
        assert_eq!(query.limit, DEFAULT_LIMIT);
        assert_eq!(query.source, None);
        let query = parse_alert_query(
            "limit=10&source=node&severity=warn&status=restart_failed&since=1790000000",
        )
        .unwrap();
        assert_eq!(query.limit, 10);
        assert_eq!(query.source.as_deref(), Some("node"));
        assert_eq!(query.severity, Some(Severity::Warning));
        assert_eq!(query.status, Some(HistoryStatus::RestartFailed));
        assert_eq!(query.since, Some(Timestamp(1_790_000_000_000)));
        for (text, parameter) in [
            ("severity=fatal", "severity"),
            ("status=ok", "status"),
            ("source=", "source"),
            ("since=later", "since"),
            ("limit=all", "limit"),
        ] {
            let bad = parse_alert_query(text).unwrap_err();
            assert_eq!(bad.parameter, parameter, "{text}");
            assert!(bad.message.contains(parameter), "{}", bad.message);
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
}
