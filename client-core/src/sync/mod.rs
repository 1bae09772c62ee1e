//! The sync engine: push the outbox, upload the photos, pull the server's changes.
//!
//! # One sync at a time
//!
//! A sync holds an exclusive OS file lock on `<data_dir>/sync.lock` (`File::try_lock`) for its whole
//! run; a second sync, from this process or another, gets [`ClientError::SyncInProgress`] at once
//! rather than waiting. The OS drops the lock when the process dies, so a killed sync never leaves
//! a stale lock behind. Recording actions do not take the lock: they only append to the outbox,
//! and SQLite serializes their transactions with the sync's.
//!
//! # Lanes, most urgent first
//!
//! A sync runs the lanes below in this order: the records of critical hazards (with the patrol
//! starts they depend on), their photos, then the other records and the other photos side by side
//! (the photo lane does not wait for the records to finish), then the pull. Before pushing it
//! closes the fix batches still open (see `track.rs`).
//!
//! 1. **Records** (`push.rs`). Pending mutations go urgent first (critical hazard reports, each
//!    with the patrol start it depends on), then in device order, in batches of at most
//!    `push_batch` mutations and `max_push_bytes` bytes. The stored JSON is sent as it was frozen,
//!    so a replay after a lost answer is a `duplicate`, never a second copy. Rows are marked only
//!    from the server's answer, one local transaction per answered batch: `applied` and
//!    `duplicate` are done; `rejected` keeps the server's error, is never retried and never holds
//!    back the rows behind it. A 413 on a whole batch halves the batch; a lone mutation refused
//!    as too large is marked rejected with the server's error.
//! 2. **Photos** (`upload.rs`): a critical hazard's photos right after its record, so that the
//!    issue reaches the duty lead first; the others beside the other records (the server matches a
//!    photo to the issues expecting it whichever arrives first). In their own lane: a photo that fails never holds back a record,
//!    and a failed push does not stop the photos. `HEAD /photos/{sha}` first (a photo the server
//!    has is never sent again), then tus 1.0.0: the upload URL is stored before the first byte is
//!    sent, and an interrupted upload resumes from the server's `Upload-Offset`. The body is
//!    streamed from the stored copy, never held in memory. A photo the server refuses for its
//!    content (460, 415, 413) is marked failed with the reason; the others go on. On a metered link
//!    ([`SyncControl::photos`] false) the photo lanes do not run, and the sync says so
//!    ([`StopReason::PhotosWaiting`]).
//! 3. **Pull** (`pull.rs`): each page of changes is applied to the mirror tables together with the
//!    new cursor, in one transaction, so a crash between pages repeats at most one page. On
//!    `reset` the mirror is emptied in that same transaction; the outbox and everything captured
//!    on the device are never part of the mirror.
//!
//! The sync's own bookkeeping (attempt counts, a push's outcome, a pull page with its cursor) is
//! committed without waiting for the disk (`store::relaxed`): a power cut may undo the last of it,
//! and the next sync redoes it (the rows are pending again and answered `duplicate`; the page is
//! pulled again). What the patroller recorded always waits for the disk.
//!
//! # Deadlines and cancelling
//!
//! [`Client::sync_with`] takes a [`SyncControl`]: a deadline and a cancellation token. The lane in
//! progress is dropped when either comes ([`DEADLINE_MARGIN`] before the deadline), whatever request
//! it is in, and no later lane starts. Nothing is left half-done by that: every local write is one
//! SQLite transaction that either committed or did not; a push whose answer did not arrive leaves
//! its rows pending, and the next sync replays them as `duplicate`s; a photo cut mid-`PATCH` keeps
//! its upload URL and resumes from the server's offset.
//!
//! # Failures
//!
//! Network errors, timeouts and 5xx are retried per request with capped exponential backoff and
//! jitter ([`RetryPolicy`]); when the attempts run out the sync returns an error and everything not
//! confirmed stays pending for the next sync. A 4xx on a whole request is not retried. A lane that
//! fails does not stop the next one, except when the server is unreachable or refuses the token:
//! then every later request would fail the same way, and the sync stops at once. The first error
//! is the sync's result; what the other lanes achieved is already recorded in the store.

pub(crate) mod api;
pub(crate) mod pull;
pub(crate) mod push;
pub(crate) mod retry;
pub(crate) mod upload;

pub use retry::RetryPolicy;

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::store::{self, DeviceColumn};
use chrono::Utc;
use riverchief_shared::photo::Sha256;
use serde::Serialize;
use std::fs::{File, TryLockError};

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Mutations the server applied.
    pub pushed: u64,
    /// Mutations the server had applied before (replays after a lost answer).
    pub duplicates: u64,
    /// Mutations the server refused (kept, with the reason, in `status`).
    pub rejected: u64,
    pub photos_uploaded: u64,
    /// Photos the server already had.
    pub photos_skipped: u64,
    /// Photos the server refused for their content.
    pub photos_failed: u64,
    /// Photo bytes sent, resumed uploads counting only what was sent this time.
    pub bytes_uploaded: u64,
    /// Server changes applied to the local mirror.
    pub pulled: u64,
    /// The server asked for a fresh pull; the mirror was rebuilt.
    pub reset: bool,
    /// Why the sync ended.
    pub stopped: StopReason,
}

/// The lanes of a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    UrgentRecords,
    UrgentPhotos,
    Records,
    Photos,
    Pull,
}

impl Lane {
    /// The stages of a sync, in the order they run; the lanes of one stage run side by side.
    const STAGES: [&'static [Lane]; 4] = [
        &[Lane::UrgentRecords],
        &[Lane::UrgentPhotos],
        &[Lane::Records, Lane::Photos],
        &[Lane::Pull],
    ];
}

impl SyncReport {
    /// Adds what another lane of the same sync did.
    fn absorb(&mut self, other: &SyncReport) {
        self.pushed += other.pushed;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        self.photos_uploaded += other.photos_uploaded;
        self.photos_skipped += other.photos_skipped;
        self.photos_failed += other.photos_failed;
        self.bytes_uploaded += other.bytes_uploaded;
        self.pulled += other.pulled;
        self.reset |= other.reset;
    }
}

/// Progress events of a sync, for drawing progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncProgress {
    /// The sync holds the data directory's sync lock and begins.
    Started,
    /// The push lane starts with this many pending mutations.
    PushStarted {
        pending: usize,
    },
    /// A batch of `n` mutations was answered.
    Pushed {
        n: usize,
    },
    /// The photo lane starts: `count` photos to check, `bytes` in all.
    PhotosStarted {
        count: usize,
        bytes: u64,
    },
    /// Uploading a photo (the `index`-th of the lane, from 1) starts or resumes at `offset`.
    PhotoStarted {
        sha: Sha256,
        index: usize,
        total: u64,
        offset: u64,
    },
    /// `sent` of the photo's `total` bytes are on their way (counting from the file's start).
    PhotoBytes {
        sha: Sha256,
        sent: u64,
        total: u64,
    },
    PhotoDone {
        sha: Sha256,
    },
    /// The server already had it.
    PhotoSkipped {
        sha: Sha256,
    },
    PhotoFailed {
        sha: Sha256,
        reason: String,
    },
    /// A page of `n` changes was applied to the mirror.
    Pulled {
        n: usize,
    },
}

/// The callback type of [`Client::sync`].
pub type ProgressFn<'a> = &'a (dyn Fn(SyncProgress) + Send + Sync);

/// The sync lock; released when dropped (or when the process dies).
pub(crate) struct SyncLock {
    _file: File,
}

/// How a sync may run: until when, whether it may be stopped, whether photos may go.
///
/// A phone's background job (an Android WorkManager job, an iOS background task) gets seconds to
/// minutes; the app may also stop a sync at any moment (the user left the screen, the OS is
/// ending the task). Either way the sync stops between or inside requests with nothing half-done:
/// every local write is a whole transaction, a push whose answer never came is replayed as a
/// `duplicate`, and a photo cut mid-upload resumes from the server's offset.
#[derive(Debug, Clone, Default)]
pub struct SyncControl {
    /// Stop before this instant ([`DEADLINE_MARGIN`] before it, to leave time for the last local
    /// write).
    pub deadline: Option<tokio::time::Instant>,
    /// Stop when cancelled (from any thread).
    pub cancel: Option<tokio_util::sync::CancellationToken>,
    /// Whether the photo lane runs (false on a metered link: records never wait, photos may).
    pub photos: bool,
    /// Fix batches to close before pushing (the recorder's rules); `None` closes none.
    pub fix_rules: Option<crate::track::FixRules>,
}

impl SyncControl {
    /// Everything, with no deadline and no way to stop it but dropping it.
    pub fn full() -> Self {
        Self {
            photos: true,
            ..Self::default()
        }
    }

    /// Resolves when the sync must stop, with the reason.
    async fn stopped(&self) -> StopReason {
        let deadline = async {
            match self.deadline {
                Some(at) => {
                    let stop_at = at.checked_sub(DEADLINE_MARGIN).unwrap_or(at);
                    tokio::time::sleep_until(stop_at).await;
                }
                None => std::future::pending().await,
            }
        };
        let cancelled = async {
            match &self.cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = deadline => StopReason::Deadline,
            () = cancelled => StopReason::Cancelled,
        }
    }

    /// The reason to stop now, if there is one already.
    fn should_stop(&self) -> Option<StopReason> {
        if self.cancel.as_ref().is_some_and(|t| t.is_cancelled()) {
            return Some(StopReason::Cancelled);
        }
        if self
            .deadline
            .is_some_and(|at| tokio::time::Instant::now() + DEADLINE_MARGIN >= at)
        {
            return Some(StopReason::Deadline);
        }
        None
    }
}

/// How long before its deadline a sync stops its requests.
pub const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(200);

/// Why a sync ended without an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Everything that could be sent was sent, and the pull reached the end.
    #[default]
    Completed,
    /// The deadline came first; what is left goes with the next sync.
    Deadline,
    Cancelled,
    /// Everything else went; photos wait for an unmetered link.
    PhotosWaiting,
}

impl Client {
    /// Pushes the outbox, uploads photos, pulls changes. See the [module docs](self).
    pub async fn sync(&self, progress: ProgressFn<'_>) -> Result<SyncReport> {
        self.sync_with(&SyncControl::full(), progress).await
    }

    /// A sync under `control`: the most urgent work first (critical hazards and their photos, then
    /// the other records, then the other photos, then the pull), stopping cleanly at the deadline
    /// or when cancelled. The report says why it stopped; what is left stays queued.
    pub async fn sync_with(
        &self,
        control: &SyncControl,
        progress: ProgressFn<'_>,
    ) -> Result<SyncReport> {
        let _lock = self.lock_sync()?;
        progress(SyncProgress::Started);
        if let Some(rules) = control.fix_rules {
            self.close_fix_batches(rules, true).await?;
        }
        let api = self.session().await?;
        let device_id = self.device_id().await?;
        let mut report = SyncReport::default();

        let mut first_error = None;
        let mut stop = None;
        for stage in Lane::STAGES {
            if stops_sync(first_error.as_ref()) || stop.is_some() {
                break;
            }
            if let Some(reason) = control.should_stop() {
                stop = Some(reason);
                break;
            }
            // Each lane counts into its own report, kept when the stage is stopped part-way.
            let mut lane_reports = [SyncReport::default(), SyncReport::default()];
            {
                let [first, second] = &mut lane_reports;
                let work = async {
                    match stage {
                        [lane] => vec![
                            self.run_lane(*lane, &api, device_id, control, progress, first)
                                .await,
                        ],
                        [a, b] => {
                            let (x, y) = tokio::join!(
                                self.run_lane(*a, &api, device_id, control, progress, first),
                                self.run_lane(*b, &api, device_id, control, progress, second),
                            );
                            vec![x, y]
                        }
                        _ => Vec::new(),
                    }
                };
                tokio::select! {
                    results = work => for result in results {
                        if let Err(e) = result {
                            first_error.get_or_insert(e);
                        }
                    },
                    reason = control.stopped() => stop = Some(reason),
                }
            }
            for lane_report in &lane_reports {
                report.absorb(lane_report);
            }
        }
        report.stopped = match stop {
            Some(reason) => reason,
            None if !control.photos && self.db(|c| crate::photos::count_waiting(c)).await? > 0 => {
                StopReason::PhotosWaiting
            }
            None => StopReason::Completed,
        };

        let outcome = first_error.as_ref().map(|e| e.to_string());
        // Records sent and the pull at its end: a photo waiting for an unmetered link is not a failure.
        let finished = matches!(
            report.stopped,
            StopReason::Completed | StopReason::PhotosWaiting
        );
        self.db(move |conn| {
            match &outcome {
                None if finished => {
                    store::set_device_text(
                        conn,
                        DeviceColumn::LastSyncAt,
                        Some(&store::time(Utc::now())),
                    )?;
                    store::set_device_text(conn, DeviceColumn::LastSyncError, None)?;
                }
                None => store::set_device_text(conn, DeviceColumn::LastSyncError, None)?,
                Some(message) => {
                    store::set_device_text(conn, DeviceColumn::LastSyncError, Some(message))?;
                }
            }
            Ok(())
        })
        .await?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Runs one lane, counting into `report`.
    async fn run_lane(
        &self,
        lane: Lane,
        api: &api::Api,
        device_id: riverchief_shared::id::DeviceId,
        control: &SyncControl,
        progress: ProgressFn<'_>,
        report: &mut SyncReport,
    ) -> Result<()> {
        match lane {
            Lane::UrgentRecords | Lane::Records => {
                let urgent = lane == Lane::UrgentRecords;
                push::push_all(self, api, device_id, urgent, progress, report).await
            }
            Lane::UrgentPhotos | Lane::Photos if !control.photos => Ok(()),
            Lane::UrgentPhotos | Lane::Photos => {
                let urgent = lane == Lane::UrgentPhotos;
                upload::upload_all(self, api, urgent, progress, report).await
            }
            Lane::Pull => pull::pull_all(self, api, progress, report).await,
        }
    }

    /// Pulls the server's changes into the mirror (the last lane of [`Client::sync`] alone), and
    /// returns how many were applied. Takes the sync lock like a sync.
    pub async fn pull(&self, progress: ProgressFn<'_>) -> Result<SyncReport> {
        let _lock = self.lock_sync()?;
        let api = self.session().await?;
        let mut report = SyncReport::default();
        pull::pull_all(self, &api, progress, &mut report).await?;
        Ok(report)
    }

    /// The stock per depot and item, asked of the server now: stock changes by the minute in a flood,
    /// so it is not mirrored, and this needs a signal.
    pub async fn stock(&self) -> Result<riverchief_shared::api::StockView> {
        let api = self.session().await?;
        api.stock().await
    }

    /// Sends a batch of gauge readings for a station (duty leads and admins; needs a signal). The
    /// server stores each time once: a batch sent twice changes nothing.
    pub async fn post_readings(
        &self,
        station: &str,
        readings: Vec<riverchief_shared::flood::Reading>,
    ) -> Result<riverchief_shared::flood::ReadingsResult> {
        let api = self.session().await?;
        api.post_readings(
            station,
            &riverchief_shared::flood::ReadingsBatch { readings },
        )
        .await
    }

    fn lock_sync(&self) -> Result<SyncLock> {
        let path = self.sync_lock_path();
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ClientError::file(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(SyncLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(ClientError::SyncInProgress),
            Err(TryLockError::Error(e)) => Err(ClientError::File { path, source: e }),
        }
    }
}

/// Whether an error means every later request of this sync would fail the same way.
fn stops_sync(error: Option<&ClientError>) -> bool {
    error.is_some_and(|e| e.is_unauthorized() || e.is_unreachable())
}
