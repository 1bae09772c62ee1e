//! Where alerts come from: the rules that decide, in the transaction of the write that caused them,
//! which alert to raise or resolve. The storage (deduplication, acknowledgement, the change log) is
//! `db::alerts`.
//!
//! - A critical hazard (see `domain::is_critical`) raises `critical_hazard` the moment its report is
//!   applied; it resolves when the issue is closed (verified, rejected or a duplicate), and a reopened
//!   critical issue raises a new one. The reporter sees the alert, and so its acknowledgement, on
//!   their device (the receipt).

use crate::db::alerts::{self, NewAlert};
use crate::db::{self, Conn, QueryResult};
use chrono::{DateTime, Utc};
use riverchief_shared::alert::{AlertKind, AlertLevel};
use riverchief_shared::domain::{Issue, IssueStatus, Outflow};
use serde_json::json;

/// The subject of an issue's alerts.
pub fn issue_subject(issue: &Issue) -> String {
    format!("issue:{}", issue.id)
}

fn hazard_alert(conn: &mut Conn, issue: &Issue) -> QueryResult<NewAlert> {
    let segment = db::segments::by_id(conn, issue.segment_id)?;
    let code = segment.as_ref().map_or_else(
        || issue.segment_id.to_string(),
        |s| s.properties.code.clone(),
    );
    let (outflow_zh, outflow_en) = match issue.outflow {
        Some(Outflow::Muddy) => ("（浑水）", " (muddy)"),
        Some(Outflow::Clear) => ("（清水）", " (clear)"),
        None => ("", ""),
    };
    Ok(NewAlert {
        kind: AlertKind::CriticalHazard,
        subject: issue_subject(issue),
        drill: false,
        level: AlertLevel::Critical,
        message: format!(
            "险情：{code} {} {}{outflow_zh}",
            issue.chainage, issue.category_zh
        ),
        message_en: format!(
            "Hazard: {code} {} {}{outflow_en}",
            issue.chainage, issue.category_en
        ),
        segment_id: Some(issue.segment_id),
        issue_id: Some(issue.id),
        station: None,
        owner: Some(issue.reporter),
        public: false,
        details: json!({
            "category": issue.category,
            "severity": issue.severity,
            "outflow": issue.outflow,
            "chainage": issue.chainage,
            "lon": issue.location.lon,
            "lat": issue.location.lat,
            "reported_at": issue.reported_at,
            "reporter": issue.reporter,
        }),
    })
}

/// After an issue was reported or changed status (in the same transaction): raises or resolves its
/// `critical_hazard` alert.
pub fn issue_changed(conn: &mut Conn, issue: &Issue, now: DateTime<Utc>) -> QueryResult<()> {
    if !issue.critical {
        return Ok(());
    }
    if issue.status.is_closed() {
        alerts::resolve(
            conn,
            AlertKind::CriticalHazard,
            &issue_subject(issue),
            false,
            now,
        )?;
    } else if issue.status == IssueStatus::Reported {
        let new = hazard_alert(conn, issue)?;
        alerts::raise(conn, &new, now)?;
    }
    Ok(())
}
