//! Photos the server holds and tus uploads in progress.
//!
//! A photo has arrived when its row is in `photos`; the row is written in the same transaction that
//! ends its upload and tells every issue expecting it (a change per issue), after the bytes are in the
//! store. So a row always has its bytes, and bytes without a row (a crash between the two) are simply
//! uploaded again.
//!
//! An upload's row is also where instances agree about it: `upload_offset` is how many of its bytes
//! are stored (as chunk objects, see `photo_store`), and `lease_owner` / `lease_until` name the one
//! PATCH that may write to it now. The lease is taken, renewed and released by single conditional
//! `UPDATE`s, so two instances can never both hold it (see [`take_lease`]).

use super::schema::{photos, uploads};
use super::{parse_id, Conn, QueryResult};
use diesel::prelude::*;
use riverchief_shared::id::{UploadId, UserId};
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
    /// How many bytes are stored: where the next PATCH must start.
    pub offset: u64,
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
            uploads::created_at.eq(super::written_now()),
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
            uploads::upload_offset,
        ))
        .first::<(String, i64, Option<String>, String, i64)>(conn)
        .optional()?;
    let Some((sha, length, content_type, created_by, offset)) = row else {
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
        offset: u64::try_from(offset)
            .map_err(|_| corrupt(format!("upload {id}: offset {offset}")))?,
    }))
}

fn stored_offset(offset: u64) -> QueryResult<i64> {
    i64::try_from(offset)
        .map_err(|_| diesel::result::Error::SerializationError("upload offset".into()))
}

/// Takes the upload's lease for a writer that starts at `offset`: only when the upload is at that
/// offset and nobody holds a lease that is still running at `now`. One conditional `UPDATE`, so of
/// two writers racing for it at most one gets it. `until` and `now` are stored timestamps
/// ([`super::ts`]). Returns whether the lease was taken.
pub fn take_lease(
    conn: &mut Conn,
    id: UploadId,
    offset: u64,
    owner: &str,
    now: &str,
    until: &str,
) -> QueryResult<bool> {
    let taken = diesel::update(
        uploads::table
            .filter(uploads::id.eq(id.to_string()))
            .filter(uploads::upload_offset.eq(stored_offset(offset)?))
            .filter(
                uploads::lease_until
                    .is_null()
                    .or(uploads::lease_until.lt(now)),
            ),
    )
    .set((
        uploads::lease_until.eq(until),
        uploads::lease_owner.eq(owner),
    ))
    .execute(conn)?;
    Ok(taken > 0)
}

/// Extends a lease its owner still holds. Returns `false` when the lease is no longer `owner`'s.
pub fn renew_lease(conn: &mut Conn, id: UploadId, owner: &str, until: &str) -> QueryResult<bool> {
    let renewed = diesel::update(
        uploads::table
            .filter(uploads::id.eq(id.to_string()))
            .filter(uploads::lease_owner.eq(owner)),
    )
    .set(uploads::lease_until.eq(until))
    .execute(conn)?;
    Ok(renewed > 0)
}

/// Ends `owner`'s lease and sets the upload's offset, in one statement. Returns `false` when the
/// lease was no longer `owner`'s (nothing is changed then).
pub fn release_lease(conn: &mut Conn, id: UploadId, owner: &str, offset: u64) -> QueryResult<bool> {
    let released = diesel::update(
        uploads::table
            .filter(uploads::id.eq(id.to_string()))
            .filter(uploads::lease_owner.eq(owner)),
    )
    .set((
        uploads::upload_offset.eq(stored_offset(offset)?),
        uploads::lease_until.eq(None::<String>),
        uploads::lease_owner.eq(None::<String>),
    ))
    .execute(conn)?;
    Ok(released > 0)
}

/// Frees every lease held by the server process `instance`, leaving offsets as they are: the
/// leases of a process known to be gone. Returns how many were freed.
pub fn free_leases_of_instance(conn: &mut Conn, instance: &str) -> QueryResult<usize> {
    // A lease's owner is `<instance id>:<request>`.
    let owners = format!("{instance}:%");
    diesel::update(uploads::table.filter(uploads::lease_owner.like(owners)))
        .set((
            uploads::lease_until.eq(None::<String>),
            uploads::lease_owner.eq(None::<String>),
        ))
        .execute(conn)
}

/// The upload's offset and lease expiry, whoever created it; `None` when there is no such upload.
/// For telling why [`take_lease`] refused.
pub fn upload_lease(conn: &mut Conn, id: UploadId) -> QueryResult<Option<(u64, Option<String>)>> {
    let row = uploads::table
        .filter(uploads::id.eq(id.to_string()))
        .select((uploads::upload_offset, uploads::lease_until))
        .first::<(i64, Option<String>)>(conn)
        .optional()?;
    row.map(|(offset, until)| {
        let offset =
            u64::try_from(offset).map_err(|_| corrupt(format!("upload {id}: offset {offset}")))?;
        Ok((offset, until))
    })
    .transpose()
}

pub fn delete_upload(conn: &mut Conn, id: UploadId) -> QueryResult<()> {
    diesel::delete(uploads::table.filter(uploads::id.eq(id.to_string()))).execute(conn)?;
    Ok(())
}

/// Deletes an upload unless a lease on it is still running at `now`. Returns whether it was deleted.
pub fn delete_idle_upload(conn: &mut Conn, id: UploadId, now: &str) -> QueryResult<bool> {
    let deleted = diesel::delete(
        uploads::table
            .filter(uploads::id.eq(id.to_string()))
            .filter(
                uploads::lease_until
                    .is_null()
                    .or(uploads::lease_until.lt(now)),
            ),
    )
    .execute(conn)?;
    Ok(deleted > 0)
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
    Ok(ids.iter().filter_map(|s| UploadId::parse(s).ok()).collect())
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
/// a change for every issue that expects it (its deadlines judged at `now`). Call it inside one
/// transaction.
pub fn record_arrival(
    conn: &mut Conn,
    upload: UploadId,
    sha: &Sha256,
    size: u64,
    photo_type: PhotoType,
    uploaded_by: UserId,
    now: chrono::DateTime<chrono::Utc>,
) -> QueryResult<()> {
    let size = i64::try_from(size)
        .map_err(|_| diesel::result::Error::SerializationError("photo size".into()))?;
    let hex = sha.hex();
    let inserted = super::insert_or_ignore!(
        conn,
        photos::table,
        (
            photos::sha256.eq(&hex),
            photos::size_bytes.eq(size),
            photos::content_type.eq(photo_type.mime()),
            photos::uploaded_by.eq(uploaded_by.to_string()),
            photos::created_at.eq(super::written_now()),
        )
    )?;
    delete_upload(conn, upload)?;
    // Issues learnt of the photo when it first arrived; a second upload of it changes nothing.
    if inserted > 0 {
        for issue in super::issues::issues_expecting_photo(conn, &hex)? {
            super::issues::record_issue_change(conn, issue, now)?;
        }
    }
    Ok(())
}

/// How many uploads are begun and not yet complete.
pub fn uploads_in_progress(conn: &mut Conn) -> QueryResult<i64> {
    uploads::table.count().get_result(conn)
}
