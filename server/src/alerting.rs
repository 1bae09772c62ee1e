//! Where alerts come from: the rules that decide, in the transaction of the write that caused them,
//! which alert to raise or resolve. The storage (deduplication, acknowledgement, the change log) is
//! `db::alerts`.
//!
//! - A critical hazard (see `domain::is_critical`) raises `critical_hazard` the moment its report is
//!   applied; it resolves when the issue is closed (verified, rejected or a duplicate), and a reopened
//!   critical issue raises a new one. The reporter sees the alert, and so its acknowledgement, on
//!   their device (the receipt).
//! - A dispatch past its due time raises `dispatch_overdue`, and a report not accepted within the
//!   configured working time `issue_unaccepted` (both from the scheduled check, `checks`: only time
//!   makes them true). They resolve in the step that clears the cause ([`issue_changed`]): the issue
//!   resolved or closed, or dispatched again with another due time; accepted (or any other step out
//!   of `reported`). The check also resolves what no longer holds.
//! - A depot's item below its quota raises `stock_below_quota` in the transaction of the movement or
//!   stocktake that took it there, and resolves in the one that restores it ([`stock_moved`]); the
//!   scheduled check (`checks`) sweeps the same rule, for quotas changed without a movement.
//! - A duty lead declaring, changing or lifting a river's emergency response level raises
//!   `response_changed` (subject `river:<name>`, public: everyone on the bank must know), resolving
//!   the river's previous one ([`response_changed`]); declaring the level already in force changes
//!   nothing.
//! - A segment not covered within the interval in force raises `segment_overdue` from the scheduled
//!   check (`checks`, [`segment_overdue_alert`]); it resolves as soon as a covering patrol's points
//!   arrive ([`resolve_if_covered`], from `coverage::record_summaries`).
//! - A station's stage change raises `stage_changed` ([`stage_alert`]) and a rapid rise
//!   `rapid_rise` ([`rise_alert`]), decided by the flood watch (`flood::ingest`) as it folds the
//!   readings; a lot past or near its date raises `lot_expiring` ([`lot_expiring_alert`]) from the
//!   scheduled check (`checks`), which resolves it when the lot is no longer listed.

use crate::db::alerts::{self, NewAlert};
use crate::db::flood::Station;
use crate::db::{self, Conn, QueryResult};
use chrono::{DateTime, Duration, Utc};
use riverchief_shared::alert::{AlertKind, AlertLevel, Subject};
use riverchief_shared::coverage::{is_overdue, CoverageSummary, FloodStage};
use riverchief_shared::domain::Segment;
use riverchief_shared::domain::{local_minutes, Issue, IssueStatus, Outflow};
use riverchief_shared::flood::{Reading, RiseRules, StagedReading};
use riverchief_shared::id::{DepotId, ItemId};
use serde_json::json;

/// The code of an issue's segment (its id if the segment is gone).
fn segment_code(conn: &mut Conn, issue: &Issue) -> QueryResult<String> {
    Ok(db::segments::by_id(conn, issue.segment_id)?
        .map_or_else(|| issue.segment_id.to_string(), |s| s.properties.code))
}

fn issue_level(issue: &Issue) -> AlertLevel {
    if issue.critical {
        AlertLevel::Critical
    } else {
        AlertLevel::Warning
    }
}

/// `segment_overdue` for a segment not covered within the interval in force at `now`: seen by duty
/// leads, admins and the segment's patrollers.
pub fn segment_overdue_alert(
    segment: &Segment,
    summary: &CoverageSummary,
    now: DateTime<Utc>,
) -> NewAlert {
    let p = &segment.properties;
    let since = summary.last_covered.map_or_else(
        || "从未巡查".to_owned(),
        |t| format!("上次巡查 {}", riverchief_shared::domain::local_minutes(t)),
    );
    let since_en = summary.last_covered.map_or_else(
        || "never walked".to_owned(),
        |t| {
            format!(
                "last walked {}",
                riverchief_shared::domain::local_minutes(t)
            )
        },
    );
    NewAlert {
        kind: AlertKind::SegmentOverdue,
        subject: Subject::Segment(p.id).to_string(),
        drill: false,
        level: AlertLevel::Warning,
        message: format!(
            "{} {} 超过 {} 分钟未巡查（{since}）",
            p.code, p.name, summary.interval_minutes
        ),
        message_en: format!(
            "{} overdue: not covered within {} minutes ({since_en})",
            p.code, summary.interval_minutes
        ),
        segment_id: Some(p.id),
        issue_id: None,
        station: p.gauge_station.clone(),
        owner: None,
        public: false,
        details: json!({
            "stage": summary.stage,
            "interval_minutes": summary.interval_minutes,
            "last_covered": summary.last_covered,
            "due_at": summary.due_at,
            "checked_at": now,
        }),
    }
}

/// Resolves a segment's overdue alert when its summary says it is covered within the interval at
/// `now` (called as a covering patrol's points arrive).
pub fn resolve_if_covered(
    conn: &mut Conn,
    summary: &CoverageSummary,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    let interval = Duration::minutes(summary.interval_minutes);
    if !is_overdue(summary.last_covered, interval, now) {
        alerts::resolve(
            conn,
            AlertKind::SegmentOverdue,
            &Subject::Segment(summary.segment_id).to_string(),
            false,
            now,
        )?;
    }
    Ok(())
}

fn stage_zh(s: FloodStage) -> &'static str {
    match s {
        FloodStage::Normal => "正常",
        FloodStage::Watch => "设防",
        FloodStage::Warning => "警戒",
        FloodStage::Guarantee => "保证",
    }
}

fn drill_marks(drill: bool) -> (&'static str, &'static str) {
    if drill {
        ("【演练】", "[DRILL] ")
    } else {
        ("", "")
    }
}

/// `stage_changed` for a station's stage moving from `from` to `to` at the reading `r` (a drill's
/// is marked as one): public, everyone on the bank must know.
pub fn stage_alert(
    station: &Station,
    drill: bool,
    from: FloodStage,
    to: FloodStage,
    r: &Reading,
) -> NewAlert {
    let (zh, en) = drill_marks(drill);
    let up = to > from;
    let threshold = station.thresholds.of(if up { to } else { from });
    let level = match to {
        FloodStage::Guarantee => AlertLevel::Critical,
        FloodStage::Warning => AlertLevel::Warning,
        FloodStage::Watch | FloodStage::Normal => AlertLevel::Info,
    };
    let (verb_zh, verb_en) = if up {
        ("升至", "rose to")
    } else {
        ("回落至", "fell back to")
    };
    NewAlert {
        kind: AlertKind::StageChanged,
        subject: Subject::Station(&station.code).to_string(),
        drill,
        level,
        message: format!(
            "{zh}{}水位 {:.2} m，{verb_zh}{}（{}）",
            station.name,
            r.level_m,
            stage_zh(to),
            riverchief_shared::domain::local_minutes(r.observed_at)
        ),
        message_en: format!(
            "{en}{} at {:.2} m {verb_en} {} ({})",
            station.name_en.as_deref().unwrap_or(&station.code),
            r.level_m,
            to.as_str(),
            riverchief_shared::domain::local_minutes(r.observed_at)
        ),
        segment_id: None,
        issue_id: None,
        station: Some(station.code.clone()),
        owner: None,
        public: true,
        details: json!({
            "from": from,
            "to": to,
            "level_m": r.level_m,
            "observed_at": r.observed_at,
            "threshold_m": threshold,
        }),
    }
}

/// `rapid_rise` for a station whose level rose faster than `rules` allow by the reading `r`.
pub fn rise_alert(
    station: &Station,
    drill: bool,
    rules: &RiseRules,
    r: &StagedReading,
) -> NewAlert {
    let (zh, en) = drill_marks(drill);
    let hours = rules.window.num_minutes() as f64 / 60.0;
    NewAlert {
        kind: AlertKind::RapidRise,
        subject: Subject::Station(&station.code).to_string(),
        drill,
        level: AlertLevel::Warning,
        message: format!(
            "{zh}{}水位快速上涨：{hours} 小时内上涨 {:.2} m，现 {:.2} m",
            station.name, r.rise_m, r.reading.level_m
        ),
        message_en: format!(
            "{en}{} rising fast: {:.2} m in {hours} h, now {:.2} m",
            station.name_en.as_deref().unwrap_or(&station.code),
            r.rise_m,
            r.reading.level_m
        ),
        segment_id: None,
        issue_id: None,
        station: Some(station.code.clone()),
        owner: None,
        public: true,
        details: json!({
            "rise_m": r.rise_m,
            "window_minutes": rules.window.num_minutes(),
            "threshold_m": rules.threshold_m,
            "level_m": r.reading.level_m,
            "observed_at": r.reading.observed_at,
        }),
    }
}

/// `lot_expiring` for a lot of `line` past or near its date at `now` (a warning once past).
pub fn lot_expiring_alert(
    line: &riverchief_shared::api::StockLine,
    lot: &riverchief_shared::api::LotView,
    subject: String,
    now: DateTime<Utc>,
) -> NewAlert {
    let date = lot.expires_on.clone().unwrap_or_default();
    let past = date.as_str() < now.format("%Y-%m-%d").to_string().as_str();
    NewAlert {
        kind: AlertKind::LotExpiring,
        subject,
        drill: false,
        level: if past {
            AlertLevel::Warning
        } else {
            AlertLevel::Info
        },
        message: format!(
            "{} {}（{} {}）{}：{date}",
            line.depot,
            line.item_name,
            lot.quantity,
            line.unit,
            if past {
                "已过期或到检"
            } else {
                "即将到期"
            }
        ),
        message_en: format!(
            "{} {} lot of {} {} {} {date}",
            line.depot,
            line.item,
            lot.quantity,
            line.unit,
            if past { "expired on" } else { "expires on" }
        ),
        segment_id: None,
        issue_id: None,
        station: None,
        owner: None,
        public: false,
        details: json!({
            "depot": line.depot,
            "item": line.item,
            "lot_id": lot.id,
            "quantity": lot.quantity,
            "expires_on": lot.expires_on,
        }),
    }
}

/// The due time an open `dispatch_overdue` alert was raised for.
pub fn overdue_alert_due(alert: &riverchief_shared::alert::Alert) -> Option<DateTime<Utc>> {
    serde_json::from_value(alert.details["due_at"].clone()).ok()
}

/// `dispatch_overdue` for an issue whose dispatch was due at `due_at`: seen by duty leads, admins,
/// the assignee and the patrollers of its segment.
pub fn dispatch_overdue_alert(
    conn: &mut Conn,
    issue: &Issue,
    due_at: DateTime<Utc>,
) -> QueryResult<NewAlert> {
    let code = segment_code(conn, issue)?;
    let due = local_minutes(due_at);
    Ok(NewAlert {
        kind: AlertKind::DispatchOverdue,
        subject: Subject::Issue(issue.id).to_string(),
        drill: false,
        level: issue_level(issue),
        message: format!(
            "派遣逾期：{code} {} {}，应于 {due}（北京时间）前处理完毕，仍未办结",
            issue.chainage, issue.category_zh
        ),
        message_en: format!(
            "Dispatch overdue: {code} {} {}, due {due} (Beijing time), not yet resolved",
            issue.chainage, issue.category_en
        ),
        segment_id: Some(issue.segment_id),
        issue_id: Some(issue.id),
        station: None,
        owner: issue.assignee,
        public: false,
        details: json!({
            "issue_id": issue.id,
            "due_at": due_at,
            "assignee": issue.assignee,
            "status": issue.status,
            "category": issue.category,
            "severity": issue.severity,
            "chainage": issue.chainage,
        }),
    })
}

/// `issue_unaccepted` for a report that should have been accepted by `accept_by`: seen by duty
/// leads, admins and the patrollers of its segment.
pub fn unaccepted_alert(
    conn: &mut Conn,
    issue: &Issue,
    accept_by: DateTime<Utc>,
) -> QueryResult<NewAlert> {
    let code = segment_code(conn, issue)?;
    let reported = local_minutes(issue.reported_at);
    let by = local_minutes(accept_by);
    Ok(NewAlert {
        kind: AlertKind::IssueUnaccepted,
        subject: Subject::Issue(issue.id).to_string(),
        drill: false,
        level: issue_level(issue),
        message: format!(
            "受理超时：{code} {} {}，{reported}（北京时间）上报，应于 {by} 前受理，仍未受理",
            issue.chainage, issue.category_zh
        ),
        message_en: format!(
            "Not accepted in time: {code} {} {}, reported {reported} (Beijing time), to be \
             accepted by {by}",
            issue.chainage, issue.category_en
        ),
        segment_id: Some(issue.segment_id),
        issue_id: Some(issue.id),
        station: None,
        owner: None,
        public: false,
        details: json!({
            "issue_id": issue.id,
            "reported_at": issue.reported_at,
            "recorded_at": issue.recorded_at,
            "accept_by": accept_by,
            "assignee": issue.assignee,
            "category": issue.category,
            "severity": issue.severity,
            "chainage": issue.chainage,
        }),
    })
}

fn hazard_alert(conn: &mut Conn, issue: &Issue) -> QueryResult<NewAlert> {
    let code = segment_code(conn, issue)?;
    let (outflow_zh, outflow_en) = match issue.outflow {
        Some(Outflow::Muddy) => ("（浑水）", " (muddy)"),
        Some(Outflow::Clear) => ("（清水）", " (clear)"),
        None => ("", ""),
    };
    Ok(NewAlert {
        kind: AlertKind::CriticalHazard,
        subject: Subject::Issue(issue.id).to_string(),
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
/// `critical_hazard` alert, and resolves its `dispatch_overdue` (no longer dispatched or in
/// progress, or dispatched again with another due time) and `issue_unaccepted` (no longer
/// `reported`) when the step cleared their cause.
pub fn issue_changed(conn: &mut Conn, issue: &Issue, now: DateTime<Utc>) -> QueryResult<()> {
    let subject = Subject::Issue(issue.id).to_string();
    if let Some(open) = alerts::open_alert(conn, AlertKind::DispatchOverdue, &subject, false)? {
        let still_late = matches!(
            issue.status,
            IssueStatus::Dispatched | IssueStatus::InProgress
        ) && issue.due_at.is_some()
            && issue.due_at == overdue_alert_due(&open);
        if !still_late {
            alerts::resolve(conn, AlertKind::DispatchOverdue, &subject, false, now)?;
        }
    }
    if issue.status != IssueStatus::Reported
        && alerts::open_alert(conn, AlertKind::IssueUnaccepted, &subject, false)?.is_some()
    {
        alerts::resolve(conn, AlertKind::IssueUnaccepted, &subject, false, now)?;
    }
    if !issue.critical {
        return Ok(());
    }
    if issue.status.is_closed() {
        alerts::resolve(conn, AlertKind::CriticalHazard, &subject, false, now)?;
    } else if issue.status == IssueStatus::Reported {
        let new = hazard_alert(conn, issue)?;
        alerts::raise(conn, &new, now)?;
    }
    Ok(())
}

/// Raises `stock_below_quota` for a depot's item holding less than its quota, resolves it when the
/// quota is met again. Answers whether it is below quota.
pub fn stock_line_changed(
    conn: &mut Conn,
    line: &riverchief_shared::api::StockLine,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let subject = Subject::Stock {
        depot: &line.depot,
        item: &line.item,
    }
    .to_string();
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
    depot_id: &DepotId,
    item_id: &ItemId,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    if let Some(line) = db::stock::line(conn, depot_id, item_id)? {
        stock_line_changed(conn, &line, now)?;
    }
    Ok(())
}

/// After a duty lead declared (`Some`) or lifted (`None`) a river's response, in the same transaction,
/// given the level in force before: raises the river's new `response_changed` and resolves the old.
pub fn response_changed(
    conn: &mut Conn,
    river: &str,
    before: Option<riverchief_shared::flood::ResponseLevel>,
    after: Option<riverchief_shared::flood::ResponseLevel>,
    by_name: &str,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    use riverchief_shared::flood::ResponseLevel as R;
    if before == after {
        return Ok(());
    }
    let subject = Subject::River(river).to_string();
    alerts::resolve(conn, AlertKind::ResponseChanged, &subject, false, now)?;
    let (level, message, message_en) = match after {
        Some(l) => (
            if matches!(l, R::I | R::II) {
                AlertLevel::Critical
            } else {
                AlertLevel::Warning
            },
            format!(
                "{river}启动防汛{}级（{}）应急响应（{by_name}）",
                l.as_str(),
                l.colour_zh()
            ),
            format!(
                "{river}: flood emergency response level {} declared ({by_name})",
                l.as_str()
            ),
        ),
        None => (
            AlertLevel::Info,
            format!("{river}解除防汛应急响应（{by_name}）"),
            format!("{river}: flood emergency response lifted ({by_name})"),
        ),
    };
    let new = NewAlert {
        kind: AlertKind::ResponseChanged,
        subject,
        drill: false,
        level,
        message,
        message_en,
        segment_id: None,
        issue_id: None,
        station: None,
        owner: None,
        public: true,
        details: json!({
            "river": river,
            "from": before.map(|l| l.as_str()),
            "to": after.map(|l| l.as_str()),
            "declared_by": by_name,
            "declared_at": now,
        }),
    };
    alerts::raise(conn, &new, now)?;
    Ok(())
}
