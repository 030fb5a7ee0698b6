//! The API's connections. One thread, the intake, accepts, reads request
//! heads, writes answers and drains what clients still send, for every
//! connection at once and never blocking (mio over epoll); a fixed pool of
//! [`WORKERS`] threads only turns complete request heads into answers.
//! So a client that connects and says nothing, sends its head a byte at a
//! time, or never reads its answer holds no worker: it holds one entry in
//! the intake's table, and only until its deadline.
//!
//! Every connection is timed from accept: its whole request head must
//! arrive within [`HEAD_DEADLINE`] (then a 408), its answer be taken within
//! [`WRITE_TIMEOUT`]. One client address holds at most [`PER_CLIENT`]
//! connections and the server at most [`MAX_CONNECTIONS`] (fewer under a
//! low open-file limit, so the workers can still open the database): past
//! either, the
//! oldest connection still waiting for its head is closed with a 503 that
//! says why, so a flood from one address cannot lock out a real request,
//! not even one from that same address. Heads of complete requests wait
//! for a worker in a queue of [`QUEUE`]; a full queue is answered 503 at
//! once. One request per connection (`Connection: close`).
//!
//! Hand-written on mio rather than a server crate: tiny_http 0.12 runs one
//! unbounded thread per connection with no read timeout, and hyper needs
//! an async runtime for a read-only API that answers in microseconds.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Threads turning request heads into answers.
pub const WORKERS: usize = 8;
/// Complete request heads waiting for a worker; past this they get a 503.
const QUEUE: usize = 64;
/// The whole request head (request line and headers) must arrive within
/// this, counted from accept.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// A client that does not take its answer within this is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// What a client still sends after its head (a body we ignore) is read
/// and dropped for at most this long, and at most [`DRAIN_LIMIT`] bytes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
const DRAIN_LIMIT: usize = 64 * 1024;
/// Larger request heads are refused (431).
pub const HEAD_LIMIT: usize = 16 * 1024;
/// Connections one client address may hold at once.
pub const PER_CLIENT: usize = 64;
/// Connections the server holds at once, at most: fewer when the process
/// may open fewer files ([`connection_cap`]).
pub const MAX_CONNECTIONS: usize = 512;
/// Files kept for everything but connections: each worker's database with
/// its WAL and SHM, the listener, the poller, the log, a config reload.
const FILES_KEPT: usize = WORKERS * 4 + 16;

/// How soon a failed accept is retried.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONNECTION: usize = 2;

/// Turns a complete request head into the bytes to send back. Each worker
/// thread keeps its own `State` (a database connection).
pub trait Handler: Send + Sync + 'static {
    type State: Default;
    /// `head` ends with its blank line; `body_follows` says whether bytes
    /// came after it. The answer says whether to drain a body afterwards.
    fn answer(&self, head: &[u8], body_follows: bool, state: &mut Self::State) -> Answer;
    /// A complete answer for a refusal made before any worker saw the
    /// request (408, 431, 503).
    fn refusal(&self, status: u16, message: String) -> Vec<u8>;
}

/// What a worker hands back.
pub struct Answer {
    pub bytes: Vec<u8>,
    /// The client announced or sent a body: read and drop it after
    /// answering, so closing does not reset the connection before the
    /// client has read the answer.
    pub drain: bool,
}

/// A complete head on its way to a worker.
struct Job {
    connection: usize,
    head: Vec<u8>,
    body_follows: bool,
}

/// How many connections fit the process's open-file limit (raised to its
/// hard limit first, up to 4 096) beside [`FILES_KEPT`]: at the limit the
/// workers could not open the database and /healthz would fail.
fn connection_cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    let files = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return MAX_CONNECTIONS;
        }
        let wanted = limit.rlim_max.min(4096);
        if limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = wanted;
            }
        }
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    };
    files.saturating_sub(FILES_KEPT).clamp(8, MAX_CONNECTIONS)
}

/// Serves `listener` until the process ends.
pub fn serve<H: Handler>(listener: std::net::TcpListener, handler: Arc<H>) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUE);
    let (answers, answered) = mpsc::channel::<(usize, Answer)>();
    let queue = Arc::new(Mutex::new(queue));
    for index in 0..WORKERS {
        let (handler, queue, answers, waker) = (
            handler.clone(),
            queue.clone(),
            answers.clone(),
            waker.clone(),
        );
        std::thread::Builder::new()
            .name(format!("api-worker-{index}"))
            .spawn(move || work(&*handler, &queue, &answers, &waker))?;
    }
    Intake {
        poll,
        listener,
        handler,
        jobs,
        answered,
        connections: BTreeMap::new(),
        deadlines: BinaryHeap::new(),
        next: FIRST_CONNECTION,
        retry_accept: false,
        max_connections: connection_cap(),
    }
    .run()
}

fn work<H: Handler>(
    handler: &H,
    queue: &Mutex<Receiver<Job>>,
    answers: &Sender<(usize, Answer)>,
    waker: &Waker,
) {
    let mut state = H::State::default();
    loop {
        let next = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = next else { return };
        let answer = handler.answer(&job.head, job.body_follows, &mut state);
        if answers.send((job.connection, answer)).is_err() {
            return;
        }
        if let Err(e) = waker.wake() {
            log::warn!("the API's worker could not wake the intake: {e}");
        }
    }
}

/// Where a connection is in its one request.
enum Stage {
    /// Waiting for the rest of the request head.
    Reading(Vec<u8>),
    /// A worker has the head.
    Answering,
    /// Sending the answer.
    Writing {
        bytes: Vec<u8>,
        written: usize,
        drain: bool,
    },
    /// Answered; reading and dropping what the client still sends.
    Draining { left: usize },
}

struct Connection {
    stream: TcpStream,
    client: IpAddr,
    stage: Stage,
    /// When the current stage must be over; none while a worker answers.
    deadline: Option<Instant>,
}

/// What to do with a connection after it made progress.
enum Next {
    Keep,
    Close,
}

struct Intake<H> {
    poll: Poll,
    listener: TcpListener,
    handler: Arc<H>,
    jobs: SyncSender<Job>,
    answered: Receiver<(usize, Answer)>,
    /// By connection number, which grows with every accept: iteration is
    /// oldest first.
    connections: BTreeMap<usize, Connection>,
    /// Stage deadlines, soonest first; an entry whose connection has
    /// moved on (or is gone) is skipped.
    deadlines: BinaryHeap<Reverse<(Instant, usize)>>,
    next: usize,
    /// An accept failed for want of file descriptors: retry after
    /// [`ACCEPT_RETRY`].
    retry_accept: bool,
    max_connections: usize,
}

impl<H: Handler> Intake<H> {
    fn run(mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let mut timeout = self
                .deadlines
                .peek()
                .map(|Reverse((at, _))| at.saturating_duration_since(Instant::now()));
            if self.retry_accept {
                timeout = Some(timeout.map_or(ACCEPT_RETRY, |t| t.min(ACCEPT_RETRY)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => self.take_answers(),
                    Token(id) => self.advance(id),
                }
            }
            self.expire();
            if std::mem::take(&mut self.retry_accept) {
                self.accept();
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let (stream, address) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors and the like. Make room and
                    // try again; with nothing to evict, try again shortly
                    // (the poll is edge-triggered: no new event would come
                    // for connections already waiting).
                    log::warn!("accepting a connection to the API: {e}");
                    if self.evict_oldest_idle(None, "the server is out of file descriptors") {
                        continue;
                    }
                    self.retry_accept = true;
                    return;
                }
            };
            self.admit(stream, address.ip().to_canonical());
        }
    }

    /// Makes room for a new connection from `client` if it or the server
    /// is at its cap, then starts reading its head.
    fn admit(&mut self, mut stream: TcpStream, client: IpAddr) {
        let from_client = self
            .connections
            .values()
            .filter(|c| c.client == client)
            .count();
        if from_client >= PER_CLIENT {
            let why = format!(
                "too many connections from {client} ({PER_CLIENT} at once): closing its oldest one that sent no request"
            );
            if !self.evict_oldest_idle(Some(client), &why) {
                return self.refuse(&mut stream, 503, why);
            }
        }
        if self.connections.len() >= self.max_connections {
            let why = format!(
                "the server holds {} connections: closing the oldest one that sent no request",
                self.max_connections
            );
            if !self.evict_oldest_idle(None, &why) {
                return self.refuse(&mut stream, 503, why);
            }
        }
        let id = self.next;
        self.next += 1;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(id), Interest::READABLE)
        {
            log::warn!("watching a connection from {client}: {e}");
            return;
        }
        let deadline = Instant::now() + HEAD_DEADLINE;
        self.deadlines.push(Reverse((deadline, id)));
        self.connections.insert(
            id,
            Connection {
                stream,
                client,
                stage: Stage::Reading(Vec::new()),
                deadline: Some(deadline),
            },
        );
        // Edge-triggered: bytes that came with the connection raise no
        // later event.
        self.advance(id);
    }

    /// Closes the oldest connection (from `client`, or from anyone) that
    /// has not sent a complete request head, telling it why. False when
    /// there is none.
    fn evict_oldest_idle(&mut self, client: Option<IpAddr>, why: &str) -> bool {
        let oldest = self.connections.iter().find_map(|(id, c)| {
            let idle = matches!(c.stage, Stage::Reading(_));
            (idle && client.is_none_or(|ip| ip == c.client)).then_some(*id)
        });
        let Some(id) = oldest else { return false };
        if let Some(mut connection) = self.remove(id) {
            log::debug!(
                "closing an idle API connection from {}: {why}",
                connection.client
            );
            self.refuse(&mut connection.stream, 503, why.to_string());
        }
        true
    }

    /// Sends a short refusal with one non-blocking write (it fits the
    /// socket buffer of any connection that never read) and closes.
    fn refuse(&self, stream: &mut TcpStream, status: u16, message: String) {
        let _ = stream.write(&self.handler.refusal(status, message));
    }

    fn remove(&mut self, id: usize) -> Option<Connection> {
        let mut connection = self.connections.remove(&id)?;
        let _ = self.poll.registry().deregister(&mut connection.stream);
        Some(connection)
    }

    fn take_answers(&mut self) {
        while let Ok((id, answer)) = self.answered.try_recv() {
            self.start_writing(id, answer.bytes, answer.drain);
        }
    }

    fn set_deadline(&mut self, id: usize, after: Duration) {
        if let Some(connection) = self.connections.get_mut(&id) {
            let deadline = Instant::now() + after;
            connection.deadline = Some(deadline);
            self.deadlines.push(Reverse((deadline, id)));
        }
    }

    /// Moves connection `id` on as far as its socket allows.
    fn advance(&mut self, id: usize) {
        let Some(connection) = self.connections.get_mut(&id) else {
            return;
        };
        let next = match &mut connection.stage {
            Stage::Reading(buffer) => match read_head(&mut connection.stream, buffer) {
                Progress::Waiting => Next::Keep,
                Progress::Closed => Next::Close,
                Progress::Complete { body_follows } => {
                    let head = std::mem::take(buffer);
                    connection.stage = Stage::Answering;
                    connection.deadline = None;
                    let job = Job {
                        connection: id,
                        head,
                        body_follows,
                    };
                    match self.jobs.try_send(job) {
                        Ok(()) => Next::Keep,
                        Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                            let bytes = self
                                .handler
                                .refusal(503, "the API is busy: try again in a moment".into());
                            self.start_writing(id, bytes, job.body_follows);
                            return;
                        }
                    }
                }
                Progress::TooLarge => {
                    let bytes = self
                        .handler
                        .refusal(431, format!("the request head is over {HEAD_LIMIT} bytes"));
                    self.start_writing(id, bytes, true);
                    return;
                }
            },
            Stage::Answering => Next::Keep,
            Stage::Writing {
                bytes,
                written,
                drain,
            } => match write_some(&mut connection.stream, bytes, written) {
                Ok(false) => Next::Keep,
                Ok(true) if *drain => {
                    // Closing with unread bytes makes the kernel send a
                    // reset, which can destroy the answer before the
                    // client reads it: read them first.
                    let _ = connection.stream.shutdown(std::net::Shutdown::Write);
                    connection.stage = Stage::Draining { left: DRAIN_LIMIT };
                    self.set_deadline(id, DRAIN_TIMEOUT);
                    self.interest(id, Interest::READABLE);
                    return self.advance(id);
                }
                Ok(true) => Next::Close,
                Err(e) => {
                    log::debug!("writing an answer to {}: {e}", connection.client);
                    Next::Close
                }
            },
            Stage::Draining { left } => {
                if drain(&mut connection.stream, left) {
                    Next::Close
                } else {
                    Next::Keep
                }
            }
        };
        if let Next::Close = next {
            self.remove(id);
        }
    }

    fn start_writing(&mut self, id: usize, bytes: Vec<u8>, drain: bool) {
        if let Some(connection) = self.connections.get_mut(&id) {
            connection.stage = Stage::Writing {
                bytes,
                written: 0,
                drain,
            };
            self.set_deadline(id, WRITE_TIMEOUT);
            self.interest(id, Interest::READABLE | Interest::WRITABLE);
            self.advance(id);
        }
    }

    fn interest(&mut self, id: usize, interest: Interest) {
        if let Some(connection) = self.connections.get_mut(&id)
            && let Err(e) =
                self.poll
                    .registry()
                    .reregister(&mut connection.stream, Token(id), interest)
        {
            log::debug!("watching a connection from {}: {e}", connection.client);
        }
    }

    /// Ends every stage whose deadline passed: a head that did not arrive
    /// gets a 408, an answer not taken or a body still coming is dropped.
    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, id))) = self.deadlines.peek().copied() {
            if at > now {
                return;
            }
            self.deadlines.pop();
            let current = self.connections.get(&id).and_then(|c| c.deadline);
            if current != Some(at) {
                continue;
            }
            let Some(mut connection) = self.remove(id) else {
                continue;
            };
            if let Stage::Reading(_) = connection.stage {
                self.refuse(
                    &mut connection.stream,
                    408,
                    format!(
                        "the request head did not arrive within {}s",
                        HEAD_DEADLINE.as_secs()
                    ),
                );
            }
        }
    }
}

/// How far reading a request head got.
#[derive(Debug, PartialEq)]
enum Progress {
    Waiting,
    /// The head is in the buffer, cut after its blank line.
    Complete {
        body_follows: bool,
    },
    TooLarge,
    /// Closed or failed before a complete head: nobody to answer.
    Closed,
}

/// Reads what `stream` has into `buffer`.
fn read_head(stream: &mut impl Read, buffer: &mut Vec<u8>) -> Progress {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Progress::Closed,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Waiting,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                log::debug!("reading a request: {e}");
                return Progress::Closed;
            }
        }
        if let Some(end) = head_end(buffer) {
            let body_follows = buffer.len() > end;
            buffer.truncate(end);
            return Progress::Complete { body_follows };
        }
        if buffer.len() > HEAD_LIMIT {
            return Progress::TooLarge;
        }
    }
}

/// Where the head ends (after its blank line), if it has.
fn head_end(buffer: &[u8]) -> Option<usize> {
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Writes what the socket takes; true when all of `bytes` is written.
fn write_some(stream: &mut impl Write, bytes: &[u8], written: &mut usize) -> std::io::Result<bool> {
    while *written < bytes.len() {
        match stream.write(&bytes[*written..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads and drops what the client sends; true when it is done (closed,
/// failed, or sent more than `left`).
fn drain(stream: &mut impl Read, left: &mut usize) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(read) if read >= *left => return true,
            Ok(read) => *left -= read,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nbody"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    /// Hands out its bytes a few at a time, then would block.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, into: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(ErrorKind::WouldBlock.into());
            }
            let n = self.1.min(self.0.len()).min(into.len());
            into[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_head_read_in_pieces_is_cut_after_its_blank_line() {
        let mut buffer = Vec::new();
        let mut first = Trickle(b"GET /healthz HTTP/1.1\r\nHo", 3);
        assert_eq!(read_head(&mut first, &mut buffer), Progress::Waiting);
        let mut rest = Trickle(b"st: x\r\n\r\nbody", 4);
        assert_eq!(
            read_head(&mut rest, &mut buffer),
            Progress::Complete { body_follows: true }
        );
        assert_eq!(buffer, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        // A read that ends with the blank line has seen no body (yet).
        let mut exact = Trickle(b"GET / HTTP/1.1\r\n\r\nbody", 18);
        assert_eq!(
            read_head(&mut exact, &mut Vec::new()),
            Progress::Complete {
                body_follows: false
            }
        );
        let mut huge = Trickle(&[b'a'; HEAD_LIMIT + 10], 4096);
        assert_eq!(read_head(&mut huge, &mut Vec::new()), Progress::TooLarge);
        assert_eq!(read_head(&mut &b""[..], &mut Vec::new()), Progress::Closed);
    }
}
