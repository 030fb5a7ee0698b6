//! `peers:`: other hosts' `monitor serve`, asked for their `/v1/status`
//! all at once, each within its own timeout: a peer that does not answer
//! is shown as unreachable. They are asked in the background
//! ([`PeerCache`]): when `serve` starts, and again when a page is made
//! with answers older than [`FRESH`]; the page shows the last answers at
//! once (with their age when older), so a peer that hangs never holds a
//! page, a worker or `/healthz`: a page before the first answers says
//! they are being asked.

use super::page::ProfileView;
use crate::config::Peer;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Answers younger than this are shown without asking again.
const FRESH: Duration = Duration::from_secs(10);

/// What a peer's `/v1/status` answers.
#[derive(serde::Deserialize)]
struct Status {
    host: String,
    profiles: Vec<ProfileView>,
}

/// The peers' last answers, shared by every worker of `serve`.
#[derive(Default)]
pub(super) struct PeerCache {
    shared: Arc<Mutex<Cached>>,
}

#[derive(Default)]
struct Cached {
    /// Which `peers:` they answer (jobs.yaml may change), when, and what.
    answers: Option<(String, Instant, Vec<ProfileView>)>,
    asking: bool,
}

/// What identifies a `peers:` list.
fn key(peers: &[Peer]) -> String {
    peers
        .iter()
        .map(|p| format!("{}={} {:?}", p.name, p.url.as_str(), p.timeout.std()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl PeerCache {
    /// The peers' profiles as last heard; asks again in the background
    /// when they are older than [`FRESH`]. Never waits.
    pub(super) fn profiles(&self, peers: &[Peer]) -> Vec<ProfileView> {
        if peers.is_empty() {
            return Vec::new();
        }
        let key = key(peers);
        let mut cached = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let current = |c: &Cached| {
            c.answers
                .as_ref()
                .filter(|(k, ..)| *k == key)
                .map(|(_, at, views)| (*at, views.clone()))
        };
        if let Some((at, views)) = current(&cached)
            && at.elapsed() < FRESH
        {
            return views;
        }
        self.ask_unless_asking(&mut cached, peers, &key);
        if let Some((at, mut views)) = current(&cached) {
            // Older than FRESH: said so, while they are asked again.
            let age = crate::clock::human_duration(at.elapsed().as_millis() as i64);
            for view in &mut views {
                view.notices
                    .push(format!("last answer {age} ago (asking again)"));
            }
            return views;
        }
        // Never waited for: a page before the first answers says so (it
        // reloads within a minute), and no worker is held.
        peers
            .iter()
            .map(|peer| {
                unreachable(
                    peer,
                    "asking it now (no answer yet): reload in a moment".to_string(),
                )
            })
            .collect()
    }

    /// Asks the peers on a thread of its own (`serve` starting: the first
    /// page finds their answers).
    pub(super) fn start(&self, peers: &[Peer]) {
        if peers.is_empty() {
            return;
        }
        let mut cached = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        self.ask_unless_asking(&mut cached, peers, &key(peers));
    }

    /// Asks the peers on a thread of its own, unless one is asking.
    fn ask_unless_asking(&self, cached: &mut Cached, peers: &[Peer], key: &str) {
        if cached.asking {
            return;
        }
        let (peers, key) = (peers.to_vec(), key.to_string());
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("peers".into())
            .spawn(move || {
                let views = profiles(&peers);
                let mut cached = shared.lock().unwrap_or_else(|e| e.into_inner());
                cached.answers = Some((key, Instant::now(), views));
                cached.asking = false;
            });
        match spawned {
            Ok(_) => cached.asking = true,
            Err(e) => log::warn!("peers: could not start asking them: {e}"),
        }
    }
}

/// A peer that did not answer, as a profile saying why.
fn unreachable(peer: &Peer, why: String) -> ProfileView {
    ProfileView {
        name: peer.name.clone(),
        peer: Some(crate::probe::mask_credentials(peer.url.as_str())),
        schedule: String::new(),
        zone: String::new(),
        overdue: false,
        unreachable: Some(why),
        notices: Vec::new(),
        tasks: Vec::new(),
    }
}

/// Every peer's profiles, in the order of `peers:`; a peer that fails is
/// one profile saying why.
fn profiles(peers: &[Peer]) -> Vec<ProfileView> {
    std::thread::scope(|scope| {
        let asked: Vec<_> = peers
            .iter()
            .map(|peer| scope.spawn(move || ask(peer)))
            .collect();
        asked
            .into_iter()
            .zip(peers)
            .flat_map(|(answer, peer)| {
                let answer = answer
                    .join()
                    .unwrap_or_else(|_| Err("a bug in monitor: see its log".to_string()));
                match answer {
                    Ok(status) => status
                        .profiles
                        .into_iter()
                        .map(|mut profile| {
                            profile.peer = Some(format!("{} ({})", peer.name, status.host));
                            for task in &mut profile.tasks {
                                // Its pages are the peer's own.
                                task.link =
                                    task.link.take().map(|link| format!("{}{link}", base(peer)));
                            }
                            profile
                        })
                        .collect(),
                    Err(why) => vec![unreachable(peer, why)],
                }
            })
            .collect()
    })
}

fn base(peer: &Peer) -> &str {
    peer.url.as_str().trim_end_matches('/')
}

/// One peer's `/v1/status`, within its timeout.
fn ask(peer: &Peer) -> Result<Status, String> {
    let timeout = peer.timeout.std();
    let agent = crate::http_client::agent(&crate::http_client::ClientSettings {
        timeout,
        tls_verify: true,
        ca_file: None,
        pin: None,
    })?;
    let mut request = agent.get(format!("{}/v1/status", base(peer)));
    if let Some(token) = &peer.token {
        request = request.header("Authorization", format!("Bearer {}", token.expose()));
    }
    let mut response = request
        .call()
        .map_err(|e| crate::http_client::describe_error(&e, timeout))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(match status {
            401 => "it refused the token (HTTP 401): set `token:` to its MONITOR_API_TOKEN".into(),
            404 => {
                "it has no /v1/status (HTTP 404): is it a monitor serve, and as new as this one?"
                    .into()
            }
            other => format!("it answered HTTP {other}"),
        });
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(4 << 20)
        .read_to_vec()
        .map_err(|e| crate::http_client::describe_error(&e, timeout))?;
    serde_json::from_slice(&body)
        .map_err(|e| format!("its /v1/status is not what monitor serves: {e}"))
}
