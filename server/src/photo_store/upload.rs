//! Uploads that any instance can continue: tus `PATCH`es over the shared store and database.
//!
//! One `PATCH` ([`PhotoStore::begin_chunk`], then a [`ChunkWriter`]):
//!
//! 1. takes the upload's lease: one conditional `UPDATE` that succeeds only at the client's offset and
//!    when no other lease is running (else 409). The lease runs a minute and is renewed every third of
//!    that while bytes keep arriving, so a slow phone keeps it; a request that stalls for a minute, or
//!    whose instance dies, loses it, and the client's next `PATCH` may take over (at once, when a
//!    restarted instance frees its predecessor's leases: see [`PhotoStore::sweep_stale_uploads`]);
//! 2. writes the body to a spool file of this instance, so that a cut connection keeps what arrived;
//! 3. stores the spool file as the chunk object `uploads/<id>/<offset>`, streamed, never whole in
//!    memory (except for a photo sent whole in one `PATCH`: its spool file is read straight into
//!    the photo object below, and no chunk object is written);
//! 4. releases the lease and advances the offset, in one `UPDATE`.
//!
//! `HEAD` reads the offset from the database, so it counts only chunks that were stored whole.
//!
//! The last chunk is stored but does not advance the offset. With the lease still held, the chunks
//! are read in order, sniffed and hashed while the photo object is written (nothing appears unless
//! the digest matches), and the photo is recorded (`db::photos::record_arrival`: photo row, upload
//! row gone, issue changes) in one transaction. So the offset never says "complete" before the photo
//! can be served. If anything fails on the way, the lease is released at the last chunk's start and
//! the client sends that chunk again, to the same key.
//!
//! Why a chunk key never holds bytes from two requests: it is written only by the holder of the lease
//! at that offset, who renews the lease (checking it is still theirs) just before writing, and keeps
//! renewing it until done. The one gap, an instance stalled for longer than a lease in the middle of a
//! write, is caught at the end: chunks that do not add up to the length, or bytes that do not hash to
//! the announced digest, never become a photo.

use super::{photo_key, Key, ObjectWriter, PhotoStore, UploadId, READ_BUFFER};
use crate::db::photos::Upload;
use crate::db::{self, Db, DbError};
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use riverchief_shared::id::UserId;
use riverchief_shared::photo::{PhotoType, Sha256};
use sha2::Digest;
use std::collections::HashMap;
use std::io::{self, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Bytes of a photo's head that type sniffing looks at.
const SNIFF_BYTES: usize = 8 * 1024;
/// Bytes buffered in memory before one write to the spool file.
const SPOOL_BUFFER: usize = 256 * 1024;

/// How long a `HEAD` or a `PATCH` waits for a running lease to end before answering. A `PATCH` whose
/// connection was cut a moment ago is still storing what it received; the offset it leaves is the one
/// the resuming client needs. Without the wait the client would read the old offset, send its body
/// into a 409, and pay for the bytes twice on a metered phone connection.
pub(super) const SETTLE_WAIT: Duration = Duration::from_secs(5);
const SETTLE_POLL: Duration = Duration::from_millis(25);

/// What becomes of the bytes a `PATCH` brought when its body breaks off or its request is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInterrupt {
    /// Store them: the client resumes from the new offset.
    Keep,
    /// Drop them: the chunk carried a checksum, and unverified bytes must not stay.
    Discard,
}

/// Why a `PATCH` was refused or its upload could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("another request is writing to this upload")]
    Busy,
    #[error("the upload is at offset {current}")]
    OffsetMismatch { current: u64 },
    /// The upload is unknown, or its stored chunks do not add up (it was deleted then).
    #[error("the upload is gone")]
    Gone,
    #[error("the upload's lease ran out and another request took it over")]
    LeaseLost,
    /// The upload was deleted.
    #[error("the bytes are not a JPEG, PNG, WebP, HEIC or HEIF image")]
    NotAnImage,
    /// The upload was deleted.
    #[error("the bytes hash to {actual}, not {expected}")]
    Mismatch { expected: Sha256, actual: Sha256 },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("photo store: {0}")]
    Io(#[from] io::Error),
}

impl From<db::QueryError> for UploadError {
    fn from(e: db::QueryError) -> Self {
        UploadError::Db(DbError::Query(e))
    }
}

/// A photo now in the store and recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finalized {
    pub sha256: Sha256,
    pub photo_type: PhotoType,
    pub size: u64,
    /// The store had these bytes already (another upload of the same photo got there first).
    pub already_stored: bool,
}

fn chunk_key(id: UploadId, offset: u64) -> Key {
    Key::from(format!("uploads/{id}/{offset:020}"))
}

fn chunks_prefix(id: UploadId) -> Key {
    Key::from(format!("uploads/{id}"))
}

/// A chunk object of an upload.
struct StoredChunk {
    offset: u64,
    size: u64,
    key: Key,
    modified: DateTime<Utc>,
}

/// Now and the end of a lease taken now, as stored timestamps.
fn lease_times(length: Duration) -> (String, String) {
    let now = Utc::now();
    let until = TimeDelta::from_std(length)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(now);
    (db::ts(now), db::ts(until))
}

impl PhotoStore {
    /// The upload's offset once no lease is running on it (waiting at most [`SETTLE_WAIT`]; after that,
    /// the offset as it stands). `None` when the upload is gone.
    pub async fn settled_offset(&self, db: &Db, id: UploadId) -> Result<Option<u64>, UploadError> {
        let deadline = tokio::time::Instant::now() + self.settle_wait;
        loop {
            let now = db::ts(Utc::now());
            let state = db
                .run(move |conn| db::photos::upload_lease(conn, id).map_err(UploadError::from))
                .await?;
            match state {
                Some((_, Some(until)))
                    if until >= now && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(SETTLE_POLL).await;
                }
                other => return Ok(other.map(|(offset, _)| offset)),
            }
        }
    }

    /// Begins a `PATCH` of `upload` whose client believes it is at `offset`: takes the upload's lease,
    /// or says why not ([`UploadError::Busy`], [`UploadError::OffsetMismatch`], [`UploadError::Gone`]).
    pub async fn begin_chunk(
        &self,
        db: &Db,
        upload: &Upload,
        offset: u64,
        on_interrupt: OnInterrupt,
    ) -> Result<ChunkWriter, UploadError> {
        if self.settled_offset(db, upload.id).await?.is_none() {
            return Err(UploadError::Gone);
        }
        // Anonymous (unlinked) on Linux: a crash leaves nothing behind.
        let spool_dir = self.spool_dir.clone();
        let spool = tokio::task::spawn_blocking(move || tempfile::tempfile_in(&*spool_dir))
            .await
            .map_err(io::Error::other)??;
        let owner = format!("{}:{:032x}", self.instance.id, rand::random::<u128>());
        let id = upload.id;
        let (now, until) = lease_times(self.lease);
        let claimant = owner.clone();
        db.run(move |conn| -> Result<(), UploadError> {
            if db::photos::take_lease(conn, id, offset, &claimant, &now, &until)? {
                return Ok(());
            }
            // Busy before a wrong offset: the running request may still move the offset.
            Err(match db::photos::upload_lease(conn, id)? {
                None => UploadError::Gone,
                Some((_, Some(running))) if running >= now => UploadError::Busy,
                Some((current, _)) if current != offset => UploadError::OffsetMismatch { current },
                Some(_) => UploadError::Busy,
            })
        })
        .await?;
        Ok(ChunkWriter {
            inner: Some(Chunk {
                store: self.clone(),
                db: db.clone(),
                upload: upload.clone(),
                start: offset,
                written: 0,
                spool: tokio::io::BufWriter::with_capacity(
                    SPOOL_BUFFER,
                    tokio::fs::File::from_std(spool),
                ),
                lease: Lease::start(db.clone(), id, owner, self.lease),
                on_interrupt,
            }),
        })
    }

    /// The upload's chunk objects in offset order (keys that are not a chunk's are left out).
    async fn chunks(&self, id: UploadId) -> io::Result<Vec<StoredChunk>> {
        let mut chunks: Vec<StoredChunk> = self
            .list(&chunks_prefix(id))
            .try_filter_map(|meta| async move {
                let offset = meta.location.filename().and_then(|n| n.parse::<u64>().ok());
                Ok(offset.map(|offset| StoredChunk {
                    offset,
                    size: meta.size,
                    key: meta.location,
                    modified: meta.last_modified,
                }))
            })
            .try_collect()
            .await?;
        chunks.sort_by_key(|c| c.offset);
        Ok(chunks)
    }

    /// Everything under `prefix`. An object deleted while the listing runs is skipped, not an error.
    fn list(
        &self,
        prefix: &Key,
    ) -> impl futures_util::Stream<Item = io::Result<object_store::ObjectMeta>> + 'static {
        self.objects
            .list(Some(prefix))
            .filter_map(|item| async move {
                match item {
                    Ok(meta) => Some(Ok(meta)),
                    Err(object_store::Error::NotFound { .. }) => None,
                    Err(e) => Some(Err(e.into())),
                }
            })
    }

    /// Deletes objects; ones already gone are fine.
    async fn delete_all(&self, keys: Vec<Key>) -> io::Result<()> {
        let mut deleted = self
            .objects
            .delete_stream(stream::iter(keys.into_iter().map(Ok)).boxed());
        while let Some(outcome) = deleted.next().await {
            match outcome {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn delete_chunks(&self, id: UploadId) -> io::Result<()> {
        let keys = self.chunks(id).await?.into_iter().map(|c| c.key).collect();
        self.delete_all(keys).await
    }

    /// Deletes an upload's row and chunks, logging (not failing on) what goes wrong: used where the
    /// request fails anyway, and the stale-upload sweep cleans up whatever is left.
    async fn forget(&self, db: &Db, id: UploadId) {
        if let Err(e) = db
            .run(move |conn| db::photos::delete_upload(conn, id).map_err(DbError::from))
            .await
        {
            tracing::warn!(upload = %id, error = %e, "deleting an upload row");
        }
        if let Err(e) = self.delete_chunks(id).await {
            tracing::warn!(upload = %id, error = %e, "deleting an upload's chunks");
        }
    }

    /// Start-up housekeeping. Frees the leases that the process which had this [`super::Instance`]
    /// id before left behind (it is gone: its requests will never end). Deletes stale uploads: rows
    /// created longer than `max_age` ago none of whose chunks was written in that time either (and
    /// that no request holds now), with their chunks; and chunks as old whose upload has no row.
    /// Returns how many uploads were removed.
    pub async fn sweep_stale_uploads(
        &self,
        db: &Db,
        max_age: Duration,
    ) -> Result<usize, UploadError> {
        let mine = self.instance.id.clone();
        let freed = db
            .run(move |conn| {
                db::photos::free_leases_of_instance(conn, &mine).map_err(UploadError::from)
            })
            .await?;
        if freed > 0 {
            tracing::info!(
                freed,
                "freed upload leases left by this instance's predecessor"
            );
        }
        let now = Utc::now();
        let cutoff = TimeDelta::from_std(max_age)
            .ok()
            .and_then(|age| now.checked_sub_signed(age))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let (now_ts, cutoff_ts) = (db::ts(now), db::ts(cutoff));
        let old = db
            .run(move |conn| {
                db::photos::uploads_created_before(conn, &cutoff_ts).map_err(UploadError::from)
            })
            .await?;
        let mut removed = 0;
        for id in old {
            let chunks = self.chunks(id).await?;
            if chunks.iter().any(|c| c.modified > cutoff) {
                continue;
            }
            let now = now_ts.clone();
            let deleted = db
                .run(move |conn| {
                    db::photos::delete_idle_upload(conn, id, &now).map_err(UploadError::from)
                })
                .await?;
            if deleted {
                self.delete_all(chunks.into_iter().map(|c| c.key).collect())
                    .await?;
                removed += 1;
            }
        }

        // Objects of uploads that have no row: deleted while a request was still storing a chunk,
        // or left by a crash between the two. (`<id>.part` is a part file from before chunks.)
        let mut orphans: HashMap<UploadId, (DateTime<Utc>, Vec<Key>)> = HashMap::new();
        let mut listing = std::pin::pin!(self.list(&Key::from("uploads")));
        while let Some(meta) = listing.try_next().await? {
            let id = meta
                .location
                .parts()
                .nth(1)
                .and_then(|p| UploadId::parse(p.as_ref().trim_end_matches(".part")).ok());
            let Some(id) = id else { continue };
            let entry = orphans
                .entry(id)
                .or_insert((meta.last_modified, Vec::new()));
            entry.0 = entry.0.max(meta.last_modified);
            entry.1.push(meta.location);
        }
        for (id, (newest, keys)) in orphans {
            if newest > cutoff {
                continue;
            }
            let has_row = db
                .run(move |conn| db::photos::upload_exists(conn, id).map_err(UploadError::from))
                .await?;
            if !has_row {
                self.delete_all(keys).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// One `PATCH`'s right to write to its upload, held in the database. It is renewed every third of its
/// length while bytes keep arriving, and always once the request is storing them ([`Lease::hold`]);
/// a body that stalls for a whole lease (a phone gone out of signal, a half-open connection) lets it
/// run out, so that the client's next `PATCH` may take over. Dropping it stops the renewal; the lease
/// then runs out by itself.
struct Lease {
    id: UploadId,
    owner: String,
    length: Duration,
    state: Arc<LeaseState>,
    renewer: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct LeaseState {
    /// A renewal found the lease taken over.
    lost: AtomicBool,
    /// Bytes arrived since the last renewal.
    progress: AtomicBool,
    /// The request is storing what it has: renew whatever arrives.
    held: AtomicBool,
}

impl Lease {
    fn start(db: Db, id: UploadId, owner: String, length: Duration) -> Lease {
        let state = Arc::new(LeaseState::default());
        state.progress.store(true, Ordering::SeqCst);
        let renewer = tokio::spawn(renew(db, id, owner.clone(), length, state.clone()));
        Lease {
            id,
            owner,
            length,
            state,
            renewer,
        }
    }

    /// Whether a renewal found the lease taken over.
    fn lost(&self) -> bool {
        self.state.lost.load(Ordering::SeqCst)
    }

    /// Bytes arrived: the request is alive.
    fn progressed(&self) {
        self.state.progress.store(true, Ordering::SeqCst);
    }

    /// Renews the lease now and from now on until it is released, or says that it was lost. Called
    /// before anything is stored under it, so that a request whose lease ran out never writes.
    async fn hold(&self, db: &Db) -> Result<(), UploadError> {
        self.state.held.store(true, Ordering::SeqCst);
        let (id, owner) = (self.id, self.owner.clone());
        let (_, until) = lease_times(self.length);
        let renewed = db
            .run(move |conn| {
                db::photos::renew_lease(conn, id, &owner, &until).map_err(UploadError::from)
            })
            .await?;
        if renewed && !self.lost() {
            Ok(())
        } else {
            self.state.lost.store(true, Ordering::SeqCst);
            Err(UploadError::LeaseLost)
        }
    }

    /// Ends the lease and sets the upload's offset, in one statement.
    async fn release(&self, db: &Db, offset: u64) -> Result<(), UploadError> {
        self.renewer.abort();
        let (id, owner) = (self.id, self.owner.clone());
        let released = db
            .run(move |conn| {
                db::photos::release_lease(conn, id, &owner, offset).map_err(UploadError::from)
            })
            .await?;
        if released {
            Ok(())
        } else {
            Err(UploadError::LeaseLost)
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

async fn renew(db: Db, id: UploadId, owner: String, length: Duration, state: Arc<LeaseState>) {
    loop {
        tokio::time::sleep(length / 3).await;
        let alive =
            state.progress.swap(false, Ordering::SeqCst) || state.held.load(Ordering::SeqCst);
        if !alive {
            continue;
        }
        let (_, until) = lease_times(length);
        let owner = owner.clone();
        let renewed = db
            .run(move |conn| {
                db::photos::renew_lease(conn, id, &owner, &until).map_err(UploadError::from)
            })
            .await;
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                state.lost.store(true, Ordering::SeqCst);
                return;
            }
            // The lease still runs; the next try may reach the database.
            Err(e) => tracing::warn!(upload = %id, error = %e, "renewing an upload's lease"),
        }
    }
}

/// One `PATCH`'s bytes on their way into the store. Get one from [`PhotoStore::begin_chunk`]; end it
/// with [`ChunkWriter::keep`] (a chunk before the last), [`ChunkWriter::finish`] (the last) or
/// [`ChunkWriter::discard`]. Dropped unended (its request was cancelled), it settles by itself as
/// its [`OnInterrupt`] says, holding the lease until that is done.
pub struct ChunkWriter {
    /// `None` only once an ending method has taken it.
    inner: Option<Chunk>,
}

struct Chunk {
    store: PhotoStore,
    db: Db,
    upload: Upload,
    start: u64,
    written: u64,
    spool: tokio::io::BufWriter<tokio::fs::File>,
    lease: Lease,
    on_interrupt: OnInterrupt,
}

impl ChunkWriter {
    fn chunk(&mut self) -> &mut Chunk {
        self.inner
            .as_mut()
            .expect("only the ending methods take the chunk, and they consume the writer")
    }

    fn take(mut self) -> Chunk {
        self.inner
            .take()
            .expect("only the ending methods take the chunk, and they consume the writer")
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.inner.as_ref().map_or(0, |c| c.written)
    }

    /// Appends `bytes` to the spool file.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), UploadError> {
        let chunk = self.chunk();
        if chunk.lease.lost() {
            return Err(UploadError::LeaseLost);
        }
        chunk.spool.write_all(bytes).await?;
        chunk.written += bytes.len() as u64;
        chunk.lease.progressed();
        Ok(())
    }

    /// Drops this request's bytes; the upload stays where it was.
    pub async fn discard(self) -> Result<(), UploadError> {
        self.take().discard().await
    }

    /// Stores this request's bytes as a chunk and returns the upload's new offset. Bytes that would
    /// complete the upload are dropped instead (only [`ChunkWriter::finish`] may complete it).
    pub async fn keep(self) -> Result<u64, UploadError> {
        self.take().keep().await
    }

    /// Stores the last chunk and completes the upload: the photo is verified, stored and recorded
    /// as `uploader`'s. On [`UploadError::NotAnImage`] and [`UploadError::Mismatch`] the upload is
    /// deleted; on other errors it stays where it was before this request.
    pub async fn finish(self, uploader: UserId) -> Result<Finalized, UploadError> {
        self.take().finish(uploader).await
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        let Some(chunk) = self.inner.take() else {
            return;
        };
        // Without a runtime nothing can be stored; the lease runs out and the client resends.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let id = chunk.upload.id;
            let settled = match chunk.on_interrupt {
                OnInterrupt::Keep => chunk.keep().await.map(drop),
                OnInterrupt::Discard => chunk.discard().await,
            };
            if let Err(e) = settled {
                tracing::warn!(upload = %id, error = %e, "settling an interrupted upload chunk");
            }
        });
    }
}

impl Chunk {
    fn end(&self) -> u64 {
        self.start + self.written
    }

    async fn discard(self) -> Result<(), UploadError> {
        self.lease.release(&self.db, self.start).await
    }

    async fn keep(mut self) -> Result<u64, UploadError> {
        let end = self.end();
        if self.written == 0 || end >= self.upload.length {
            let start = self.start;
            self.discard().await?;
            return Ok(start);
        }
        if let Err(e) = self.store_spool().await {
            self.release_after_failure().await;
            return Err(e);
        }
        self.lease.release(&self.db, end).await?;
        Ok(end)
    }

    async fn finish(mut self, uploader: UserId) -> Result<Finalized, UploadError> {
        if self.end() != self.upload.length {
            self.discard().await?;
            return Err(io::Error::other("an upload was finished before its last byte").into());
        }
        let outcome = self.store_and_record(uploader).await;
        let id = self.upload.id;
        match outcome {
            Ok(finalized) => {
                // The upload row is gone with the lease on it; the chunks are garbage now.
                if let Err(e) = self.store.delete_chunks(id).await {
                    tracing::warn!(upload = %id, error = %e, "deleting a finished upload's chunks");
                }
                Ok(finalized)
            }
            Err(
                e @ (UploadError::NotAnImage | UploadError::Mismatch { .. } | UploadError::Gone),
            ) => {
                self.store.forget(&self.db, id).await;
                Err(e)
            }
            Err(e) => {
                self.release_after_failure().await;
                Err(e)
            }
        }
    }

    async fn store_and_record(&mut self, uploader: UserId) -> Result<Finalized, UploadError> {
        // A photo sent whole in one `PATCH` becomes the photo straight from the spool file: no
        // chunk object is written and read back.
        let whole = self.start == 0 && self.written == self.upload.length;
        let finalized = if whole {
            self.spool.flush().await?;
            self.lease.hold(&self.db).await?;
            let file = self.spool.get_mut();
            file.seek(SeekFrom::Start(0)).await?;
            let source = Source::Spool(file.take(self.written));
            finalize(&self.store, &self.upload, &self.lease, source).await?
        } else {
            self.store_spool().await?;
            finalize(&self.store, &self.upload, &self.lease, Source::Chunks).await?
        };
        let id = self.upload.id;
        self.db
            .transaction(move |conn| {
                db::photos::record_arrival(
                    conn,
                    id,
                    &finalized.sha256,
                    finalized.size,
                    finalized.photo_type,
                    uploader,
                    Utc::now(),
                )
                .map_err(UploadError::from)
            })
            .await?;
        Ok(finalized)
    }

    /// Gives the upload back at this request's start. The chunk object this request may have
    /// stored there is overwritten by the next request at that offset.
    async fn release_after_failure(&self) {
        if self.lease.lost() {
            return;
        }
        if let Err(e) = self.lease.release(&self.db, self.start).await {
            tracing::warn!(upload = %self.upload.id, error = %e, "releasing an upload's lease");
        }
    }

    /// Stores the spool file as the chunk object at this request's start.
    async fn store_spool(&mut self) -> Result<(), UploadError> {
        self.spool.flush().await?;
        self.lease.hold(&self.db).await?;
        let file = self.spool.get_mut();
        file.seek(SeekFrom::Start(0)).await?;
        let mut out = self.store.writer(chunk_key(self.upload.id, self.start));
        let mut bytes =
            tokio_util::io::ReaderStream::with_capacity(file.take(self.written), READ_BUFFER);
        while let Some(piece) = bytes.next().await {
            let put = match piece {
                Ok(piece) => out.put(piece).await,
                Err(e) => Err(e),
            };
            if let Err(e) = put {
                out.abort().await;
                return Err(e.into());
            }
        }
        out.finish().await?;
        Ok(())
    }
}

/// Where a completed upload's bytes are read from.
enum Source<'a> {
    /// Its chunk objects, in offset order.
    Chunks,
    /// The spool file of the one `PATCH` that brought all of it.
    Spool(tokio::io::Take<&'a mut tokio::fs::File>),
}

/// Reads the upload's bytes in order (its chunks, or the spool of a photo sent whole), sniffs and
/// hashes them, and writes the photo object unless the store has it already. The object appears
/// only when the bytes are an image that hashes to the announced digest.
async fn finalize(
    store: &PhotoStore,
    upload: &Upload,
    lease: &Lease,
    source: Source<'_>,
) -> Result<Finalized, UploadError> {
    let chunks = match source {
        Source::Chunks => {
            let chunks = store.chunks(upload.id).await?;
            let mut expected_offset = 0;
            for chunk in &chunks {
                if chunk.offset != expected_offset {
                    tracing::error!(upload = %upload.id, offset = chunk.offset, expected_offset, "chunks do not add up");
                    return Err(UploadError::Gone);
                }
                expected_offset += chunk.size;
            }
            if expected_offset != upload.length {
                tracing::error!(upload = %upload.id, stored = expected_offset, length = upload.length, "chunks do not add up");
                return Err(UploadError::Gone);
            }
            Some(chunks)
        }
        Source::Spool(_) => None,
    };
    let target = photo_key(&upload.sha256);
    let already_stored = store.has(&target).await?;
    let mut out = (!already_stored).then(|| store.writer(target));
    let verified = match (source, chunks) {
        (Source::Spool(file), _) => verify_spool(file, out.as_mut()).await,
        (Source::Chunks, chunks) => {
            verify(store, chunks.as_deref().unwrap_or_default(), out.as_mut()).await
        }
    };
    let refusal = match verified {
        Err(e) => e.into(),
        Ok(Verified::NotAnImage) => UploadError::NotAnImage,
        Ok(Verified::Image { sha256, .. }) if sha256 != upload.sha256 => UploadError::Mismatch {
            expected: upload.sha256,
            actual: sha256,
        },
        Ok(Verified::Image { .. }) if lease.lost() => UploadError::LeaseLost,
        Ok(Verified::Image { sha256, photo_type }) => {
            if let Some(out) = out {
                out.finish().await?;
            }
            return Ok(Finalized {
                sha256,
                photo_type,
                size: upload.length,
                already_stored,
            });
        }
    };
    if let Some(out) = out {
        out.abort().await;
    }
    Err(refusal)
}

enum Verified {
    NotAnImage,
    Image {
        sha256: Sha256,
        photo_type: PhotoType,
    },
}

/// Streams the chunks through the type sniffer and the hasher into `out`. Nothing reaches `out`
/// before the head was sniffed as an image; a non-image stops the reading there.
async fn verify(
    store: &PhotoStore,
    chunks: &[StoredChunk],
    mut out: Option<&mut ObjectWriter>,
) -> io::Result<Verified> {
    let mut v = Verifier::default();
    for chunk in chunks {
        let mut bytes = store.read(&chunk.key).await?;
        while let Some(piece) = bytes.next().await {
            if !v.feed(piece?, out.as_deref_mut()).await? {
                return Ok(Verified::NotAnImage);
            }
        }
    }
    v.finish(out).await
}

/// [`verify`], of the bytes in a spool file.
async fn verify_spool(
    file: tokio::io::Take<&mut tokio::fs::File>,
    mut out: Option<&mut ObjectWriter>,
) -> io::Result<Verified> {
    let mut v = Verifier::default();
    let mut bytes = tokio_util::io::ReaderStream::with_capacity(file, READ_BUFFER);
    while let Some(piece) = bytes.next().await {
        if !v.feed(piece?, out.as_deref_mut()).await? {
            return Ok(Verified::NotAnImage);
        }
    }
    v.finish(out).await
}

/// The type sniffer and the hasher, fed a photo's bytes in order.
#[derive(Default)]
struct Verifier {
    hasher: sha2::Sha256,
    /// The head, held back until it is long enough to sniff.
    head: Vec<u8>,
    photo_type: Option<PhotoType>,
}

impl Verifier {
    /// Hashes `piece` and passes it to `out` once the head is sniffed as an image; `false` when
    /// it is not one (stop reading).
    async fn feed(&mut self, piece: Bytes, out: Option<&mut ObjectWriter>) -> io::Result<bool> {
        self.hasher.update(&piece);
        if self.photo_type.is_some() {
            if let Some(out) = out {
                out.put(piece).await?;
            }
            return Ok(true);
        }
        self.head.extend_from_slice(&piece);
        if self.head.len() >= SNIFF_BYTES {
            self.photo_type = PhotoType::sniff(&self.head[..SNIFF_BYTES]);
            if self.photo_type.is_none() {
                return Ok(false);
            }
            if let Some(out) = out {
                out.put(Bytes::from(std::mem::take(&mut self.head))).await?;
            }
        }
        Ok(true)
    }

    /// The verdict, once every byte was fed.
    async fn finish(mut self, out: Option<&mut ObjectWriter>) -> io::Result<Verified> {
        if self.photo_type.is_none() {
            // A photo shorter than the sniffing window.
            self.photo_type = PhotoType::sniff(&self.head);
            if let (Some(_), Some(out)) = (self.photo_type, out) {
                out.put(Bytes::from(std::mem::take(&mut self.head))).await?;
            }
        }
        Ok(match self.photo_type {
            None => Verified::NotAnImage,
            Some(photo_type) => Verified::Image {
                sha256: Sha256::from_digest(self.hasher.finalize().into()),
                photo_type,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riverchief_shared::api::UserInfo;
    use riverchief_shared::domain::Role;
    use std::path::{Path, PathBuf};

    /// A database and a store in a temp dir, as one server instance sees them, and a user who uploads.
    struct Server {
        db: Db,
        store: PhotoStore,
        user: UserId,
        objects: PathBuf,
        database: Arc<TestDatabase>,
        _dir: Arc<tempfile::TempDir>,
    }

    /// A fresh database: a file in the temp dir, or a new database on the PostgreSQL server of the
    /// test pass (`db::scratch`, dropped at the end), so that the leases' conditional updates are
    /// tested on both backends.
    struct TestDatabase {
        url: String,
        _pg: Option<db::scratch::ScratchDb>,
    }

    impl TestDatabase {
        fn new(dir: &Path) -> TestDatabase {
            let Some(admin) = db::scratch::ScratchDb::server() else {
                let path = dir.join("riverchief.sqlite3");
                return TestDatabase {
                    url: path.to_string_lossy().into_owned(),
                    _pg: None,
                };
            };
            let pg =
                db::scratch::ScratchDb::create(&admin, "riverchief_uploads").expect("PostgreSQL");
            TestDatabase {
                url: pg.url().to_owned(),
                _pg: Some(pg),
            }
        }
    }

    impl Server {
        fn new() -> Server {
            let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
            let database = Arc::new(TestDatabase::new(dir.path()));
            let db = Db::open(&database.url).expect("database");
            let user = UserInfo {
                id: UserId::new(),
                username: "zhangwei".into(),
                display_name: "张伟".into(),
                role: Role::Patroller,
            };
            db::users::insert(&mut db.conn().expect("conn"), &user, "not a hash").expect("user");
            let objects = dir.path().join("objects");
            let store = open_store(dir.path(), &objects);
            Server {
                db,
                store,
                user: user.id,
                objects,
                database,
                _dir: dir,
            }
        }

        /// Another instance on the same database and the same store, with its own spool folder.
        fn sibling(&self) -> Server {
            let spool = self._dir.path().join("sibling");
            Server {
                db: Db::open(&self.database.url).expect("database"),
                store: open_store(&spool, &self.objects),
                user: self.user,
                objects: self.objects.clone(),
                database: self.database.clone(),
                _dir: self._dir.clone(),
            }
        }

        async fn create(&self, bytes: &[u8], claimed: Sha256) -> Upload {
            let upload = Upload {
                id: UploadId::new(),
                sha256: claimed,
                length: bytes.len() as u64,
                content_type: None,
                created_by: self.user,
                offset: 0,
            };
            let row = upload.clone();
            self.db
                .run(move |conn| db::photos::insert_upload(conn, &row).map_err(UploadError::from))
                .await
                .expect("insert upload");
            upload
        }

        /// The upload as `HEAD` sees it.
        async fn head(&self, id: UploadId) -> Option<Upload> {
            let user = self.user;
            self.db
                .run(move |conn| db::photos::upload_of(conn, id, user).map_err(UploadError::from))
                .await
                .expect("upload_of")
        }

        async fn begin(&self, upload: &Upload, offset: u64) -> Result<ChunkWriter, UploadError> {
            self.store
                .begin_chunk(&self.db, upload, offset, OnInterrupt::Keep)
                .await
        }

        async fn recorded(&self, sha: Sha256) -> bool {
            self.db
                .run(move |conn| db::photos::photo(conn, &sha).map_err(UploadError::from))
                .await
                .expect("photo row")
                .is_some()
        }

        fn files_under(&self, folder: &str) -> usize {
            files_under(&self.objects.join(folder))
        }
    }

    fn open_store(data_dir: &Path, objects: &Path) -> PhotoStore {
        // A file URL: the object_store code path that S3 takes too.
        PhotoStore::open(data_dir, Some(&format!("file://{}", objects.display())))
            .expect("store")
            .with_settle_wait(Duration::ZERO)
    }

    fn files_under(dir: &Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .map(|e| e.expect("entry").path())
            .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
            .sum()
    }

    fn jpeg_bytes(len: usize, seed: u8) -> Vec<u8> {
        let mut bytes = vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0,
        ];
        bytes.extend((0..len as u32).map(|i| (i % 251) as u8 ^ seed));
        bytes
    }

    async fn send(mut chunk: ChunkWriter, bytes: &[u8]) -> ChunkWriter {
        // In pieces, as a request body arrives.
        for piece in bytes.chunks(100_000) {
            chunk.write(piece).await.expect("write");
        }
        chunk
    }

    async fn read_photo(store: &PhotoStore, sha: &Sha256) -> Vec<u8> {
        let reader = store.photo(sha).await.expect("get").expect("stored");
        let mut out = Vec::new();
        let mut stream = reader.stream;
        while let Some(piece) = stream.next().await {
            out.extend_from_slice(&piece.expect("read"));
        }
        assert_eq!(out.len() as u64, reader.len);
        out
    }

    #[tokio::test]
    async fn two_chunks_make_a_verified_photo() {
        let one = Server::new();
        let bytes = jpeg_bytes(6 * 1024 * 1024, 1);
        let sha = Sha256::of(&bytes);
        let upload = one.create(&bytes, sha).await;
        let half = bytes.len() / 2;

        let chunk = send(one.begin(&upload, 0).await.expect("begin"), &bytes[..half]).await;
        assert_eq!(chunk.keep().await.expect("keep"), half as u64);
        assert_eq!(one.head(upload.id).await.expect("row").offset, half as u64);
        assert_eq!(one.files_under("uploads"), 1);

        let chunk = send(
            one.begin(&upload, half as u64).await.expect("begin"),
            &bytes[half..],
        )
        .await;
        let done = chunk.finish(one.user).await.expect("finish");
        assert_eq!(done.sha256, sha);
        assert_eq!(done.photo_type, PhotoType::Jpeg);
        assert_eq!(done.size, bytes.len() as u64);
        assert!(!done.already_stored);

        let hex = sha.hex();
        let file = one
            .objects
            .join("photos")
            .join(&hex[..2])
            .join(&hex[2..4])
            .join(&hex);
        assert_eq!(std::fs::read(file).expect("photo file"), bytes);
        assert_eq!(read_photo(&one.store, &sha).await, bytes);
        assert!(one.store.exists(&sha).await.expect("exists"));
        assert!(one.recorded(sha).await);
        assert!(one.head(upload.id).await.is_none(), "the upload row stays");
        assert_eq!(one.files_under("uploads"), 0, "chunks stay");

        // The same photo again, in one chunk: verified, recorded, not written twice.
        let again = one.create(&bytes, sha).await;
        let chunk = send(one.begin(&again, 0).await.expect("begin"), &bytes).await;
        assert!(chunk.finish(one.user).await.expect("finish").already_stored);
        assert_eq!(one.files_under("photos"), 1);
        assert_eq!(one.files_under("uploads"), 0);
    }

    #[tokio::test]
    async fn a_wrong_digest_or_a_non_image_leaves_nothing() {
        let one = Server::new();
        let bytes = jpeg_bytes(300_000, 2);
        let wrong = Sha256::of(b"something else");
        let upload = one.create(&bytes, wrong).await;
        let chunk = send(one.begin(&upload, 0).await.expect("begin"), &bytes[..1000]).await;
        chunk.keep().await.expect("keep");
        let chunk = send(
            one.begin(&upload, 1000).await.expect("begin"),
            &bytes[1000..],
        )
        .await;
        match chunk.finish(one.user).await {
            Err(UploadError::Mismatch { expected, actual }) => {
                assert_eq!(expected, wrong);
                assert_eq!(actual, Sha256::of(&bytes));
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        assert!(one.head(upload.id).await.is_none());
        assert!(!one.store.exists(&wrong).await.expect("exists"));
        assert!(!one.store.exists(&Sha256::of(&bytes)).await.expect("exists"));
        assert!(!one.recorded(wrong).await);

        // Right digest, wrong kind of bytes.
        let text = b"Dear duty lead, this is not a photo of a sand boil.".repeat(400);
        let upload = one.create(&text, Sha256::of(&text)).await;
        let chunk = send(one.begin(&upload, 0).await.expect("begin"), &text).await;
        assert!(matches!(
            chunk.finish(one.user).await,
            Err(UploadError::NotAnImage)
        ));
        assert!(one.head(upload.id).await.is_none());
        assert_eq!(one.files_under(""), 0, "objects left behind");
    }

    #[tokio::test]
    async fn a_cut_chunk_is_kept_and_resumed() {
        let one = Server::new();
        let bytes = jpeg_bytes(500_000, 3);
        let sha = Sha256::of(&bytes);
        let upload = one.create(&bytes, sha).await;

        // The connection breaks after 120 000 bytes: they are kept.
        let chunk = send(
            one.begin(&upload, 0).await.expect("begin"),
            &bytes[..120_000],
        )
        .await;
        assert_eq!(chunk.keep().await.expect("keep"), 120_000);

        // A request dropped mid-body (cancelled) settles by itself: a checksummed one drops its
        // bytes, another keeps them. Until it has settled, the upload is busy.
        let mut checked = one
            .store
            .begin_chunk(&one.db, &upload, 120_000, OnInterrupt::Discard)
            .await
            .expect("begin");
        checked
            .write(&bytes[120_000..200_000])
            .await
            .expect("write");
        drop(checked);
        let chunk = eventually_free(&one, &upload, 120_000).await;
        let chunk = send(chunk, &bytes[120_000..300_000]).await;
        drop(chunk);
        let chunk = eventually_free(&one, &upload, 300_000).await;
        assert_eq!(one.head(upload.id).await.expect("row").offset, 300_000);

        let done = send(chunk, &bytes[300_000..])
            .await
            .finish(one.user)
            .await
            .expect("finish");
        assert_eq!(done.sha256, sha);
        assert_eq!(read_photo(&one.store, &sha).await, bytes);
    }

    /// Begins a chunk at `offset` once the upload is free (a dropped writer is settling).
    async fn eventually_free(one: &Server, upload: &Upload, offset: u64) -> ChunkWriter {
        for _ in 0..500 {
            match one.begin(upload, offset).await {
                Ok(chunk) => return chunk,
                Err(UploadError::Busy) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        panic!("the upload never became free at {offset}");
    }

    #[tokio::test]
    async fn two_instances_share_an_upload_one_writer_at_a_time() {
        let a = Server::new();
        let b = a.sibling();
        let bytes = jpeg_bytes(400_000, 4);
        let sha = Sha256::of(&bytes);
        let upload = a.create(&bytes, sha).await;

        let chunk = send(
            a.begin(&upload, 0).await.expect("a begins"),
            &bytes[..150_000],
        )
        .await;
        assert!(matches!(b.begin(&upload, 0).await, Err(UploadError::Busy)));
        assert_eq!(chunk.keep().await.expect("keep"), 150_000);

        // b sees what a stored, at the offset a left.
        assert_eq!(b.head(upload.id).await.expect("row").offset, 150_000);
        assert!(matches!(
            b.begin(&upload, 0).await,
            Err(UploadError::OffsetMismatch { current: 150_000 })
        ));
        let chunk = send(
            b.begin(&upload, 150_000).await.expect("b begins"),
            &bytes[150_000..],
        )
        .await;
        assert!(matches!(
            a.begin(&upload, 150_000).await,
            Err(UploadError::Busy)
        ));
        let done = chunk.finish(b.user).await.expect("finish");
        assert_eq!(done.sha256, sha);
        assert_eq!(read_photo(&a.store, &sha).await, bytes);
        assert!(a.recorded(sha).await);
        assert!(matches!(
            a.begin(&upload, 400_000).await,
            Err(UploadError::Gone)
        ));
    }

    #[tokio::test]
    async fn a_head_right_after_a_cut_reports_the_offset_the_cut_request_leaves() {
        let a = Server::new();
        let b = a.sibling();
        let bytes = jpeg_bytes(10_000, 9);
        let upload = a.create(&bytes, Sha256::of(&bytes)).await;
        let mut chunk = a
            .store
            .begin_chunk(&a.db, &upload, 0, OnInterrupt::Keep)
            .await
            .expect("begin");
        chunk.write(&bytes[..4000]).await.expect("write");
        // The cut request is still storing its bytes when the client asks where to resume.
        let settle = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            chunk.keep().await.expect("keep")
        });
        let waiting = b.store.clone().with_settle_wait(SETTLE_WAIT);
        let offset = waiting
            .settled_offset(&b.db, upload.id)
            .await
            .expect("head");
        assert_eq!(offset, Some(4000));
        assert_eq!(settle.await.expect("settled"), 4000);
    }

    #[tokio::test]
    async fn a_lease_is_renewed_while_its_request_lives_and_lapses_when_it_dies() {
        let a = Server::new();
        let short = Duration::from_millis(300);
        let b = a.sibling();
        let a_store = a.store.clone().with_lease(short);
        let bytes = jpeg_bytes(10_000, 5);
        let upload = a.create(&bytes, Sha256::of(&bytes)).await;

        // A live request keeps its lease for longer than the lease runs.
        let mut chunk = a_store
            .begin_chunk(&a.db, &upload, 0, OnInterrupt::Keep)
            .await
            .expect("begin");
        for piece in bytes[..5000].chunks(1000) {
            tokio::time::sleep(Duration::from_millis(150)).await;
            chunk.write(piece).await.expect("write");
            assert!(matches!(b.begin(&upload, 0).await, Err(UploadError::Busy)));
        }
        assert_eq!(chunk.keep().await.expect("keep"), 5000);

        // A request whose body stalls for a whole lease loses it to the client's next request, and
        // stores nothing when its body goes on.
        let mut stalled = a_store
            .begin_chunk(&a.db, &upload, 5000, OnInterrupt::Keep)
            .await
            .expect("begin");
        stalled.write(&bytes[5000..6000]).await.expect("write");
        tokio::time::sleep(short * 2).await;
        let next = b.begin(&upload, 5000).await.expect("taken over");
        next.discard().await.expect("discard");
        assert!(matches!(stalled.keep().await, Err(UploadError::LeaseLost)));
        assert_eq!(a.head(upload.id).await.expect("row").offset, 5000);
        assert_eq!(a.files_under("uploads"), 1);

        // An instance that died mid-request holds the lease only until it runs out.
        let (now, until) = lease_times(short);
        let id = upload.id;
        let taken =
            a.db.run(move |conn| {
                db::photos::take_lease(conn, id, 5000, "dead instance", &now, &until)
                    .map_err(UploadError::from)
            })
            .await
            .expect("take");
        assert!(taken);
        assert!(matches!(
            b.begin(&upload, 5000).await,
            Err(UploadError::Busy)
        ));
        tokio::time::sleep(short * 2).await;
        let chunk = send(
            b.begin(&upload, 5000).await.expect("taken over"),
            &bytes[5000..],
        )
        .await;
        chunk.finish(b.user).await.expect("finish");
    }

    #[tokio::test]
    async fn a_restarted_instance_frees_the_leases_of_its_dead_predecessor() {
        let a = Server::new();
        let bytes = jpeg_bytes(10_000, 7);
        let upload = a.create(&bytes, Sha256::of(&bytes)).await;
        // The process dies mid-request: its lease stays in the database.
        let owner = format!("{}:dead request", a.store.instance.id);
        let (now, until) = lease_times(LEASE_FOR_TESTS);
        let id = upload.id;
        a.db.run(move |conn| {
            db::photos::take_lease(conn, id, 0, &owner, &now, &until).map_err(UploadError::from)
        })
        .await
        .expect("take");
        let other = a.sibling();
        assert!(matches!(
            other.begin(&upload, 0).await,
            Err(UploadError::Busy)
        ));

        // Another process on the same data directory takes the dead one's id, and frees its lease.
        let data_dir = a._dir.path().to_owned();
        let instance_id = a.store.instance.id.clone();
        let second_claim = open_store(&data_dir, &a.objects);
        assert_ne!(
            second_claim.instance.id, instance_id,
            "the first process still runs"
        );
        drop(second_claim);
        let Server { db, store, .. } = a;
        drop(store);
        let restarted = open_store(&data_dir, &other.objects);
        assert_eq!(restarted.instance.id, instance_id);
        restarted
            .sweep_stale_uploads(&db, Duration::from_secs(3600))
            .await
            .expect("sweep");
        let chunk = send(other.begin(&upload, 0).await.expect("freed"), &bytes).await;
        chunk.finish(other.user).await.expect("finish");
    }

    const LEASE_FOR_TESTS: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn the_sweep_removes_stale_uploads_and_orphan_chunks() {
        let one = Server::new();
        let bytes = jpeg_bytes(50_000, 6);
        let upload = one.create(&bytes, Sha256::of(&bytes)).await;
        let chunk = send(one.begin(&upload, 0).await.expect("begin"), &bytes[..1000]).await;
        chunk.keep().await.expect("keep");
        // Chunks whose upload row is gone.
        let orphan = UploadId::new();
        let mut out = one.store.writer(chunk_key(orphan, 0));
        out.put(Bytes::from_static(b"orphan")).await.expect("put");
        out.finish().await.expect("finish");
        assert_eq!(one.files_under("uploads"), 2);

        let week = Duration::from_secs(7 * 24 * 3600);
        let removed = one.store.sweep_stale_uploads(&one.db, week).await;
        assert_eq!(removed.expect("sweep"), 0);
        assert_eq!(one.files_under("uploads"), 2);

        let removed = one.store.sweep_stale_uploads(&one.db, Duration::ZERO).await;
        assert_eq!(removed.expect("sweep"), 2);
        assert_eq!(one.files_under("uploads"), 0);
        assert!(one.head(upload.id).await.is_none());
    }
}
