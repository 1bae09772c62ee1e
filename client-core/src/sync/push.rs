//! The records lane: pending mutations to `POST /api/v1/sync/push`, in order and in batches.

use super::api::Api;
use super::retry::retrying;
use super::{ProgressFn, SyncProgress, SyncReport};
use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::outbox::{self, Queued};
use crate::store;
use chrono::Utc;
use riverchief_shared::id::{DeviceId, MutationId};
use riverchief_shared::sync::PushRequest;

pub(crate) async fn push_all(
    client: &Client,
    api: &Api,
    device_id: DeviceId,
    urgent_only: bool,
    progress: ProgressFn<'_>,
    report: &mut SyncReport,
) -> Result<()> {
    let (mut queue, urgent) =
        outbox::push_order_split(client.db(|conn| outbox::pending(conn)).await?);
    if urgent_only {
        queue.truncate(urgent);
    }
    if queue.is_empty() {
        return Ok(());
    }
    progress(SyncProgress::PushStarted {
        pending: queue.len(),
    });
    let sizes: Vec<usize> = queue.iter().map(|q| q.size).collect();
    let overhead = outbox::push_overhead(device_id);
    let limits = client.limits();
    let mut max_count = client
        .options()
        .push_batch
        .clamp(1, limits.max_mutations_per_push.max(1));
    let policy = client.options().retry;

    let mut start = 0;
    while start < queue.len() {
        let n = outbox::next_batch(&sizes[start..], overhead, max_count, limits.max_push_bytes);
        let batch: &[Queued] = &queue[start..start + n];
        let ids: Vec<MutationId> = batch.iter().map(|q| q.id).collect();
        let request = PushRequest {
            device_id,
            mutations: batch.iter().map(|q| q.body.clone()).collect(),
        };
        let answer = retrying(&policy, "push", |_| {
            let ids = ids.clone();
            let request = &request;
            async move {
                client
                    .db(move |conn| {
                        store::relaxed(conn, |conn| outbox::mark_attempt(conn, &ids, Utc::now()))
                    })
                    .await?;
                api.push(request).await
            }
        })
        .await;
        match answer {
            Ok(response) => {
                let settled_ids = ids.clone();
                let tally = client
                    .db(move |conn| {
                        // Lost to a power cut, the rows are pending again and their replay is
                        // answered `duplicate`: the outcome need not wait for the disk.
                        store::relaxed(conn, |conn| {
                            let tx = conn.transaction()?;
                            let tally =
                                outbox::settle(&tx, &settled_ids, &response.results, Utc::now())?;
                            tx.commit()?;
                            Ok(tally)
                        })
                    })
                    .await?;
                report.pushed += tally.applied;
                report.duplicates += tally.duplicates;
                report.rejected += tally.rejected;
                progress(SyncProgress::Pushed { n });
                start += n;
            }
            // The server measures bodies its own way; a batch it finds too large is split, and a
            // single mutation it refuses as too large can never be sent, so it is rejected for
            // good instead of jamming the queue.
            Err(ClientError::Server { status: 413, body }) => {
                if n > 1 {
                    max_count = (n / 2).max(1);
                    tracing::warn!(n, "push batch too large for the server; halving it");
                } else {
                    let id = ids[0];
                    client
                        .db(move |conn| outbox::reject_alone(conn, id, &body, Utc::now()))
                        .await?;
                    report.rejected += 1;
                    progress(SyncProgress::Pushed { n });
                    start += 1;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
