//! `GET /issues` (filtered, sorted, paged list), `GET /issues/counts` (by status),
//! `GET /issues/{id}` (one issue with its history) and `POST /issues/{id}/events` (a lifecycle step
//! taken online, judged by [`crate::workflow`]). Visibility is the pull's: duty leads and admins see
//! every issue; a patroller sees what they reported, what is on their segments and what is
//! dispatched to them. An invisible issue is answered as not found.

use super::body::json_body;
use super::endpoint::Endpoint;
use crate::auth::AuthUser;
use crate::db::{self, Conn};
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use riverchief_shared::api::{IssueCounts, IssueList, NewIssueEvent};
use riverchief_shared::domain::{IssueCategory, IssueStatus, Severity};
use riverchief_shared::id::{IssueId, SegmentId, UserId};
use riverchief_shared::sync::IssueEventData;
use riverchief_shared::FieldError;
use serde::Deserialize;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/issues").get(list).done())
        .service(Endpoint::new("/issues/counts").get(counts).done())
        .service(Endpoint::new("/issues/{id}").get(get).done())
        .service(Endpoint::new("/issues/{id}/events").post(add_event).done());
}

/// Issue pages are at most this long.
const MAX_LIMIT: u64 = 500;
const DEFAULT_LIMIT: u64 = 100;
/// An event body is small; photos are listed by digest.
const MAX_EVENT_BYTES: usize = 64 * 1024;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Statuses, comma-separated (`reported,dispatched`).
    status: Option<String>,
    /// A segment's id or code.
    segment: Option<String>,
    /// Categories, comma-separated (`piping,seepage`).
    category: Option<String>,
    /// Severities, comma-separated (`2,3`).
    severity: Option<String>,
    /// The reporter's user id.
    #[param(value_type = Option<UserId>, inline)]
    reporter: Option<String>,
    /// The assignee's user id.
    #[param(value_type = Option<UserId>, inline)]
    assignee: Option<String>,
    /// Overdue dispatches only (`true`) or none of them (`false`).
    #[param(value_type = Option<bool>)]
    overdue: Option<String>,
    /// Escalated issues only (`true`) or none of them (`false`).
    #[param(value_type = Option<bool>)]
    escalated: Option<String>,
    /// Reported at or after (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// Reported at or before (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
    /// `severity` (the default: most severe first) or `newest`.
    #[param(value_type = Option<IssueSort>, inline)]
    sort: Option<String>,
    /// A page of at most this many (1 to 500, default 100).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// Skip this many.
    #[param(value_type = Option<u64>)]
    offset: Option<String>,
}

/// How an issue list is sorted.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum IssueSort {
    Severity,
    Newest,
}

fn parse_bool(value: Option<&str>, field: &str) -> Result<Option<bool>, FieldError> {
    match value.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(FieldError::new(
            "invalid",
            field,
            format!("{other:?} is not true or false"),
        )),
    }
}

fn parse_user(value: Option<&str>, field: &str) -> Result<Option<UserId>, FieldError> {
    value
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            UserId::parse(s)
                .map_err(|_| FieldError::new("invalid", field, format!("{s:?} is not a user id")))
        })
        .transpose()
}

/// Splits a comma-separated filter value and parses each item, naming `field` when one is unknown.
fn parse_list<T>(
    value: Option<&str>,
    field: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, FieldError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            parse(item).ok_or_else(|| {
                FieldError::new("invalid", field, format!("unknown {field} {item:?}"))
            })
        })
        .collect()
}

pub(crate) fn parse_time(
    value: Option<&str>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, FieldError> {
    value
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    FieldError::new(
                        "bad_time",
                        field,
                        format!("{s:?} is not an RFC 3339 time (2024-07-03T00:00:00Z)"),
                    )
                })
        })
        .transpose()
}

fn parse_severity(s: &str) -> Option<Severity> {
    s.parse::<u8>()
        .ok()
        .and_then(|n| Severity::try_from(n).ok())
}

/// Everything in the filter that needs no database.
fn parse_filter(q: &ListQuery) -> Result<db::issues::Filter, FieldError> {
    Ok(db::issues::Filter {
        statuses: parse_list(q.status.as_deref(), "status", IssueStatus::parse)?,
        segment: None,
        categories: parse_list(q.category.as_deref(), "category", IssueCategory::parse)?,
        severities: parse_list(q.severity.as_deref(), "severity", parse_severity)?,
        reporter: parse_user(q.reporter.as_deref(), "reporter")?,
        assignee: parse_user(q.assignee.as_deref(), "assignee")?,
        overdue: parse_bool(q.overdue.as_deref(), "overdue")?,
        escalated: parse_bool(q.escalated.as_deref(), "escalated")?,
        from: parse_time(q.from.as_deref(), "from")?,
        to: parse_time(q.to.as_deref(), "to")?,
    })
}

fn parse_sort(value: Option<&str>) -> Result<db::issues::Sort, FieldError> {
    match value.map(str::trim).filter(|s| !s.is_empty()) {
        None | Some("severity") => Ok(db::issues::Sort::Severity),
        Some("newest") => Ok(db::issues::Sort::Newest),
        Some(other) => Err(FieldError::new(
            "invalid",
            "sort",
            format!("{other:?} is not severity or newest"),
        )),
    }
}

/// A segment named by id or by code.
fn find_segment(conn: &mut Conn, key: &str) -> Result<SegmentId, AppError> {
    db::segments::by_id_or_code(conn, key)?
        .map(|s| s.properties.id)
        .ok_or_else(|| {
            AppError::Invalid(FieldError::new(
                "invalid",
                "segment",
                format!("no segment with id or code {key:?}"),
            ))
        })
}

fn deadlines(state: &AppState) -> db::issues::Deadlines {
    db::issues::Deadlines {
        now: Utc::now(),
        accept_within: state.checks.accept_within,
    }
}

/// A page of the issues the caller may see.
#[utoipa::path(
    get,
    path = "/api/v1/issues",
    tag = "issues",
    description = "Roles: any signed-in user. Duty leads and admins see every issue; a patroller what \
        they reported, what is on their segments and what is dispatched to them.",
    params(ListQuery),
    responses((status = 200, description = "One page and the number that match", body = IssueList)),
)]
async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let mut filter = parse_filter(&query)?;
    let sort = parse_sort(query.sort.as_deref())?;
    let limit = super::whole_number(query.limit.as_deref(), "limit", 1, MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT);
    let offset = super::whole_number(query.offset.as_deref(), "offset", 0, u64::from(u32::MAX))?
        .unwrap_or(0);
    let segment = query
        .segment
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let deadlines = deadlines(&state);
    let page = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            if let Some(key) = segment {
                filter.segment = Some(find_segment(conn, &key)?);
            }
            Ok(db::issues::list(
                conn, &filter, user.id, user.role, &deadlines, sort, offset, limit,
            )?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(IssueList {
        issues: page.issues,
        total: page.total,
        next_offset: page.next_offset,
    }))
}

/// How many issues the caller may see, by status.
#[utoipa::path(
    get,
    path = "/api/v1/issues/counts",
    tag = "issues",
    description = "Roles: any signed-in user (visibility as for the list; the same filters).",
    params(ListQuery),
    responses((status = 200, description = "Counts by status", body = IssueCounts)),
)]
async fn counts(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let mut filter = parse_filter(&query)?;
    let segment = query
        .segment
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let deadlines = deadlines(&state);
    let by_status = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            if let Some(key) = segment {
                filter.segment = Some(find_segment(conn, &key)?);
            }
            Ok(db::issues::counts(
                conn, &filter, user.id, user.role, &deadlines,
            )?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(IssueCounts {
        total: by_status.iter().map(|(_, n)| n).sum(),
        by_status: by_status.into_iter().collect(),
    }))
}

/// One issue with its history.
#[utoipa::path(
    get,
    path = "/api/v1/issues/{id}",
    tag = "issues",
    description = "Roles: any signed-in user who may see it.",
    params(("id" = IssueId, Path, description = "The issue's id")),
    responses(
        (status = 200, description = "The issue", body = riverchief_shared::domain::Issue),
        (status = 404, description = "No such issue, or one the caller may not see"),
    ),
)]
async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let not_found = || AppError::NotFound("no such issue".into());
    let id = IssueId::parse(&path).map_err(|_| not_found())?;
    let deadlines = deadlines(&state);
    let issue = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let head = db::issues::head(conn, id)?.ok_or_else(not_found)?;
            if !db::issues::visible_to(conn, &head, user.id, user.role)? {
                return Err(not_found());
            }
            db::issues::view_at(conn, id, &deadlines)?.ok_or_else(not_found)
        })
        .await?;
    Ok(HttpResponse::Ok().json(issue))
}

#[utoipa::path(
    post,
    path = "/api/v1/issues/{id}/events",
    tag = "issues",
    description = "Roles: who may take each step (`IssueEventKind`): duty leads dispatch, close, \
        reopen and mark duplicates; the assignee accepts and resolves; admins anything. A step the \
        role may not take is 403 `forbidden`, one the status does not allow 409 \
        `invalid_transition`, both with `current_status`.",
    params(("id" = IssueId, Path, description = "The issue's id")),
    request_body = NewIssueEvent,
    responses(
        (status = 201, description = "The issue as it now is", body = riverchief_shared::domain::Issue),
        (status = 403, description = "The role may not take this step"),
        (status = 404, description = "No such issue, or one the caller may not see"),
        (status = 409, description = "The issue's status does not allow this step"),
        (status = 422, description = "The step names a user, issue or photo that does not exist"),
    ),
)]
/// `POST /issues/{id}/events`: one step, judged as a device's would be, except that an illegal
/// step is refused (409) instead of kept. Answers 201 with the issue as it now is.
async fn add_event(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let not_found = || AppError::NotFound("no such issue".into());
    let id = IssueId::parse(&path).map_err(|_| not_found())?;
    let body: NewIssueEvent = json_body(&req, payload, MAX_EVENT_BYTES).await?;
    let data = IssueEventData {
        event_id: body.event_id.unwrap_or_default(),
        issue_id: id,
        kind: body.kind,
        note: body.note,
        assignee: body.assignee,
        duplicate_of: body.duplicate_of,
        photos: body.photos,
        due_at: body.due_at,
        based_on: body.based_on,
    };
    data.check(&state.limits, "")?;
    if let Some(due) = data.due_at {
        riverchief_shared::sync::sane_due(due, "due_at")?;
    }
    let deadlines = deadlines(&state);
    let issue = state
        .db
        .transaction(move |conn| -> Result<_, AppError> {
            use crate::workflow::{self, StepError};
            let now = Utc::now();
            workflow::take_step(conn, &user, &data, now, now, workflow::Source::Api)
                .map_err(StepError::into_app_error)?;
            db::issues::view_at(conn, id, &deadlines)?.ok_or_else(not_found)
        })
        .await?;
    Ok(HttpResponse::Created().json(issue))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_lists_and_name_bad_fields() {
        let q = ListQuery {
            status: Some("reported, accepted".into()),
            severity: Some("3".into()),
            category: Some("piping".into()),
            from: Some("2024-07-03T00:00:00+08:00".into()),
            ..ListQuery::default()
        };
        let f = parse_filter(&q).map_err(|e| e.field);
        let f = f
            .as_ref()
            .map(|f| (f.statuses.len(), f.severities.clone(), f.from.is_some()));
        assert_eq!(f, Ok((2, vec![Severity::Major], true)));

        for (q, field) in [
            (
                ListQuery {
                    status: Some("lost".into()),
                    ..Default::default()
                },
                "status",
            ),
            (
                ListQuery {
                    severity: Some("4".into()),
                    ..Default::default()
                },
                "severity",
            ),
            (
                ListQuery {
                    category: Some("dragons".into()),
                    ..Default::default()
                },
                "category",
            ),
            (
                ListQuery {
                    to: Some("yesterday".into()),
                    ..Default::default()
                },
                "to",
            ),
        ] {
            assert_eq!(
                parse_filter(&q).map(|_| ()).map_err(|e| e.field),
                Err(field.to_owned())
            );
        }
    }
}
