//! Shared helpers for the integration tests: a real HTTP server on
//! 127.0.0.1, a temp workspace with a jobs.yaml, and the monitor binary run
//! with a pinned clock.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request the test server received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// How the server answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            body: "ok\n".into(),
            delay: Duration::ZERO,
        }
    }
    pub fn json(body: serde_json::Value) -> Self {
        Reply {
            status: 200,
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A real HTTP/1.1 server on 127.0.0.1 (one thread per connection) whose
/// answer the test can change between ticks. Stops when dropped.
pub struct TestServer {
    pub port: u16,
    reply: Arc<Mutex<Reply>>,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    pub fn start(reply: Reply) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        Self::serve_on(listener, reply)
    }

    /// Starts on a chosen port, e.g. one that refused connections until now.
    pub fn start_on(port: u16, reply: Reply) -> TestServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        Self::serve_on(listener, reply)
    }

    fn serve_on(listener: TcpListener, reply: Reply) -> TestServer {
        let port = listener.local_addr().unwrap().port();
        let reply = Arc::new(Mutex::new(reply));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, q, s) = (reply.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (r, q) = (r.clone(), q.clone());
                std::thread::spawn(move || serve(stream, &r, &q));
            }
        });
        TestServer {
            port,
            reply,
            requests,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, reply: &Mutex<Reply>, requests: &Mutex<Vec<Request>>) {
    let Some((request, stream)) = read_request(stream) else {
        return;
    };
    requests.lock().unwrap().push(request);
    let answer = reply.lock().unwrap().clone();
    std::thread::sleep(answer.delay);
    write_response(stream, answer.status, "text/plain", &[], &answer.body);
}

/// Reads one HTTP/1.1 request (request line, headers, a Content-Length body).
pub fn read_request(stream: TcpStream) -> Option<(Request, TcpStream)> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    Some((
        Request {
            method,
            path,
            headers,
            body,
        },
        stream,
    ))
}

/// Writes a whole HTTP/1.1 response and closes the connection.
pub fn write_response(
    mut stream: TcpStream,
    status: u16,
    content_type: &str,
    headers: &[(String, String)],
    body: &str,
) {
    let mut response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(body);
    let _ = stream.write_all(response.as_bytes());
}

/// What a fake API answers: status, extra headers, JSON body.
pub struct ApiReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl ApiReply {
    pub fn json(status: u16, body: serde_json::Value) -> ApiReply {
        ApiReply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }
}

/// A fake JSON API on 127.0.0.1 (Telegram, Feishu, GitHub…): every request
/// goes to `handler`, which keeps whatever state it needs. Stops on drop.
pub struct FakeApi {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl FakeApi {
    pub fn start(handler: impl Fn(&Request) -> ApiReply + Send + Sync + 'static) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let handler = handler.clone();
                std::thread::spawn(move || {
                    if let Some((request, stream)) = read_request(stream) {
                        let reply = handler(&request);
                        write_response(
                            stream,
                            reply.status,
                            "application/json; charset=utf-8",
                            &reply.headers,
                            &reply.body,
                        );
                    }
                });
            }
        });
        FakeApi { port, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A port on 127.0.0.1 where nothing listens.
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A temp folder holding jobs.yaml and the state folder.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

/// One minute after another: the pinned clock of tick `n`.
pub fn minute(n: i64) -> i64 {
    1_790_000_000 + n * 60
}

impl Workspace {
    pub fn new(config: &str) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jobs.yaml"), config).unwrap();
        Workspace { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("jobs.yaml")
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("state/monitor.db")
    }

    pub fn write_config(&self, config: &str) {
        std::fs::write(self.config(), config).unwrap();
    }

    /// The binary with `--config` set, run from an unrelated folder (as cron does).
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_monitor"));
        command
            .current_dir(std::env::temp_dir())
            .arg("--config")
            .arg(self.config());
        command
            .env_remove("MONITOR_DB")
            .env_remove("MONITOR_CONFIG")
            .env_remove("MONITOR_NOW");
        command
    }

    /// `monitor run <profile> <args>` with the clock pinned to `at` (Unix
    /// seconds): [`Tick`] in one call.
    pub fn run_at(&self, at: i64, profile: &str, args: &[&str]) -> Output {
        args.iter()
            .fold(Tick::new(self).at(at), |tick, arg| tick.arg(arg))
            .run(profile)
    }

    /// [`Workspace::run_at`] started in the background, its output
    /// dropped: a tick to signal or kill while it runs.
    pub fn spawn_at(&self, at: i64, profile: &str, args: &[&str]) -> std::process::Child {
        self.command()
            .env("MONITOR_NOW", at.to_string())
            .arg("run")
            .arg(profile)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Opens the database for assertions.
    pub fn sqlite(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db()).unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.sqlite().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Every outbox entry of `notifier`, oldest first: the one reader of
    /// the outbox the tests share.
    pub fn outbox(&self, notifier: &str) -> Vec<OutboxRow> {
        let db = self.sqlite();
        let mut statement = db
            .prepare(
                "SELECT message_id, notifier, attempts, next_attempt_at, delivered_at, given_up_at,
                        last_error, payload
                 FROM outbox WHERE notifier = ?1 ORDER BY id",
            )
            .unwrap();
        statement
            .query_map([notifier], |r| {
                Ok(OutboxRow {
                    message_id: r.get(0)?,
                    notifier: r.get(1)?,
                    attempts: r.get(2)?,
                    next_attempt_at: r.get(3)?,
                    delivered_at: r.get(4)?,
                    given_up_at: r.get(5)?,
                    last_error: r.get(6)?,
                    payload: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
                })
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Every alert history row, oldest first: the one reader of the
    /// history the tests share.
    pub fn history(&self) -> Vec<HistoryRow> {
        let db = self.sqlite();
        let mut statement = db
            .prepare("SELECT task, rule, status, severity, summary FROM alert_history ORDER BY id")
            .unwrap();
        statement
            .query_map([], |r| {
                Ok(HistoryRow {
                    task: r.get(0)?,
                    rule: r.get(1)?,
                    status: r.get(2)?,
                    severity: r.get(3)?,
                    summary: r.get(4)?,
                })
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

/// One tick as a test writes it, in the spirit of just's `Test` builder:
/// `Tick::new(&ws).at(minute(3)).run("p")`.
pub struct Tick<'w> {
    ws: &'w Workspace,
    at: i64,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

#[allow(dead_code)] // each test module uses the knobs it needs
impl<'w> Tick<'w> {
    pub fn new(ws: &'w Workspace) -> Tick<'w> {
        Tick {
            ws,
            at: minute(0),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The pinned clock of the tick (Unix seconds), e.g. `minute(3)`.
    pub fn at(mut self, at: i64) -> Self {
        self.at = at;
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub fn dry_run(self) -> Self {
        self.arg("--dry-run")
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Runs `monitor run PROFILE` and waits for it.
    pub fn run(self, profile: &str) -> Output {
        let mut command = self.ws.command();
        command
            .env("MONITOR_NOW", self.at.to_string())
            .envs(self.env)
            .arg("run")
            .arg(profile)
            .args(self.args);
        command.output().unwrap()
    }
}

/// One outbox entry, as [`Workspace::outbox`] reads it.
#[derive(Debug)]
#[allow(dead_code)] // each test module reads the columns it asserts on
pub struct OutboxRow {
    pub message_id: String,
    pub notifier: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    pub given_up_at: Option<i64>,
    pub last_error: Option<String>,
    pub payload: serde_json::Value,
}

/// One alert history row, as [`Workspace::history`] reads it.
#[derive(Debug)]
#[allow(dead_code)] // each test module reads the columns it asserts on
pub struct HistoryRow {
    pub task: String,
    pub rule: String,
    pub status: String,
    pub severity: String,
    pub summary: String,
}

/// The lines the console notifier printed (host `test-host`).
pub fn notifications(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .filter(|l| l.starts_with("[test-host] "))
        .map(str::to_string)
        .collect()
}

/// A jobs.yaml with host `test-host` and one profile `p` run every minute,
/// whose `tasks:` list is `tasks` (items indented by six spaces). It does
/// not announce what it watches (`announce: false`): the tests built on it
/// count the messages of what they test.
pub fn profile_p(tasks: &str) -> String {
    format!(
        "version: 1\nhost: test-host\nprofiles:\n  p:\n    cron: \"* * * * *\"\n    announce: false\n    tasks:\n{tasks}"
    )
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing the output when it differs.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        stdout(output),
        stderr(output)
    );
}

/// Asserts no `secret` is in any output or any file under the state folder
/// (the database, its WAL, the locks).
#[track_caller]
pub fn assert_no_secret(ws: &Workspace, outputs: &[&Output], secrets: &[&str]) {
    let mut files = vec![ws.path().join("state")];
    let mut texts: Vec<(String, Vec<u8>)> = Vec::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .map(|entry| entry.unwrap().path()),
            );
        } else {
            texts.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    for (i, out) in outputs.iter().enumerate() {
        texts.push((format!("stdout of run {i}"), out.stdout.clone()));
        texts.push((format!("stderr of run {i}"), out.stderr.clone()));
    }
    for (name, bytes) in &texts {
        for secret in secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret:?} appears in {name}:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

/// A self-signed certificate for `name` (and 127.0.0.1), valid `days`.
pub fn certificate(dir: &Path, stem: &str, name: &str, days: u32) -> (PathBuf, PathBuf) {
    certificate_with(dir, stem, name, days, true)
}

/// [`certificate`]; without `san`, named by its CN alone, as
/// `openssl req -x509 -subj /CN=host` makes it.
pub fn certificate_with(
    dir: &Path,
    stem: &str,
    name: &str,
    days: u32,
    san: bool,
) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            &days.to_string(),
            "-subj",
            &format!("/CN={name}"),
        ])
        .args(if san {
            vec![
                "-addext".to_string(),
                format!("subjectAltName=DNS:{name},IP:127.0.0.1"),
            ]
        } else {
            Vec::new()
        })
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl (Debian: openssl) makes a certificate");
    assert!(made.success());
    (cert, key)
}
