//! Photos the server holds and tus uploads in progress.
//!
//! A photo has arrived when its row is in `photos`; the row is written in the same transaction that
//! ends its upload and tells every issue expecting it (a change per issue), after the bytes are in the
//! store. So a row always has its bytes, and bytes without a row (a crash between the two) are simply
//! uploaded again.

use super::schema::{photos, uploads};
use super::{parse_id, ts, Conn, QueryResult};
use crate::photo_store::UploadId;
use diesel::prelude::*;
use riverchief_shared::id::UserId;
use riverchief_shared::photo::{PhotoType, Sha256};

/// An upload in progress, as its creator announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: UploadId,
    pub sha256: Sha256,
    pub length: u64,
    /// The type the client declared, if any (the bytes decide in the end).
    pub content_type: Option<PhotoType>,
    pub created_by: UserId,
}

/// A stored photo's size and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Photo {
    pub sha256: Sha256,
    pub size_bytes: u64,
    pub content_type: String,
}

fn corrupt(what: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(what.into())
}

pub fn insert_upload(conn: &mut Conn, upload: &Upload) -> QueryResult<()> {
    let length = i64::try_from(upload.length)
        .map_err(|_| diesel::result::Error::SerializationError("upload length".into()))?;
    diesel::insert_into(uploads::table)
        .values((
            uploads::id.eq(upload.id.to_string()),
            uploads::sha256.eq(upload.sha256.hex()),
            uploads::length.eq(length),
            uploads::content_type.eq(upload.content_type.map(PhotoType::mime)),
            uploads::created_by.eq(upload.created_by.to_string()),
            uploads::created_at.eq(ts(chrono::Utc::now())),
        ))
        .execute(conn)?;
    Ok(())
}

/// The upload with this id, if `user` created it.
pub fn upload_of(conn: &mut Conn, id: UploadId, user: UserId) -> QueryResult<Option<Upload>> {
    let row = uploads::table
        .filter(uploads::id.eq(id.to_string()))
        .filter(uploads::created_by.eq(user.to_string()))
        .select((
            uploads::sha256,
            uploads::length,
            uploads::content_type,
            uploads::created_by,
        ))
        .first::<(String, i64, Option<String>, String)>(conn)
        .optional()?;
    let Some((sha, length, content_type, created_by)) = row else {
        return Ok(None);
    };
    Ok(Some(Upload {
        id,
        sha256: Sha256::parse(&sha, "sha256")
            .map_err(|e| corrupt(format!("upload {id}: {}", e.message)))?,
        length: u64::try_from(length)
            .map_err(|_| corrupt(format!("upload {id}: length {length}")))?,
        content_type: content_type.as_deref().and_then(PhotoType::from_mime),
        created_by: parse_id(&created_by)?,
    }))
}

pub fn delete_upload(conn: &mut Conn, id: UploadId) -> QueryResult<()> {
    diesel::delete(uploads::table.filter(uploads::id.eq(id.to_string()))).execute(conn)?;
    Ok(())
}

pub fn upload_exists(conn: &mut Conn, id: UploadId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        uploads::table.filter(uploads::id.eq(id.to_string())),
    ))
    .get_result(conn)
}

/// Uploads created before `cutoff` (a stored timestamp, see [`super::ts`]).
pub fn uploads_created_before(conn: &mut Conn, cutoff: &str) -> QueryResult<Vec<UploadId>> {
    let ids: Vec<String> = uploads::table
        .filter(uploads::created_at.lt(cutoff))
        .select(uploads::id)
        .load(conn)?;
    // A row whose id does not parse cannot be reached by any request; leave it to a human.
    Ok(ids.iter().filter_map(|s| UploadId::parse(s)).collect())
}

pub fn photo(conn: &mut Conn, sha: &Sha256) -> QueryResult<Option<Photo>> {
    let row = photos::table
        .filter(photos::sha256.eq(sha.hex()))
        .select((photos::size_bytes, photos::content_type))
        .first::<(i64, String)>(conn)
        .optional()?;
    row.map(|(size, content_type)| {
        Ok(Photo {
            sha256: *sha,
            size_bytes: u64::try_from(size)
                .map_err(|_| corrupt(format!("photo {sha}: size {size}")))?,
            content_type,
        })
    })
    .transpose()
}

/// Records that a photo's bytes are in the store and ends the upload that brought them: the photo
/// row (kept as it is if the photo arrived before), the upload row gone, and, when the photo is new,
/// a change for every issue that expects it. Call it inside one transaction.
pub fn record_arrival(
    conn: &mut Conn,
    upload: UploadId,
    sha: &Sha256,
    size: u64,
    photo_type: PhotoType,
    uploaded_by: UserId,
) -> QueryResult<()> {
    let size = i64::try_from(size)
        .map_err(|_| diesel::result::Error::SerializationError("photo size".into()))?;
    let hex = sha.hex();
    // SQLite's INSERT OR IGNORE; PostgreSQL will need ON CONFLICT DO NOTHING here.
    let inserted = diesel::insert_or_ignore_into(photos::table)
        .values((
            photos::sha256.eq(&hex),
            photos::size_bytes.eq(size),
            photos::content_type.eq(photo_type.mime()),
            photos::uploaded_by.eq(uploaded_by.to_string()),
            photos::created_at.eq(ts(chrono::Utc::now())),
        ))
        .execute(conn)?;
    delete_upload(conn, upload)?;
    // Issues learnt of the photo when it first arrived; a second upload of it changes nothing.
    if inserted > 0 {
        for issue in super::issues::issues_expecting_photo(conn, &hex)? {
            super::issues::record_issue_change(conn, issue)?;
        }
    }
    Ok(())
}
