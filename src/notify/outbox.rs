//! The outbox, delivered: each profile's waiting notifications go out
//! oldest first, a receiver's in order (a resolution never overtakes the
//! alert it resolves), with backoff after a failure, each notifier's rate
//! limit, `max_age`, and Alertmanager URLs as queues of their own. What
//! each entry became is a [`Delivery`] for the summary.

use crate::clock::Timestamp;
use crate::config::{Config, Notifier, NotifierKind, Profile};
use crate::error::Error;
use crate::notify::{self, Envelope, MessageKind, Payload, Sent};
use crate::store::{OutboxRow, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// What a tick's delivery did, for its summary.
#[derive(Debug, Default)]
pub struct Deliveries {
    pub deliveries: Vec<Delivery>,
    /// Messages of stdout notifiers, printed with the summary.
    pub console: Vec<String>,
    /// Receivers with notifications waiting after failing, this tick or
    /// earlier: nobody heard what they should have.
    pub undelivered: Vec<Undelivered>,
}

/// One receiver's backlog of failed notifications.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Undelivered {
    pub receiver: String,
    pub waiting: usize,
    /// When the oldest of them was queued.
    pub since: Timestamp,
    pub error: String,
}

/// One outbox entry's fate this tick.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    pub notifier: String,
    /// The one URL of an Alertmanager notifier this went to, as shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub message_id: String,
    pub text: String,
    #[serde(flatten)]
    pub result: DeliveryResult,
    /// `(task, rule)` of every message it carried.
    #[serde(skip)]
    pub carries: Vec<(String, String)>,
    /// When each outbox row it carried was queued.
    #[serde(skip)]
    pub queued: Vec<Timestamp>,
    /// Since when its receiver has been failing, when known.
    #[serde(skip)]
    pub failing_since: Option<Timestamp>,
}

impl Delivery {
    fn of(notifier: &str, payload: &Payload, result: DeliveryResult) -> Delivery {
        Delivery {
            notifier: notifier.to_string(),
            to: None,
            message_id: payload.id(),
            text: payload.text(),
            result,
            carries: payload
                .messages()
                .iter()
                .map(|m| (m.task.clone(), m.rule.clone()))
                .collect(),
            queued: Vec::new(),
            failing_since: None,
        }
    }

    /// `am`, or `am at http://127.0.0.1:9093` for one URL of a notifier.
    pub fn receiver(&self) -> String {
        match &self.to {
            Some(to) => format!("{} at {to}", self.notifier),
            None => self.notifier.clone(),
        }
    }

    pub fn failed(&self) -> bool {
        matches!(
            self.result,
            DeliveryResult::Failed { .. } | DeliveryResult::GaveUp { .. }
        )
    }
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DeliveryResult {
    Delivered,
    Failed {
        error: String,
        retry_at: Timestamp,
    },
    GaveUp {
        error: String,
    },
    /// `--dry-run`: what would have been sent.
    WouldSend,
}

/// Retry delay after the n-th failed attempt: 30 s, doubling, at most 30 min.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(6);
    Duration::from_secs(30 * (1u64 << doublings)).min(Duration::from_secs(1800))
}

/// How long delivery may take in one tick; the rest waits for the next.
const DELIVERY_BUDGET: Duration = Duration::from_secs(30);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivers this profile's waiting outbox entries (this tick's and older
/// ones), oldest first. A notifier's entries go out in order: while its
/// oldest entry waits for a retry (or its rate limit is spent) the newer
/// ones wait behind it, so a receiver never sees a resolution before the
/// alert it resolves.
pub fn deliver(
    store: &mut Store,
    config: &Config,
    profile: &Profile,
    now: Timestamp,
) -> Result<Deliveries, Error> {
    let mut report = Deliveries::default();
    let started = Instant::now();
    let waiting = store.waiting_outbox(&profile.name)?;
    let telegram_test = notify::TelegramTestRoute::from_env();
    let context = notify::Context {
        timeout: DELIVERY_TIMEOUT,
        now,
        telegram_test: telegram_test.as_ref(),
    };
    let (queues, waiting): (Vec<OutboxRow>, Vec<OutboxRow>) = waiting
        .into_iter()
        .partition(|row| matches!(row.payload, Payload::Alerts { to: Some(_), .. }));
    deliver_queues(store, config, queues, &context, now, &mut report)?;
    let mut held: BTreeSet<String> = BTreeSet::new();
    let mut held_failing: BTreeMap<String, Undelivered> = BTreeMap::new();
    let mut sent: BTreeMap<String, u32> = BTreeMap::new();
    let mut behind: BTreeMap<String, usize> = BTreeMap::new();
    for row in waiting {
        if held.contains(&row.notifier) {
            *behind.entry(row.notifier.clone()).or_default() += 1;
            continue;
        }
        if started.elapsed() > DELIVERY_BUDGET {
            break;
        }
        let age = now.since(row.created_at);
        let notifier = config.notifier(&row.notifier);
        let expired = match notifier {
            None => Some(format!(
                "notifier `{}` is no longer in jobs.yaml",
                row.notifier
            )),
            Some(_) if age > config.defaults.max_age.as_millis() => Some(format!(
                "undelivered for {} (max_age {})",
                crate::clock::human_duration(age),
                config.defaults.max_age
            )),
            Some(_) => None,
        };
        let result = match (expired, notifier) {
            (Some(error), _) => give_up(store, &row, error, now)?,
            (None, Some(_)) if row.next_attempt_at > now => {
                held.insert(row.notifier.clone());
                if let Some(error) = &row.last_error {
                    let entry =
                        held_failing
                            .entry(row.notifier.clone())
                            .or_insert_with(|| Undelivered {
                                receiver: row.notifier.clone(),
                                waiting: 0,
                                since: row.created_at,
                                error: error.clone(),
                            });
                    entry.waiting += 1;
                }
                continue;
            }
            (None, Some(notifier)) if rate_limited(store, notifier, &sent, now)? => {
                held.insert(row.notifier.clone());
                continue;
            }
            (None, Some(notifier)) => match notify::deliver(notifier, &row.payload, &context) {
                Ok(outcome) => {
                    if let Sent::Console(text) = outcome {
                        report.console.push(text);
                    }
                    store.mark_delivered(row.id, now)?;
                    *sent.entry(row.notifier.clone()).or_default() += 1;
                    DeliveryResult::Delivered
                }
                Err(failure) if failure.permanent => {
                    give_up(store, &row, format!("rejected: {}", failure.error), now)?
                }
                Err(failure) => {
                    let delay =
                        backoff(row.attempts + 1).max(failure.retry_after.unwrap_or_default());
                    let retry_at =
                        now.plus_millis(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                    store.mark_failed(row.id, &failure.error, retry_at)?;
                    held.insert(row.notifier.clone());
                    DeliveryResult::Failed {
                        error: failure.error,
                        retry_at,
                    }
                }
            },
            (None, None) => continue,
        };
        let mut delivery = Delivery::of(&row.notifier, &row.payload, result);
        delivery.queued = vec![row.created_at];
        report.deliveries.push(delivery);
    }
    report.undelivered = backlog(&report.deliveries, now, &held_failing, &behind);
    Ok(report)
}

/// The receivers whose notifications wait after failing: those that failed
/// this tick, and those held back by an earlier failure (`held`), each with
/// the notifications queued `behind` them.
fn backlog(
    deliveries: &[Delivery],
    now: Timestamp,
    held: &BTreeMap<String, Undelivered>,
    behind: &BTreeMap<String, usize>,
) -> Vec<Undelivered> {
    let mut backlog: BTreeMap<String, Undelivered> = held.clone();
    for delivery in deliveries {
        if let DeliveryResult::Failed { error, .. } = &delivery.result {
            let entry = backlog
                .entry(delivery.receiver())
                .or_insert_with(|| Undelivered {
                    receiver: delivery.receiver(),
                    waiting: 0,
                    since: now,
                    error: error.clone(),
                });
            entry.waiting += delivery.queued.len().max(1);
            if let Some(oldest) = delivery.queued.iter().chain(&delivery.failing_since).min() {
                entry.since = entry.since.min(*oldest);
            }
            entry.error = error.clone();
        }
    }
    for (receiver, entry) in &mut backlog {
        entry.waiting += behind.get(receiver).copied().unwrap_or(0);
    }
    backlog.into_values().collect()
}

/// One Alertmanager URL's waiting batches, about to go out as one POST.
struct Queue<'a> {
    notifier: &'a Notifier,
    url: &'a crate::config::Text,
    rows: Vec<OutboxRow>,
    alerts: Vec<notify::alertmanager::PostableAlert>,
}

/// Delivers each Alertmanager URL's own queue (see `notify::alertmanager`):
/// every URL at once, each once per tick whatever its earlier failures.
fn deliver_queues(
    store: &mut Store,
    config: &Config,
    rows: Vec<OutboxRow>,
    context: &notify::Context,
    now: Timestamp,
    report: &mut Deliveries,
) -> Result<(), Error> {
    let mut by_url: BTreeMap<(String, String), Vec<OutboxRow>> = BTreeMap::new();
    for row in rows {
        if let Payload::Alerts { to: Some(to), .. } = &row.payload {
            let key = (row.notifier.clone(), to.clone());
            by_url.entry(key).or_default().push(row);
        }
    }
    let mut queues = Vec::new();
    for ((name, to), rows) in by_url {
        let notifier = config.notifier(&name);
        let found = notifier.and_then(|n| match &n.kind {
            NotifierKind::Alertmanager(am) => am
                .urls
                .iter()
                .find(|url| notify::alertmanager::target(url) == to)
                .map(|url| (n, url, am.generator_url.as_ref().map(|u| u.as_str()))),
            _ => None,
        });
        let Some((notifier, url, generator_url)) = found else {
            let why = match notifier {
                None => format!("notifier `{name}` is no longer in jobs.yaml"),
                Some(_) => format!("its URL is no longer among notifier `{name}`'s urls"),
            };
            for row in rows {
                let result = give_up(store, &row, why.clone(), now)?;
                report
                    .deliveries
                    .push(Delivery::of(&name, &row.payload, result));
            }
            continue;
        };
        let max_age = config.defaults.max_age.as_millis();
        let (expired, rows): (Vec<OutboxRow>, Vec<OutboxRow>) = rows
            .into_iter()
            .partition(|row| now.since(row.created_at) > max_age);
        for row in expired {
            let error = format!(
                "undelivered for {} (max_age {})",
                crate::clock::human_duration(now.since(row.created_at)),
                config.defaults.max_age
            );
            let result = give_up(store, &row, error, now)?;
            let mut delivery = Delivery::of(&name, &row.payload, result);
            delivery.to = Some(notify::alertmanager::shown(url));
            report.deliveries.push(delivery);
        }
        // An earlier tick's batch with no resolution says nothing the
        // current one does not: done with, sent or not.
        let (stale, rows): (Vec<OutboxRow>, Vec<OutboxRow>) = rows.into_iter().partition(|row| {
            row.created_at < now
                && !row
                    .payload
                    .messages()
                    .iter()
                    .any(|m| matches!(m.kind, MessageKind::Resolved | MessageKind::Restarted))
        });
        for row in stale {
            store.mark_delivered(row.id, now)?;
        }
        let batches: Vec<&Payload> = rows.iter().map(|row| &row.payload).collect();
        let alerts = notify::alertmanager::merged(&batches, generator_url, now);
        if alerts.is_empty() {
            for row in &rows {
                store.mark_delivered(row.id, now)?;
            }
            continue;
        }
        queues.push(Queue {
            notifier,
            url,
            rows,
            alerts,
        });
    }
    let results: Vec<Result<(), notify::Failure>> = std::thread::scope(|scope| {
        let posts: Vec<_> = queues
            .iter()
            .map(|queue| {
                scope.spawn(|| notify::alertmanager::send_to(queue.url, &queue.alerts, context))
            })
            .collect();
        posts
            .into_iter()
            .map(|post| {
                post.join().unwrap_or_else(|_| {
                    Err(notify::Failure::transient("the request thread panicked"))
                })
            })
            .collect()
    });
    for (queue, result) in queues.into_iter().zip(results) {
        let newest = queue.rows.last().map(|row| row.payload.clone());
        let result = match result {
            Ok(()) => {
                for row in &queue.rows {
                    store.mark_delivered(row.id, now)?;
                }
                DeliveryResult::Delivered
            }
            Err(failure) if failure.permanent => {
                let error = format!("rejected: {}", failure.error);
                for row in &queue.rows {
                    store.give_up(row, &error, now)?;
                }
                DeliveryResult::GaveUp { error }
            }
            Err(failure) => {
                for row in &queue.rows {
                    store.mark_failed(row.id, &failure.error, now)?;
                }
                DeliveryResult::Failed {
                    error: failure.error,
                    retry_at: now,
                }
            }
        };
        // When this URL began to fail: its rows are replaced every tick,
        // so the oldest waiting one does not say.
        let namespace = crate::store::failing_namespace(&queue.notifier.name);
        let target = notify::alertmanager::target(queue.url);
        let failing_since = match &result {
            DeliveryResult::Failed { .. } => {
                let known = store
                    .state_rows(Some(&namespace))?
                    .into_iter()
                    .find(|(_, key, _)| *key == target)
                    .and_then(|(_, _, value)| value.parse().ok())
                    .map(Timestamp);
                let since = known.unwrap_or_else(|| {
                    queue
                        .rows
                        .iter()
                        .map(|row| row.created_at)
                        .min()
                        .unwrap_or(now)
                });
                if known.is_none() {
                    store.set_state(&namespace, &target, Some(&since.0.to_string()), now)?;
                }
                Some(since)
            }
            _ => {
                store.set_state(&namespace, &target, None, now)?;
                None
            }
        };
        let Some(newest) = newest else { continue };
        let mut delivery = Delivery::of(&queue.notifier.name, &newest, result);
        delivery.to = Some(notify::alertmanager::shown(queue.url));
        delivery.queued = queue.rows.iter().map(|row| row.created_at).collect();
        delivery.failing_since = failing_since;
        delivery.carries = queue
            .rows
            .iter()
            .flat_map(|row| row.payload.messages())
            .map(|m| (m.task.clone(), m.rule.clone()))
            .collect();
        if queue.rows.len() > 1 {
            delivery.text.push_str(&format!(
                " (with what {} earlier batch{} held)",
                queue.rows.len() - 1,
                if queue.rows.len() == 2 { "" } else { "es" }
            ));
        }
        report.deliveries.push(delivery);
    }
    Ok(())
}

/// Whether `notifier` has spent its `rate_limit` (sends in the window,
/// earlier ticks' and this one's).
fn rate_limited(
    store: &Store,
    notifier: &Notifier,
    sent: &BTreeMap<String, u32>,
    now: Timestamp,
) -> Result<bool, Error> {
    let Some(limit) = notifier.rate_limit else {
        return Ok(false);
    };
    let since = now.plus_millis(-limit.per.as_millis());
    let earlier = store.delivered_since(&notifier.name, since)?;
    let spent = earlier.max(sent.get(&notifier.name).copied().unwrap_or(0));
    Ok(spent >= limit.messages)
}

fn give_up(
    store: &mut Store,
    row: &OutboxRow,
    error: String,
    now: Timestamp,
) -> Result<DeliveryResult, Error> {
    store.give_up(row, &error, now)?;
    Ok(DeliveryResult::GaveUp { error })
}

/// `--dry-run`: list what a real tick would send — the entries still
/// waiting in the outbox, then this tick's — and send nothing.
pub fn preview(
    store: Option<&Store>,
    profile: &str,
    envelopes: &[Envelope],
) -> Result<Vec<Delivery>, Error> {
    let waiting = match store {
        Some(store) => store.waiting_outbox(profile)?,
        None => Vec::new(),
    };
    let earlier = waiting.into_iter().map(|row| (row.notifier, row.payload));
    let this_tick = envelopes
        .iter()
        .map(|e| (e.notifier.clone(), e.payload.clone()));
    Ok(earlier
        .chain(this_tick)
        .map(|(notifier, payload)| Delivery::of(&notifier, &payload, DeliveryResult::WouldSend))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_half_an_hour() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
    }
}
