//! Housekeeping each instance runs in the background while it serves: compacting the change log
//! (`db::changes::compact`) and sweeping partial uploads abandoned longer than
//! `photo_store::STALE_UPLOAD_AGE`. Both are idempotent, so several instances may run them at
//! once; a failure is logged and tried again next round.

use crate::db::{self, Db};
use crate::photo_store::PhotoStore;
use std::time::Duration;

/// How the background housekeeping runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Housekeeping {
    /// How often it runs; `None`: never (tests, and one-shot admin commands).
    pub every: Option<Duration>,
    /// Superseded changes older than this are compacted away (see `db::changes::compact`).
    pub keep_changes: Duration,
}

impl Default for Housekeeping {
    fn default() -> Self {
        Housekeeping {
            every: Some(Duration::from_secs(15 * 60)),
            keep_changes: Duration::from_secs(24 * 3600),
        }
    }
}

/// Rows deleted per transaction while compacting.
const COMPACT_BATCH: i64 = 5000;

/// One round: compact the change log, sweep stale uploads.
pub async fn run_once(db: &Db, photos: &PhotoStore, keep_changes: Duration) {
    let keep = chrono::Duration::from_std(keep_changes).unwrap_or(chrono::Duration::MAX);
    let cutoff = chrono::Utc::now()
        .checked_sub_signed(keep)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    match db
        .run(move |conn| {
            db::changes::compact(conn, cutoff, COMPACT_BATCH).map_err(db::DbError::from)
        })
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "compacted the change log"),
        Err(e) => tracing::warn!(error = %e, "compacting the change log"),
    }
    match photos
        .sweep_stale_uploads(db, crate::photo_store::STALE_UPLOAD_AGE)
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "deleted stale partial uploads"),
        Err(e) => tracing::warn!(error = %e, "sweeping stale partial uploads"),
    }
}

/// Starts the housekeeping loop on the current runtime (first round after one period); it ends when
/// `shutdown` is cancelled.
pub fn spawn(
    db: Db,
    photos: PhotoStore,
    config: Housekeeping,
    shutdown: crate::delivery::CancellationToken,
) {
    let Some(every) = config.every else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            run_once(&db, &photos, config.keep_changes).await;
        }
    });
}
