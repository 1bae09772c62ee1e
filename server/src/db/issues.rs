//! Issues, their append-only history of events, and the photos each report and event expects.
//!
//! An issue is served whole ([`view`]): its row, its events in the order the server recorded them,
//! and every photo with whether its bytes have arrived (whether the digest is in `photos`). The
//! `reported` event reuses the issue's id, so the report's photos (`owner_id` = issue id) are that
//! event's photos. Whenever an issue changes, [`record_issue_change`] writes the whole view to the
//! change log, scoped to its reporter, its segment and its assignee.

use super::changes::{self, Audience};
use super::schema::{issue_events, issue_photos, issues, photos, user_segments};
use super::{parse_id, parse_ts, ts, Conn, QueryResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use riverchief_shared::domain::{
    add_working_time, Chainage, Issue, IssueCategory, IssueEvent, IssueEventKind, IssueStatus,
    Outflow, Role, Severity,
};
use riverchief_shared::geo::{Lat, Lon, Position};
use riverchief_shared::id::{IssueEventId, IssueId, PatrolId, SegmentId, UserId};
use riverchief_shared::photo::{PhotoRef, Sha256};
use riverchief_shared::sync::{ChangeEntity, ChangeOp};
use std::collections::{HashMap, HashSet};

/// How many ids go into one `IN (...)` list.
const CHUNK: usize = 500;

fn corrupt(msg: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(msg.into())
}

fn outflow_str(o: Outflow) -> &'static str {
    match o {
        Outflow::Clear => "clear",
        Outflow::Muddy => "muddy",
    }
}

fn parse_outflow(s: &str) -> Option<Outflow> {
    match s {
        "clear" => Some(Outflow::Clear),
        "muddy" => Some(Outflow::Muddy),
        _ => None,
    }
}

/// The event id of an issue's `reported` event: the issue's own id.
pub fn reported_event_id(issue: IssueId) -> IssueEventId {
    // An IssueId is a UUIDv7, so this cannot fail; the fallback only keeps the types honest.
    IssueEventId::from_uuid(*issue.as_uuid()).unwrap_or_default()
}

/// A new issue as the report made it.
pub struct NewIssue<'a> {
    pub id: IssueId,
    pub segment_id: SegmentId,
    pub patrol_id: Option<PatrolId>,
    pub reporter: UserId,
    pub location: Position,
    pub chainage_m: f64,
    pub category: IssueCategory,
    pub severity: Severity,
    pub outflow: Option<Outflow>,
    pub critical: bool,
    pub description: &'a str,
    pub reported_at: DateTime<Utc>,
}

/// Records a new report, received at `now`.
pub fn insert(conn: &mut Conn, issue: &NewIssue<'_>, now: DateTime<Utc>) -> QueryResult<()> {
    let now = ts(now);
    diesel::insert_into(issues::table)
        .values((
            issues::id.eq(issue.id.to_string()),
            issues::segment_id.eq(issue.segment_id.to_string()),
            issues::patrol_id.eq(issue.patrol_id.map(|p| p.to_string())),
            issues::reporter_id.eq(issue.reporter.to_string()),
            issues::lon.eq(issue.location.lon.get()),
            issues::lat.eq(issue.location.lat.get()),
            issues::chainage_m.eq(issue.chainage_m),
            issues::category.eq(issue.category.as_str()),
            issues::severity.eq(i64::from(u8::from(issue.severity))),
            issues::outflow.eq(issue.outflow.map(outflow_str)),
            issues::critical.eq(issue.critical),
            issues::description.eq(issue.description),
            issues::status.eq(IssueStatus::Reported.as_str()),
            issues::assignee_id.eq(None::<String>),
            issues::reported_at.eq(ts(issue.reported_at)),
            issues::recorded_at.eq(&now),
            issues::updated_at.eq(&now),
        ))
        .execute(conn)?;
    Ok(())
}

/// A new entry of an issue's history.
pub struct NewEvent<'a> {
    pub id: IssueEventId,
    pub issue_id: IssueId,
    pub kind: IssueEventKind,
    pub by: UserId,
    pub at: DateTime<Utc>,
    pub note: Option<&'a str>,
    pub assignee: Option<UserId>,
    pub duplicate_of: Option<IssueId>,
    pub due_at: Option<DateTime<Utc>>,
    /// Kept but not applied: why (see [`IssueEvent::rejected`]).
    pub rejected: Option<&'a str>,
}

/// Records an entry of an issue's history, received at `now`.
pub fn insert_event(conn: &mut Conn, event: &NewEvent<'_>, now: DateTime<Utc>) -> QueryResult<()> {
    diesel::insert_into(issue_events::table)
        .values((
            issue_events::id.eq(event.id.to_string()),
            issue_events::issue_id.eq(event.issue_id.to_string()),
            issue_events::kind.eq(event.kind.as_str()),
            issue_events::by_id.eq(event.by.to_string()),
            issue_events::at.eq(ts(event.at)),
            issue_events::recorded_at.eq(ts(now)),
            issue_events::note.eq(event.note),
            issue_events::assignee_id.eq(event.assignee.map(|u| u.to_string())),
            issue_events::duplicate_of.eq(event.duplicate_of.map(|i| i.to_string())),
            issue_events::due_at.eq(event.due_at.map(ts)),
            issue_events::rejected_reason.eq(event.rejected),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records the photos a report (`owner` = the issue id) or an event (`owner` = the event id) expects.
/// `list` must hold no repeats (the shared validation refuses them).
pub fn insert_photos(
    conn: &mut Conn,
    issue: IssueId,
    owner: &str,
    list: &[Sha256],
) -> QueryResult<()> {
    let rows: Vec<_> = list
        .iter()
        .zip(0i64..)
        .map(|(sha, position)| {
            (
                issue_photos::issue_id.eq(issue.to_string()),
                issue_photos::owner_id.eq(owner),
                issue_photos::sha256.eq(sha.hex()),
                issue_photos::position.eq(position),
            )
        })
        .collect();
    if !rows.is_empty() {
        super::execute_batch(conn, diesel::insert_into(issue_photos::table).values(&rows))?;
    }
    Ok(())
}

/// Of `list`, the photos whose bytes the server does not have yet, in the order given.
pub fn missing_photos(conn: &mut Conn, list: &[Sha256]) -> QueryResult<Vec<Sha256>> {
    let hexes: Vec<String> = list.iter().map(Sha256::hex).collect();
    let arrived = arrived_set(conn, &hexes)?;
    Ok(list
        .iter()
        .filter(|s| !arrived.contains(&s.hex()))
        .copied()
        .collect())
}

fn arrived_set(conn: &mut Conn, hexes: &[String]) -> QueryResult<HashSet<String>> {
    let mut out = HashSet::new();
    for chunk in hexes.chunks(CHUNK) {
        out.extend(
            photos::table
                .filter(photos::sha256.eq_any(chunk))
                .select(photos::sha256)
                .load::<String>(conn)?,
        );
    }
    Ok(out)
}

/// Sets the status after an event (at `now`). A dispatch (`dispatch` = `Some((assignee, due))`) also
/// sets the assignee and the due time.
pub fn set_status(
    conn: &mut Conn,
    id: IssueId,
    status: IssueStatus,
    dispatch: Option<(UserId, Option<DateTime<Utc>>)>,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    let target = issues::table.filter(issues::id.eq(id.to_string()));
    let now = ts(now);
    match dispatch {
        Some((a, due)) => diesel::update(target)
            .set((
                issues::status.eq(status.as_str()),
                issues::assignee_id.eq(a.to_string()),
                issues::due_at.eq(due.map(ts)),
                issues::updated_at.eq(now),
            ))
            .execute(conn)?,
        None => diesel::update(target)
            .set((
                issues::status.eq(status.as_str()),
                issues::updated_at.eq(now),
            ))
            .execute(conn)?,
    };
    Ok(())
}

/// A dispatch that won against another one: who sent whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RivalDispatch {
    pub event_id: IssueEventId,
    pub by: UserId,
    pub assignee: Option<UserId>,
}

/// An applied dispatch of the issue by someone other than `author`, recorded after the event
/// `based_on` (so taken without knowing of the other), that wins the tie-break against `event`: the
/// greater event id (a UUIDv7, so the decision taken later by its device's clock). `None` when
/// `based_on` is not an event of this issue.
pub fn winning_rival_dispatch(
    conn: &mut Conn,
    issue: IssueId,
    based_on: IssueEventId,
    author: UserId,
    event: IssueEventId,
) -> QueryResult<Option<RivalDispatch>> {
    let base: Option<String> = issue_events::table
        .filter(issue_events::id.eq(based_on.to_string()))
        .filter(issue_events::issue_id.eq(issue.to_string()))
        .select(issue_events::recorded_at)
        .first(conn)
        .optional()?;
    let Some(base) = base else {
        return Ok(None);
    };
    let row: Option<(String, String, Option<String>)> = issue_events::table
        .filter(issue_events::issue_id.eq(issue.to_string()))
        .filter(issue_events::kind.eq(IssueEventKind::Dispatched.as_str()))
        .filter(issue_events::rejected_reason.is_null())
        .filter(issue_events::recorded_at.gt(base))
        .filter(issue_events::by_id.ne(author.to_string()))
        .filter(issue_events::id.gt(event.to_string()))
        .select((
            issue_events::id,
            issue_events::by_id,
            issue_events::assignee_id,
        ))
        .order(issue_events::id.desc())
        .first(conn)
        .optional()?;
    row.map(|(id, by, assignee)| {
        Ok(RivalDispatch {
            event_id: parse_id(&id)?,
            by: parse_id(&by)?,
            assignee: assignee.as_deref().map(parse_id).transpose()?,
        })
    })
    .transpose()
}

/// Whether the issue was ever dispatched to `user` (by an applied dispatch).
pub fn was_dispatched_to(conn: &mut Conn, id: IssueId, user: UserId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        issue_events::table
            .filter(issue_events::issue_id.eq(id.to_string()))
            .filter(issue_events::kind.eq(IssueEventKind::Dispatched.as_str()))
            .filter(issue_events::assignee_id.eq(user.to_string()))
            .filter(issue_events::rejected_reason.is_null()),
    ))
    .get_result(conn)
}

/// What deciding who may see or act on an issue needs.
#[derive(Debug, Clone)]
pub struct IssueHead {
    pub id: IssueId,
    pub segment_id: SegmentId,
    pub reporter: UserId,
    pub status: IssueStatus,
    pub assignee: Option<UserId>,
}

pub fn head(conn: &mut Conn, id: IssueId) -> QueryResult<Option<IssueHead>> {
    let row: Option<(String, String, String, Option<String>)> = issues::table
        .filter(issues::id.eq(id.to_string()))
        .select((
            issues::segment_id,
            issues::reporter_id,
            issues::status,
            issues::assignee_id,
        ))
        .first(conn)
        .optional()?;
    let Some((segment, reporter, status, assignee)) = row else {
        return Ok(None);
    };
    Ok(Some(IssueHead {
        id,
        segment_id: parse_id(&segment)?,
        reporter: parse_id(&reporter)?,
        status: IssueStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("issue {id}: status {status:?}")))?,
        assignee: assignee.as_deref().map(parse_id).transpose()?,
    }))
}

pub fn exists(conn: &mut Conn, id: IssueId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        issues::table.filter(issues::id.eq(id.to_string())),
    ))
    .get_result(conn)
}

pub fn event_exists(conn: &mut Conn, id: IssueEventId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        issue_events::table.filter(issue_events::id.eq(id.to_string())),
    ))
    .get_result(conn)
}

/// Whether `viewer` may see the issue: duty leads and admins see everything; a patroller sees what
/// they reported, what is or was dispatched to them, and what lies on their segments.
pub fn visible_to(
    conn: &mut Conn,
    head: &IssueHead,
    viewer: UserId,
    role: Role,
) -> QueryResult<bool> {
    if role.sees_everything() || head.reporter == viewer || head.assignee == Some(viewer) {
        return Ok(true);
    }
    let on_my_segment = diesel::select(diesel::dsl::exists(
        user_segments::table
            .filter(user_segments::user_id.eq(viewer.to_string()))
            .filter(user_segments::segment_id.eq(head.segment_id.to_string())),
    ))
    .get_result(conn)?;
    // Work once sent to them stays theirs to see (and a late step of theirs is kept, not lost).
    Ok(on_my_segment || was_dispatched_to(conn, head.id, viewer)?)
}

/// Whether `viewer` may see the photo `sha`: duty leads and admins see every photo; anyone else sees a
/// photo they uploaded, and one that an issue visible to them ([`visible_to`]) lists on its report or
/// an event. Photos belong to issues only; one no visible issue lists is not theirs to see.
pub fn photo_visible_to(
    conn: &mut Conn,
    sha: &Sha256,
    viewer: UserId,
    role: Role,
) -> QueryResult<bool> {
    if role.sees_everything() {
        return Ok(true);
    }
    let uploaded: bool = diesel::select(diesel::dsl::exists(
        photos::table
            .filter(photos::sha256.eq(sha.hex()))
            .filter(photos::uploaded_by.eq(viewer.to_string())),
    ))
    .get_result(conn)?;
    if uploaded {
        return Ok(true);
    }
    let listing: Vec<String> = issue_photos::table
        .filter(issue_photos::sha256.eq(sha.hex()))
        .select(issue_photos::issue_id)
        .distinct()
        .load(conn)?;
    for id in listing {
        if let Some(head) = head(conn, parse_id(&id)?)? {
            if visible_to(conn, &head, viewer, role)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The issues that list this photo (by its hex digest) on their report or an event.
///
/// The caller records a change for each (a photo arrived), so this takes the change-log lock first:
/// a report expecting the photo either committed before (and is listed here) or commits after this
/// transaction, and then its own snapshot, taken under the same lock, sees the photo arrived.
pub fn issues_expecting_photo(conn: &mut Conn, sha: &str) -> QueryResult<Vec<IssueId>> {
    changes::lock(conn)?;
    issue_photos::table
        .filter(issue_photos::sha256.eq(sha))
        .select(issue_photos::issue_id)
        .distinct()
        .order(issue_photos::issue_id.asc())
        .load::<String>(conn)?
        .iter()
        .map(|s| parse_id(s))
        .collect()
}

/// Writes the issue as it now is to the change log, for its reporter, its segment's patrollers and
/// its assignee. Call it inside the transaction that changed the issue (or a photo it expects), as
/// late as you can. It takes the change-log lock before reading the issue, so the snapshot includes
/// everything that committed before it (a photo arriving meanwhile, say). Deadlines are judged at
/// `now`.
pub fn record_issue_change(
    conn: &mut Conn,
    id: IssueId,
    now: DateTime<Utc>,
) -> QueryResult<Option<Issue>> {
    record_issue_change_for(conn, id, None, now)
}

/// [`record_issue_change`], and the same change for `also` when they are neither the reporter nor
/// the assignee (the author of a rejected step on an issue that went to someone else).
pub fn record_issue_change_also(
    conn: &mut Conn,
    id: IssueId,
    also: UserId,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    record_issue_change_for(conn, id, Some(also), now).map(drop)
}

/// Records the issue as it now is; answers that snapshot (for the caller's alert rules), `None` when
/// there is no such issue.
fn record_issue_change_for(
    conn: &mut Conn,
    id: IssueId,
    also: Option<UserId>,
    now: DateTime<Utc>,
) -> QueryResult<Option<Issue>> {
    changes::lock(conn)?;
    let Some(issue) = view(conn, id, now)? else {
        return Ok(None);
    };
    let data = serde_json::to_value(&issue)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    changes::record(
        conn,
        ChangeEntity::Issue,
        &id.to_string(),
        ChangeOp::Upsert,
        &data,
        &Audience {
            public: false,
            owner: Some(issue.reporter),
            segment: Some(issue.segment_id),
            assignee: issue.assignee,
        },
    )?;
    if let Some(also) = also.filter(|a| *a != issue.reporter && Some(*a) != issue.assignee) {
        changes::record(
            conn,
            ChangeEntity::Issue,
            &id.to_string(),
            ChangeOp::Upsert,
            &data,
            &Audience {
                public: false,
                owner: Some(also),
                segment: None,
                assignee: None,
            },
        )?;
    }
    Ok(Some(issue))
}

/// How the server judges an issue's deadlines: the time to judge at, and how long a report may
/// wait to be accepted before it is escalated (counted in working time, see
/// [`riverchief_shared::domain::add_working_time`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub now: DateTime<Utc>,
    pub accept_within: chrono::Duration,
}

/// One working day: 24 hours of Monday-to-Friday time in Asia/Shanghai.
pub fn default_accept_within() -> chrono::Duration {
    chrono::Duration::hours(24)
}

impl Deadlines {
    /// Judged at `now`, with the default acceptance time.
    pub fn at(now: DateTime<Utc>) -> Deadlines {
        Deadlines {
            now,
            accept_within: default_accept_within(),
        }
    }

    /// When a report that reached the server at `recorded_at` must have been accepted.
    pub fn accept_by(&self, recorded_at: DateTime<Utc>) -> DateTime<Utc> {
        add_working_time(recorded_at, self.accept_within)
    }

    fn overdue(&self, status: IssueStatus, due_at: Option<DateTime<Utc>>) -> bool {
        matches!(status, IssueStatus::Dispatched | IssueStatus::InProgress)
            && due_at.is_some_and(|d| d < self.now)
    }

    fn escalated(&self, status: IssueStatus, recorded_at: DateTime<Utc>) -> bool {
        status == IssueStatus::Reported && self.accept_by(recorded_at) <= self.now
    }
}

/// An issue as stored (its columns, said once).
#[derive(Queryable, Selectable)]
#[diesel(table_name = issues)]
struct Row {
    id: String,
    segment_id: String,
    patrol_id: Option<String>,
    reporter_id: String,
    lon: f64,
    lat: f64,
    chainage_m: f64,
    category: String,
    severity: i64,
    outflow: Option<String>,
    critical: bool,
    description: String,
    status: String,
    assignee_id: Option<String>,
    reported_at: String,
    recorded_at: String,
    due_at: Option<String>,
}

/// An entry of an issue's history as stored.
#[derive(Queryable, Selectable)]
#[diesel(table_name = issue_events)]
struct EventRow {
    id: String,
    issue_id: String,
    kind: String,
    by_id: String,
    at: String,
    recorded_at: String,
    note: Option<String>,
    assignee_id: Option<String>,
    duplicate_of: Option<String>,
    due_at: Option<String>,
    rejected_reason: Option<String>,
}

/// One issue, whole: its events and its photos with their arrival; deadlines judged at `now`.
pub fn view(conn: &mut Conn, id: IssueId, now: DateTime<Utc>) -> QueryResult<Option<Issue>> {
    view_at(conn, id, &Deadlines::at(now))
}

/// [`view`], with deadlines judged by `deadlines`.
pub fn view_at(conn: &mut Conn, id: IssueId, deadlines: &Deadlines) -> QueryResult<Option<Issue>> {
    let rows: Vec<Row> = issues::table
        .filter(issues::id.eq(id.to_string()))
        .select(Row::as_select())
        .load(conn)?;
    Ok(assemble(conn, rows, deadlines)?.into_iter().next())
}

/// How a list is ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sort {
    /// Most severe first, then the oldest report first (what a duty lead works through).
    #[default]
    Severity,
    /// The newest report first.
    Newest,
}

/// What `GET /issues` may filter on. Empty lists mean "any".
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub statuses: Vec<IssueStatus>,
    pub segment: Option<SegmentId>,
    pub categories: Vec<IssueCategory>,
    pub severities: Vec<Severity>,
    pub reporter: Option<UserId>,
    pub assignee: Option<UserId>,
    /// Only overdue dispatches (`true`) or only the others (`false`).
    pub overdue: Option<bool>,
    /// Only escalated reports (`true`) or only the others (`false`).
    pub escalated: Option<bool>,
    /// `reported_at >= from`
    pub from: Option<DateTime<Utc>>,
    /// `reported_at < to`
    pub to: Option<DateTime<Utc>>,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct Page {
    pub issues: Vec<Issue>,
    /// How many issues match the filter in all.
    pub total: u64,
    /// The offset of the next page, when there is one.
    pub next_offset: Option<u64>,
}

/// The columns a list is filtered and sorted on, before whole issues are assembled for one page.
struct Brief {
    id: String,
    status: IssueStatus,
    severity: i64,
    reported_at: String,
    overdue: bool,
    escalated: bool,
}

/// The issues matching `filter` that `viewer` may see, in `sort` order, `limit` from `offset`.
#[allow(clippy::too_many_arguments)]
pub fn list(
    conn: &mut Conn,
    filter: &Filter,
    viewer: UserId,
    role: Role,
    deadlines: &Deadlines,
    sort: Sort,
    offset: u64,
    limit: u64,
) -> QueryResult<Page> {
    let mut briefs = matching(conn, filter, viewer, role, deadlines)?;
    match sort {
        Sort::Severity => briefs.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.reported_at.cmp(&b.reported_at))
                .then_with(|| a.id.cmp(&b.id))
        }),
        Sort::Newest => briefs.sort_by(|a, b| {
            b.reported_at
                .cmp(&a.reported_at)
                .then_with(|| b.id.cmp(&a.id))
        }),
    }
    let total = u64::try_from(briefs.len()).unwrap_or(u64::MAX);
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(briefs.len());
    let end = start
        .saturating_add(usize::try_from(limit).unwrap_or(usize::MAX))
        .min(briefs.len());
    let page_ids: Vec<String> = briefs[start..end].iter().map(|b| b.id.clone()).collect();
    let mut rows: Vec<Row> = Vec::new();
    for chunk in page_ids.chunks(CHUNK) {
        rows.extend(
            issues::table
                .filter(issues::id.eq_any(chunk))
                .select(Row::as_select())
                .load(conn)?,
        );
    }
    let position: HashMap<&str, usize> = page_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    rows.sort_by_key(|r| position.get(r.id.as_str()).copied().unwrap_or(usize::MAX));
    let issues = assemble(conn, rows, deadlines)?;
    let next_offset = (end < briefs.len()).then(|| u64::try_from(end).unwrap_or(u64::MAX));
    Ok(Page {
        issues,
        total,
        next_offset,
    })
}

/// How many issues matching `filter` that `viewer` may see are in each status (every status is
/// listed, zeros included).
pub fn counts(
    conn: &mut Conn,
    filter: &Filter,
    viewer: UserId,
    role: Role,
    deadlines: &Deadlines,
) -> QueryResult<Vec<(IssueStatus, u64)>> {
    let briefs = matching(conn, filter, viewer, role, deadlines)?;
    Ok(IssueStatus::ALL
        .into_iter()
        .map(|s| {
            let n = briefs.iter().filter(|b| b.status == s).count();
            (s, u64::try_from(n).unwrap_or(u64::MAX))
        })
        .collect())
}

fn matching(
    conn: &mut Conn,
    filter: &Filter,
    viewer: UserId,
    role: Role,
    deadlines: &Deadlines,
) -> QueryResult<Vec<Brief>> {
    let mut query = issues::table
        .select((
            issues::id,
            issues::status,
            issues::severity,
            issues::reported_at,
            issues::recorded_at,
            issues::due_at,
        ))
        .into_boxed();
    if !filter.statuses.is_empty() {
        query = query.filter(
            issues::status.eq_any(
                filter
                    .statuses
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>(),
            ),
        );
    }
    if let Some(seg) = filter.segment {
        query = query.filter(issues::segment_id.eq(seg.to_string()));
    }
    if !filter.categories.is_empty() {
        query = query.filter(
            issues::category.eq_any(
                filter
                    .categories
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>(),
            ),
        );
    }
    if !filter.severities.is_empty() {
        query = query.filter(
            issues::severity.eq_any(
                filter
                    .severities
                    .iter()
                    .map(|s| i64::from(u8::from(*s)))
                    .collect::<Vec<_>>(),
            ),
        );
    }
    if let Some(r) = filter.reporter {
        query = query.filter(issues::reporter_id.eq(r.to_string()));
    }
    if let Some(a) = filter.assignee {
        query = query.filter(issues::assignee_id.eq(a.to_string()));
    }
    if let Some(from) = filter.from {
        query = query.filter(issues::reported_at.ge(ts(from)));
    }
    if let Some(to) = filter.to {
        query = query.filter(issues::reported_at.lt(ts(to)));
    }
    if !role.sees_everything() {
        let me = viewer.to_string();
        let my_segments = user_segments::table
            .filter(user_segments::user_id.eq(me.clone()))
            .select(user_segments::segment_id);
        let sent_to_me = issue_events::table
            .filter(issue_events::kind.eq(IssueEventKind::Dispatched.as_str()))
            .filter(issue_events::assignee_id.eq(me.clone()))
            .filter(issue_events::rejected_reason.is_null())
            .select(issue_events::issue_id);
        query = query.filter(
            issues::reporter_id
                .eq(me.clone())
                .or(issues::assignee_id.eq(me))
                .or(issues::segment_id.eq_any(my_segments))
                .or(issues::id.eq_any(sent_to_me)),
        );
    }
    let rows: Vec<(String, String, i64, String, String, Option<String>)> = query.load(conn)?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, status, severity, reported_at, recorded_at, due_at) in rows {
        let status = IssueStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("issue {id}: status {status:?}")))?;
        let due_at = due_at.as_deref().map(parse_ts).transpose()?;
        let brief = Brief {
            overdue: deadlines.overdue(status, due_at),
            escalated: deadlines.escalated(status, parse_ts(&recorded_at)?),
            id,
            status,
            severity,
            reported_at,
        };
        if filter.overdue.is_some_and(|o| o != brief.overdue)
            || filter.escalated.is_some_and(|e| e != brief.escalated)
        {
            continue;
        }
        out.push(brief);
    }
    Ok(out)
}

/// A dispatch past its due time: what the alert engine raises an alert for.
#[derive(Debug, Clone, PartialEq)]
pub struct OverdueDispatch {
    pub issue_id: IssueId,
    pub segment_id: SegmentId,
    pub severity: Severity,
    pub assignee: Option<UserId>,
    pub due_at: DateTime<Utc>,
}

/// Issues dispatched or in progress whose due time is before `now`, the longest overdue first.
pub fn overdue_dispatches(
    conn: &mut Conn,
    now: DateTime<Utc>,
) -> QueryResult<Vec<OverdueDispatch>> {
    type OverdueRow = (String, String, i64, Option<String>, Option<String>);
    let rows: Vec<OverdueRow> = issues::table
        .filter(issues::status.eq_any([
            IssueStatus::Dispatched.as_str(),
            IssueStatus::InProgress.as_str(),
        ]))
        .filter(issues::due_at.lt(ts(now)))
        .select((
            issues::id,
            issues::segment_id,
            issues::severity,
            issues::assignee_id,
            issues::due_at,
        ))
        .order((issues::due_at.asc(), issues::id.asc()))
        .load(conn)?;
    rows.into_iter()
        .filter_map(|(id, segment, severity, assignee, due)| {
            due.map(|d| (id, segment, severity, assignee, d))
        })
        .map(|(id, segment, severity, assignee, due)| {
            Ok(OverdueDispatch {
                severity: severity_of(&id, severity)?,
                issue_id: parse_id(&id)?,
                segment_id: parse_id(&segment)?,
                assignee: assignee.as_deref().map(parse_id).transpose()?,
                due_at: parse_ts(&due)?,
            })
        })
        .collect()
}

/// A report nobody accepted in time: what the alert engine raises an escalation for.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    pub issue_id: IssueId,
    pub segment_id: SegmentId,
    pub severity: Severity,
    pub recorded_at: DateTime<Utc>,
    /// When it should have been accepted by.
    pub accept_by: DateTime<Utc>,
}

/// Issues still `reported` past their acceptance deadline at `now` (the oldest first).
pub fn unaccepted_escalations(
    conn: &mut Conn,
    now: DateTime<Utc>,
    accept_within: chrono::Duration,
) -> QueryResult<Vec<Escalation>> {
    let deadlines = Deadlines { now, accept_within };
    // Working time is never shorter than wall-clock time, so nothing newer can be late.
    let rows: Vec<(String, String, i64, String)> = issues::table
        .filter(issues::status.eq(IssueStatus::Reported.as_str()))
        .filter(issues::recorded_at.le(ts(now - accept_within)))
        .select((
            issues::id,
            issues::segment_id,
            issues::severity,
            issues::recorded_at,
        ))
        .order((issues::recorded_at.asc(), issues::id.asc()))
        .load(conn)?;
    let mut out = Vec::new();
    for (id, segment, severity, recorded_at) in rows {
        let recorded_at = parse_ts(&recorded_at)?;
        if deadlines.escalated(IssueStatus::Reported, recorded_at) {
            out.push(Escalation {
                severity: severity_of(&id, severity)?,
                issue_id: parse_id(&id)?,
                segment_id: parse_id(&segment)?,
                accept_by: deadlines.accept_by(recorded_at),
                recorded_at,
            });
        }
    }
    Ok(out)
}

fn severity_of(id: &str, severity: i64) -> QueryResult<Severity> {
    u8::try_from(severity)
        .ok()
        .and_then(|s| Severity::try_from(s).ok())
        .ok_or_else(|| corrupt(format!("issue {id}: severity {severity}")))
}

/// Turns issue rows into whole issues, loading events and photos for all of them at once.
fn assemble(conn: &mut Conn, rows: Vec<Row>, deadlines: &Deadlines) -> QueryResult<Vec<Issue>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();

    let mut events: Vec<EventRow> = Vec::new();
    let mut photo_rows: Vec<(String, String, i64)> = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        events.extend(
            issue_events::table
                .filter(issue_events::issue_id.eq_any(chunk))
                .select(EventRow::as_select())
                .load(conn)?,
        );
        photo_rows.extend(
            issue_photos::table
                .filter(issue_photos::issue_id.eq_any(chunk))
                .select((
                    issue_photos::owner_id,
                    issue_photos::sha256,
                    issue_photos::position,
                ))
                .load::<(String, String, i64)>(conn)?,
        );
    }
    // Server order: when the server recorded the event (fixed-width timestamps sort as text).
    events.sort_by(|a, b| (&a.recorded_at, &a.id).cmp(&(&b.recorded_at, &b.id)));
    photo_rows.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));

    let hexes: Vec<String> = {
        let mut seen = HashSet::new();
        photo_rows
            .iter()
            .filter(|r| seen.insert(r.1.clone()))
            .map(|r| r.1.clone())
            .collect()
    };
    let arrived = arrived_set(conn, &hexes)?;

    let mut photos_by_owner: HashMap<String, Vec<PhotoRef>> = HashMap::new();
    for (owner, sha, _) in photo_rows {
        let digest = Sha256::parse(&sha, "sha256")
            .map_err(|e| corrupt(format!("issue photo {owner}: {e}")))?;
        photos_by_owner.entry(owner).or_default().push(PhotoRef {
            sha256: digest,
            arrived: arrived.contains(&sha),
        });
    }

    let mut events_by_issue: HashMap<String, Vec<IssueEvent>> = HashMap::new();
    for e in events {
        let event = IssueEvent {
            kind: IssueEventKind::parse(&e.kind)
                .ok_or_else(|| corrupt(format!("event {}: kind {:?}", e.id, e.kind)))?,
            by: parse_id(&e.by_id)?,
            at: parse_ts(&e.at)?,
            recorded_at: parse_ts(&e.recorded_at)?,
            note: e.note,
            assignee: e.assignee_id.as_deref().map(parse_id).transpose()?,
            duplicate_of: e.duplicate_of.as_deref().map(parse_id).transpose()?,
            due_at: e.due_at.as_deref().map(parse_ts).transpose()?,
            photos: photos_by_owner.get(&e.id).cloned().unwrap_or_default(),
            rejected: e.rejected_reason,
            id: parse_id(&e.id)?,
        };
        events_by_issue.entry(e.issue_id).or_default().push(event);
    }

    rows.into_iter()
        .map(|row| {
            let events = events_by_issue.remove(&row.id).unwrap_or_default();
            to_issue(row, events, deadlines)
        })
        .collect()
}

fn to_issue(row: Row, events: Vec<IssueEvent>, deadlines: &Deadlines) -> QueryResult<Issue> {
    let Row {
        id,
        segment_id,
        patrol_id,
        reporter_id: reporter,
        lon,
        lat,
        chainage_m,
        category,
        severity,
        outflow,
        critical,
        description,
        status,
        assignee_id: assignee,
        reported_at,
        recorded_at,
        due_at,
    } = row;
    let bad = |what: &str| corrupt(format!("issue {id}: {what}"));
    let category = IssueCategory::parse(&category).ok_or_else(|| bad("category"))?;
    let severity = severity_of(&id, severity)?;
    let outflow = match outflow {
        Some(o) => Some(parse_outflow(&o).ok_or_else(|| bad("outflow"))?),
        None => None,
    };
    let location = Position {
        lon: Lon::parse(lon, "lon").map_err(|_| bad("lon"))?,
        lat: Lat::parse(lat, "lat").map_err(|_| bad("lat"))?,
    };
    // Every photo of the report and of each event, each digest once, in history order.
    let mut photos: Vec<PhotoRef> = Vec::new();
    for p in events.iter().flat_map(|e| e.photos.iter()) {
        if !photos.iter().any(|q| q.sha256 == p.sha256) {
            photos.push(p.clone());
        }
    }
    let photos_expected = u32::try_from(photos.len()).unwrap_or(u32::MAX);
    let photos_arrived =
        u32::try_from(photos.iter().filter(|p| p.arrived).count()).unwrap_or(u32::MAX);
    let status = IssueStatus::parse(&status).ok_or_else(|| bad("status"))?;
    let due_at = due_at.as_deref().map(parse_ts).transpose()?;
    let recorded_at = parse_ts(&recorded_at)?;
    Ok(Issue {
        segment_id: parse_id(&segment_id)?,
        patrol_id: patrol_id.as_deref().map(parse_id).transpose()?,
        reporter: parse_id(&reporter)?,
        location,
        chainage_m,
        chainage: Chainage(chainage_m).to_string(),
        category_zh: category.label_zh().to_owned(),
        category_en: category.label_en().to_owned(),
        category,
        severity,
        outflow,
        critical,
        description,
        status,
        assignee: assignee.as_deref().map(parse_id).transpose()?,
        due_at,
        overdue: deadlines.overdue(status, due_at),
        escalated: deadlines.escalated(status, recorded_at),
        reported_at: parse_ts(&reported_at)?,
        recorded_at,
        photos,
        photos_expected,
        photos_arrived,
        events,
        id: parse_id(&id)?,
    })
}
