//! Request and response bodies outside the sync protocol, and the error envelope every endpoint uses.

use crate::domain::{Issue, Patrol, Role, TrackPoint};
use crate::id::{SegmentId, UserId};
use crate::validate::FieldError;
use serde::{Deserialize, Serialize};

/// `{"error": {"code", "message", "field"}}`: the body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl From<FieldError> for ErrorDetail {
    fn from(e: FieldError) -> Self {
        Self {
            code: e.code,
            message: format!("{}: {}", e.field, e.message),
            field: Some(e.field),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    pub device_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    pub token: String,
    pub user: UserInfo,
}

/// `GET /api/v1/me`: the user and the segments assigned to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    #[serde(flatten)]
    pub user: UserInfo,
    pub segment_ids: Vec<SegmentId>,
}

/// `GET /api/v1/patrols/{id}`: a patrol with its track in recorded order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatrolTrack {
    pub patrol: Patrol,
    pub points: Vec<TrackPoint>,
}

/// `GET /api/v1/issues`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssueList {
    pub issues: Vec<Issue>,
}

/// A lot as the stock view shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LotView {
    pub id: String,
    pub quantity: i64,
    /// `YYYY-MM-DD`
    pub received_on: String,
    /// `YYYY-MM-DD`; absent for items that do not age.
    #[serde(default)]
    pub expires_on: Option<String>,
}

/// One line of the stock view (`GET /api/v1/stock`): a depot and an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockLine {
    pub depot_id: String,
    pub depot: String,
    pub item_id: String,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockView {
    pub expiring_within_days: i64,
    pub stock: Vec<StockLine>,
}
