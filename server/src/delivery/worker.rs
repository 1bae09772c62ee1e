//! The webhook sender: one task per server process, any number of processes on one database.
//!
//! Each round it asks for due deliveries (`db::webhooks::due`: pending, due, unleased, and first in
//! their webhook's queue), takes each with a lease (`claim`, a conditional `UPDATE` that only one
//! instance can win), and sends it in its own task. The answer is recorded with the lease released
//! (`record_attempt`): 2xx is delivered; anything else (a status, a timeout, a refused connection)
//! is retried after [`DeliveryConfig::backoff`], until [`DeliveryConfig::max_attempts`], then the
//! delivery is `failed` and the webhook's next one may go. A process that dies mid-attempt leaves
//! the lease to expire; the delivery is then sent again with the same `Idempotency-Key`, so a
//! receiver that keeps the keys it accepted sees every change exactly once.

use super::format;
use super::{CancellationToken, DeliveryConfig};
use crate::db::webhooks::{self, Claimed, Outcome};
use crate::db::Db;
use chrono::Utc;
use rand::Rng;
use riverchief_shared::webhook::Attempt;
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore};

/// Deliveries asked for in one round.
const ROUND: i64 = 32;
/// How much of a failed answer's body is kept as its error.
const ERROR_BODY_CHARS: usize = 200;

/// Runs until `shutdown` is cancelled.
pub async fn run(db: Db, config: DeliveryConfig, shutdown: CancellationToken) {
    let me = format!("instance-{}", uuid::Uuid::now_v7().simple());
    let http = match reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("riverchief/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook sender: cannot build an HTTP client; no webhooks will be sent");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    // Rung when an attempt finishes, so that the webhook's next delivery goes at once.
    let done = Arc::new(Notify::new());
    // Deliveries are queued with alert changes: one committed here is worth looking at at once.
    let mut local = crate::db::changes::alert_commits();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let who = me.clone();
                match db.run(move |c| webhooks::release_leases(c, &who).map_err(anyhow::Error::from)).await {
                    Ok(0) | Err(_) => {}
                    Ok(n) => tracing::info!(deliveries = n, "webhook sender: stopping; leases given back"),
                }
                return;
            }
            _ = tokio::time::sleep(config.poll) => {}
            _ = done.notified() => {}
            _ = local.changed() => {}
        }
        let now = Utc::now();
        let due = match db
            .run(move |c| webhooks::due(c, now, ROUND).map_err(anyhow::Error::from))
            .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "webhook sender: reading the outbox");
                continue;
            }
        };
        for id in due {
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                break;
            };
            let now = Utc::now();
            let lease_until = now
                + chrono::Duration::from_std(config.lease())
                    .unwrap_or_else(|_| chrono::Duration::seconds(60));
            let who = me.clone();
            let claimed = db
                .run(move |c| {
                    webhooks::claim(c, id, &who, now, lease_until).map_err(anyhow::Error::from)
                })
                .await;
            let claimed = match claimed {
                Ok(Some(c)) => c,
                Ok(None) => continue, // another instance took it, or it is no longer due
                Err(e) => {
                    tracing::warn!(error = %e, delivery = %id, "webhook sender: claiming");
                    continue;
                }
            };
            let (db, http, me, done) = (db.clone(), http.clone(), me.clone(), done.clone());
            tokio::spawn(async move {
                send(&db, &http, &config, &me, claimed).await;
                drop(slot);
                done.notify_one();
            });
        }
    }
}

/// One attempt: send, judge, record.
async fn send(
    db: &Db,
    http: &reqwest::Client,
    config: &DeliveryConfig,
    me: &str,
    claimed: Claimed,
) {
    let now = Utc::now();
    let t = &claimed.target;
    let (status, error) = match format::outgoing(
        &t.url,
        &t.secret,
        t.format,
        claimed.id,
        claimed.event,
        &claimed.alert,
        now,
    ) {
        Err(e) => (None, Some(e)),
        Ok(out) => {
            let mut req = http.post(out.url).body(out.body);
            for (name, value) in out.headers {
                req = req.header(name, value);
            }
            match req.send().await {
                Err(e) => (None, Some(describe(&e))),
                Ok(mut resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        (Some(status.as_u16()), None)
                    } else {
                        let head = match resp.chunk().await {
                            Ok(Some(b)) => String::from_utf8_lossy(&b)
                                .chars()
                                .take(ERROR_BODY_CHARS)
                                .collect::<String>(),
                            _ => String::new(),
                        };
                        (
                            Some(status.as_u16()),
                            Some(format!("HTTP {status}: {head}").trim().to_owned()),
                        )
                    }
                }
            }
        }
    };
    let made = u32::try_from(claimed.attempts + 1).unwrap_or(u32::MAX);
    let (outcome, retry_in) = if error.is_none() {
        (Outcome::Delivered, None)
    } else if made >= config.max_attempts {
        (Outcome::GiveUp, None)
    } else {
        let delay = config.backoff(made, rand::rng().random::<f64>());
        let next = Utc::now()
            + chrono::Duration::from_std(delay).unwrap_or_else(|_| chrono::Duration::minutes(15));
        (Outcome::Retry(next), Some(delay))
    };
    if let Some(e) = &error {
        tracing::info!(delivery = %claimed.id, webhook = %t.id, attempt = made, error = %e, "webhook delivery failed");
    }
    let attempt = Attempt {
        at: now,
        status,
        error,
        retry_in_ms: retry_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    let me = me.to_owned();
    let recorded = db
        .run(move |c| {
            webhooks::record_attempt(c, &claimed, &me, attempt, &outcome)
                .map_err(anyhow::Error::from)
        })
        .await;
    match recorded {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            "webhook sender: a delivery's lease was lost before its answer was recorded"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "webhook sender: recording an attempt (it will be retried when its lease expires)")
        }
    }
}

/// A transport error in a few words (reqwest's own message nests its causes).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut msg = format!("{what}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg.chars().take(500).collect()
}
