//! The one error type of the client library.
//!
//! Policy: every fallible library function returns [`ClientError`]. Errors are split by what the
//! caller can do about them:
//!
//! - [`ClientError::is_transient`] errors (network failures, timeouts, 5xx, 408/429) are worth
//!   retrying later; the sync engine retries them itself with backoff before giving up with
//!   [`ClientError::GaveUp`], and leaves all queued work pending.
//! - [`ClientError::Server`] with a 4xx status is the server refusing a whole request; retrying the
//!   same request will not help (a 401 means logging in again).
//! - Local refusals ([`ClientError::Validation`], [`ClientError::NotAnImage`], ...) happen before
//!   anything is written: the action was not recorded.

use riverchief_shared::api::ErrorDetail;
use riverchief_shared::id::PatrolId;
use riverchief_shared::FieldError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("local database error: {0}")]
    Db(#[from] rusqlite::Error),

    #[error("network error: {}", with_causes(.0))]
    Http(#[from] reqwest::Error),

    #[error("server answered {status}: {} ({})", body.message, body.code)]
    Server { status: u16, body: ErrorDetail },

    /// A photo upload stopped making progress (the link is alive but nothing moves).
    #[error("the upload stalled: no progress for {0:?}")]
    Stalled(std::time::Duration),

    /// The server answered something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),

    #[error("invalid {}", .0)]
    Validation(#[from] FieldError),

    #[error("not logged in: run `riverchief login` first")]
    NotLoggedIn,

    /// Logging in as someone else (or to another server) while the previous user's work is unsent:
    /// it would be pushed under the wrong account and refused, or sent to the wrong server.
    #[error(
        "{pending} change(s) recorded by {user} for {server} are not sent yet: log in as {user} and \
         sync them first, or use another data directory (--data-dir) for this account"
    )]
    UnsentWorkOfAnother {
        user: String,
        server: String,
        pending: u64,
    },

    #[error("no server URL: pass --server (or RIVERCHIEF_SERVER), or log in first")]
    NoServer,

    #[error("invalid server URL {url:?}: {reason}")]
    BadServerUrl { url: String, reason: String },

    /// Another sync (in this or another process) holds `sync.lock`.
    #[error("another sync is already running on this data directory")]
    SyncInProgress,

    #[error("{}: not a photo (only JPEG, PNG, WebP, HEIC and HEIF images are accepted)", path.display())]
    NotAnImage { path: PathBuf },

    #[error("{}: {size} bytes is larger than the {max} bytes a photo may have", path.display())]
    PhotoTooLarge { path: PathBuf, size: u64, max: u64 },

    #[error("no patrol {0} was started on this device")]
    UnknownPatrol(PatrolId),

    #[error("patrol {0} is already finished")]
    PatrolFinished(PatrolId),

    #[error("patrol {id} was refused by the server: {message}")]
    PatrolRejected { id: PatrolId, message: String },

    /// A GPX file that cannot be read, or a track point in it that cannot be used.
    #[error("{}: {reason}", path.display())]
    BadGpx { path: PathBuf, reason: String },

    #[error("no segment {0:?} in the local copy (sync to fetch segments)")]
    UnknownSegment(String),

    #[error(
        "the local database is at schema version {found}, newer than this client knows ({known})"
    )]
    SchemaTooNew { found: i64, known: i64 },

    #[error("gave up after {attempts} attempts: {source}")]
    GaveUp {
        attempts: u32,
        #[source]
        source: Box<ClientError>,
    },

    #[error("local data could not be (de)serialized: {0}")]
    Json(#[from] serde_json::Error),

    /// A bug or a panic inside a background task.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ClientError {
    /// Whether trying the same request again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Http(e) => !e.is_builder() && !e.is_decode() && !e.is_redirect(),
            Self::Server { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Self::Stalled(_) => true,
            Self::GaveUp { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// Whether the server did not accept our token (log in again).
    pub fn is_unauthorized(&self) -> bool {
        match self {
            Self::Server { status, .. } => *status == 401,
            Self::GaveUp { source, .. } => source.is_unauthorized(),
            Self::NotLoggedIn => true,
            _ => false,
        }
    }

    /// Whether the server could not be reached at all (as opposed to answering badly).
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Http(e) => e.is_connect() || e.is_timeout(),
            Self::GaveUp { source, .. } => source.is_unreachable(),
            _ => false,
        }
    }

    /// The HTTP status of a server refusal, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Server { status, .. } => Some(*status),
            Self::GaveUp { source, .. } => source.status(),
            _ => None,
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::File { path, source }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// An error with its causes, for errors (like reqwest's) whose own message leaves out the one
/// that matters ("connection refused").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = e.source();
    }
    text
}
