//! Photo bytes: complete photos by content address, and the chunks of uploads in progress, kept in
//! one object store that every server instance shares.
//!
//! Keys in the store:
//!
//! - `photos/ab/cd/<sha256>`: a complete photo. Written once, and only after its bytes were sniffed as
//!   an image and hashed to its name; the write is atomic (a multipart upload that is completed, or a
//!   file renamed into place), so a photo is either absent or whole.
//! - `uploads/<upload id>/<offset>`: the bytes one `PATCH` brought, starting at that offset (20 digits,
//!   so that text order is offset order). The chunks of an upload, in order, are its bytes so far.
//!
//! The store is chosen by URL in one place, [`PhotoStore::open`]: none is the data directory itself
//! (so photos stay at `<data dir>/photos/ab/cd/<sha256>`), `file:///abs/path` another directory, and
//! `s3://bucket/prefix` an S3-compatible object store configured by the usual `AWS_*` variables. All
//! three go through the same `object_store` code; only how a local file is read differs (in larger
//! pieces, see [`byte_stream`]).
//!
//! Architecture invariant: nothing about an upload lives in one instance. Its offset and the lease of
//! the one request that may write to it are in the database (`db::photos`), its bytes in the store;
//! a `PATCH` may be cut on one instance and resumed on another. See [`upload`].

mod upload;

pub use upload::{ChunkWriter, Finalized, OnInterrupt, UploadError};

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{GetResult, GetResultPayload, ObjectStore, ObjectStoreExt};
pub use riverchief_shared::id::UploadId;
use riverchief_shared::photo::Sha256;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Bytes read at a time from a local file.
const READ_BUFFER: usize = 64 * 1024;
/// Bytes an object writer holds before it sends them: one put for an object smaller than this, else
/// parts of this size (S3's smallest part is 5 MiB). With one part in flight, a writer holds at most
/// twice this, whatever the size of the photo.
const PART_SIZE: usize = 5 * 1024 * 1024;
/// Uploads untouched for this long are deleted, at start-up and by `maintenance`
/// ([`PhotoStore::sweep_stale_uploads`]), so that abandoned partial uploads do not pile up.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long an upload's lease runs unless renewed (see [`upload`]).
const LEASE: Duration = Duration::from_secs(60);

/// Why the photo store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("photo store URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("opening the photo store: {0}")]
    Store(#[from] object_store::Error),
    #[error("opening the photo store: {0}")]
    Io(#[from] io::Error),
}

/// Where photos and upload chunks are kept. Cheap to clone; clones share the store.
#[derive(Clone)]
pub struct PhotoStore {
    objects: Arc<dyn ObjectStore>,
    /// Where a `PATCH` body is written before it becomes a chunk object: local to this instance, and
    /// only for the length of one request.
    spool_dir: Arc<Path>,
    instance: Arc<Instance>,
    lease: Duration,
    /// How long a `HEAD` or `PATCH` waits for a running lease to end (see `upload::SETTLE_WAIT`).
    settle_wait: Duration,
}

/// Which server process this is, among those sharing the database: the id in a file
/// `<spool>/instance-N` that this process holds locked while it runs. The file outlives the
/// process, the lock does not; so the next process to take the file knows that leases named after
/// its id (`<id>:<request>`) were left by a process that is gone, and frees them at once instead of
/// letting clients wait for them to run out (see [`PhotoStore::sweep_stale_uploads`]).
struct Instance {
    id: String,
    _lock: std::fs::File,
}

impl Instance {
    fn claim(spool_dir: &Path) -> io::Result<Instance> {
        use std::io::{Read, Seek, Write};
        for n in 0..1024 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(spool_dir.join(format!("instance-{n}")))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
            let mut id = String::new();
            file.read_to_string(&mut id)?;
            let id = match id.trim() {
                id if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) => id.to_owned(),
                _ => {
                    let id = format!("{:032x}", rand::random::<u128>());
                    file.set_len(0)?;
                    file.rewind()?;
                    file.write_all(id.as_bytes())?;
                    file.sync_all()?;
                    id
                }
            };
            return Ok(Instance { id, _lock: file });
        }
        Err(io::Error::other(format!(
            "1024 server processes share {}",
            spool_dir.display()
        )))
    }
}

impl fmt::Debug for PhotoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhotoStore({})", self.objects)
    }
}

/// A stored photo ready to be sent.
pub struct PhotoReader {
    pub len: u64,
    pub stream: BoxStream<'static, io::Result<Bytes>>,
}

impl PhotoStore {
    /// Opens the store that `url` names (see the module doc); `None` is `data_dir` itself. Request
    /// bodies are spooled under `<data_dir>/spool` in every case, where this process also claims its
    /// [`Instance`] id.
    pub fn open(data_dir: &Path, url: Option<&str>) -> Result<PhotoStore, OpenError> {
        let bad = |reason: &str| OpenError::BadUrl {
            url: url.unwrap_or_default().to_owned(),
            reason: reason.to_owned(),
        };
        let objects: Arc<dyn ObjectStore> = match url.map(str::trim) {
            None | Some("") => local_store(data_dir)?,
            Some(url) => match url.split_once("://") {
                Some(("file", path)) => {
                    let path = Path::new(path);
                    if !path.is_absolute() {
                        return Err(bad("a file URL needs an absolute path: file:///srv/photos"));
                    }
                    local_store(path)?
                }
                Some(("s3", rest)) => {
                    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                    if bucket.is_empty() {
                        return Err(bad("no bucket: s3://BUCKET/PREFIX"));
                    }
                    let s3: Arc<dyn ObjectStore> = Arc::new(
                        AmazonS3Builder::from_env()
                            .with_bucket_name(bucket)
                            .build()?,
                    );
                    match prefix.trim_matches('/') {
                        "" => s3,
                        prefix => Arc::new(PrefixStore::new(s3, prefix)),
                    }
                }
                _ => return Err(bad("use s3://BUCKET/PREFIX or file:///ABSOLUTE/PATH")),
            },
        };
        let spool_dir = data_dir.join("spool");
        std::fs::create_dir_all(&spool_dir)?;
        let instance = Instance::claim(&spool_dir)?;
        Ok(PhotoStore {
            objects,
            spool_dir: spool_dir.into(),
            instance: Arc::new(instance),
            lease: LEASE,
            settle_wait: upload::SETTLE_WAIT,
        })
    }

    /// The same store with another lease length, for tests of lease expiry.
    #[cfg(test)]
    fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The same store answering at once when a lease is running, for tests of lease contention.
    #[cfg(test)]
    fn with_settle_wait(mut self, wait: Duration) -> Self {
        self.settle_wait = wait;
        self
    }

    /// Whether the store holds the photo's bytes.
    pub async fn exists(&self, sha: &Sha256) -> io::Result<bool> {
        self.has(&photo_key(sha)).await
    }

    async fn has(&self, key: &Key) -> io::Result<bool> {
        match self.objects.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a stored photo for sending; `None` when the store does not hold it.
    pub async fn photo(&self, sha: &Sha256) -> io::Result<Option<PhotoReader>> {
        match self.objects.get(&photo_key(sha)).await {
            Ok(got) => Ok(Some(PhotoReader {
                len: got.meta.size,
                stream: byte_stream(got),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens bytes `start..end` of a stored photo (a range the caller checked against its size);
    /// `None` when the store does not hold it.
    pub async fn photo_range(
        &self,
        sha: &Sha256,
        range: std::ops::Range<u64>,
    ) -> io::Result<Option<PhotoReader>> {
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(range.clone())),
            ..Default::default()
        };
        match self.objects.get_opts(&photo_key(sha), options).await {
            Ok(got) => Ok(Some(PhotoReader {
                len: got.range.end.saturating_sub(got.range.start),
                stream: byte_stream(got),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// An object's bytes as a stream.
    async fn read(&self, key: &Key) -> io::Result<BoxStream<'static, io::Result<Bytes>>> {
        Ok(byte_stream(self.objects.get(key).await?))
    }

    /// A writer of one object. Nothing is visible at `key` until [`ObjectWriter::finish`].
    fn writer(&self, key: Key) -> ObjectWriter {
        ObjectWriter(
            BufWriter::with_capacity(self.objects.clone(), key, PART_SIZE).with_max_concurrency(1),
        )
    }
}

/// The data directory, or another, as a store. Deleting the last chunk of an upload removes its
/// folder; writes are synced before they count, as S3's are.
fn local_store(root: &Path) -> Result<Arc<dyn ObjectStore>, OpenError> {
    std::fs::create_dir_all(root)?;
    Ok(Arc::new(
        LocalFileSystem::new_with_prefix(root)?
            .with_automatic_cleanup(true)
            .with_fsync(true),
    ))
}

fn photo_key(sha: &Sha256) -> Key {
    let hex = sha.hex();
    Key::from(format!("photos/{}/{}/{hex}", &hex[0..2], &hex[2..4]))
}

/// A fetched object's bytes. A local file is read 64 KiB at a time (`object_store` reads 8 KiB per
/// blocking task, slow for a 25 MiB photo); anything else streams as the store sends it.
fn byte_stream(got: GetResult) -> BoxStream<'static, io::Result<Bytes>> {
    match got.payload {
        GetResultPayload::File(file, _) if got.range.start == 0 => {
            let file = tokio::fs::File::from_std(file).take(got.range.end);
            tokio_util::io::ReaderStream::with_capacity(file, READ_BUFFER).boxed()
        }
        payload => GetResult { payload, ..got }
            .into_stream()
            .map_err(io::Error::from)
            .boxed(),
    }
}

/// Writes one object in parts, holding at most two parts in memory.
struct ObjectWriter(BufWriter);

impl ObjectWriter {
    async fn put(&mut self, bytes: Bytes) -> io::Result<()> {
        Ok(self.0.put(bytes).await?)
    }

    /// Makes the object visible, whole.
    async fn finish(mut self) -> io::Result<()> {
        tokio::io::AsyncWriteExt::shutdown(&mut self.0).await
    }

    /// Drops what was written: the object does not appear.
    async fn abort(mut self) {
        if let Err(e) = self.0.abort().await {
            tracing::warn!(error = %e, "aborting an object write");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_choose_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PhotoStore::open(dir.path(), None).expect("default");
        assert!(format!("{store:?}").contains("LocalFileSystem"));
        assert_eq!(&*store.spool_dir, dir.path().join("spool"));

        let other = dir.path().join("elsewhere");
        let url = format!("file://{}", other.display());
        PhotoStore::open(dir.path(), Some(&url)).expect("file URL");
        assert!(other.is_dir());

        // Configured from AWS_* variables; nothing is fetched until a photo is.
        let s3 =
            PhotoStore::open(dir.path(), Some("s3://riverchief-photos/nanjing/")).expect("s3 URL");
        assert!(format!("{s3:?}").contains("nanjing"), "{s3:?}");

        assert!(matches!(
            PhotoStore::open(dir.path(), Some("file://relative/path")),
            Err(OpenError::BadUrl { .. })
        ));
        assert!(matches!(
            PhotoStore::open(dir.path(), Some("ftp://host/photos")),
            Err(OpenError::BadUrl { .. })
        ));
        assert!(matches!(
            PhotoStore::open(dir.path(), Some("s3:///prefix")),
            Err(OpenError::BadUrl { .. })
        ));
    }

    #[test]
    fn photos_are_kept_under_two_levels_of_their_digest() {
        let sha = Sha256::of(b"photo");
        let hex = sha.hex();
        assert_eq!(
            photo_key(&sha).as_ref(),
            format!("photos/{}/{}/{hex}", &hex[..2], &hex[2..4])
        );
    }
}
