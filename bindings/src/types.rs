//! The records and enums that cross the FFI, and their conversions from the core's types.
//!
//! Times are milliseconds since the Unix epoch (`i64`), durations milliseconds (`u64`): every
//! platform has both, and no calendar type crosses the boundary.

use chrono::{DateTime, Utc};
use riverchief_client::{IssueSummary, OutboxState};

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// How the core runs; every field has a default ([`default_options`]).
#[derive(Debug, Clone, uniffi::Record)]
pub struct CoreOptions {
    /// The server; `None`: the one stored at the last login.
    #[uniffi(default = None)]
    pub server_url: Option<String>,
    /// Shrink JPEG, PNG and WebP photos at capture to this longest edge (0: keep them as taken).
    #[uniffi(default = 2560)]
    pub photo_max_edge_px: u32,
    #[uniffi(default = 85)]
    pub photo_jpeg_quality: u8,
    /// A photo the server confirmed is removed from the device this long after (7 days).
    #[uniffi(default = 604800000)]
    pub photo_retention_ms: u64,
    /// Confirmed photos are also removed, oldest first, while the device keeps more (512 MiB).
    #[uniffi(default = 536870912)]
    pub photo_budget_bytes: u64,
    /// Whether photos go on a metered link (records always do).
    #[uniffi(default = false)]
    pub photos_on_metered: bool,
    /// Fixes per `patrol.points` mutation.
    #[uniffi(default = 50)]
    pub fix_batch_size: u32,
    /// A batch is also closed when its oldest fix is this old.
    #[uniffi(default = 60000)]
    pub fix_batch_age_ms: u64,
    /// A fix closer than this to the last kept one is "standing still".
    #[uniffi(default = 3.0)]
    pub min_fix_distance_m: f64,
    /// While standing still, one fix is still kept this often.
    #[uniffi(default = 30000)]
    pub still_keep_ms: u64,
    /// Fixes less accurate than this are dropped (the server's coverage rule).
    #[uniffi(default = 50.0)]
    pub max_fix_accuracy_m: f64,
    /// A request waiting longer than this for its answer fails (and is retried).
    #[uniffi(default = 30000)]
    pub request_timeout_ms: u64,
    /// Attempts per request within one sync.
    #[uniffi(default = 3)]
    pub retry_attempts: u32,
}

/// The defaults of [`CoreOptions`].
#[uniffi::export]
pub fn default_options() -> CoreOptions {
    CoreOptions {
        server_url: None,
        photo_max_edge_px: 2560,
        photo_jpeg_quality: 85,
        photo_retention_ms: 7 * 24 * 3600 * 1000,
        photo_budget_bytes: 512 << 20,
        photos_on_metered: false,
        fix_batch_size: 50,
        fix_batch_age_ms: 60_000,
        min_fix_distance_m: 3.0,
        still_keep_ms: 30_000,
        max_fix_accuracy_m: 50.0,
        request_timeout_ms: 30_000,
        retry_attempts: 3,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    /// `patroller`, `duty_lead` or `admin`.
    pub role: String,
}

impl From<riverchief_shared::api::UserInfo> for User {
    fn from(u: riverchief_shared::api::UserInfo) -> Self {
        Self {
            id: u.id.to_string(),
            username: u.username,
            display_name: u.display_name,
            role: u.role.as_str().to_owned(),
        }
    }
}

/// The datum a position is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Crs {
    /// WGS-84: raw GPS (Android's LocationManager, iOS Core Location).
    Wgs84,
    /// GCJ-02: Chinese map SDKs (AMap, Tencent, Baidu's GCJ mode).
    Gcj02,
}

impl From<Crs> for riverchief_shared::domain::Crs {
    fn from(c: Crs) -> Self {
        match c {
            Crs::Wgs84 => Self::Wgs84,
            Crs::Gcj02 => Self::Gcj02,
        }
    }
}

/// One fix of the phone's location API.
#[derive(Debug, Clone, Copy, PartialEq, uniffi::Record)]
pub struct Fix {
    pub time_ms: i64,
    pub lon: f64,
    pub lat: f64,
    #[uniffi(default = None)]
    pub accuracy_m: Option<f64>,
    pub crs: Crs,
    /// The platform's mock-location flag (Android `Location.isMock()`, iOS
    /// `CLLocationSourceInformation.isSimulatedBySoftware`).
    #[uniffi(default = false)]
    pub mock: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum FixOutcome {
    Kept,
    KeptMock,
    DroppedInaccurate,
    DroppedDuplicate,
    DroppedStill,
}

impl From<riverchief_client::FixOutcome> for FixOutcome {
    fn from(o: riverchief_client::FixOutcome) -> Self {
        use riverchief_client::FixOutcome as O;
        match o {
            O::Kept => Self::Kept,
            O::KeptMock => Self::KeptMock,
            O::DroppedInaccurate => Self::DroppedInaccurate,
            O::DroppedDuplicate => Self::DroppedDuplicate,
            O::DroppedStill => Self::DroppedStill,
        }
    }
}

/// A problem found on the bank, as the patroller enters it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct IssueDraft {
    /// A segment code (`QHL-02`) or id.
    pub segment: String,
    #[uniffi(default = None)]
    pub patrol_id: Option<String>,
    pub lon: f64,
    pub lat: f64,
    pub crs: Crs,
    /// A category's wire name (`piping`, `seepage`, ...: see `issue_categories`).
    pub category: String,
    /// 1 minor, 2 significant, 3 major.
    pub severity: u8,
    /// Piping only: `clear` or `muddy`.
    #[uniffi(default = None)]
    pub outflow: Option<String>,
    pub description: String,
    #[uniffi(default = [])]
    pub photo_paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Category {
    pub code: String,
    pub label_zh: String,
    pub label_en: String,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SegmentInfo {
    pub id: String,
    pub code: String,
    pub name: String,
    pub river: String,
    pub length_m: f64,
    pub chainage_start_m: f64,
    pub chainage_end_m: f64,
    /// The chainage as people say it (`K1+200`).
    pub chainage_start: String,
    pub chainage_end: String,
}

impl From<riverchief_shared::domain::Segment> for SegmentInfo {
    fn from(s: riverchief_shared::domain::Segment) -> Self {
        let p = s.properties;
        Self {
            id: p.id.to_string(),
            code: p.code,
            name: p.name,
            river: p.river,
            length_m: p.length_m,
            chainage_start_m: p.start_chainage_m,
            chainage_end_m: p.start_chainage_m + p.length_m,
            chainage_start: p.start_chainage,
            chainage_end: p.end_chainage,
        }
    }
}

/// Where a record made on this device stands, for a list row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum RecordState {
    /// Not yet confirmed by the server.
    Waiting,
    /// The server has it, and every photo.
    Sent,
    /// The server has the record; some photos are still on their way.
    PhotosPending,
    /// The server refused it (the reason is kept; it is never sent again).
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RecordSync {
    pub state: RecordState,
    pub photos_sent: u32,
    pub photos_total: u32,
    pub reason: Option<String>,
    /// What the row says: "waiting", "sent", "2 of 3 photos", "refused: …".
    pub text_en: String,
    pub text_zh: String,
}

impl RecordSync {
    pub(crate) fn of(
        state: OutboxState,
        reason: Option<String>,
        photos_sent: u32,
        photos_total: u32,
    ) -> Self {
        let state = match state {
            OutboxState::Pending => RecordState::Waiting,
            OutboxState::Rejected => RecordState::Refused,
            OutboxState::Done if photos_sent < photos_total => RecordState::PhotosPending,
            OutboxState::Done => RecordState::Sent,
        };
        let (text_en, text_zh) = match state {
            RecordState::Waiting => ("waiting".to_owned(), "待发送".to_owned()),
            RecordState::Sent => ("sent".to_owned(), "已发送".to_owned()),
            RecordState::PhotosPending => (
                format!("{photos_sent} of {photos_total} photos"),
                format!("照片 {photos_sent}/{photos_total}"),
            ),
            RecordState::Refused => {
                let why = reason.clone().unwrap_or_default();
                (format!("refused: {why}"), format!("被拒绝：{why}"))
            }
        };
        Self {
            state,
            photos_sent,
            photos_total,
            reason,
            text_en,
            text_zh,
        }
    }
}

/// An issue as the phone shows it in "my issues".
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct IssueRow {
    pub id: String,
    pub segment_id: String,
    pub category: String,
    pub category_zh: String,
    pub category_en: String,
    pub severity: u8,
    pub description: String,
    pub reported_at_ms: i64,
    pub critical: bool,
    /// The server's status (`reported`, `accepted`, ...), once pulled.
    pub status: Option<String>,
    /// Set for issues reported on this device.
    pub sync: Option<RecordSync>,
}

impl From<IssueSummary> for IssueRow {
    fn from(i: IssueSummary) -> Self {
        let sync = i.local.as_ref().map(|local| {
            RecordSync::of(
                local.state,
                local.error.as_ref().map(|e| e.message.clone()),
                u32::try_from(i.photos_confirmed).unwrap_or(u32::MAX),
                u32::try_from(i.photos_total).unwrap_or(u32::MAX),
            )
        });
        Self {
            id: i.id.to_string(),
            segment_id: i.segment_id.to_string(),
            category: i.category.as_str().to_owned(),
            category_zh: i.category.label_zh().to_owned(),
            category_en: i.category.label_en().to_owned(),
            severity: u8::from(i.severity),
            description: i.description,
            reported_at_ms: ms(i.reported_at),
            critical: i.critical,
            status: i.server.as_ref().map(|s| s.status.as_str().to_owned()),
            sync,
        }
    }
}

/// A patrol recorded on this device.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PatrolInfo {
    pub id: String,
    pub segment_ids: Vec<String>,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    /// Fixes kept (mock ones included), and of them marked as mock locations.
    pub fixes_kept: u64,
    pub fixes_mock: u64,
    /// Fixes dropped (inaccurate, duplicate, standing still).
    pub fixes_dropped: u64,
    /// Kept fixes not yet closed into a mutation.
    pub fixes_unbatched: u64,
    /// Fixes queued as `patrol.points` mutations.
    pub points_queued: u64,
    /// The state of the patrol's start (a refused start refuses the whole patrol).
    pub sync: RecordSync,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct AlertRow {
    pub id: String,
    /// `stage_changed`, `rapid_rise`, `critical_hazard`, ...
    pub kind: String,
    /// `open`, `acknowledged`, `resolved`.
    pub state: String,
    /// `info`, `warning`, `critical`.
    pub level: String,
    /// A drill's alert (演练): never a real one.
    pub drill: bool,
    pub message_zh: String,
    pub message_en: String,
    pub raised_at_ms: i64,
}

impl From<riverchief_shared::alert::Alert> for AlertRow {
    fn from(a: riverchief_shared::alert::Alert) -> Self {
        Self {
            id: a.id.to_string(),
            kind: a.kind.as_str().to_owned(),
            state: a.state.as_str().to_owned(),
            level: a.level.as_str().to_owned(),
            drill: a.drill,
            message_zh: a.message,
            message_en: a.message_en,
            raised_at_ms: ms(a.raised_at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CoverageRow {
    pub segment_id: String,
    pub segment_code: Option<String>,
    pub last_covered_ms: Option<i64>,
    /// When the segment falls due at the stage in force (`None`: never covered).
    pub due_at_ms: Option<i64>,
    pub interval_minutes: i64,
    /// The flood stage in force for it: `normal`, `watch`, `warning`, `guarantee`.
    pub stage: String,
}

/// Whether the link costs by the byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Network {
    Unmetered,
    Metered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum StopReason {
    /// Everything went, and the pull reached the end.
    Completed,
    /// The deadline came first; what is left goes with the next sync.
    Deadline,
    Cancelled,
    /// Everything else went; the photos wait for an unmetered link.
    PhotosWaitForUnmetered,
}

impl From<riverchief_client::sync::StopReason> for StopReason {
    fn from(r: riverchief_client::sync::StopReason) -> Self {
        use riverchief_client::sync::StopReason as R;
        match r {
            R::Completed => Self::Completed,
            R::Deadline => Self::Deadline,
            R::Cancelled => Self::Cancelled,
            R::PhotosWaiting => Self::PhotosWaitForUnmetered,
        }
    }
}

/// What is still on the device, waiting to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct Pending {
    pub mutations: u64,
    /// Of those, critical hazard reports.
    pub urgent: u64,
    pub photos: u64,
    pub photo_bytes: u64,
}

/// What one sync did, and what it left.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncOutcome {
    pub stopped: StopReason,
    pub pushed: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub photos_uploaded: u64,
    pub bytes_uploaded: u64,
    pub pulled: u64,
    pub left: Pending,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SyncState {
    Idle,
    Syncing,
    /// The last sync could not reach the server (no signal).
    Offline,
    /// The server is struggling (5xx, 429): the core advises the next try no sooner than this.
    BackingOff {
        until_ms: i64,
    },
    /// No account on this device.
    SignedOut,
    /// The server refused this device's token (revoked, account switched off): log in again.
    DeviceRefused {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct UploadProgress {
    pub sha256: String,
    pub sent: u64,
    pub total: u64,
}

/// Where the core stands; what a sync indicator shows.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    /// Grows by one with every change: the order the states happened in.
    pub seq: u64,
    pub state: SyncState,
    pub pending_mutations: u64,
    pub pending_urgent: u64,
    pub pending_photos: u64,
    pub pending_photo_bytes: u64,
    /// The photo being uploaded now.
    pub upload: Option<UploadProgress>,
    pub last_sync_ms: Option<i64>,
    pub last_error_en: Option<String>,
    pub last_error_zh: Option<String>,
}

/// What this phone recorded in a period ([`crate::Core::stats`]), read from the local store: there
/// with no signal. Patrols walked on another phone are not in it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct MyStats {
    /// The period as asked (`2024-07`, ...).
    pub period: String,
    /// Its first instant and the instant after it (whole Beijing-time days), ms since the epoch.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Patrols started in the period and finished.
    pub patrols: u64,
    /// Patrols started in the period and not finished yet.
    pub open: u64,
    /// Finished patrols long and far enough to count as a check (10 minutes, 1 km), before the
    /// server judges their coverage.
    pub long_enough: u64,
    pub hours: f64,
    pub km: f64,
    /// Beijing-time days with at least one patrol.
    pub days: u64,
    pub issues: u64,
    pub critical: u64,
    /// Problems by category (wire names), those found at least once.
    pub by_category: std::collections::HashMap<String, u64>,
    /// Problems reported on the period's patrols, per finished patrol.
    pub issues_per_patrol: f64,
}

impl From<riverchief_client::PatrollerStats> for MyStats {
    fn from(s: riverchief_client::PatrollerStats) -> Self {
        Self {
            period: s.period.label,
            from_ms: ms(s.period.from),
            to_ms: ms(s.period.to),
            patrols: s.patrols,
            open: s.open,
            long_enough: s.long_enough,
            hours: s.hours,
            km: s.km,
            days: s.days,
            issues: s.issues,
            critical: s.critical,
            by_category: s.by_category.into_iter().collect(),
            issues_per_patrol: s.issues_per_patrol,
        }
    }
}
