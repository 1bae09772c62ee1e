//! The photo lane: each captured photo the server does not confirm yet goes up by tus 1.0.0,
//! resuming from the server's offset after any interruption.

use super::api::Api;
use super::retry::retrying;
use super::{ProgressFn, SyncProgress, SyncReport};
use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::photos::{self, WaitingPhoto};
use reqwest::Url;
use riverchief_shared::photo::Sha256;
use std::path::Path;
use tokio::sync::watch;

pub(crate) async fn upload_all(
    client: &Client,
    api: &Api,
    urgent_only: bool,
    progress: ProgressFn<'_>,
    report: &mut SyncReport,
) -> Result<()> {
    let photos = client
        .db(move |conn| photos::waiting(conn, urgent_only))
        .await?;
    if photos.is_empty() {
        return Ok(());
    }
    progress(SyncProgress::PhotosStarted {
        count: photos.len(),
        bytes: photos.iter().map(|p| p.size).sum(),
    });
    let mut first_error = None;
    for (i, photo) in photos.iter().enumerate() {
        if let Err(e) = upload_one(client, api, photo, i + 1, progress, report).await {
            let sha = photo.sha;
            let message = e.to_string();
            client
                .db(move |conn| photos::note_error(conn, &sha, &message))
                .await?;
            // Every other photo would meet the same closed door.
            if e.is_unauthorized() || e.is_unreachable() {
                return Err(e);
            }
            tracing::warn!(sha = %photo.sha, "photo upload failed, will retry next sync: {e}");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// A refusal of the photo's content: sending it again cannot help.
fn refused_content(error: &ClientError) -> Option<String> {
    match error {
        ClientError::Server {
            status: 413 | 415 | 460,
            body,
        } => Some(format!("{} ({})", body.message, body.code)),
        _ => None,
    }
}

async fn upload_one(
    client: &Client,
    api: &Api,
    photo: &WaitingPhoto,
    index: usize,
    progress: ProgressFn<'_>,
    report: &mut SyncReport,
) -> Result<()> {
    let sha = photo.sha;
    let policy = client.options().retry;
    if retrying(&policy, "photo check", |_| api.photo_exists(&sha)).await? {
        client.db(move |conn| photos::confirm(conn, &sha)).await?;
        report.photos_skipped += 1;
        progress(SyncProgress::PhotoSkipped { sha });
        return Ok(());
    }

    let path = client.photo_path(&sha);
    let intact = match tokio::fs::metadata(&path).await {
        Ok(meta) => meta.len() == photo.size,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(ClientError::File { path, source: e }),
    };
    if !intact {
        return give_up_on(
            client,
            sha,
            "the local copy is missing or damaged".into(),
            progress,
            report,
        )
        .await;
    }

    // A stored location that no longer parses is as good as none: a new upload is made.
    let mut upload_url = photo
        .upload_url
        .as_deref()
        .and_then(|location| api.resolve(location).ok());
    let max_attempts = policy.max_attempts.max(1);
    let mut attempt = 1;
    let mut asked_again = false;
    loop {
        let error = match attempt_upload(
            client,
            api,
            photo,
            &path,
            &mut upload_url,
            index,
            progress,
            report,
        )
        .await
        {
            Ok(true) => {
                client.db(move |conn| photos::confirm(conn, &sha)).await?;
                report.photos_uploaded += 1;
                progress(SyncProgress::PhotoDone { sha });
                return Ok(());
            }
            Ok(false) => ClientError::Protocol(format!("the upload of {sha} stopped short")),
            Err(e) => e,
        };
        if let Some(reason) = refused_content(&error) {
            return give_up_on(client, sha, reason, progress, report).await;
        }
        // 404/410: the server dropped the upload (expired, or refused at the end); 409: our offset
        // was stale. Both are cured by asking again, which the next attempt does first.
        let cured_by_asking = matches!(error.status(), Some(404 | 409 | 410));
        if matches!(error.status(), Some(404 | 410)) {
            upload_url = None;
            client
                .db(move |conn| photos::set_upload_url(conn, &sha, None))
                .await?;
        }
        let retryable =
            cured_by_asking || error.is_transient() || matches!(error, ClientError::Protocol(_));
        if !retryable {
            return Err(error);
        }
        if attempt >= max_attempts {
            return Err(ClientError::GaveUp {
                attempts: attempt,
                source: Box::new(error),
            });
        }
        // A stale offset or a dropped upload is cured by asking again at once, the first time; if
        // it happens again the server is struggling (or another instance still holds the upload),
        // so back off like any other failure instead of hammering it.
        if !cured_by_asking || asked_again {
            let delay = policy.delay(attempt);
            tracing::warn!(%sha, attempt, ?delay, "photo upload interrupted, will resume: {error}");
            tokio::time::sleep(delay).await;
        }
        asked_again |= cured_by_asking;
        attempt += 1;
    }
}

async fn give_up_on(
    client: &Client,
    sha: Sha256,
    reason: String,
    progress: ProgressFn<'_>,
    report: &mut SyncReport,
) -> Result<()> {
    tracing::warn!(%sha, "photo refused: {reason}");
    let stored = reason.clone();
    client
        .db(move |conn| photos::fail(conn, &sha, &stored))
        .await?;
    report.photos_failed += 1;
    progress(SyncProgress::PhotoFailed { sha, reason });
    Ok(())
}

/// One try: find the upload (or create it), then send the rest of the file. `Ok(true)` when the
/// server has the whole photo.
#[allow(clippy::too_many_arguments)]
async fn attempt_upload(
    client: &Client,
    api: &Api,
    photo: &WaitingPhoto,
    path: &Path,
    upload_url: &mut Option<Url>,
    index: usize,
    progress: ProgressFn<'_>,
    report: &mut SyncReport,
) -> Result<bool> {
    let sha = photo.sha;
    let known = match upload_url.clone() {
        Some(url) => match api.tus_offset(&url).await? {
            Some(offset) => Some((url, offset)),
            // The server forgot the upload. If that is because it finished it (and the answer
            // was lost), the photo is there and nothing needs sending again.
            None if api.photo_exists(&sha).await? => return Ok(true),
            None => None,
        },
        None => None,
    };
    let (url, offset) = match known {
        Some(found) => found,
        None => {
            let location = api
                .tus_create(&sha, photo.size, &photo.content_type)
                .await?;
            let url = api.resolve(&location)?;
            // Stored before any byte is sent: a crash from here on resumes this upload.
            client
                .db(move |conn| photos::set_upload_url(conn, &sha, Some(&location)))
                .await?;
            *upload_url = Some(url.clone());
            (url, 0)
        }
    };
    if offset >= photo.size {
        // Every byte arrived earlier but the answer was lost; the server has verified and stored
        // the photo by now, or refused it and dropped the upload.
        if api.photo_exists(&sha).await? {
            return Ok(true);
        }
        return Err(ClientError::Server {
            status: 404,
            body: riverchief_shared::api::ErrorDetail {
                code: "not_found".into(),
                message: "the finished upload did not yield the photo".into(),
                field: None,
                current_status: None,
            },
        });
    }

    progress(SyncProgress::PhotoStarted {
        sha,
        index,
        total: photo.size,
        offset,
    });
    let (sent_tx, mut sent_rx) = watch::channel(0u64);
    let patch = api.tus_patch(&url, path, offset, photo.size, sent_tx);
    tokio::pin!(patch);
    // Report bytes as the body stream hands them to the connection, while the request runs, and
    // give up on a connection that takes nothing (or answers nothing) for `read_timeout`: the
    // next attempt resumes from the server's offset.
    let stall = client.options().read_timeout;
    let deadline = tokio::time::sleep(stall);
    tokio::pin!(deadline);
    let mut streaming = true;
    let result = loop {
        tokio::select! {
            result = &mut patch => break result,
            changed = sent_rx.changed(), if streaming => match changed {
                Ok(()) => {
                    let sent = *sent_rx.borrow_and_update();
                    progress(SyncProgress::PhotoBytes { sha, sent: offset + sent, total: photo.size });
                    deadline.as_mut().reset(tokio::time::Instant::now() + stall);
                }
                // The body stream is gone: all that is left is the answer.
                Err(_) => streaming = false,
            },
            () = &mut deadline => break Err(ClientError::Stalled(stall)),
        }
    };
    report.bytes_uploaded += *sent_rx.borrow();
    let new_offset = result?;
    Ok(new_offset >= photo.size)
}
