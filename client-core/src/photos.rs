//! The `photos` table: every photo the device captured, from capture to the server's confirmation
//! and its removal from the device. The photo lane (`sync/upload.rs`) and the queries read and move
//! a photo's state only through these functions; the files themselves are `capture`'s.

use crate::error::{ClientError, Result};
use crate::store;
use chrono::{DateTime, Utc};
use riverchief_shared::photo::Sha256;
use rusqlite::{params, Connection, Transaction};
use std::path::Path;

/// Records a captured photo as waiting for upload (a photo captured twice is one row).
pub(crate) fn record(
    tx: &Transaction<'_>,
    photo: &crate::capture::CapturedPhoto,
    now: DateTime<Utc>,
) -> Result<()> {
    // Captured again after the device removed its confirmed copy: the file is back.
    tx.execute(
        "INSERT INTO photos (sha256, content_type, size, captured_at, original_size)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (sha256) DO UPDATE SET removed_at = NULL",
        params![
            photo.sha256.hex(),
            photo.photo_type.mime(),
            i64::try_from(photo.size).unwrap_or(i64::MAX),
            store::time(now),
            photo
                .original_size
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX))
        ],
    )?;
    Ok(())
}

/// Removes photos the server has confirmed from the device: those confirmed more than `retention`
/// before `now`, then the oldest confirmed ones while the photos kept on the device take more than
/// `budget_bytes`. A photo not confirmed (waiting, or refused) is never removed. Returns how many
/// were removed.
pub(crate) fn prune(
    conn: &rusqlite::Connection,
    photos_dir: &Path,
    retention: chrono::Duration,
    budget_bytes: u64,
    now: DateTime<Utc>,
) -> Result<u64> {
    let confirmed: Vec<(String, i64, String)> = {
        let mut stmt = conn.prepare(
            "SELECT sha256, size, COALESCE(settled_at, captured_at) FROM photos
             WHERE state = 'confirmed' AND removed_at IS NULL ORDER BY 3, sha256",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let kept: i64 = conn.query_row(
        "SELECT COALESCE(SUM(size), 0) FROM photos WHERE removed_at IS NULL",
        [],
        |r| r.get(0),
    )?;
    let mut kept = u64::try_from(kept).unwrap_or_default();
    let cutoff = store::time(now - retention);
    let mut removed = 0;
    for (sha, size, settled) in confirmed {
        if settled > cutoff && kept <= budget_bytes {
            break;
        }
        let path = photos_dir.join(&sha);
        // The file first: a crash between the two leaves a row that the next prune settles.
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ClientError::File { path, source: e }),
        }
        conn.execute(
            "UPDATE photos SET removed_at = ?2 WHERE sha256 = ?1",
            params![sha, store::time(now)],
        )?;
        kept = kept.saturating_sub(u64::try_from(size).unwrap_or_default());
        removed += 1;
    }
    Ok(removed)
}

/// Whether the device still keeps the photo's file.
pub(crate) fn kept(conn: &rusqlite::Connection, sha: &Sha256) -> Result<bool> {
    use rusqlite::OptionalExtension;
    let removed: Option<Option<String>> = conn
        .query_row(
            "SELECT removed_at FROM photos WHERE sha256 = ?1",
            [sha.hex()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(matches!(removed, Some(None)))
}

/// A photo still to be uploaded. Photos whose every record was refused by the server are left out:
/// nobody expects them any more.
const WAITING: &str = "FROM photos p WHERE p.state = 'pending' AND EXISTS (
    SELECT 1 FROM photo_refs r JOIN outbox o ON o.mutation_id = r.mutation_id
    WHERE r.sha256 = p.sha256 AND o.state <> 'rejected')";

#[derive(Debug, Clone)]
pub(crate) struct WaitingPhoto {
    pub sha: Sha256,
    pub size: u64,
    pub content_type: String,
    pub upload_url: Option<String>,
}

/// Whether a waiting photo belongs to an urgent record (a critical hazard report).
const URGENT: &str =
    "(SELECT MAX(o.urgent) FROM photo_refs r JOIN outbox o ON o.mutation_id = r.mutation_id
                   WHERE r.sha256 = p.sha256)";

/// The photos to upload (only those of urgent records when `urgent_only`): those of urgent reports
/// first, then in the order they were captured.
pub(crate) fn waiting(conn: &Connection, urgent_only: bool) -> Result<Vec<WaitingPhoto>> {
    let only = if urgent_only {
        format!("AND {URGENT} = 1")
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT p.sha256, p.size, p.content_type, p.upload_url {WAITING} {only}
         ORDER BY {URGENT} DESC, p.captured_at, p.rowid"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (sha, size, content_type, upload_url) = row?;
        out.push(WaitingPhoto {
            sha: store::parse_stored(&sha, |s| Sha256::parse(s, "sha256"))?,
            size: u64::try_from(size).unwrap_or_default(),
            content_type,
            upload_url,
        });
    }
    Ok(out)
}

pub(crate) fn count_waiting(conn: &Connection) -> Result<usize> {
    let n: i64 = conn.query_row(&format!("SELECT COUNT(*) {WAITING}"), [], |r| r.get(0))?;
    Ok(usize::try_from(n).unwrap_or_default())
}

/// The bytes of the photos still to be uploaded.
pub(crate) fn bytes_waiting(conn: &Connection) -> Result<u64> {
    let n: i64 = conn.query_row(
        &format!("SELECT COALESCE(SUM(p.size), 0) {WAITING}"),
        [],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or_default())
}

pub(crate) fn set_upload_url(conn: &Connection, sha: &Sha256, url: Option<&str>) -> Result<()> {
    conn.execute(
        "UPDATE photos SET upload_url = ?2 WHERE sha256 = ?1",
        params![sha.hex(), url],
    )?;
    Ok(())
}

pub(crate) fn confirm(conn: &Connection, sha: &Sha256) -> Result<()> {
    conn.execute(
        "UPDATE photos SET state = 'confirmed', upload_url = NULL, error = NULL, settled_at = ?2
         WHERE sha256 = ?1",
        params![sha.hex(), store::time(Utc::now())],
    )?;
    Ok(())
}

pub(crate) fn fail(conn: &Connection, sha: &Sha256, reason: &str) -> Result<()> {
    conn.execute(
        "UPDATE photos SET state = 'failed', upload_url = NULL, error = ?2, settled_at = ?3
         WHERE sha256 = ?1",
        params![sha.hex(), reason, store::time(Utc::now())],
    )?;
    Ok(())
}

/// Keeps the last transient error of a photo that stays pending.
pub(crate) fn note_error(conn: &Connection, sha: &Sha256, error: &str) -> Result<()> {
    conn.execute(
        "UPDATE photos SET attempts = attempts + 1, error = ?2 WHERE sha256 = ?1",
        params![sha.hex(), error],
    )?;
    Ok(())
}
