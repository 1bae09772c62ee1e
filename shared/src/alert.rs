//! Alerts: what the server raises when something needs a person's attention, on every channel (pull,
//! `GET /alerts`, the live stream, webhooks) in the one shape [`Alert`].
//!
//! An alert is about a *subject* (a station, a segment, an issue, a depot's item, a lot). While an
//! alert of a kind is open for a subject no second one is raised: the pair (kind, subject) is the
//! deduplication key, separately for real alerts and drill alerts, which never mix. An alert is
//! acknowledged by a duty lead (who, when) and resolved when its cause clears; a resolved alert is
//! history, and the next occurrence raises a new one.

use crate::id::{AlertId, IssueId, LotId, SegmentId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A station's flood stage changed (up or down).
    StageChanged,
    /// A station's level rose fast.
    RapidRise,
    /// Nobody covered a segment within the interval in force.
    SegmentOverdue,
    /// A critical hazard was reported (leak, slide, overtopping, muddy piping, or any major severity).
    CriticalHazard,
    /// A depot holds less of an item than its quota.
    StockBelowQuota,
    /// A lot is past (or near) its expiry or next-inspection date.
    LotExpiring,
    /// An issue dispatched with a due time that passed before it was resolved or closed.
    DispatchOverdue,
    /// A report still not accepted after the configured working time (an escalation).
    IssueUnaccepted,
    /// A duty lead declared, changed or lifted a river's emergency response level.
    ResponseChanged,
}

crate::names::named!(AlertKind {
    StageChanged => "stage_changed",
    RapidRise => "rapid_rise",
    SegmentOverdue => "segment_overdue",
    CriticalHazard => "critical_hazard",
    StockBelowQuota => "stock_below_quota",
    LotExpiring => "lot_expiring",
    DispatchOverdue => "dispatch_overdue",
    IssueUnaccepted => "issue_unaccepted",
    ResponseChanged => "response_changed",
});

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    Info,
    Warning,
    Critical,
}

crate::names::named!(AlertLevel {
    Info => "info",
    Warning => "warning",
    Critical => "critical",
});

/// Where an alert is in its life: open, then acknowledged by a duty lead; resolved when the cause
/// clears (acknowledged or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Open,
    Acknowledged,
    Resolved,
}

crate::names::named!(AlertState {
    Open => "open",
    Acknowledged => "acknowledged",
    Resolved => "resolved",
});

/// What an alert is about; with its kind and drill flag, the deduplication key. Stored and sent as
/// `"<type>:<key>"` (its `Display`, the one place that text is made): `station:DONGSHAN`,
/// `segment:<id>`, `issue:<id>`, `stock:<depot code>/<item code>`, `lot:<id>`, `river:<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A gauge station, by code (stage and rise alerts).
    Station(&'a str),
    /// A segment (overdue).
    Segment(SegmentId),
    /// An issue (critical hazard, dispatch overdue, not accepted in time).
    Issue(IssueId),
    /// A depot's item, by their codes (below quota).
    Stock { depot: &'a str, item: &'a str },
    /// A lot (expiring).
    Lot(LotId),
    /// A river (its emergency response level).
    River(&'a str),
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Station(code) => write!(f, "station:{code}"),
            Subject::Segment(id) => write!(f, "segment:{id}"),
            Subject::Issue(id) => write!(f, "issue:{id}"),
            Subject::Stock { depot, item } => write!(f, "stock:{depot}/{item}"),
            Subject::Lot(id) => write!(f, "lot:{id}"),
            Subject::River(name) => write!(f, "river:{name}"),
        }
    }
}

/// An alert as every channel carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    pub id: AlertId,
    pub kind: AlertKind,
    /// What it is about: a [`Subject`] as text. With `kind` and `drill`, the deduplication key.
    pub subject: String,
    pub state: AlertState,
    pub level: AlertLevel,
    /// Raised by a drill: shown as a drill everywhere, and never counted as a real alert.
    pub drill: bool,
    /// What happened, in Chinese (what the duty lead and the community's group chat read).
    pub message: String,
    pub message_en: String,
    #[serde(default)]
    pub segment_id: Option<SegmentId>,
    #[serde(default)]
    pub issue_id: Option<IssueId>,
    /// The gauge station's code, for stage and rise alerts.
    #[serde(default)]
    pub station: Option<String>,
    /// Kind-specific facts (levels, thresholds, times, quantities).
    #[serde(default)]
    pub details: Value,
    pub raised_at: DateTime<Utc>,
    /// The last change of state (raised, acknowledged or resolved).
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub acknowledged_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub acknowledged_by: Option<UserId>,
    #[serde(default)]
    pub acknowledged_by_name: Option<String>,
    #[serde(default)]
    pub resolved_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertList {
    pub alerts: Vec<Alert>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in AlertKind::ALL {
            assert_eq!(AlertKind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                Value::String(k.as_str().into())
            );
        }
        for s in [
            AlertState::Open,
            AlertState::Acknowledged,
            AlertState::Resolved,
        ] {
            assert_eq!(AlertState::parse(s.as_str()), Some(s));
        }
        assert_eq!(AlertLevel::parse("critical"), Some(AlertLevel::Critical));
        assert_eq!(AlertKind::parse("nope"), None);
    }
}
