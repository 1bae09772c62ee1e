//! The riverchief client core for phone apps, through UniFFI: Kotlin (Android), Swift (iOS) and
//! Python (tests, tools) bindings over [`riverchief_client`].
//!
//! What crosses the FFI is [`Core`] (one data directory), the records and enums of [`types`], the
//! [`StatusListener`] the app implements, and [`CoreError`]. The API is described in `API.md`
//! beside this crate.
//!
//! # Threads
//!
//! - The core owns a tokio runtime (two worker threads, `riverchief-core`). Network calls
//!   (`login`, `sync`) are async functions whose work runs on it; the foreign side only polls the
//!   task's handle, so Kotlin coroutines, Swift concurrency and Python's asyncio all drive them.
//! - Recording and local queries are plain functions: each is one local SQLite transaction, run on
//!   the runtime's blocking pool while the calling thread waits, so none blocks longer than a
//!   local write (call them off the UI thread all the same, as Android's strict mode asks).
//! - The listener is called from one thread per registration (`riverchief-status`), in order.
//! - `cancel_sync` may be called from any thread.

uniffi::setup_scaffolding!();

mod error;
mod status;
pub mod types;

pub use error::CoreError;
pub use status::StatusListener;
pub use types::*;

use chrono::{DateTime, Utc};
use riverchief_client::sync::{SyncControl, SyncProgress};
use riverchief_client::{Client, ClientOptions, FixRules, PhotoShrink, RetryPolicy};
use riverchief_shared::domain::{IssueCategory, IssueEventKind, Outflow, Severity};
use riverchief_shared::geo::{Lat, Lon, Position};
use riverchief_shared::id::{IssueId, PatrolId, UserId};
use status::{Counts, Hub};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

type Result<T, E = CoreError> = std::result::Result<T, E>;

/// One data directory: the patroller's records, photos and the mirror of the server, with the
/// sync engine that sends them.
#[derive(uniffi::Object)]
pub struct Core {
    runtime: tokio::runtime::Runtime,
    client: Client,
    options: CoreOptions,
    hub: Arc<Hub>,
    /// The cancellation tokens of the syncs running now, by a number of their own.
    running: Mutex<HashMap<u64, CancellationToken>>,
    next_sync: AtomicU64,
}

impl Core {
    /// Runs a local store call to its end on the core's runtime.
    fn local<T>(
        &self,
        f: impl std::future::Future<Output = riverchief_client::Result<T>>,
    ) -> Result<T> {
        self.runtime.block_on(f).map_err(CoreError::from)
    }

    /// Runs `f` on the core's runtime; the caller's executor only polls the handle.
    async fn on_runtime<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = riverchief_client::Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.runtime
            .spawn(f)
            .await
            .map_err(|e| CoreError::local(format!("a core task failed: {e}")))?
            .map_err(CoreError::from)
    }

    fn fix_rules(&self) -> FixRules {
        let o = &self.options;
        FixRules {
            batch_size: usize::try_from(o.fix_batch_size.max(1)).unwrap_or(50),
            batch_age: chrono::Duration::milliseconds(
                i64::try_from(o.fix_batch_age_ms).unwrap_or(i64::MAX),
            ),
            min_distance_m: o.min_fix_distance_m,
            still_keep: chrono::Duration::milliseconds(
                i64::try_from(o.still_keep_ms).unwrap_or(i64::MAX),
            ),
            max_accuracy_m: o.max_fix_accuracy_m,
        }
    }

    fn retention(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(
            i64::try_from(self.options.photo_retention_ms).unwrap_or(i64::MAX),
        )
    }
}

#[uniffi::export]
impl Core {
    /// Opens (creating and migrating if needed) the data directory.
    #[uniffi::constructor]
    pub fn open(data_dir: String, options: CoreOptions) -> Result<Arc<Self>> {
        if data_dir.trim().is_empty() {
            return Err(CoreError::invalid(
                "data_dir",
                "no data directory given",
                "没有指定数据目录",
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("riverchief-core")
            .enable_all()
            .build()
            .map_err(|e| CoreError::local(format!("starting the core's runtime: {e}")))?;
        let client_options = ClientOptions {
            server_url: options.server_url.clone(),
            retry: RetryPolicy {
                max_attempts: options.retry_attempts.max(1),
                ..RetryPolicy::default()
            },
            read_timeout: Duration::from_millis(options.request_timeout_ms.max(1000)),
            photo_shrink: (options.photo_max_edge_px > 0).then_some(PhotoShrink {
                max_edge_px: options.photo_max_edge_px,
                jpeg_quality: options.photo_jpeg_quality,
            }),
            ..ClientOptions::default()
        };
        let client = Client::open(&PathBuf::from(&data_dir), client_options)?;
        let status = runtime.block_on(client.status())?;
        let state = if status.logged_in {
            SyncState::Idle
        } else {
            SyncState::SignedOut
        };
        let hub = Arc::new(Hub::new(
            state,
            counts(&status),
            status.last_sync_at.map(types::ms),
        ));
        // The one task that refreshes the pending counts for the listener.
        let (refresh_hub, refresh_client) = (Arc::clone(&hub), client.clone());
        runtime.spawn(async move {
            loop {
                refresh_hub.wait_dirty().await;
                match refresh_client.status().await {
                    Ok(status) => refresh_hub.set_counts(counts(&status)),
                    Err(e) => tracing::warn!("reading the pending counts failed: {e}"),
                }
            }
        });
        Ok(Arc::new(Self {
            runtime,
            client,
            options,
            hub,
            running: Mutex::new(HashMap::new()),
            next_sync: AtomicU64::new(1),
        }))
    }

    /// Logs in and keeps the token. Refused (`Invalid`, field `username`) while another account's
    /// work on this device is unsent.
    pub async fn login(
        &self,
        server_url: String,
        username: String,
        password: String,
        device_name: String,
    ) -> Result<User> {
        let client = self.client.clone();
        let user = self
            .runtime
            .spawn(async move {
                client
                    .login(&server_url, &username, &password, &device_name)
                    .await
            })
            .await
            .map_err(|e| CoreError::local(format!("the login task failed: {e}")))??;
        self.hub.set_state(SyncState::Idle);
        Ok(user.into())
    }

    /// Forgets the token; queued work stays, and goes after the next login.
    pub fn logout(&self) -> Result<()> {
        self.local(self.client.logout())?;
        self.hub.set_state(SyncState::SignedOut);
        Ok(())
    }

    /// The user of the last login.
    pub fn me(&self) -> Result<Option<User>> {
        Ok(self.local(self.client.user())?.map(User::from))
    }

    /// Starts a patrol on segments given by code (`QHL-02`) or id; returns its id.
    pub fn start_patrol(
        &self,
        segments: Vec<String>,
        weather: Option<String>,
        notes: Option<String>,
    ) -> Result<String> {
        if segments.is_empty() {
            return Err(CoreError::invalid(
                "segments",
                "a patrol needs at least one segment",
                "巡查至少要选一个堤段",
            ));
        }
        let mut ids = Vec::with_capacity(segments.len());
        for code in &segments {
            ids.push(self.local(self.client.resolve_segment(code))?);
        }
        let id = self.local(self.client.start_patrol(&ids, notes, weather))?;
        self.hub.touch();
        Ok(id.to_string())
    }

    /// Records one fix of the phone's location API; durable when this returns.
    pub fn record_fix(&self, patrol_id: String, fix: Fix) -> Result<FixOutcome> {
        let patrol = parse_patrol(&patrol_id)?;
        let t = DateTime::<Utc>::from_timestamp_millis(fix.time_ms)
            .ok_or_else(|| CoreError::invalid("fix.time_ms", "not a time", "时间无效"))?;
        let fix = riverchief_client::Fix {
            t,
            lon: fix.lon,
            lat: fix.lat,
            accuracy_m: fix.accuracy_m,
            crs: fix.crs.into(),
            mock: fix.mock,
        };
        let outcome = self.local(self.client.record_fix(patrol, fix, self.fix_rules()))?;
        self.hub.touch();
        Ok(outcome.into())
    }

    /// Finishes a patrol (its waiting fixes are queued first).
    pub fn finish_patrol(&self, patrol_id: String, notes: Option<String>) -> Result<()> {
        let patrol = parse_patrol(&patrol_id)?;
        self.local(self.client.finish_patrol(patrol, notes))?;
        self.hub.touch();
        Ok(())
    }

    /// A patrol recorded on this device: what the recorder kept and where it stands.
    pub fn patrol(&self, patrol_id: String) -> Result<PatrolInfo> {
        let patrol = parse_patrol(&patrol_id)?;
        let p = self.local(self.client.recorded_patrol(patrol))?;
        Ok(PatrolInfo {
            id: p.id.to_string(),
            segment_ids: p.segment_ids.iter().map(ToString::to_string).collect(),
            started_at_ms: types::ms(p.started_at),
            ended_at_ms: p.ended_at.map(types::ms),
            fixes_kept: p.fixes_kept,
            fixes_mock: p.fixes_mock,
            fixes_dropped: p.fixes_dropped,
            fixes_unbatched: p.fixes_unbatched,
            points_queued: p.points_queued,
            sync: RecordSync::of(p.start.state, p.start.error.map(|e| e.message), 0, 0),
        })
    }

    /// Reports a problem found on the bank; the photos are shrunk, hashed and copied at once (an
    /// async call: decoding and shrinking a 12 MB photo takes longer than a local write). Returns
    /// the issue's id once the report and its photos are stored.
    pub async fn report_issue(&self, draft: IssueDraft) -> Result<String> {
        check_photos(&draft.photo_paths)?;
        let client = self.client.clone();
        let segment = draft.segment.clone();
        let segment_id = self
            .on_runtime(async move { client.resolve_segment(&segment).await })
            .await?;
        let patrol_id = draft.patrol_id.as_deref().map(parse_patrol).transpose()?;
        let category = IssueCategory::parse(&draft.category).ok_or_else(|| {
            CoreError::invalid(
                "category",
                format!("unknown category {:?}", draft.category),
                format!("没有这个问题类别：{}", draft.category),
            )
        })?;
        let severity = Severity::try_from(draft.severity).map_err(|_| {
            CoreError::invalid(
                "severity",
                "severity is 1, 2 or 3",
                "严重程度只能是 1、2 或 3",
            )
        })?;
        let outflow = match draft.outflow.as_deref() {
            None => None,
            Some("clear") => Some(Outflow::Clear),
            Some("muddy") => Some(Outflow::Muddy),
            Some(other) => {
                return Err(CoreError::invalid(
                    "outflow",
                    format!("outflow is clear or muddy, not {other:?}"),
                    "出水只能是清水（clear）或浑水（muddy）",
                ))
            }
        };
        let (lon, lat) = match draft.crs {
            Crs::Wgs84 => (draft.lon, draft.lat),
            Crs::Gcj02 => riverchief_shared::gcj02::to_wgs84(draft.lon, draft.lat),
        };
        let location = Position {
            lon: Lon::parse(lon, "lon")?,
            lat: Lat::parse(lat, "lat")?,
        };
        let draft = riverchief_client::IssueDraft {
            segment_id,
            patrol_id,
            location,
            category,
            severity,
            outflow,
            description: draft.description,
            photos: draft.photo_paths.into_iter().map(PathBuf::from).collect(),
        };
        let client = self.client.clone();
        let id = self
            .on_runtime(async move { client.report_issue(draft).await })
            .await?;
        self.hub.touch();
        Ok(id.to_string())
    }

    /// Adds a step to an issue's history (`comment`, `started`, `resolved`, ...), with photos
    /// (async, as `report_issue`); returns the event's id. The server judges it when it arrives.
    pub async fn add_issue_event(
        &self,
        issue_id: String,
        kind: String,
        note: Option<String>,
        assignee: Option<String>,
        photo_paths: Vec<String>,
    ) -> Result<String> {
        let issue = IssueId::parse(&issue_id)
            .map_err(|_| CoreError::invalid("issue_id", "not an issue id", "问题编号无效"))?;
        let kind = IssueEventKind::parse(&kind).ok_or_else(|| {
            CoreError::invalid(
                "kind",
                format!("unknown step {kind:?}"),
                format!("没有这种处理步骤：{kind}"),
            )
        })?;
        let assignee = assignee
            .as_deref()
            .map(UserId::parse)
            .transpose()
            .map_err(|_| CoreError::invalid("assignee", "not a user id", "用户编号无效"))?;
        check_photos(&photo_paths)?;
        let photos = photo_paths.into_iter().map(PathBuf::from).collect();
        let client = self.client.clone();
        let id = self
            .on_runtime(async move {
                client
                    .add_issue_event(issue, kind, note, assignee, None, photos)
                    .await
            })
            .await?;
        self.hub.touch();
        Ok(id.to_string())
    }

    /// Records that supplies were taken from a depot to a segment (ids or codes); returns the
    /// mutation's id. The server judges it against the stock when it arrives.
    pub fn dispatch_stock(
        &self,
        depot: String,
        item: String,
        quantity: i64,
        segment: Option<String>,
        note: Option<String>,
    ) -> Result<String> {
        let id = self.local(self.client.move_stock(
            &depot,
            &item,
            "dispatch",
            quantity,
            segment.as_deref(),
            note,
        ))?;
        self.hub.touch();
        Ok(id.to_string())
    }

    /// The segments mirrored at the last sync, by code.
    pub fn segments(&self) -> Result<Vec<SegmentInfo>> {
        Ok(self
            .local(self.client.segments())?
            .into_iter()
            .map(SegmentInfo::from)
            .collect())
    }

    /// Issues reported here and those pulled from the server, newest first.
    pub fn my_issues(&self) -> Result<Vec<IssueRow>> {
        Ok(self
            .local(self.client.my_issues())?
            .into_iter()
            .map(IssueRow::from)
            .collect())
    }

    /// The alerts this user may see, newest first (drills marked).
    pub fn alerts(&self) -> Result<Vec<AlertRow>> {
        Ok(self
            .local(self.client.alerts())?
            .into_iter()
            .map(AlertRow::from)
            .collect())
    }

    /// When each segment was last covered and falls due, as last pulled.
    pub fn coverage(&self) -> Result<Vec<CoverageRow>> {
        let codes: HashMap<String, String> = self
            .local(self.client.segments())?
            .into_iter()
            .map(|s| (s.properties.id.to_string(), s.properties.code))
            .collect();
        Ok(self
            .local(self.client.coverage())?
            .into_iter()
            .map(|c| {
                let id = c.segment_id.to_string();
                CoverageRow {
                    segment_code: codes.get(&id).cloned(),
                    segment_id: id,
                    last_covered_ms: c.last_covered.map(types::ms),
                    due_at_ms: c.due_at.map(types::ms),
                    interval_minutes: c.interval_minutes,
                    stage: c.stage.as_str().to_owned(),
                }
            })
            .collect())
    }

    /// What this phone recorded in `period`: `2024`, `2024-Q3`, `2024-07`, `2024-W27` or
    /// `2024-07-01..2024-07-31` (whole Beijing-time days); this month when `None`. Offline.
    pub fn stats(&self, period: Option<String>) -> Result<MyStats> {
        use riverchief_shared::report::{CheckRules, Period};
        let spec = period.unwrap_or_else(|| {
            Utc::now()
                .with_timezone(&riverchief_shared::domain::shanghai())
                .format("%Y-%m")
                .to_string()
        });
        let period = Period::parse(&spec, "period")?;
        Ok(self
            .local(self.client.stats(period, CheckRules::default()))?
            .into())
    }

    /// The sync status now (the pending counts read fresh).
    pub fn status(&self) -> Result<SyncStatus> {
        let status = self.local(self.client.status())?;
        self.hub.set_counts(counts(&status));
        Ok(self.hub.current())
    }

    /// Registers the listener (replacing any other): it gets the current status, then every change.
    pub fn set_listener(&self, listener: Arc<dyn StatusListener>) {
        self.hub.set_listener(listener);
    }

    pub fn clear_listener(&self) {
        self.hub.clear_listener();
    }

    /// Syncs: critical hazards first, then the other records, then photos (on a metered link only
    /// when the options allow it), then the pull; stops cleanly before `deadline_ms` (from now)
    /// or when `cancel_sync` is called, and says what is left.
    pub async fn sync(&self, deadline_ms: Option<u64>, network: Network) -> Result<SyncOutcome> {
        let token = CancellationToken::new();
        let number = self.next_sync.fetch_add(1, Ordering::Relaxed);
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(number, token.clone());
        let _running = Running { core: self, number };
        // An app that drops the call (a cancelled coroutine or task) stops the sync as cancel_sync would.
        let _stop_if_dropped = token.clone().drop_guard();
        let control = SyncControl {
            deadline: deadline_ms.map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms)),
            cancel: Some(token),
            photos: network == Network::Unmetered || self.options.photos_on_metered,
            fix_rules: Some(self.fix_rules()),
        };
        let (client, hub) = (self.client.clone(), Arc::clone(&self.hub));
        let (retention, budget) = (self.retention(), self.options.photo_budget_bytes);
        self.runtime
            .spawn(run_sync(client, hub, control, retention, budget))
            .await
            .map_err(|e| CoreError::local(format!("the sync task failed: {e}")))?
    }

    /// Stops the syncs running now, from any thread; true when one was running. What they had not
    /// finished goes with the next sync.
    pub fn cancel_sync(&self) -> bool {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        for token in running.values() {
            token.cancel();
        }
        !running.is_empty()
    }

    /// Removes confirmed photos past their retention or over the budget now; never an unsent one.
    pub fn prune_photos(&self) -> Result<u64> {
        let removed = self.local(
            self.client
                .prune_photos(self.retention(), self.options.photo_budget_bytes),
        )?;
        Ok(removed)
    }

    /// The stored file of a captured photo, while the device keeps it.
    pub fn photo_path(&self, sha256: String) -> Result<Option<String>> {
        let sha = riverchief_shared::photo::Sha256::parse(&sha256, "sha256")?;
        Ok(self
            .local(self.client.photo_file(sha))?
            .map(|p| p.display().to_string()))
    }
}

/// The issue categories, with their labels.
#[uniffi::export]
pub fn issue_categories() -> Vec<Category> {
    IssueCategory::ALL
        .iter()
        .map(|c| Category {
            code: c.as_str().to_owned(),
            label_zh: c.label_zh().to_owned(),
            label_en: c.label_en().to_owned(),
        })
        .collect()
}

/// Takes a finished (or dropped) sync off the running list.
struct Running<'a> {
    core: &'a Core,
    number: u64,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.core
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.number);
    }
}

/// A photo the app names must be a file that is there: refused before anything is written, with
/// its place in the list named.
fn check_photos(paths: &[String]) -> Result<()> {
    for (i, path) in paths.iter().enumerate() {
        if !std::path::Path::new(path).is_file() {
            return Err(CoreError::invalid(
                &format!("photo_paths[{i}]"),
                format!("{path}: no such photo file"),
                format!("找不到照片文件：{path}"),
            ));
        }
    }
    Ok(())
}

fn parse_patrol(id: &str) -> Result<PatrolId> {
    PatrolId::parse(id)
        .map_err(|_| CoreError::invalid("patrol_id", "not a patrol id", "巡查编号无效"))
}

fn counts(status: &riverchief_client::Status) -> Counts {
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    Counts {
        mutations: n(status.pending),
        urgent: n(status.pending_urgent),
        photos: n(status.photos_pending),
        photo_bytes: status.photos_pending_bytes,
    }
}

/// One sync on the core's runtime, with the status kept up to date as it goes.
async fn run_sync(
    client: Client,
    hub: Arc<Hub>,
    control: SyncControl,
    retention: chrono::Duration,
    budget: u64,
) -> Result<SyncOutcome> {
    let progress = {
        let hub = Arc::clone(&hub);
        move |event: SyncProgress| match event {
            // Only once the lock is held: a sync refused as busy must not touch the status of the
            // one that runs.
            SyncProgress::Started => hub.sync_started(),
            SyncProgress::PhotoStarted {
                sha, total, offset, ..
            } => hub.upload(Some(UploadProgress {
                sha256: sha.hex(),
                sent: offset,
                total,
            })),
            SyncProgress::PhotoBytes { sha, sent, total } => hub.upload(Some(UploadProgress {
                sha256: sha.hex(),
                sent,
                total,
            })),
            SyncProgress::PhotoDone { .. }
            | SyncProgress::PhotoSkipped { .. }
            | SyncProgress::PhotoFailed { .. } => {
                hub.upload(None);
                hub.touch();
            }
            SyncProgress::Pushed { .. } => hub.touch(),
            SyncProgress::PushStarted { .. }
            | SyncProgress::PhotosStarted { .. }
            | SyncProgress::Pulled { .. } => {}
        }
    };
    let result = client.sync_with(&control, &progress).await;
    if matches!(&result, Ok(r) if r.stopped != riverchief_client::sync::StopReason::Deadline) {
        if let Err(e) = client.prune_photos(retention, budget).await {
            tracing::warn!("removing confirmed photos failed: {e}");
        }
    }
    // What is left. Should the store fail to say, the counts last known stand: the sync's end must
    // still be reported, or the app would show "syncing" for ever.
    let left = match client.status().await {
        Ok(status) => {
            let now = counts(&status);
            hub.set_counts(now);
            now
        }
        Err(e) => {
            tracing::warn!("reading what is left after a sync failed: {e}");
            hub.counts()
        }
    };
    let left = Pending {
        mutations: left.mutations,
        urgent: left.urgent,
        photos: left.photos,
        photo_bytes: left.photo_bytes,
    };
    match result {
        // Another sync runs: its status is the one that counts.
        Err(riverchief_client::ClientError::SyncInProgress) => {
            Err(riverchief_client::ClientError::SyncInProgress.into())
        }
        Ok(report) => {
            let complete = report.stopped == riverchief_client::sync::StopReason::Completed
                || report.stopped == riverchief_client::sync::StopReason::PhotosWaiting;
            hub.sync_ended(
                SyncState::Idle,
                complete.then(|| types::ms(Utc::now())),
                None,
            );
            Ok(SyncOutcome {
                stopped: report.stopped.into(),
                pushed: report.pushed,
                duplicates: report.duplicates,
                rejected: report.rejected,
                photos_uploaded: report.photos_uploaded,
                bytes_uploaded: report.bytes_uploaded,
                pulled: report.pulled,
                left,
            })
        }
        Err(e) => {
            let error = CoreError::from(e);
            let state = match &error {
                CoreError::Network { .. } => SyncState::Offline,
                CoreError::NotLoggedIn { .. } => SyncState::SignedOut,
                CoreError::DeviceRefused { detail, .. } => SyncState::DeviceRefused {
                    reason: detail.clone(),
                },
                CoreError::Server {
                    retryable: true, ..
                } => SyncState::BackingOff {
                    until_ms: types::ms(Utc::now()) + BACK_OFF_MS,
                },
                _ => SyncState::Idle,
            };
            hub.sync_ended(state, None, Some(error.texts()));
            Err(error)
        }
    }
}

/// How long the core advises an app to wait after the server answered with a transient error.
const BACK_OFF_MS: i64 = 30_000;
