//! The alert feed: one task per server process that notices new alert changes in the change log
//! and wakes the live streams.
//!
//! Every `stream_poll`, and at once when a transaction of this process commits an alert change
//! (`db::changes::alert_commits`, signalled by `write_transaction` after the commit), it reads the
//! newest alert change above the head it read last time (`db::changes::newest_of`, an index range
//! scan of the few rows written since), and when there is one publishes its `seq` on a [`watch`]
//! channel. The poll brings the changes other instances commit. A watch channel holds one value, so memory stays
//! flat however many streams listen and however slow they are; each stream, woken, reads the alert
//! changes above its own cursor that its viewer may see. A stream marks the channel seen *before*
//! it reads, so a change committed after its read wakes it again: nothing is missed.

use super::CancellationToken;
use crate::db::{changes, Db};
use riverchief_shared::sync::ChangeEntity;
use std::time::Duration;
use tokio::sync::watch;

/// Starts the feed; the receiver's value is the newest alert change seen (0 before any).
pub async fn start(db: Db, every: Duration, shutdown: CancellationToken) -> watch::Receiver<i64> {
    let (tx, rx) = watch::channel(0i64);
    let mut head = db
        .run(|c| changes::max_seq(c).map_err(anyhow::Error::from))
        .await
        .unwrap_or(0);
    let mut local = changes::alert_commits();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
                // An alert change committed in this process: read at once.
                _ = local.changed() => {}
            }
            let after = head;
            match db
                .run(move |c| {
                    changes::newest_of(c, ChangeEntity::Alert, after).map_err(anyhow::Error::from)
                })
                .await
            {
                Ok((h, newest)) => {
                    head = h.max(head);
                    if let Some(n) = newest {
                        tx.send_replace(n);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "alert feed: reading the change log"),
            }
        }
    });
    rx
}
