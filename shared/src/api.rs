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
