//! Where alerts come from: the rules that decide, in the transaction of the write that caused them,
//! which alert to raise or resolve. The storage (deduplication, acknowledgement, the change log) is
//! `db::alerts`.
//!
//! - A critical hazard (see `domain::is_critical`) raises `critical_hazard` the moment its report is
//!   applied; it resolves when the issue is closed (verified, rejected or a duplicate), and a reopened
//!   critical issue raises a new one. The reporter sees the alert, and so its acknowledgement, on
//!   their device (the receipt).
//! - A depot's item below its quota raises `stock_below_quota` in the transaction of the movement or
//!   stocktake that took it there, and resolves in the one that restores it ([`stock_moved`]); the
//!   scheduled check (`checks`) sweeps the same rule, for quotas changed without a movement.
//! - Stage changes and rapid rises are raised by the flood watch (`flood`), overdue segments and
//!   expiring lots by the scheduled check (`checks`).

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

/// The subject of a depot's item: `stock:<depot code>/<item code>`.
pub fn stock_subject(depot: &str, item: &str) -> String {
    format!("stock:{depot}/{item}")
}

/// Raises `stock_below_quota` for a depot's item holding less than its quota, resolves it when the
/// quota is met again. Answers whether it is below quota.
pub fn stock_line_changed(
    conn: &mut Conn,
    line: &riverchief_shared::api::StockLine,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let subject = stock_subject(&line.depot, &line.item);
    if line.on_hand >= line.quota {
        // Looked up before locking: the usual movement (stock at or above quota, no alert) then
        // takes no change-log lock. A concurrent movement of the same item that raised one has
        // committed by now: it held the balance row this movement's update waited for.
        if alerts::open_alert(conn, AlertKind::StockBelowQuota, &subject, false)?.is_some() {
            alerts::resolve(conn, AlertKind::StockBelowQuota, &subject, false, now)?;
        }
        return Ok(false);
    }
    alerts::raise(
        conn,
        &NewAlert {
            kind: AlertKind::StockBelowQuota,
            subject,
            drill: false,
            level: AlertLevel::Warning,
            message: format!(
                "{} {} 库存 {} {}，低于定额 {}（缺 {}）",
                line.depot, line.item_name, line.on_hand, line.unit, line.quota, line.shortfall
            ),
            message_en: format!(
                "{} {}: {} {} on hand, below the quota of {} (short {})",
                line.depot, line.item, line.on_hand, line.unit, line.quota, line.shortfall
            ),
            segment_id: None,
            issue_id: None,
            station: None,
            owner: None,
            public: false,
            details: json!({
                "depot": line.depot,
                "item": line.item,
                "on_hand": line.on_hand,
                "quota": line.quota,
                "shortfall": line.shortfall,
            }),
        },
        now,
    )?;
    Ok(true)
}

/// After a stock movement (in its transaction): raises or resolves the item's `stock_below_quota`.
pub fn stock_moved(
    conn: &mut Conn,
    depot_id: &str,
    item_id: &str,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    // No lots wanted here: a date no lot is on or before.
    let lines = db::stock::view(conn, "0000-00-00")?;
    if let Some(line) = lines
        .iter()
        .find(|l| l.depot_id == depot_id && l.item_id == item_id)
    {
        stock_line_changed(conn, line, now)?;
    }
    Ok(())
}
