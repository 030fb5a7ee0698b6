//! The `metrics` probe: scrapes Prometheus text or OpenMetrics exposition;
//! every series becomes a signal addressable by name and labels. It only
//! reports what it read: deltas, ratios and quantiles are the rule engine's,
//! which keeps what it needs of this scrape for the next tick.

pub mod parse;

use super::kinds::ProbeConfig;
use super::{Check, CheckStatus, Context, Observation};
use crate::config::{self, ByteSize, Secret, Selector, Text, values, yes};
use crate::http_client::{ClientSettings, agent, describe_error};
use parse::Dialect;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `metrics`: a Prometheus / OpenMetrics scrape.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(deserialize_with = "values::http_url")]
    pub url: Text,
    #[serde(default, deserialize_with = "values::http_headers")]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default)]
    pub timeout: Option<config::Duration>,
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// PEM file of extra CA certificates (an internal CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// More series the rules need than this fail the scrape instead of
    /// being kept (default [`crate::probe::metrics::DEFAULT_MAX_SERIES`]).
    #[serde(default, deserialize_with = "series_cap")]
    pub max_series: Option<std::num::NonZeroUsize>,
    /// A larger body is refused rather than judged in part (default
    /// [`DEFAULT_MAX_BODY`]).
    #[serde(default)]
    pub max_body: Option<ByteSize>,
    /// The selectors the task's rules read ([`Task::series_wanted`]), set
    /// when jobs.yaml loads; `None` keeps every series.
    #[serde(skip)]
    pub wanted: Option<Vec<Selector>>,
}

/// OpenMetrics first (it marks its end, so a cut-short body is caught),
/// then the text format every exporter speaks.
const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A larger scrape is refused rather than judged in part, unless the
/// probe's `max_body` says otherwise: a node's exposition is a few hundred
/// KiB, so this is a runaway exporter (or a federate endpoint that wants a
/// higher `max_body`).
pub const DEFAULT_MAX_BODY: ByteSize = ByteSize(16 * 1024 * 1024);

/// `max_series`: a count of one or more.
fn series_cap<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::num::NonZeroUsize>, D::Error> {
    crate::config::values::parsed(d, |text| {
        text.trim()
            .parse::<usize>()
            .ok()
            .and_then(std::num::NonZeroUsize::new)
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "max_series {text} is not a count of one or more (0 would refuse every scrape): give how many series a scrape may keep, e.g. 100000 (the default) or 1000000"
                )
            })
    })
}

/// Series one scrape may keep unless the probe's `max_series` says
/// otherwise. A scrape keeps only the series its task's rules read (all,
/// when a rule picks names by a pattern); each kept series costs about
/// 300 bytes, so this bounds a scrape's memory near 30 MB beside its body.
pub const DEFAULT_MAX_SERIES: usize = 100_000;

impl ProbeConfig for MetricsConfig {
    fn observe(&self, context: &Context, out: &mut Observation) {
        observe(self, context, out);
    }

    fn check(&self) -> Result<(), String> {
        if self.max_body.is_some_and(|b| b.0 == 0) {
            return Err(
                "`max_body: 0` would refuse every scrape: give a size such as 64MiB".into(),
            );
        }
        Ok(())
    }

    fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        self.ca_file.iter_mut().collect()
    }

    fn secrets(&self) -> Vec<&str> {
        values::request_secrets(self.url.as_str(), &self.headers)
    }
}

/// Scrapes the endpoint and adds every series. Signals: `up` (1/0),
/// `scrape_ms` and `series` (their count). Every mode scrapes the same way:
/// a scrape consumes nothing.
pub fn observe(probe: &MetricsConfig, context: &Context, out: &mut Observation) {
    let probe_timeout = probe.timeout.map(|t| t.std());
    // The scrape is timed from our turn to connect to its host.
    let mut started = Instant::now();
    let scraped = fetch(
        probe,
        context.budget(probe_timeout),
        context.limit(probe_timeout),
        &mut started,
    )
    .and_then(|mut scrape| {
        let cap = probe
            .max_series
            .map_or(DEFAULT_MAX_SERIES, std::num::NonZeroUsize::get);
        let max_body = probe.max_body.unwrap_or(DEFAULT_MAX_BODY).0;
        let body = crate::http_client::described_body(
            scrape
                .response
                .body_mut()
                .with_config()
                .limit(u64::MAX)
                .reader(),
            context.limit(probe_timeout),
        );
        parse::parse_exposition_streamed(body, scrape.dialect, max_body, cap, probe.wanted.as_deref())
            .map_err(|e| match e {
                parse::Capped::TooBig => format!(
                    "the response is larger than max_body ({}); a partial scrape is not judged: raise `max_body` on this probe if the target is that big",
                    crate::config::format_bytes(max_body as f64)
                ),
                parse::Capped::Read(why) => why,
                parse::Capped::Invalid(e) => e.to_string(),
                parse::Capped::TooMany { kept, names: 0, count } if kept == count => format!(
                    "{count} series, more than max_series {cap}: none kept (a runaway exporter, or raise `max_series:` on this probe)"
                ),
                parse::Capped::TooMany { kept, names: 0, count } => format!(
                    "{kept} of its {count} series are ones the rules read, more than max_series {cap}: none kept (a runaway exporter, or raise `max_series:` on this probe)"
                ),
                parse::Capped::TooMany { kept, names, count } => format!(
                    "{kept} of its {count} series are ones the rules read, and their `__name__` patterns pick {names} metric names (each counted as one series): {} in all, more than max_series {cap}: none kept (a runaway exporter, narrower selectors, or raise `max_series:` on this probe)",
                    kept + names
                ),
            })
    });
    let url = &probe.url;
    let check = match scraped {
        Ok((exposition, count)) => {
            let scrape_ms = started.elapsed().as_secs_f64() * 1000.0;
            let duplicates = fill(&mut out.signals, exposition);
            out.signals.set_probe("metrics", "up", 1.0);
            out.signals
                .set_probe("metrics", "scrape_ms", scrape_ms.round());
            out.signals.set_probe("metrics", "series", count as f64);
            let note = match duplicates {
                0 => String::new(),
                1 => "; 1 duplicated sample ignored (the first one counts, as in Prometheus)"
                    .to_string(),
                n => format!(
                    "; {n} duplicated samples ignored (the first of each counts, as in Prometheus)"
                ),
            };
            Check {
                probe: "metrics",
                status: CheckStatus::Ok,
                summary: format!("{url}: {count} series in {scrape_ms:.0} ms{note}"),
            }
        }
        Err(why) => {
            out.signals.set_probe("metrics", "up", 0.0);
            Check {
                probe: "metrics",
                status: CheckStatus::Failed,
                summary: format!("{url}: {why}"),
            }
        }
    };
    out.checks.push(check);
}

/// Puts a parsed exposition into the task's signals: every series (the
/// first of duplicates, as Prometheus keeps) and every declared family.
/// Returns how many duplicated samples were left out.
pub fn fill(signals: &mut super::Signals, exposition: parse::Exposition) -> usize {
    for family in &exposition.families {
        signals.declare_family(family);
    }
    for (name, label_names) in exposition.sampled {
        signals.note_sampled(name, label_names);
    }
    let mut duplicates = 0;
    for one in exposition.series {
        if !signals.add_series(&one.name, one.labels, one.value) {
            duplicates += 1;
        }
    }
    duplicates
}

/// A successful response, its body still to read, and the dialect it
/// claims.
struct Scrape {
    response: ureq::http::Response<ureq::Body>,
    dialect: Dialect,
}

/// GETs the endpoint within `budget`; any answer but a 2xx with a body up
/// to `max_body` is an error naming why (`configured` is the limit to
/// name on a timeout).
fn fetch(
    probe: &MetricsConfig,
    budget: Duration,
    configured: Duration,
    started: &mut Instant,
) -> Result<Scrape, String> {
    let (_slot, timeout) = crate::probe::host_limit::within(probe.url.as_str(), budget)?;
    *started = Instant::now();
    let agent = agent(&ClientSettings {
        timeout,
        tls_verify: probe.tls_verify,
        ca_file: probe.ca_file.as_deref(),
        pin: None,
    })?;
    let mut builder = ureq::http::Request::builder()
        .method("GET")
        .uri(probe.url.as_str());
    if !probe
        .headers
        .keys()
        .any(|name| name.eq_ignore_ascii_case("accept"))
    {
        builder = builder.header("accept", ACCEPT);
    }
    for (name, value) in &probe.headers {
        builder = builder.header(name.as_str(), value.expose());
    }
    let request = builder.body(()).map_err(|e| format!("bad request: {e}"))?;
    let mut response = agent
        .run(request)
        .map_err(|e| describe_error(&e, configured))?;
    let status = response.status().as_u16();
    let dialect = Dialect::from_content_type(
        response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok()),
    );
    if !(200..300).contains(&status) {
        // Of an error page only the start is shown.
        let mut body = Vec::new();
        let reader = response.body_mut().with_config().limit(u64::MAX).reader();
        crate::http_client::described_body(reader, configured)
            .take(200)
            .read_to_end(&mut body)
            .map_err(|e| e.to_string())?;
        return Err(format!(
            "HTTP {status}{}",
            crate::http_client::body_excerpt(&body)
        ));
    }
    Ok(Scrape { response, dialect })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Mode, TaskMemory};
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    /// Answers one request on 127.0.0.1 with `status`, `content_type` and
    /// `body` after `delay`; the thread returns the request's header lines.
    fn serve_once(
        status: u16,
        content_type: &str,
        body: &str,
        delay: Duration,
    ) -> (String, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                headers.push(line.trim().to_string());
            }
            std::thread::sleep(delay);
            let _ = (&stream).write_all(response.as_bytes());
            headers
        });
        (url, handle)
    }

    fn probe(yaml: &str) -> MetricsConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn scrape(probe: &MetricsConfig, mode: Mode) -> Observation {
        let state = TaskMemory::new();
        let mut out = Observation::default();
        observe(probe, &Context::for_test(&state, mode), &mut out);
        out
    }

    const TEXT: &str =
        "# TYPE up gauge\nnode_up 1\nreqs_total{code=\"200\"} 5\nreqs_total{code=\"500\"} 2\n";

    #[test]
    fn scrape_adds_every_series_and_its_signals() {
        let (url, server) = serve_once(200, "text/plain; version=0.0.4", TEXT, Duration::ZERO);
        let out = scrape(
            &probe(&format!("url: {url}\nheaders: {{ x-token: abc }}")),
            Mode::Tick,
        );
        let request = server.join().unwrap();
        assert_eq!(out.checks[0].status, CheckStatus::Ok, "{:?}", out.checks);
        assert!(
            out.checks[0]
                .summary
                .starts_with(&format!("{url}: 3 series in ")),
            "{}",
            out.checks[0].summary
        );
        assert_eq!(out.signals.get_name("up"), Some(1.0));
        assert_eq!(out.signals.get_name("metrics.up"), Some(1.0));
        assert_eq!(out.signals.get_name("series"), Some(3.0));
        assert!(out.signals.get_name("scrape_ms").is_some());
        assert_eq!(out.signals.series_count(), 3);
        let selector = "reqs_total".parse().unwrap();
        assert_eq!(out.signals.get(&selector), Some(7.0));
        let selector = "reqs_total{code=\"500\"}".parse().unwrap();
        assert_eq!(out.signals.get(&selector), Some(2.0));
        assert!(
            request
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&format!("accept: {ACCEPT}"))),
            "{request:?}"
        );
        assert!(
            request
                .iter()
                .any(|h| h.eq_ignore_ascii_case("x-token: abc")),
            "{request:?}"
        );
    }

    #[test]
    fn a_recheck_scrapes_like_a_tick() {
        let (url, server) = serve_once(200, "text/plain", TEXT, Duration::ZERO);
        let out = scrape(&probe(&format!("url: {url}")), Mode::Recheck);
        server.join().unwrap();
        assert_eq!(out.checks[0].status, CheckStatus::Ok);
        assert_eq!(out.signals.series_count(), 3);
    }

    #[test]
    fn openmetrics_must_end_with_eof() {
        let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        let (url, server) = serve_once(200, content_type, "a 1\nb 2\n# EOF\n", Duration::ZERO);
        let out = scrape(&probe(&format!("url: {url}")), Mode::Tick);
        server.join().unwrap();
        assert_eq!(out.checks[0].status, CheckStatus::Ok, "{:?}", out.checks);
        assert_eq!(out.signals.series_count(), 2);

        let (url, server) = serve_once(200, content_type, "a 1\nb 2\n", Duration::ZERO);
        let out = scrape(&probe(&format!("url: {url}")), Mode::Tick);
        server.join().unwrap();
        assert_eq!(out.checks[0].status, CheckStatus::Failed);
        assert_eq!(
            out.checks[0].summary,
            format!("{url}: line 3: the OpenMetrics exposition ends without `# EOF` (cut short?)")
        );
        assert_eq!(out.signals.series_count(), 0);
    }

    #[test]
    fn a_malformed_line_fails_the_whole_scrape() {
        let (url, server) = serve_once(200, "text/plain", "a 1\nb{x=\"1\"} oops\n", Duration::ZERO);
        let out = scrape(&probe(&format!("url: {url}")), Mode::Tick);
        server.join().unwrap();
        assert_eq!(out.checks[0].status, CheckStatus::Failed);
        assert_eq!(
            out.checks[0].summary,
            format!("{url}: line 2: b: invalid value \"oops\"")
        );
        assert_eq!(out.signals.get_name("up"), Some(0.0));
        assert_eq!(out.signals.series_count(), 0);
    }

    #[test]
    fn http_errors_fail_with_the_status() {
        let (url, server) = serve_once(503, "text/plain", "warming up\n", Duration::ZERO);
        let out = scrape(&probe(&format!("url: {url}")), Mode::Tick);
        server.join().unwrap();
        assert_eq!(out.checks[0].status, CheckStatus::Failed);
        assert_eq!(
            out.checks[0].summary,
            format!("{url}: HTTP 503: warming up")
        );
        assert_eq!(out.signals.get_name("up"), Some(0.0));
    }

    #[test]
    fn refused_and_slow_endpoints_fail() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/metrics");
        let out = scrape(&probe(&format!("url: {url}")), Mode::Tick);
        assert_eq!(out.checks[0].status, CheckStatus::Failed);
        assert!(
            out.checks[0].summary.contains("connection refused"),
            "{}",
            out.checks[0].summary
        );

        let (url, server) = serve_once(200, "text/plain", TEXT, Duration::from_millis(600));
        let out = scrape(&probe(&format!("url: {url}\ntimeout: 200ms")), Mode::Tick);
        server.join().unwrap();
        assert_eq!(out.checks[0].status, CheckStatus::Failed);
        assert_eq!(
            out.checks[0].summary,
            format!("{url}: no answer within 200ms")
        );
    }

    /// Review of issue 14: a body that stops arriving said "reading the
    /// response body: timeout: global"; it says which timeout ran out.
    #[test]
    fn a_body_that_stops_arriving_fails_naming_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut request);
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n";
            std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
            std::io::Write::write_all(&mut stream, b"up 1\nnode_load1 0.5\n").unwrap();
            std::thread::sleep(Duration::from_millis(800));
        });
        let out = scrape(&probe(&format!("url: {url}\ntimeout: 300ms")), Mode::Tick);
        server.join().unwrap();
        assert_eq!(out.checks[0].status, CheckStatus::Failed);
        assert!(
            out.checks[0]
                .summary
                .contains("the body was not all read within 300ms"),
            "{}",
            out.checks[0].summary
        );
    }

    /// A body over `max_body` (16 MiB unless the probe says) is refused,
    /// naming the key to raise; with `max_body` raised it is judged.
    #[test]
    fn oversized_scrapes_are_refused_unless_max_body_allows_them() {
        let line = "some_series_with_a_long_name{label=\"value\"} 1\n";
        let body = line.repeat(usize::try_from(DEFAULT_MAX_BODY.0).unwrap() / line.len() + 1);
        let (url, server) = serve_once(200, "text/plain", &body, Duration::ZERO);
        let out = scrape(&probe(&format!("url: {url}")), Mode::Tick);
        server.join().unwrap();
        assert_eq!(out.checks[0].status, CheckStatus::Failed);
        assert_eq!(
            out.checks[0].summary,
            format!(
                "{url}: the response is larger than max_body (16 MiB); a partial scrape is not judged: raise `max_body` on this probe if the target is that big"
            )
        );
        let (url, server) = serve_once(200, "text/plain", &body, Duration::ZERO);
        let config = format!("url: {url}\nmax_body: 32MiB\nmax_series: 1000000");
        let out = scrape(&probe(&config), Mode::Tick);
        server.join().unwrap();
        assert_eq!(out.checks[0].status, CheckStatus::Ok, "{:?}", out.checks);
    }
}
