//! Time-based checks: segments overdue for the interval in force, dispatches past their due time,
//! reports not accepted within the working time allowed (`Settings::accept_within`), lots past or
//! near their date, and (as a sweep behind the per-movement rule) stock below quota.
//!
//! [`run`] takes `now` as a parameter: the scheduler ([`spawn`]) passes the clock, tests pass their
//! own. It runs in one write transaction and only raises and resolves, both idempotent (`raise` is an
//! insert-or-ignore on the open-alert key; `resolve` takes the change-log lock before it looks), so
//! several instances running it at once raise each alert once and need no lock of their own.
//! An open overdue alert raised under another interval is resolved and raised afresh (the stage
//! changed: what it says must be what is required now); likewise an open `dispatch_overdue` raised for
//! another due time (the issue was dispatched again). Drills do not make segments overdue: only
//! real stages set intervals.

use crate::alerting;
use crate::coverage::{self, Policy};
use crate::db::alerts;
use crate::db::{self, Conn, QueryResult};
use chrono::{DateTime, Duration, Utc};
use riverchief_shared::alert::{AlertKind, Subject};
use riverchief_shared::coverage::is_overdue;
use std::collections::BTreeSet;

/// The scheduled check's schedule and rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How often it runs; `None`: never (tests call [`run`] with their own clock).
    pub period: Option<std::time::Duration>,
    /// Lots whose date falls within this many days are `lot_expiring` (and `GET /stock` lists them).
    pub expiring_within_days: i64,
    /// How long a report may wait to be accepted (working time) before `issue_unaccepted`; the issue
    /// lists judge their escalations by the same value.
    pub accept_within: chrono::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            period: None,
            expiring_within_days: 60,
            accept_within: db::issues::default_accept_within(),
        }
    }
}

/// What a check did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Segments found overdue (alert raised now or already open).
    pub overdue: usize,
    pub lots_expiring: usize,
    pub below_quota: usize,
    /// Issues dispatched and past their due time (alert raised now or already open).
    pub dispatches_overdue: usize,
    /// Reports not accepted in time (alert raised now or already open).
    pub unaccepted: usize,
    /// Drills ended because their replay died (see `drill::sweep_dead`).
    pub drills_ended: usize,
}

/// Raises `segment_overdue` for every segment whose last covering patrol is older than the interval
/// in force at `now` (or that was never covered) and resolves it for the others; raises
/// `dispatch_overdue` and `issue_unaccepted` for the issues late at `now` (see [`issues`]),
/// resolving those no longer so; raises `lot_expiring` for lots whose date has passed or falls
/// within the window, resolving those no longer so; and sweeps `stock_below_quota`. In one write
/// transaction.
pub fn run(
    conn: &mut Conn,
    policy: &Policy,
    settings: &Settings,
    now: DateTime<Utc>,
) -> QueryResult<Report> {
    db::write_transaction(conn, |conn| {
        let mut report = Report::default();
        for segment in db::segments::all(conn)? {
            let summary = coverage::summary(conn, policy, &segment)?;
            let interval = Duration::minutes(summary.interval_minutes);
            if is_overdue(summary.last_covered, interval, now) {
                // An alert raised under another interval (the stage changed since) is replaced,
                // so that what it says is what is required now.
                let subject = Subject::Segment(segment.properties.id).to_string();
                let stale = alerts::open_alert(conn, AlertKind::SegmentOverdue, &subject, false)?
                    .is_some_and(|a| {
                        a.details["interval_minutes"].as_i64() != Some(summary.interval_minutes)
                    });
                if stale {
                    alerts::resolve(conn, AlertKind::SegmentOverdue, &subject, false, now)?;
                }
                alerts::raise(
                    conn,
                    &alerting::segment_overdue_alert(&segment, &summary, now),
                    now,
                )?;
                report.overdue += 1;
            } else {
                alerting::resolve_if_covered(conn, &summary, now)?;
            }
        }
        report.drills_ended = crate::drill::sweep_dead(conn, now)?;
        let (late, unaccepted) = issues(conn, settings, now)?;
        report.dispatches_overdue = late;
        report.unaccepted = unaccepted;
        let by = (now + Duration::days(settings.expiring_within_days))
            .format("%Y-%m-%d")
            .to_string();
        let lines = db::stock::view(conn, &by)?;
        let mut expiring = BTreeSet::new();
        for line in &lines {
            for lot in &line.lots_expiring {
                let subject = Subject::Lot(lot.id).to_string();
                expiring.insert(subject.clone());
                alerts::raise(
                    conn,
                    &alerting::lot_expiring_alert(line, lot, subject, now),
                    now,
                )?;
                report.lots_expiring += 1;
            }
        }
        for open in alerts::unresolved_of_kind(conn, AlertKind::LotExpiring, false)? {
            if !expiring.contains(&open.subject) {
                alerts::resolve(conn, AlertKind::LotExpiring, &open.subject, false, now)?;
            }
        }
        for line in &lines {
            if crate::alerting::stock_line_changed(conn, line, now)? {
                report.below_quota += 1;
            }
        }
        Ok(report)
    })
}

/// The issue deadlines of [`run`], in its transaction: answers how many dispatches are overdue and
/// how many reports are unaccepted at `now`.
fn issues(conn: &mut Conn, settings: &Settings, now: DateTime<Utc>) -> QueryResult<(usize, usize)> {
    let mut late = BTreeSet::new();
    for d in db::issues::overdue_dispatches(conn, now)? {
        let subject = Subject::Issue(d.issue_id).to_string();
        late.insert(subject.clone());
        if let Some(open) = alerts::open_alert(conn, AlertKind::DispatchOverdue, &subject, false)? {
            if alerting::overdue_alert_due(&open) == Some(d.due_at) {
                continue;
            }
            // Raised for an earlier dispatch: what it says must be the due time now.
            alerts::resolve(conn, AlertKind::DispatchOverdue, &subject, false, now)?;
        }
        if let Some(issue) = db::issues::view(conn, d.issue_id, now)? {
            let new = alerting::dispatch_overdue_alert(conn, &issue, d.due_at)?;
            alerts::raise(conn, &new, now)?;
        }
    }
    for open in alerts::unresolved_of_kind(conn, AlertKind::DispatchOverdue, false)? {
        if !late.contains(&open.subject) {
            alerts::resolve(conn, AlertKind::DispatchOverdue, &open.subject, false, now)?;
        }
    }
    let mut waiting = BTreeSet::new();
    for e in db::issues::unaccepted_escalations(conn, now, settings.accept_within)? {
        let subject = Subject::Issue(e.issue_id).to_string();
        waiting.insert(subject.clone());
        if alerts::open_alert(conn, AlertKind::IssueUnaccepted, &subject, false)?.is_some() {
            continue;
        }
        if let Some(issue) = db::issues::view(conn, e.issue_id, now)? {
            let new = alerting::unaccepted_alert(conn, &issue, e.accept_by)?;
            alerts::raise(conn, &new, now)?;
        }
    }
    for open in alerts::unresolved_of_kind(conn, AlertKind::IssueUnaccepted, false)? {
        if !waiting.contains(&open.subject) {
            alerts::resolve(conn, AlertKind::IssueUnaccepted, &open.subject, false, now)?;
        }
    }
    Ok((late.len(), waiting.len()))
}
