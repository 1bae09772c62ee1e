//! Webhooks: where the server sends every alert change an admin asked for, from a durable outbox.
//!
//! A webhook has a URL, a secret (which signs every delivery and is never shown back whole), the
//! alert kinds it wants (none = all), a message format (generic JSON, or the markdown message of a
//! WeCom or DingTalk group robot) and whether it takes drill alerts. Each alert change becomes one
//! [`Delivery`] per matching webhook; the generic format's body is an [`AlertNotice`].

use crate::alert::{Alert, AlertKind, AlertState};
use crate::id::{AlertId, DeliveryId, UserId, WebhookId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    Raised,
    Acknowledged,
    Resolved,
}

crate::names::named!(AlertEvent {
    Raised => "raised",
    Acknowledged => "acknowledged",
    Resolved => "resolved",
});

impl AlertEvent {
    /// The change that brought an alert to its present state: the one whose time is `updated_at`
    /// (an alert resolved before a duty lead acknowledged it may still be acknowledged afterwards).
    pub fn of(alert: &Alert) -> Self {
        match alert.state {
            AlertState::Open => Self::Raised,
            AlertState::Acknowledged => Self::Acknowledged,
            AlertState::Resolved if alert.resolved_at == Some(alert.updated_at) => Self::Resolved,
            AlertState::Resolved if alert.acknowledged_at == Some(alert.updated_at) => {
                Self::Acknowledged
            }
            AlertState::Resolved => Self::Resolved,
        }
    }

    /// In Chinese, for the group-chat formats.
    pub fn zh(self) -> &'static str {
        match self {
            Self::Raised => "新告警",
            Self::Acknowledged => "已确认",
            Self::Resolved => "已解除",
        }
    }
}

/// The body of a generic webhook delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertNotice {
    pub event: AlertEvent,
    pub alert: Alert,
}

/// How a webhook's deliveries are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// [`AlertNotice`] as JSON.
    #[default]
    Generic,
    /// A WeCom (企业微信) group robot: `{"msgtype": "markdown", "markdown": {"content"}}`.
    Wecom,
    /// A DingTalk (钉钉) group robot: `{"msgtype": "markdown", "markdown": {"title", "text"}}`, the
    /// URL signed with the robot's secret.
    Dingtalk,
}

crate::names::named!(WebhookFormat {
    Generic => "generic",
    Wecom => "wecom",
    Dingtalk => "dingtalk",
});

/// `POST /api/v1/webhooks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `http://` or `https://`.
    pub url: String,
    /// Signs every delivery; for DingTalk, the robot's own secret (`SEC…`).
    pub secret: String,
    /// The alert kinds to send; empty = every kind.
    #[serde(default)]
    pub kinds: Vec<AlertKind>,
    #[serde(default)]
    pub format: WebhookFormat,
    /// Also send drill alerts (marked 演练).
    #[serde(default)]
    pub include_drill: bool,
}

/// The longest URL and secret accepted.
pub const MAX_URL_LEN: usize = 2000;
pub const MAX_SECRET_LEN: usize = 200;

/// A webhook as the API shows it: the secret only as a hint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: String,
    /// The secret's last characters (`…a1b2`), or `…` when it is too short to show any.
    pub secret_hint: String,
    pub kinds: Vec<AlertKind>,
    pub format: WebhookFormat,
    pub include_drill: bool,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    /// Deliveries still to send, and those given up.
    pub pending: i64,
    pub failed: i64,
}

/// `GET /api/v1/webhooks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet accepted by the receiver; sent (again) at `next_attempt_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up after the last attempt.
    Failed,
    /// The webhook was deleted before it was sent.
    Cancelled,
}

crate::names::named!(DeliveryState {
    Pending => "pending",
    Delivered => "delivered",
    Failed => "failed",
    Cancelled => "cancelled",
});

/// One attempt to send a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, when it answered.
    #[serde(default)]
    pub status: Option<u16>,
    /// Why it failed (a status other than 2xx, a timeout, a refused connection).
    #[serde(default)]
    pub error: Option<String>,
    /// The delay chosen before the next attempt (backoff with jitter); none after success or the
    /// last attempt.
    #[serde(default)]
    pub retry_in_ms: Option<u64>,
}

/// One alert change to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    /// Also the `Idempotency-Key` header of every attempt.
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    /// The alert change's place in the change log: deliveries of one webhook are sent in this order.
    pub seq: i64,
    pub alert_id: AlertId,
    pub event: AlertEvent,
    pub state: DeliveryState,
    pub attempts: i64,
    /// When it is sent next (pending only).
    #[serde(default)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_status: Option<u16>,
    #[serde(default)]
    pub last_error: Option<String>,
    pub history: Vec<Attempt>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub delivered_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/webhooks/{id}/deliveries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}
