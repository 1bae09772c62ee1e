//! The issue workflow: one lifecycle step (accept, reject, mark duplicate, dispatch, start, resolve,
//! verify, reopen, comment), judged and recorded the same way whether it comes from a device
//! (`issue.event` in a push) or from the API (`POST /issues/{id}/events`).
//!
//! [`take_step`] runs inside the caller's write transaction. It takes the issue's lock, so a step is
//! judged against the issue's latest committed status and no other step changes it meanwhile; the
//! issue's status is therefore always the fold of its accepted events in server order
//! ([`riverchief_shared::domain::IssueState::fold`]).
//!
//! Who may do what is [`IssueEventKind::judge`] (shared, pure): a step the actor's role may never
//! take is *forbidden* (403, or `forbidden` in a push result; nothing written). A step that the
//! status does not allow, or that was the actor's to take but no longer is (an offline patroller's
//! "resolved" on an issue dispatched to someone else meanwhile), is *illegal*: through the API it is
//! a 409 and nothing is written (the lead sees the answer at once); from a device the event is
//! **kept in the history, marked rejected with its reason**, so its author sees it on the next pull
//! and nothing taken in the field is silently lost. Either way the answer names the current status.
//!
//! Every step taken or kept writes an audit row in the same transaction.

use crate::auth::AuthUser;
use crate::db::{self, Conn};
use crate::error::AppError;
use chrono::{DateTime, Utc};
use riverchief_shared::api::ErrorDetail;
use riverchief_shared::domain::{Actor, IssueEventKind, IssueStatus, Refusal};
use riverchief_shared::id::{IssueEventId, IssueId, UserId};
use riverchief_shared::photo::Sha256;
use riverchief_shared::sync::IssueEventData;
use riverchief_shared::FieldError;
use serde_json::json;

/// Where a step comes from: it decides what happens to an illegal one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A device's `issue.event`, possibly taken offline long ago: an illegal one is kept, marked
    /// rejected.
    Device,
    /// The API: an illegal one is refused and nothing is written.
    Api,
}

/// What became of a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Applied: the issue's status now, and the step's photos the server does not have yet.
    Applied {
        status: IssueStatus,
        photos_missing: Vec<Sha256>,
    },
    /// Kept in the history marked rejected (devices only): the status it could not change, and why.
    Kept {
        current: IssueStatus,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// No such issue, or one the caller may not see.
    #[error("no issue {0}")]
    NoIssue(IssueId),
    #[error("event {0} already exists")]
    EventTaken(IssueEventId),
    #[error("{message}")]
    Forbidden {
        message: String,
        current: IssueStatus,
    },
    /// Only from the API (a device's illegal step is [`Outcome::Kept`]).
    #[error("{message}")]
    Illegal {
        message: String,
        current: IssueStatus,
    },
    /// The assignee or the original of a duplicate does not exist; the field is unprefixed
    /// (`assignee`, `duplicate_of`).
    #[error("{0}")]
    UnknownReference(FieldError),
    #[error(transparent)]
    Db(#[from] db::QueryError),
}

impl StepError {
    /// The refusal as the API answers it (`POST /issues/{id}/events`).
    pub fn into_app_error(self) -> AppError {
        match self {
            StepError::NoIssue(_) => AppError::NotFound("no such issue".into()),
            StepError::EventTaken(e) => AppError::Conflict(format!("event {e} already exists")),
            StepError::Forbidden { message, current } => AppError::Step {
                forbidden: true,
                message,
                current,
            },
            StepError::Illegal { message, current } => AppError::Step {
                forbidden: false,
                message,
                current,
            },
            StepError::UnknownReference(e) => AppError::UnknownReference(e),
            StepError::Db(e) => e.into(),
        }
    }

    /// The refusal as a device's push result says it, its fields under `data`; `Err` is a database
    /// failure (the push fails and is retried).
    pub fn into_push_detail(self) -> Result<ErrorDetail, db::QueryError> {
        let field = |code: &str, field: &str, message: String| {
            ErrorDetail::from(FieldError::new(code, field, message))
        };
        Ok(match self {
            StepError::NoIssue(id) => field(
                "unknown_reference",
                "data.issue_id",
                format!("no issue {id}"),
            ),
            StepError::EventTaken(id) => field(
                "conflict",
                "data.event_id",
                format!("event {id} already exists"),
            ),
            StepError::UnknownReference(e) => ErrorDetail::from(e.within("data")),
            StepError::Db(e) => return Err(e),
            step @ (StepError::Forbidden { .. } | StepError::Illegal { .. }) => ErrorDetail {
                field: Some("data.kind".into()),
                ..step.into_app_error().detail()
            },
        })
    }
}

/// A refusal's reason, with the issue's status added unless the reason already names it.
pub fn naming_status(reason: &str, status: IssueStatus) -> String {
    if reason.contains(status.as_str()) {
        reason.to_owned()
    } else {
        format!("{reason} (the issue is {})", status.as_str())
    }
}

/// Two people dispatching the same issue without knowing of each other (both based on the same
/// history): the dispatch with the greater event id stands, whichever arrives first. When a rival
/// that wins has been applied already, this step is too late: why.
fn rival(
    conn: &mut Conn,
    caller: &AuthUser,
    d: &IssueEventData,
) -> Result<Option<String>, StepError> {
    let Some(based_on) = d.based_on.filter(|_| d.kind == IssueEventKind::Dispatched) else {
        return Ok(None);
    };
    let winner =
        db::issues::winning_rival_dispatch(conn, d.issue_id, based_on, caller.id, d.event_id)?;
    let Some(w) = winner else {
        return Ok(None);
    };
    let name = |conn: &mut Conn, id: UserId| -> Result<String, StepError> {
        Ok(db::users::by_id(conn, id)?.map_or_else(|| id.to_string(), |u| u.info.username))
    };
    let by = name(conn, w.by)?;
    let to = match w.assignee {
        Some(a) => name(conn, a)?,
        None => String::new(),
    };
    Ok(Some(format!(
        "dispatched at the same time by {by} to {to} (event {}); that dispatch stands",
        w.event_id
    )))
}

/// Judges the step `d` by `caller` (taken at `at`, device time for devices; received at `now`) and
/// records it. Call it inside a write transaction; it writes the change-log row last.
pub fn take_step(
    conn: &mut Conn,
    caller: &AuthUser,
    d: &IssueEventData,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    source: Source,
) -> Result<Outcome, StepError> {
    db::lock(conn, db::Lock::Issue(d.issue_id))?;
    let head = db::issues::head(conn, d.issue_id)?.ok_or(StepError::NoIssue(d.issue_id))?;
    if !db::issues::visible_to(conn, &head, caller.id, caller.role)? {
        return Err(StepError::NoIssue(d.issue_id));
    }
    if db::issues::event_exists(conn, d.event_id)? {
        return Err(StepError::EventTaken(d.event_id));
    }
    let is_assignee = head.assignee == Some(caller.id);
    let actor = Actor {
        role: caller.role,
        is_assignee,
        was_assignee: is_assignee || db::issues::was_dispatched_to(conn, d.issue_id, caller.id)?,
    };
    // Ok: the status after the step; Err: why the status does not allow it.
    let verdict = match d.kind.judge(actor, head.status) {
        Ok(status) => match rival(conn, caller, d)? {
            Some(reason) => Err(reason),
            None => Ok(status),
        },
        Err(Refusal::Illegal(reason)) => Err(reason),
        Err(Refusal::Forbidden(message)) => {
            return Err(StepError::Forbidden {
                message,
                current: head.status,
            })
        }
    };
    if let Some(a) = d.assignee {
        if !db::users::is_active(conn, a)? {
            return Err(StepError::UnknownReference(FieldError::new(
                "unknown_reference",
                "assignee",
                format!("no active user {a}"),
            )));
        }
    }
    if let Some(dup) = d.duplicate_of {
        if !db::issues::exists(conn, dup)? {
            return Err(StepError::UnknownReference(FieldError::new(
                "unknown_reference",
                "duplicate_of",
                format!("no issue {dup}"),
            )));
        }
    }
    let (status, rejected) = match verdict {
        Ok(status) => (status, None),
        Err(reason) => match source {
            Source::Api => {
                return Err(StepError::Illegal {
                    message: naming_status(&reason, head.status),
                    current: head.status,
                })
            }
            Source::Device => (head.status, Some(reason)),
        },
    };
    db::issues::insert_event(
        conn,
        &db::issues::NewEvent {
            id: d.event_id,
            issue_id: d.issue_id,
            kind: d.kind,
            by: caller.id,
            at,
            note: d.note.as_deref(),
            assignee: d.assignee,
            duplicate_of: d.duplicate_of,
            due_at: d.due_at,
            rejected: rejected.as_deref(),
        },
        now,
    )?;
    // A rejected step's photos are kept too: an after-photo taken in the field is evidence.
    db::issues::insert_photos(conn, d.issue_id, &d.event_id.to_string(), &d.photos)?;
    let photos_missing = db::issues::missing_photos(conn, &d.photos)?;
    let detail = json!({
        "issue_id": d.issue_id,
        "event_id": d.event_id,
        "event": d.kind.as_str(),
        "from": head.status.as_str(),
        "to": status.as_str(),
        "note": d.note,
        "assignee": d.assignee,
        "due_at": d.due_at,
        "duplicate_of": d.duplicate_of,
        "rejected": rejected,
        "source": match source { Source::Device => "device", Source::Api => "api" },
    });
    let issue = d.issue_id.to_string();
    match &rejected {
        None => {
            let dispatch = (d.kind == IssueEventKind::Dispatched)
                .then_some(d.assignee)
                .flatten()
                .map(|a| (a, d.due_at));
            db::issues::set_status(conn, d.issue_id, status, dispatch, now)?;
            db::audit::record(conn, &caller.who(), "issue.event", Some(&issue), &detail)?;
            // A critical hazard's alert resolves when the issue closes, and comes back on reopen.
            if let Some(view) = db::issues::record_issue_change(conn, d.issue_id, now)? {
                crate::alerting::issue_changed(conn, &view, now)?;
            }
            Ok(Outcome::Applied {
                status,
                photos_missing,
            })
        }
        Some(reason) => {
            db::audit::record(
                conn,
                &caller.who(),
                "issue.event_rejected",
                Some(&issue),
                &detail,
            )?;
            // The author may no longer see the issue (it went to someone else): the change is
            // also written for them, so the rejection reaches their device.
            db::issues::record_issue_change_also(conn, d.issue_id, caller.id, now)?;
            Ok(Outcome::Kept {
                current: head.status,
                reason: reason.clone(),
            })
        }
    }
}
