//! `peers:`: other hosts' `monitor serve`, asked for their `/v1/status`
//! while this host's page is made, all at once, each within its own
//! timeout: a peer that does not answer is shown as unreachable, and the
//! page waits no longer than the slowest peer's timeout.

use super::page::ProfileView;
use crate::config::Peer;

/// What a peer's `/v1/status` answers.
#[derive(serde::Deserialize)]
struct Status {
    host: String,
    profiles: Vec<ProfileView>,
}

/// Every peer's profiles, in the order of `peers:`; a peer that fails is
/// one profile saying why.
pub(super) fn profiles(peers: &[Peer]) -> Vec<ProfileView> {
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
                    Err(why) => vec![ProfileView {
                        name: peer.name.clone(),
                        peer: Some(crate::probe::mask_credentials(peer.url.as_str())),
                        schedule: String::new(),
                        overdue: false,
                        unreachable: Some(why),
                        notices: Vec::new(),
                        tasks: Vec::new(),
                    }],
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
