//! The `lag` probe: how far a node's height trails a reference height, and
//! how fast it is catching up. It reads both heights (JSON-RPC or GET, then
//! a JSON pointer), compares them with the local height it remembered last
//! tick, and reports figures; it decides no alert.
//!
//! Over 800 lines because its unit tests (about 300) stay beside the
//! height reading and rate arithmetic they pin; the code is about 550.

use super::http::extract;
use super::kinds::ProbeConfig;
use super::{Check, CheckStatus, Context, Mode, Observation, TaskMemory};
use crate::clock::{Timestamp, human_duration};
use crate::config::{self, JsonPointer, Text, Why, format_number, values, within_mapping, yes};
use crate::http_client::{ClientSettings, agent, describe_error};
use serde::Deserialize;
use serde::de::Deserializer;
use std::time::Duration;

/// `lag`: local height against a reference height.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct LagConfig {
    pub local: HeightSource,
    pub reference: HeightSource,
    #[serde(default)]
    pub timeout: Option<config::Duration>,
}

/// Where a height comes from: a JSON-RPC call or a GET, plus a pointer.
#[derive(Debug, Clone)]
pub struct HeightSource {
    pub request: HeightRequest,
    pub extract: JsonPointer,
    pub tls_verify: bool,
}

/// How a height is asked for: exactly one of `jsonrpc` and `url`.
#[derive(Debug, Clone)]
pub enum HeightRequest {
    JsonRpc(JsonRpcEndpoint),
    Get(Text),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeightSource {
    #[serde(default)]
    jsonrpc: Option<JsonRpcEndpoint>,
    #[serde(default, deserialize_with = "values::optional_http_url")]
    url: Option<Text>,
    extract: JsonPointer,
    #[serde(default = "yes")]
    tls_verify: bool,
}

impl<'de> Deserialize<'de> for HeightSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        within_mapping(d, |raw: RawHeightSource| {
            let request = match (raw.jsonrpc, raw.url) {
                (Some(call), None) => HeightRequest::JsonRpc(call),
                (None, Some(url)) => HeightRequest::Get(url),
                _ => {
                    return Err(Why(
                        "each `lag` source takes either `jsonrpc: {url, method}` or `url`".into(),
                    ));
                }
            };
            Ok(HeightSource {
                request,
                extract: raw.extract,
                tls_verify: raw.tls_verify,
            })
        })
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct JsonRpcEndpoint {
    #[serde(deserialize_with = "values::http_url")]
    pub url: Text,
    pub method: Text,
    #[serde(default)]
    pub params: Option<serde_json::Value>,
}

const PROBE: &str = "lag";
/// The local height last read, for `progress` next tick.
const LOCAL_KEY: &str = "lag.local";
/// The last pair of heights read together (reference, local, when), for
/// the closing speed; the local height alone may be newer.
const REFERENCE_KEY: &str = "lag.reference";
const PAIR_LOCAL_KEY: &str = "lag.pair_local";
const PAIR_AT_KEY: &str = "lag.pair_at";
/// When it was read (Unix milliseconds).
const AT_KEY: &str = "lag.at";
/// When the local height was last seen to rise (or first read).
const MOVED_KEY: &str = "lag.moved_at";
/// A height answer is small; a larger body is not one.
const MAX_BODY: u64 = 1 << 20;

/// Every signal a reading gives (`progress` and on from the second tick).
const SIGNALS: [&str; 7] = [
    "local",
    "reference",
    "lag",
    "progress",
    "rate",
    "closing_rate",
    "eta_s",
];

impl ProbeConfig for LagConfig {
    fn signal_names(&self) -> Option<Vec<String>> {
        Some(SIGNALS.map(String::from).to_vec())
    }

    fn observe(&self, context: &Context, out: &mut Observation) {
        observe(self, context, out);
    }

    fn secrets(&self) -> Vec<&str> {
        [&self.local, &self.reference]
            .into_iter()
            .filter_map(|source| {
                let url = match &source.request {
                    HeightRequest::JsonRpc(call) => call.url.as_str(),
                    HeightRequest::Get(url) => url.as_str(),
                };
                values::url_with_password(url)
            })
            .collect()
    }
}

/// Reads both heights (concurrently, within the task's budget) and reports
/// `local`, `reference`, `lag`, and against last tick's reading `progress`,
/// `rate` and `eta_s`. A failed read reports no figure and leaves the
/// remembered reading alone, so the next progress spans the gap.
pub fn observe(probe: &LagConfig, context: &Context, out: &mut Observation) {
    let probe_timeout = probe.timeout.map(|t| t.std());
    let limits = Limits {
        budget: context.budget(probe_timeout),
        configured: context.limit(probe_timeout),
    };
    let (local, reference) = std::thread::scope(|scope| {
        let reference = scope.spawn(|| height(&probe.reference, &limits));
        let local = height(&probe.local, &limits);
        let reference = reference
            .join()
            .unwrap_or_else(|_| Err("reading the height panicked".to_string()));
        (local, reference)
    });
    let check = match (local, reference) {
        (Ok(local), Ok(reference)) => {
            let previous = Previous::load(context.state);
            let reading = Reading::measure(local, reference, previous, context.now);
            reading.report(out);
            if context.mode != Mode::Recheck {
                out.state.insert(LOCAL_KEY.to_string(), local.to_string());
                out.state
                    .insert(REFERENCE_KEY.to_string(), reference.to_string());
                out.state
                    .insert(PAIR_LOCAL_KEY.to_string(), local.to_string());
                out.state
                    .insert(PAIR_AT_KEY.to_string(), context.now.millis().to_string());
                out.state
                    .insert(AT_KEY.to_string(), context.now.millis().to_string());
                out.state
                    .insert(MOVED_KEY.to_string(), reading.moved_at.millis().to_string());
            }
            Check {
                probe: PROBE,
                status: CheckStatus::Ok,
                summary: reading.summary(),
            }
        }
        (Ok(local), reference) => {
            // The reference node down is not the local node's fault: told,
            // but no restart can fix it. The local height still counts:
            // a stall is seen without the reference.
            out.outside.insert(PROBE);
            let previous = Previous::load(context.state).map(|p| Previous { pair: None, ..p });
            let reading = Reading::measure(local, f64::NAN, previous, context.now);
            reading.report_local(out);
            if context.mode != Mode::Recheck {
                out.state.insert(LOCAL_KEY.to_string(), local.to_string());
                out.state
                    .insert(AT_KEY.to_string(), context.now.millis().to_string());
                out.state
                    .insert(MOVED_KEY.to_string(), reading.moved_at.millis().to_string());
            }
            Check {
                probe: PROBE,
                status: CheckStatus::Failed,
                summary: failure(probe, &Ok(local), &reference),
            }
        }
        (local, reference) => Check {
            probe: PROBE,
            status: CheckStatus::Failed,
            summary: failure(probe, &local, &reference),
        },
    };
    out.checks.push(check);
}

/// The time a read may take now, and the configured limit to name.
struct Limits {
    budget: Duration,
    configured: Duration,
}

/// Names the side(s) that failed and why, and the height the other gave.
fn failure(
    probe: &LagConfig,
    local: &Result<f64, String>,
    reference: &Result<f64, String>,
) -> String {
    let sides = [
        ("local", &probe.local, local),
        ("reference", &probe.reference, reference),
    ];
    let failed: Vec<String> = sides
        .iter()
        .filter_map(|(side, source, result)| {
            let why = result.as_ref().err()?;
            Some(format!("{side} {}: {why}", describe_source(source)))
        })
        .collect();
    let read: Vec<String> = sides
        .iter()
        .filter_map(|(side, _, result)| {
            let height = result.as_ref().ok()?;
            Some(format!("{side} height {}", format_number(*height)))
        })
        .collect();
    let mut summary = failed.join("; ");
    if !read.is_empty() {
        summary.push_str(&format!(" ({})", read.join(", ")));
    }
    summary
}

/// `http://127.0.0.1:9944 chain_getHeader` or the GET URL.
fn describe_source(source: &HeightSource) -> String {
    match &source.request {
        HeightRequest::JsonRpc(call) => format!("{} {}", call.url, call.method),
        HeightRequest::Get(url) => url.to_string(),
    }
}

/// One height: the request, its status, its JSON, the number at the pointer.
fn height(source: &HeightSource, limits: &Limits) -> Result<f64, String> {
    let url = match &source.request {
        HeightRequest::JsonRpc(call) => call.url.as_str(),
        HeightRequest::Get(url) => url.as_str(),
    };
    let (_slot, timeout) = super::host_limit::within(url, limits.budget)?;
    let agent = agent(&ClientSettings {
        timeout,
        tls_verify: source.tls_verify,
        ca_file: None,
        pin: None,
    })?;
    let result = match &source.request {
        HeightRequest::JsonRpc(call) => {
            let payload = serde_json::json!({
                "jsonrpc": "2.0",
                "id": 1,
                "method": call.method.as_str(),
                "params": call.params.clone().unwrap_or(serde_json::Value::Array(vec![])),
            });
            agent
                .post(call.url.as_str())
                .header("content-type", "application/json")
                .send(payload.to_string().as_bytes())
        }
        HeightRequest::Get(url) => agent.get(url.as_str()).call(),
    };
    let mut response = result.map_err(|e| describe_error(&e, limits.configured))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| format!("reading the response: {e}"))?;
    if !(200..300).contains(&status) {
        return Err(format!(
            "HTTP {status}{}",
            crate::http_client::body_excerpt(&body)
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "response is not JSON ({e}){}",
            crate::http_client::body_excerpt(&body)
        )
    })?;
    if matches!(source.request, HeightRequest::JsonRpc(_))
        && let Some(error) = json.get("error").filter(|e| !e.is_null())
    {
        return Err(format!("JSON-RPC error {error}"));
    }
    let height = extract(&json, &source.extract).ok_or_else(|| {
        let found = match json.pointer(&source.extract.0) {
            Some(value) => format!(" (found {})", shorten(&value.to_string())),
            None => String::new(),
        };
        format!("no number at {}{found}", source.extract.0)
    })?;
    // A block height is a whole number from 0 up, well inside f64's exact
    // integers: anything else is a broken answer, not a lag to judge.
    if height < 0.0 || height.fract() != 0.0 || height > 9_007_199_254_740_992.0 {
        return Err(format!(
            "{} at {} is not a block height",
            format_number(height),
            source.extract.0
        ));
    }
    Ok(height)
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The heights an earlier tick read, and when.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Previous {
    local: f64,
    at: Timestamp,
    /// When the local height last rose (or was first read).
    moved_at: Timestamp,
    /// The last heights read together; `None` from a monitor that did not
    /// store them yet.
    pair: Option<Pair>,
}

/// A local and a reference height read in the same tick.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Pair {
    local: f64,
    reference: f64,
    at: Timestamp,
}

impl Previous {
    /// `None` on first sight, or when the remembered values do not parse.
    fn load(state: &TaskMemory) -> Option<Previous> {
        let number = |key: &str| {
            state
                .get(key)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite())
        };
        let time = |key: &str| {
            state
                .get(key)
                .and_then(|v| v.parse::<i64>().ok())
                .map(Timestamp)
        };
        let local = number(LOCAL_KEY)?;
        let at = time(AT_KEY)?;
        let pair = number(REFERENCE_KEY).map(|reference| Pair {
            local: number(PAIR_LOCAL_KEY).unwrap_or(local),
            reference,
            at: time(PAIR_AT_KEY).unwrap_or(at),
        });
        Some(Previous {
            local,
            at,
            moved_at: time(MOVED_KEY).unwrap_or(at),
            pair,
        })
    }
}

/// The figures of one tick.
#[derive(Clone, Debug, PartialEq)]
struct Reading {
    local: f64,
    reference: f64,
    /// reference − local; negative when the local node is ahead.
    lag: f64,
    progress: Option<Progress>,
    /// When the local height last rose: now, or an earlier reading's time.
    moved_at: Timestamp,
}

/// What changed since the previous reading.
#[derive(Clone, Debug, PartialEq)]
struct Progress {
    /// Blocks the local node gained (negative: its height went back).
    blocks: f64,
    /// Local blocks per second.
    rate: f64,
    /// Seconds between the two readings.
    seconds: f64,
    /// How much the lag grew (negative: it shrank) since the last pair of
    /// heights, and over how many seconds; `None` when no pair is known.
    lag_change: Option<f64>,
    lag_seconds: f64,
    /// How fast the lag shrinks, blocks per second: the local rate minus
    /// the reference's (negative while falling behind).
    closing_rate: Option<f64>,
    /// Seconds to catch up at the closing speed, when it is closing.
    eta_s: Option<f64>,
}

impl Reading {
    fn measure(local: f64, reference: f64, previous: Option<Previous>, now: Timestamp) -> Reading {
        let lag = reference - local;
        // Progress needs a time span: none on first sight, nor when the
        // clock stood still or went back since the last reading.
        let progress = previous
            .map(|p| (p, now.since(p.at)))
            .filter(|(_, elapsed_ms)| *elapsed_ms > 0)
            .map(|(previous, elapsed_ms)| {
                let blocks = local - previous.local;
                let seconds = elapsed_ms as f64 / 1000.0;
                let pair = previous
                    .pair
                    .map(|p| (p.reference - p.local, now.since(p.at) as f64 / 1000.0))
                    .filter(|(_, seconds)| *seconds > 0.0 && lag.is_finite());
                let lag_change = pair.map(|(before, _)| lag - before);
                let lag_seconds = pair.map_or(seconds, |(_, s)| s);
                let closing_rate = lag_change.map(|change| -change / lag_seconds);
                // lag ÷ (closing ÷ seconds), in that order to stay exact for
                // whole numbers; rounded up, so a node still behind never
                // shows "caught up in ~0s".
                let eta_s = lag_change
                    .filter(|change| *change < 0.0 && lag > 0.0)
                    .map(|change| (lag * lag_seconds / -change).ceil());
                Progress {
                    blocks,
                    rate: blocks / seconds,
                    seconds,
                    lag_change,
                    lag_seconds,
                    closing_rate,
                    eta_s,
                }
            });
        let moved_at = match (previous, &progress) {
            (Some(previous), Some(progress)) if progress.blocks <= 0.0 => previous.moved_at,
            (Some(previous), None) => previous.moved_at,
            _ => now,
        };
        Reading {
            local,
            reference,
            lag,
            progress,
            moved_at,
        }
    }

    /// Only what the local height gives (the reference could not be read):
    /// `local`, `progress`, `rate`.
    fn report_local(&self, out: &mut Observation) {
        out.signals.set_probe(PROBE, "local", self.local);
        if let Some(progress) = &self.progress {
            out.signals.set_probe(PROBE, "progress", progress.blocks);
            out.signals.set_probe(PROBE, "rate", progress.rate);
            if progress.blocks <= 0.0 {
                out.since.insert("progress".to_string(), self.moved_at);
            }
        }
    }

    fn report(&self, out: &mut Observation) {
        let signals = &mut out.signals;
        signals.set_probe(PROBE, "local", self.local);
        signals.set_probe(PROBE, "reference", self.reference);
        signals.set_probe(PROBE, "lag", self.lag);
        let mut unavailable = |name: &str, why: &str| {
            out.unavailable.insert(name.to_string(), why.to_string());
        };
        match &self.progress {
            Some(progress) => {
                signals.set_probe(PROBE, "progress", progress.blocks);
                signals.set_probe(PROBE, "rate", progress.rate);
                match progress.closing_rate {
                    Some(closing) => signals.set_probe(PROBE, "closing_rate", closing),
                    None => unavailable(
                        "closing_rate",
                        "the previous reference height is not known yet",
                    ),
                }
                match progress.eta_s {
                    Some(eta) => signals.set_probe(PROBE, "eta_s", eta),
                    None => unavailable("eta_s", "no ETA: caught up, or not catching up"),
                }
                if progress.blocks <= 0.0 {
                    // No progress since the last reading that saw some.
                    out.since.insert("progress".to_string(), self.moved_at);
                }
            }
            None => {
                let why =
                    "first reading of the local height: progress is measured from the next tick";
                for name in ["progress", "rate", "closing_rate", "eta_s"] {
                    unavailable(name, why);
                }
            }
        }
    }

    /// "lag 57 (local 1000, reference 1057); +12 since last tick,
    /// 0.2 blocks/s, caught up in ~4m 45s" — the ETA at the closing speed;
    /// "…; not catching up: lag +59 in 60 s" when the lag does not shrink.
    fn summary(&self) -> String {
        let (local, reference) = (format_number(self.local), format_number(self.reference));
        let position = if self.lag > 0.0 {
            format!(
                "lag {} (local {local}, reference {reference})",
                format_number(self.lag)
            )
        } else if self.lag == 0.0 {
            format!("caught up (lag 0) at height {local}")
        } else {
            format!(
                "ahead of the reference by {} (lag {}, local {local}, reference {reference})",
                format_number(-self.lag),
                format_number(self.lag)
            )
        };
        let Some(progress) = &self.progress else {
            return format!("{position}; first reading, progress from the next tick");
        };
        // A gap (failed reads between) is said as such, not as "last tick".
        let since = if progress.seconds > 90.0 {
            format!(
                "since the last reading {} ago",
                human_duration((progress.seconds * 1000.0) as i64)
            )
        } else {
            "since last tick".to_string()
        };
        let gained = if progress.blocks > 0.0 {
            format!("+{} {since}", format_number(progress.blocks))
        } else if progress.blocks == 0.0 {
            format!("no progress {since}")
        } else {
            format!(
                "{} {since} (the local height went back)",
                format_number(progress.blocks)
            )
        };
        let mut text = format!(
            "{position}; {gained}, {} blocks/s",
            format_number(progress.rate)
        );
        match (progress.eta_s, progress.lag_change) {
            (Some(eta), _) => text.push_str(&format!(
                ", caught up in ~{}",
                human_duration((eta * 1000.0) as i64)
            )),
            (None, Some(change)) if self.lag > 0.0 => {
                let moved = if change == 0.0 {
                    "lag unchanged".to_string()
                } else {
                    format!("lag +{}", format_number(change))
                };
                text.push_str(&format!(
                    "; not catching up: {moved} in {} s",
                    format_number(progress.lag_seconds.round())
                ));
            }
            (None, None) if self.lag > 0.0 && progress.blocks <= 0.0 => {
                text.push_str(", not catching up");
            }
            _ => {}
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn previous(local: f64, reference: f64, at: i64) -> Option<Previous> {
        Some(Previous {
            local,
            at: Timestamp(at),
            moved_at: Timestamp(at),
            pair: Some(Pair {
                local,
                reference,
                at: Timestamp(at),
            }),
        })
    }

    #[test]
    fn the_eta_uses_the_closing_speed() {
        // The node gained 12 blocks, the network 6: the lag shrank by 6 a
        // minute, 0.1 blocks/s; 57 left take 9m 30s.
        let reading = Reading::measure(
            1000.0,
            1057.0,
            previous(988.0, 1051.0, 0),
            Timestamp(MINUTE),
        );
        assert_eq!(reading.lag, 57.0);
        let progress = reading.progress.clone().unwrap();
        assert_eq!(progress.blocks, 12.0);
        assert_eq!(progress.rate, 0.2);
        assert_eq!(progress.closing_rate, Some(0.1));
        assert_eq!(progress.eta_s, Some(570.0));
        assert_eq!(
            reading.summary(),
            "lag 57 (local 1000, reference 1057); +12 since last tick, 0.2 blocks/s, caught up in ~9m 30s"
        );
        let mut out = Observation::default();
        reading.report(&mut out);
        let signals: Vec<Option<f64>> = SIGNALS
            .iter()
            .map(|name| out.signals.get_name(name))
            .collect();
        assert_eq!(
            signals,
            [
                Some(1000.0),
                Some(1057.0),
                Some(57.0),
                Some(12.0),
                Some(0.2),
                Some(0.1),
                Some(570.0)
            ]
        );
    }

    #[test]
    fn a_node_keeping_pace_but_not_closing_is_not_catching_up() {
        // Syncing 12 blocks a minute while the network makes 12: no ETA.
        let flat = Reading::measure(
            1000.0,
            1057.0,
            previous(988.0, 1045.0, 0),
            Timestamp(MINUTE),
        );
        assert_eq!(flat.progress.as_ref().unwrap().eta_s, None);
        assert_eq!(
            flat.summary(),
            "lag 57 (local 1000, reference 1057); +12 since last tick, 0.2 blocks/s; not catching up: lag unchanged in 60 s"
        );
        // Lag 120 → 179: falling behind by 59 in a minute.
        let growing = Reading::measure(
            1000.0,
            1179.0,
            previous(988.0, 1108.0, 0),
            Timestamp(MINUTE),
        );
        assert_eq!(
            growing
                .progress
                .as_ref()
                .unwrap()
                .closing_rate
                .map(|r| (r * 60.0).round()),
            Some(-59.0)
        );
        assert_eq!(
            growing.summary(),
            "lag 179 (local 1000, reference 1179); +12 since last tick, 0.2 blocks/s; not catching up: lag +59 in 60 s"
        );
        let mut out = Observation::default();
        growing.report(&mut out);
        assert_eq!(out.signals.get_name("eta_s"), None);
        assert!(out.unavailable.contains_key("eta_s"));
    }

    #[test]
    fn progress_spans_the_whole_gap_since_the_remembered_reading() {
        // Two failed ticks in between: 30 blocks over three minutes, the
        // network made 0: the lag shrank by 30, 60 left at 1/6 a second.
        let reading = Reading::measure(
            1030.0,
            1090.0,
            previous(1000.0, 1090.0, 0),
            Timestamp(3 * MINUTE),
        );
        let progress = reading.progress.unwrap();
        assert_eq!(progress.blocks, 30.0);
        assert!((progress.rate - 30.0 / 180.0).abs() < 1e-12);
        assert_eq!(progress.eta_s, Some(360.0));
    }

    #[test]
    fn first_reading_has_no_progress() {
        let reading = Reading::measure(1000.0, 1057.0, None, Timestamp(0));
        assert_eq!(reading.progress, None);
        assert_eq!(
            reading.summary(),
            "lag 57 (local 1000, reference 1057); first reading, progress from the next tick"
        );
        let mut out = Observation::default();
        reading.report(&mut out);
        assert_eq!(out.signals.get_name("lag"), Some(57.0));
        assert_eq!(out.signals.get_name("progress"), None);
        assert_eq!(out.signals.get_name("eta_s"), None);
    }

    #[test]
    fn caught_up_has_no_eta() {
        let reading = Reading::measure(
            1057.0,
            1057.0,
            previous(1045.0, 1050.0, 0),
            Timestamp(MINUTE),
        );
        assert_eq!(reading.progress.as_ref().unwrap().eta_s, None);
        assert_eq!(
            reading.summary(),
            "caught up (lag 0) at height 1057; +12 since last tick, 0.2 blocks/s"
        );
    }

    #[test]
    fn a_node_ahead_keeps_its_negative_lag() {
        let reading = Reading::measure(
            1060.0,
            1057.0,
            previous(1048.0, 1050.0, 0),
            Timestamp(MINUTE),
        );
        assert_eq!(reading.lag, -3.0);
        assert_eq!(reading.progress.as_ref().unwrap().eta_s, None);
        assert_eq!(
            reading.summary(),
            "ahead of the reference by 3 (lag -3, local 1060, reference 1057); +12 since last tick, 0.2 blocks/s"
        );
    }

    #[test]
    fn a_stalled_or_rewound_node_is_not_catching_up() {
        let stalled = Reading::measure(
            1000.0,
            1057.0,
            previous(1000.0, 1057.0, 0),
            Timestamp(MINUTE),
        );
        let progress = stalled.progress.as_ref().unwrap();
        assert_eq!(
            (progress.blocks, progress.rate, progress.eta_s),
            (0.0, 0.0, None)
        );
        assert_eq!(
            stalled.summary(),
            "lag 57 (local 1000, reference 1057); no progress since last tick, 0 blocks/s; not catching up: lag unchanged in 60 s"
        );
        let rewound = Reading::measure(
            940.0,
            1057.0,
            previous(1000.0, 1057.0, 0),
            Timestamp(MINUTE),
        );
        assert_eq!(rewound.progress.as_ref().unwrap().blocks, -60.0);
        assert_eq!(rewound.progress.as_ref().unwrap().rate, -1.0);
        assert!(
            rewound.summary().contains(
                "-60 since last tick (the local height went back), -1 blocks/s; not catching up: lag +60 in 60 s"
            ),
            "{}",
            rewound.summary()
        );
    }

    #[test]
    fn a_stall_is_dated_from_the_last_reading_that_saw_progress() {
        // Progress at minute 0, none at 1 and 2: the stall began at 0.
        let moved = Reading::measure(
            1000.0,
            1005.0,
            previous(990.0, 995.0, -MINUTE),
            Timestamp(0),
        );
        assert_eq!(moved.moved_at, Timestamp(0));
        let before = Previous {
            local: 1000.0,
            at: Timestamp(0),
            moved_at: moved.moved_at,
            pair: None,
        };
        let first = Reading::measure(1000.0, 1005.0, Some(before), Timestamp(MINUTE));
        assert_eq!(first.moved_at, Timestamp(0));
        let mut out = Observation::default();
        first.report(&mut out);
        assert_eq!(out.since.get("progress"), Some(&Timestamp(0)));
        let again = Reading::measure(
            1000.0,
            1005.0,
            Some(Previous {
                at: Timestamp(MINUTE),
                ..before
            }),
            Timestamp(2 * MINUTE),
        );
        assert_eq!(again.moved_at, Timestamp(0));
    }

    #[test]
    fn no_progress_without_time_passing() {
        let same_instant = Reading::measure(
            1000.0,
            1057.0,
            previous(990.0, 1050.0, MINUTE),
            Timestamp(MINUTE),
        );
        assert_eq!(same_instant.progress, None);
        let clock_went_back = Reading::measure(
            1000.0,
            1057.0,
            previous(990.0, 1050.0, MINUTE),
            Timestamp(0),
        );
        assert_eq!(clock_went_back.progress, None);
    }

    #[test]
    fn remembered_reading_round_trips_and_garbage_is_first_sight() {
        let mut state = TaskMemory::new();
        assert_eq!(Previous::load(&state), None);
        state.insert(LOCAL_KEY.into(), 1000.0f64.to_string());
        state.insert(AT_KEY.into(), "1790000000000".into());
        assert_eq!(
            Previous::load(&state),
            Some(Previous {
                local: 1000.0,
                at: Timestamp(1_790_000_000_000),
                moved_at: Timestamp(1_790_000_000_000),
                pair: None,
            }),
            "a reading stored by an older monitor"
        );
        state.insert(REFERENCE_KEY.into(), "1057".into());
        assert_eq!(
            Previous::load(&state),
            previous(1000.0, 1057.0, 1_790_000_000_000)
        );
        state.insert(LOCAL_KEY.into(), "many".into());
        assert_eq!(Previous::load(&state), None);
    }

    #[test]
    fn a_failure_names_the_side_and_the_height_the_other_gave() {
        let probe: LagConfig = serde_yaml::from_str(
            "local: { jsonrpc: { url: 'http://127.0.0.1:9944', method: chain_getHeader }, extract: /result/number }\nreference: { url: 'http://127.0.0.1:1/height', extract: /height }\n",
        )
        .unwrap();
        let summary = failure(&probe, &Ok(1000.0), &Err("connection refused".into()));
        assert_eq!(
            summary,
            "reference http://127.0.0.1:1/height: connection refused (local height 1000)"
        );
        let summary = failure(
            &probe,
            &Err("no number at /result/number".into()),
            &Err("HTTP 503".into()),
        );
        assert_eq!(
            summary,
            "local http://127.0.0.1:9944 chain_getHeader: no number at /result/number; reference http://127.0.0.1:1/height: HTTP 503"
        );
    }
}
