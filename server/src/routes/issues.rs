//! `GET /issues` (filtered list) and `GET /issues/{id}` (one issue with its history). Visibility is
//! the pull's: duty leads and admins see every issue; a patroller sees what they reported, what is
//! on their segments and what is dispatched to them. An invisible issue is answered as not found.

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::db::{self, Conn};
use crate::error::AppError;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use riverchief_shared::api::IssueList;
use riverchief_shared::domain::{IssueCategory, IssueStatus, Severity};
use riverchief_shared::id::{IssueId, SegmentId};
use riverchief_shared::FieldError;
use serde::Deserialize;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/issues", web::get().to(list))
        .route("/issues/{id}", web::get().to(get));
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    status: Option<String>,
    segment: Option<String>,
    category: Option<String>,
    severity: Option<String>,
    from: Option<String>,
    to: Option<String>,
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
        from: parse_time(q.from.as_deref(), "from")?,
        to: parse_time(q.to.as_deref(), "to")?,
    })
}

/// A segment named by id or by code.
fn find_segment(conn: &mut Conn, key: &str) -> Result<SegmentId, AppError> {
    let found = match SegmentId::parse(key) {
        Ok(id) => db::segments::by_id(conn, id)?,
        Err(_) => db::segments::by_code(conn, key)?,
    };
    found.map(|s| s.properties.id).ok_or_else(|| {
        AppError::Invalid(FieldError::new(
            "invalid",
            "segment",
            format!("no segment with id or code {key:?}"),
        ))
    })
}

async fn list(
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
    let issues = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            if let Some(key) = segment {
                filter.segment = Some(find_segment(conn, &key)?);
            }
            Ok(db::issues::list(conn, &filter, user.id, user.role)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(IssueList { issues }))
}

async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let not_found = || AppError::NotFound("no such issue".into());
    let id = IssueId::parse(&path).map_err(|_| not_found())?;
    let issue = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let head = db::issues::head(conn, id)?.ok_or_else(not_found)?;
            if !db::issues::visible_to(conn, &head, user.id, user.role)? {
                return Err(not_found());
            }
            db::issues::view(conn, id)?.ok_or_else(not_found)
        })
        .await?;
    Ok(HttpResponse::Ok().json(issue))
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
