//! Photo bytes: the content-addressed store of complete photos and the part files of uploads in
//! progress.
//!
//! Complete photos live at `<data dir>/photos/ab/cd/<sha256>`, written once: an upload's part file is
//! verified (sniffed as an image, hashed against the digest its client announced) and then renamed into
//! place, so a photo file is either absent or whole. Partial uploads live at
//! `<data dir>/uploads/<upload id>.part`; the length of the part file is the upload's offset.
//!
//! Everything about files stays inside this module: handlers see [`PhotoStore`]'s async methods, a
//! [`PartWriter`] for appending to an upload, and a [`PhotoReader`] for serving a photo, so that another
//! backend for complete photos (an object store) can slot in behind the same methods.
//!
//! Architecture invariant: at most one [`PartWriter`] exists per upload at a time in this process
//! ([`PhotoStore::begin_append`] refuses a second one), and a writer that is dropped half-way (its
//! request was cancelled) stops writing before the next writer can start.

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use riverchief_shared::photo::{PhotoType, Sha256};
use sha2::Digest;
use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;
use uuid::Uuid;

/// The server-made id of a tus upload: a UUIDv7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId(Uuid);

impl UploadId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses an upload id (hyphenated or simple form); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::parse_str(s)
            .ok()
            .filter(|u| u.get_version_num() == 7)
            .map(Self)
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Bytes buffered in memory before one write to the part file.
const WRITE_BUFFER: usize = 256 * 1024;
/// Bytes read at a time when hashing.
const READ_BUFFER: usize = 64 * 1024;
/// Bytes of a file's head that type sniffing looks at.
const SNIFF_BYTES: usize = 8 * 1024;

/// Where photos and partial uploads are kept.
pub struct PhotoStore {
    photos_dir: PathBuf,
    uploads_dir: PathBuf,
    writers: Arc<Writers>,
}

/// The uploads that have a [`PartWriter`] now.
#[derive(Default)]
struct Writers(Mutex<HashSet<UploadId>>);

impl Writers {
    fn set(&self) -> MutexGuard<'_, HashSet<UploadId>> {
        // The set stays consistent even if a holder panicked: insert and remove are single steps.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The right to write one upload's part file; dropping it frees the upload for the next writer.
struct WriterSlot {
    writers: Arc<Writers>,
    id: UploadId,
}

impl Drop for WriterSlot {
    fn drop(&mut self) {
        self.writers.set().remove(&self.id);
    }
}

/// Why an append could not begin.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("another request is writing to this upload")]
    Busy,
    #[error("the upload's part file is gone")]
    Missing,
    #[error("the upload is at offset {current}")]
    OffsetMismatch { current: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why a complete upload was not taken into the store. The part file is deleted in the first two cases.
#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    #[error("the bytes are not a JPEG, PNG, WebP, HEIC or HEIF image")]
    NotAnImage,
    #[error("the bytes hash to {actual}, not {expected}")]
    Mismatch { expected: Sha256, actual: Sha256 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A photo now in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finalized {
    pub sha256: Sha256,
    pub photo_type: PhotoType,
    pub size: u64,
    /// The store had these bytes already (another upload of the same photo got there first).
    pub already_stored: bool,
}

/// A stored photo ready to be sent.
pub struct PhotoReader {
    pub len: u64,
    pub stream: BoxStream<'static, io::Result<Bytes>>,
}

/// What happens to the bytes written so far when a [`PartWriter`] is dropped before
/// [`PartWriter::commit`] or [`PartWriter::rollback`]: the request was cut off or cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInterrupt {
    /// Keep them: the client resumes from the part file's length.
    Keep,
    /// Truncate the part file back to where this writer began (the chunk carried a checksum, so
    /// unverified bytes must not stay).
    Rollback,
}

impl PhotoStore {
    /// Opens (creating if needed) the photo and upload folders under `data_dir`.
    pub fn open(data_dir: &Path) -> io::Result<PhotoStore> {
        let photos_dir = data_dir.join("photos");
        let uploads_dir = data_dir.join("uploads");
        fs::create_dir_all(&photos_dir)?;
        fs::create_dir_all(&uploads_dir)?;
        Ok(PhotoStore {
            photos_dir,
            uploads_dir,
            writers: Arc::default(),
        })
    }

    fn part_path(&self, id: UploadId) -> PathBuf {
        self.uploads_dir.join(format!("{id}.part"))
    }

    fn photo_path(&self, sha: &Sha256) -> PathBuf {
        let hex = sha.hex();
        self.photos_dir.join(&hex[0..2]).join(&hex[2..4]).join(hex)
    }

    /// Creates the empty part file of a new upload.
    pub async fn create_part(&self, id: UploadId) -> io::Result<()> {
        let path = self.part_path(id);
        blocking(move || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?
                .sync_all()
        })
        .await
    }

    /// The upload's offset: how many bytes its part file holds; `None` when there is no part file.
    pub async fn part_len(&self, id: UploadId) -> io::Result<Option<u64>> {
        match tokio::fs::metadata(self.part_path(id)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes an upload's part file (absent is fine).
    pub async fn remove_part(&self, id: UploadId) -> io::Result<()> {
        remove_if_present(&self.part_path(id)).await
    }

    /// The part files and when each was last written, for the stale-upload sweep.
    pub async fn parts(&self) -> io::Result<Vec<(UploadId, SystemTime)>> {
        let dir = self.uploads_dir.clone();
        blocking(move || {
            let mut out = Vec::new();
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let Some(id) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".part"))
                    .and_then(UploadId::parse)
                else {
                    continue;
                };
                out.push((id, entry.metadata()?.modified()?));
            }
            Ok(out)
        })
        .await
    }

    /// When the upload's part file was last written; `None` when there is none.
    pub async fn part_modified(&self, id: UploadId) -> io::Result<Option<SystemTime>> {
        match tokio::fs::metadata(self.part_path(id)).await {
            Ok(m) => Ok(Some(m.modified()?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Begins appending to an upload whose client believes it is at `offset`. Refuses while another
    /// writer holds the upload, when the part file is gone, or when the offset is not the part's length.
    pub async fn begin_append(
        &self,
        id: UploadId,
        offset: u64,
        on_interrupt: OnInterrupt,
    ) -> Result<PartWriter, AppendError> {
        if !self.writers.set().insert(id) {
            return Err(AppendError::Busy);
        }
        let slot = WriterSlot {
            writers: self.writers.clone(),
            id,
        };
        let path = self.part_path(id);
        let file = blocking(move || match OpenOptions::new().append(true).open(&path) {
            Ok(file) => file.metadata().map(|m| Some((file, m.len()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await?;
        let Some((file, current)) = file else {
            return Err(AppendError::Missing);
        };
        if current != offset {
            return Err(AppendError::OffsetMismatch { current });
        }
        Ok(PartWriter {
            id,
            start: offset,
            written: 0,
            buf: Vec::new(),
            file: Arc::new(Mutex::new(PartFile { file, open: true })),
            on_interrupt,
            settled: false,
            slot: Some(slot),
        })
    }

    /// Takes a complete upload into the store: sniffs its type, hashes it, and on success moves it to
    /// its content address (or drops it if the store has the photo already). On a non-image or a wrong
    /// digest the part file is deleted.
    pub async fn finalize(
        &self,
        part: PartWriter,
        expected: Sha256,
    ) -> Result<Finalized, FinalizeError> {
        let mut part = part;
        part.commit().await?;
        let part_path = self.part_path(part.id);
        let target = self.photo_path(&expected);
        let result = blocking(move || finalize_blocking(&part_path, &target, expected)).await;
        drop(part);
        result
    }

    /// Whether the store holds the photo's bytes.
    pub async fn exists(&self, sha: &Sha256) -> io::Result<bool> {
        tokio::fs::try_exists(self.photo_path(sha)).await
    }

    /// Opens a stored photo for sending; `None` when the store does not hold it.
    pub async fn photo(&self, sha: &Sha256) -> io::Result<Option<PhotoReader>> {
        let file = match tokio::fs::File::open(self.photo_path(sha)).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.metadata().await?.len();
        Ok(Some(PhotoReader {
            len,
            stream: tokio_util::io::ReaderStream::with_capacity(file, READ_BUFFER).boxed(),
        }))
    }
}

fn finalize_blocking(
    part_path: &Path,
    target: &Path,
    expected: Sha256,
) -> Result<Finalized, FinalizeError> {
    let mut file = File::open(part_path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; READ_BUFFER];
    let mut size: u64 = 0;
    let mut photo_type = None;
    loop {
        let n = read_full(&mut file, &mut buf)?;
        if photo_type.is_none() {
            photo_type = PhotoType::sniff(&buf[..n.min(SNIFF_BYTES)]);
            if photo_type.is_none() {
                drop(file);
                fs::remove_file(part_path)?;
                return Err(FinalizeError::NotAnImage);
            }
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        if n < buf.len() {
            break;
        }
    }
    drop(file);
    let actual = Sha256::from_digest(hasher.finalize().into());
    if actual != expected {
        fs::remove_file(part_path)?;
        return Err(FinalizeError::Mismatch { expected, actual });
    }
    let Some(photo_type) = photo_type else {
        return Err(FinalizeError::NotAnImage);
    };
    let already_stored = target.exists();
    if already_stored {
        fs::remove_file(part_path)?;
    } else {
        let dir = target
            .parent()
            .ok_or_else(|| io::Error::other("photo path has no parent"))?;
        fs::create_dir_all(dir)?;
        // Same file system, so the rename is atomic: the photo appears whole or not at all. Two uploads
        // of the same photo racing here both rename identical bytes, which is harmless.
        fs::rename(part_path, target)?;
        sync_dir(dir);
    }
    Ok(Finalized {
        sha256: actual,
        photo_type,
        size,
        already_stored,
    })
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Makes a rename durable. Best effort: not every platform can open a directory.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

async fn remove_if_present(path: &Path) -> io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Runs file work on the blocking pool.
async fn blocking<T, E, F>(f: F) -> Result<T, E>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<io::Error> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| E::from(io::Error::other(e)))?
}

/// The part file shared between a writer and its blocking writes. `open` turns false when the writer
/// is abandoned; a write that was queued before that then does nothing, so the file's length is
/// settled before the next writer may start.
struct PartFile {
    file: File,
    open: bool,
}

fn lock(file: &Mutex<PartFile>) -> MutexGuard<'_, PartFile> {
    file.lock().unwrap_or_else(|e| e.into_inner())
}

/// Appends one request's bytes to an upload's part file. Get one from [`PhotoStore::begin_append`];
/// end it with [`PartWriter::commit`] (the bytes stay, flushed to disk) or [`PartWriter::rollback`]
/// (the file goes back to where this writer began); then finalize it or drop it.
pub struct PartWriter {
    id: UploadId,
    start: u64,
    written: u64,
    buf: Vec<u8>,
    file: Arc<Mutex<PartFile>>,
    on_interrupt: OnInterrupt,
    settled: bool,
    slot: Option<WriterSlot>,
}

impl PartWriter {
    /// The offset this writer began at.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Bytes accepted by this writer so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `bytes` (buffered; [`PartWriter::commit`] makes them durable).
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(bytes);
        self.written += bytes.len() as u64;
        if self.buf.len() >= WRITE_BUFFER {
            self.flush_buf().await?;
        }
        Ok(())
    }

    async fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let file = self.file.clone();
        blocking(move || {
            let mut f = lock(&file);
            if !f.open {
                return Err(io::Error::other("the upload's writer was abandoned"));
            }
            f.file.write_all(&buf)
        })
        .await
    }

    /// Writes out what is buffered and syncs it; returns the part file's new length.
    pub async fn commit(&mut self) -> io::Result<u64> {
        self.flush_buf().await?;
        let file = self.file.clone();
        blocking(move || lock(&file).file.sync_data()).await?;
        self.settled = true;
        Ok(self.start + self.written)
    }

    /// Discards everything this writer wrote: the part file goes back to its length at the start.
    pub async fn rollback(&mut self) -> io::Result<()> {
        self.buf.clear();
        let file = self.file.clone();
        let start = self.start;
        blocking(move || {
            let f = lock(&file);
            f.file.set_len(start)?;
            f.file.sync_data()
        })
        .await?;
        self.settled = true;
        self.written = 0;
        Ok(())
    }
}

impl Drop for PartWriter {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // The request was cancelled mid-write. Close the file to queued writes (and roll back if asked)
        // before giving up the upload's slot, so the next writer sees a settled length.
        let file = self.file.clone();
        let slot = self.slot.take();
        let rollback_to = (self.on_interrupt == OnInterrupt::Rollback).then_some(self.start);
        let settle = move || {
            let mut f = lock(&file);
            f.open = false;
            if let Some(len) = rollback_to {
                if let Err(e) = f.file.set_len(len) {
                    tracing::error!(error = %e, "rolling back an interrupted upload chunk");
                }
            }
            drop(f);
            drop(slot);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(settle);
            }
            Err(_) => settle(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_bytes() -> Vec<u8> {
        let mut bytes = vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0,
        ];
        bytes.extend((0..200_000u32).map(|i| (i % 251) as u8));
        bytes
    }

    async fn upload(store: &PhotoStore, bytes: &[u8]) -> PartWriter {
        let id = UploadId::new();
        store.create_part(id).await.expect("create part");
        let mut part = store
            .begin_append(id, 0, OnInterrupt::Keep)
            .await
            .expect("begin");
        part.write(bytes).await.expect("write");
        assert_eq!(part.commit().await.expect("commit"), bytes.len() as u64);
        part
    }

    #[tokio::test]
    async fn finalize_moves_a_verified_photo_to_its_content_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PhotoStore::open(dir.path()).expect("open");
        let bytes = jpeg_bytes();
        let sha = Sha256::of(&bytes);
        let part = upload(&store, &bytes).await;
        let id = part.id;
        let done = store.finalize(part, sha).await.expect("finalize");
        assert_eq!(done.photo_type, PhotoType::Jpeg);
        assert_eq!(done.size, bytes.len() as u64);
        assert!(!done.already_stored);
        let hex = sha.hex();
        let path = dir
            .path()
            .join("photos")
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(&hex);
        assert_eq!(fs::read(path).expect("stored"), bytes);
        assert!(store.exists(&sha).await.expect("exists"));
        assert_eq!(store.part_len(id).await.expect("len"), None);

        let again = upload(&store, &bytes).await;
        let done = store.finalize(again, sha).await.expect("finalize again");
        assert!(done.already_stored);
        let reader = store.photo(&sha).await.expect("open").expect("present");
        assert_eq!(reader.len, bytes.len() as u64);
    }

    #[tokio::test]
    async fn finalize_refuses_a_wrong_digest_and_deletes_the_part() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PhotoStore::open(dir.path()).expect("open");
        let bytes = jpeg_bytes();
        let wrong = Sha256::of(b"something else");
        let part = upload(&store, &bytes).await;
        let id = part.id;
        match store.finalize(part, wrong).await {
            Err(FinalizeError::Mismatch { expected, actual }) => {
                assert_eq!(expected, wrong);
                assert_eq!(actual, Sha256::of(&bytes));
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        assert_eq!(store.part_len(id).await.expect("len"), None);
        assert!(!store.exists(&wrong).await.expect("exists"));
        assert!(!store.exists(&Sha256::of(&bytes)).await.expect("exists"));
    }

    #[tokio::test]
    async fn finalize_refuses_what_is_not_an_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PhotoStore::open(dir.path()).expect("open");
        let bytes = b"just some text posing as a photo".to_vec();
        let part = upload(&store, &bytes).await;
        let id = part.id;
        let result = store.finalize(part, Sha256::of(&bytes)).await;
        assert!(matches!(result, Err(FinalizeError::NotAnImage)));
        assert_eq!(store.part_len(id).await.expect("len"), None);
    }

    #[tokio::test]
    async fn one_writer_per_upload_and_offsets_must_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PhotoStore::open(dir.path()).expect("open");
        let id = UploadId::new();
        store.create_part(id).await.expect("create");
        let mut first = store
            .begin_append(id, 0, OnInterrupt::Keep)
            .await
            .expect("begin");
        assert!(matches!(
            store.begin_append(id, 0, OnInterrupt::Keep).await,
            Err(AppendError::Busy)
        ));
        first.write(b"hello").await.expect("write");
        first.commit().await.expect("commit");
        drop(first);
        assert!(matches!(
            store.begin_append(id, 0, OnInterrupt::Keep).await,
            Err(AppendError::OffsetMismatch { current: 5 })
        ));
        let mut second = store
            .begin_append(id, 5, OnInterrupt::Rollback)
            .await
            .expect("begin at 5");
        second.write(b" world").await.expect("write");
        second.commit().await.expect("commit");
        second.rollback().await.expect("rollback");
        drop(second);
        assert_eq!(store.part_len(id).await.expect("len"), Some(5));
        assert!(matches!(
            store
                .begin_append(UploadId::new(), 0, OnInterrupt::Keep)
                .await,
            Err(AppendError::Missing)
        ));
    }

    #[tokio::test]
    async fn an_abandoned_checksummed_writer_rolls_back_before_the_next_may_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PhotoStore::open(dir.path()).expect("open");
        let id = UploadId::new();
        store.create_part(id).await.expect("create");
        let mut w = store
            .begin_append(id, 0, OnInterrupt::Rollback)
            .await
            .expect("begin");
        w.write(&vec![7u8; WRITE_BUFFER + 10]).await.expect("write");
        drop(w);
        // The slot is freed only once the rollback ran.
        let mut next = loop {
            match store.begin_append(id, 0, OnInterrupt::Keep).await {
                Ok(w) => break w,
                Err(AppendError::Busy) => tokio::task::yield_now().await,
                Err(e) => panic!("unexpected {e}"),
            }
        };
        assert_eq!(next.commit().await.expect("commit"), 0);
    }
}
