//! Photo capture: a photo is judged by its bytes, hashed, and copied into the data directory under
//! its SHA-256 at the moment it is attached, because the camera app may delete or replace the
//! original before the device is back in signal.
//!
//! Everything here is blocking file I/O; callers run it off the async threads.

use crate::error::{ClientError, Result};
use crate::store;
use chrono::{DateTime, Utc};
use riverchief_shared::photo::{PhotoType, Sha256};
use rusqlite::{params, Transaction};
use sha2::Digest;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Bytes read before sniffing: enough for every signature `PhotoType::sniff` knows.
const HEAD_BYTES: usize = 8 * 1024;

/// A photo copied into the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CapturedPhoto {
    pub sha256: Sha256,
    pub photo_type: PhotoType,
    pub size: u64,
}

/// Where the store keeps the photo with digest `sha`.
pub(crate) fn stored_path(photos_dir: &Path, sha: &Sha256) -> PathBuf {
    photos_dir.join(sha.hex())
}

/// Reads `source` once: sniffs its type, hashes it, and copies it to `<photos_dir>/<sha256>`.
/// Refuses anything that is not a photo or is larger than `max_bytes`, leaving nothing behind.
pub(crate) fn capture(source: &Path, photos_dir: &Path, max_bytes: u64) -> Result<CapturedPhoto> {
    let mut file = File::open(source).map_err(ClientError::file(source))?;
    let declared = file.metadata().map_err(ClientError::file(source))?.len();
    if declared > max_bytes {
        return Err(ClientError::PhotoTooLarge {
            path: source.to_owned(),
            size: declared,
            max: max_bytes,
        });
    }

    let mut head = vec![0u8; HEAD_BYTES];
    let head_len = read_up_to(&mut file, &mut head).map_err(ClientError::file(source))?;
    head.truncate(head_len);
    let photo_type = PhotoType::sniff(&head).ok_or_else(|| ClientError::NotAnImage {
        path: source.to_owned(),
    })?;

    let temp = TempFile::create(photos_dir)?;
    let mut out = &temp.file;
    let mut hasher = sha2::Sha256::new();
    let mut size = head.len() as u64;
    hasher.update(&head);
    out.write_all(&head)
        .map_err(ClientError::file(&temp.path))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(ClientError::file(source))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        // The file may have grown since its size was checked.
        if size > max_bytes {
            return Err(ClientError::PhotoTooLarge {
                path: source.to_owned(),
                size,
                max: max_bytes,
            });
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(ClientError::file(&temp.path))?;
    }
    out.sync_all().map_err(ClientError::file(&temp.path))?;

    let sha256 = Sha256::from_digest(hasher.finalize().into());
    let dest = stored_path(photos_dir, &sha256);
    // A photo already in the store has the same bytes by construction; keep the copy we have.
    if !dest.exists() {
        temp.persist(&dest)?;
        sync_dir(photos_dir)?;
    }
    Ok(CapturedPhoto {
        sha256,
        photo_type,
        size,
    })
}

/// Records a captured photo as waiting for upload (a photo captured twice is one row).
pub(crate) fn record(
    tx: &Transaction<'_>,
    photo: &CapturedPhoto,
    now: DateTime<Utc>,
) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO photos (sha256, content_type, size, captured_at) VALUES (?1, ?2, ?3, ?4)",
        params![
            photo.sha256.hex(),
            photo.photo_type.mime(),
            i64::try_from(photo.size).unwrap_or(i64::MAX),
            store::time(now)
        ],
    )?;
    Ok(())
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Makes a rename inside `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ClientError::file(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A file being written in the photos folder; removed unless persisted, so that a refused or
/// interrupted capture leaves no half-copied photo under a real name.
struct TempFile {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl TempFile {
    fn create(dir: &Path) -> Result<Self> {
        let path = dir.join(format!(".capture-{}.tmp", uuid::Uuid::now_v7().simple()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(ClientError::file(&path))?;
        Ok(Self {
            path,
            file,
            keep: false,
        })
    }

    fn persist(mut self, dest: &Path) -> Result<()> {
        std::fs::rename(&self.path, dest).map_err(ClientError::file(dest))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The smallest bytes `PhotoType::sniff` takes for a PNG, plus a payload.
    pub(crate) fn png(payload: &[u8]) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn copies_under_the_digest_and_refuses_non_images() {
        let dir = tempfile::tempdir().expect("tempdir");
        let photos = dir.path().join("photos");
        std::fs::create_dir(&photos).expect("mkdir");
        let source = dir.path().join("IMG_0001.jpg");
        let bytes = png(&[7u8; 100_000]);
        std::fs::write(&source, &bytes).expect("write");

        let captured = capture(&source, &photos, 25 << 20).expect("capture");
        assert_eq!(captured.sha256, Sha256::of(&bytes));
        assert_eq!(captured.photo_type, PhotoType::Png);
        assert_eq!(captured.size, bytes.len() as u64);
        let copy = stored_path(&photos, &captured.sha256);
        assert_eq!(std::fs::read(&copy).expect("read copy"), bytes);

        // The original may go away: the copy stays.
        std::fs::remove_file(&source).expect("remove");
        assert!(copy.exists());

        let text = dir.path().join("notes.jpg");
        std::fs::write(&text, b"just some text posing as a jpeg").expect("write");
        assert!(matches!(
            capture(&text, &photos, 25 << 20),
            Err(ClientError::NotAnImage { .. })
        ));
        assert!(matches!(
            capture(&dir.path().join("missing.jpg"), &photos, 25 << 20),
            Err(ClientError::File { .. })
        ));
        let big = dir.path().join("big.png");
        std::fs::write(&big, png(&[0u8; 2000])).expect("write");
        assert!(matches!(
            capture(&big, &photos, 1000),
            Err(ClientError::PhotoTooLarge { .. })
        ));
        // Only the one good photo is in the store; no temp files are left.
        let names: Vec<_> = std::fs::read_dir(&photos)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(captured.sha256.hex())]);
    }
}
