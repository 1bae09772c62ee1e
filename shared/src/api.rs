//! Request and response bodies outside the sync protocol, and the error envelope every endpoint uses.

use crate::domain::{Issue, IssueEventKind, IssueStatus, Patrol, Role, TrackPoint};
use crate::id::{DepotId, IssueEventId, IssueId, ItemId, LotId, SegmentId, UserId};
use crate::photo::Sha256;
use crate::validate::FieldError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `{"error": {"code", "message", "field"}}`: the body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For a refused lifecycle step: the issue's status when it was judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_status: Option<crate::domain::IssueStatus>,
}

impl From<FieldError> for ErrorDetail {
    fn from(e: FieldError) -> Self {
        Self {
            code: e.code,
            message: format!("{}: {}", e.field, e.message),
            field: Some(e.field),
            current_status: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    pub device_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub token: String,
    pub user: UserInfo,
}

/// `GET /api/v1/me`: the user and the segments assigned to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Me {
    #[serde(flatten)]
    pub user: UserInfo,
    pub segment_ids: Vec<SegmentId>,
}

/// `GET /api/v1/patrols/{id}`: a patrol with its track in recorded order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PatrolTrack {
    pub patrol: Patrol,
    pub points: Vec<TrackPoint>,
}

/// `GET /api/v1/issues`: one page of the list.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssueList {
    pub issues: Vec<Issue>,
    /// How many issues match the filter in all.
    #[serde(default)]
    pub total: u64,
    /// Pass as `offset` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
}

/// `GET /api/v1/issues/counts`: how many issues (matching the filter) are in each status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssueCounts {
    pub total: u64,
    /// Every status, zeros included.
    pub by_status: BTreeMap<IssueStatus, u64>,
}

/// `POST /api/v1/issues/{id}/events`: one lifecycle step taken online. The same rules as an
/// `issue.event` mutation (see [`crate::sync::IssueEventData`]); `event_id` is made by the server
/// when absent.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIssueEvent {
    #[serde(default)]
    pub event_id: Option<IssueEventId>,
    pub kind: IssueEventKind,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub assignee: Option<UserId>,
    #[serde(default)]
    pub duplicate_of: Option<IssueId>,
    #[serde(default)]
    pub due_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub photos: Vec<Sha256>,
    /// The newest event the lead had seen (see [`crate::sync::IssueEventData::based_on`]).
    #[serde(default)]
    pub based_on: Option<IssueEventId>,
}

/// One line of the audit trail (`GET /api/v1/audit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// Who did it (absent: the server's own command line, or a login with an unknown name).
    #[serde(default)]
    pub actor_id: Option<UserId>,
    /// Their username (for a failed login: the name that was tried).
    #[serde(default)]
    pub actor_name: Option<String>,
    /// The device token the request came with, and its device's name.
    #[serde(default)]
    pub token_id: Option<String>,
    #[serde(default)]
    pub device_name: Option<String>,
    /// The client address, for logins.
    #[serde(default)]
    pub address: Option<String>,
    /// What happened: `issue.report`, `issue.event`, `issue.event_rejected`, `login.ok`,
    /// `login.failed`, `user.add`, `user.update`, `user.password`, `token.revoke`,
    /// `flood_stage.set`, `stock.move`, `stock.stocktake`.
    pub kind: String,
    /// The record it happened to (an issue, a user, a token id...).
    #[serde(default)]
    pub subject: Option<String>,
    /// The details, as JSON.
    pub detail: serde_json::Value,
}

/// `GET /api/v1/audit`: newest first; pass `next_before` as `before` for the next page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// A user as admins manage them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserAccount {
    #[serde(flatten)]
    pub user: UserInfo,
    pub active: bool,
    pub segment_ids: Vec<SegmentId>,
    pub created_at: DateTime<Utc>,
}

/// `GET /api/v1/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserList {
    pub users: Vec<UserAccount>,
}

/// `POST /api/v1/users`. Without `password` the server makes one and answers it once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    #[serde(default)]
    pub password: Option<String>,
    /// Segments (id or code) the user patrols.
    #[serde(default)]
    pub segments: Vec<String>,
}

/// `PATCH /api/v1/users/{id}`: what to change; absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// `false` switches the user off: their tokens stop working and they cannot log in.
    #[serde(default)]
    pub active: Option<bool>,
    /// Replaces the user's segments (ids or codes).
    #[serde(default)]
    pub segments: Option<Vec<String>>,
}

/// `POST /api/v1/users/{id}/password`. Without `password` the server makes one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    #[serde(default)]
    pub password: Option<String>,
}

/// The answer to a user creation or a password reset: the account, and the password when the
/// server made it (shown this once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserCreated {
    pub user: UserAccount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// One login of a user (a device token), as `GET /api/v1/users/{id}/devices` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceToken {
    pub id: String,
    pub device_name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/users/{id}/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceList {
    pub devices: Vec<DeviceToken>,
}

/// A lot as the stock view shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LotView {
    pub id: LotId,
    pub quantity: i64,
    /// `YYYY-MM-DD`
    pub received_on: String,
    /// `YYYY-MM-DD`; absent for items that do not age.
    #[serde(default)]
    pub expires_on: Option<String>,
}

/// One line of the stock view (`GET /api/v1/stock`): a depot and an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StockLine {
    pub depot_id: DepotId,
    pub depot: String,
    pub item_id: ItemId,
    pub item: String,
    pub item_name: String,
    pub unit: String,
    pub quota: i64,
    pub on_hand: i64,
    pub shortfall: i64,
    /// Lots whose date is past or within the view's window.
    pub lots_expiring: Vec<LotView>,
}

/// `GET /api/v1/stock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StockView {
    pub expiring_within_days: i64,
    pub stock: Vec<StockLine>,
}
