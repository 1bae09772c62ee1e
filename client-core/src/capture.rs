//! Photo capture: a photo is judged by its bytes, hashed, and copied into the data directory under
//! its SHA-256 at the moment it is attached, because the camera app may delete or replace the
//! original before the device is back in signal.
//!
//! Everything here is blocking file I/O; callers run it off the async threads.

use crate::error::{ClientError, Result};
use riverchief_shared::photo::{PhotoType, Sha256};
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
    /// The size of the file as taken, when it was shrunk at capture.
    pub original_size: Option<u64>,
}

/// How photos are shrunk at capture: a phone photo is 3–12 MB, and the bank has one bar of
/// signal. JPEG, PNG and WebP photos whose longest edge is longer than `max_edge_px` (or that carry
/// an EXIF orientation other than upright) are decoded, turned upright, scaled down and stored as
/// JPEG at `jpeg_quality`, with the original's EXIF (capture time, position) kept and its
/// orientation reset. The shrunk file is the photo: its hash is the one sent. HEIC and HEIF go as
/// they are (the app can ask the OS for a JPEG), and so does a file that does not decode (the
/// server judges the bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhotoShrink {
    pub max_edge_px: u32,
    pub jpeg_quality: u8,
}

impl Default for PhotoShrink {
    fn default() -> Self {
        Self {
            max_edge_px: 2560,
            jpeg_quality: 85,
        }
    }
}

/// A photo to be shrunk may be this many times larger than a photo may be sent.
const MAX_ORIGINAL_FACTOR: u64 = 4;

/// Where the store keeps the photo with digest `sha`.
pub(crate) fn stored_path(photos_dir: &Path, sha: &Sha256) -> PathBuf {
    photos_dir.join(sha.hex())
}

/// Reads `source`: sniffs its type, shrinks it when `shrink` says so, hashes it, and stores it as
/// `<photos_dir>/<sha256>`. Refuses anything that is not a photo or is larger than `max_bytes`
/// (as stored), leaving nothing behind.
pub(crate) fn capture(
    source: &Path,
    photos_dir: &Path,
    max_bytes: u64,
    shrink: Option<PhotoShrink>,
) -> Result<CapturedPhoto> {
    let mut file = File::open(source).map_err(ClientError::file(source))?;
    let declared = file.metadata().map_err(ClientError::file(source))?.len();
    let ceiling = match shrink {
        Some(_) => max_bytes.saturating_mul(MAX_ORIGINAL_FACTOR),
        None => max_bytes,
    };
    if declared > ceiling {
        return Err(ClientError::PhotoTooLarge {
            path: source.to_owned(),
            size: declared,
            max: ceiling,
        });
    }

    let mut head = vec![0u8; HEAD_BYTES];
    let head_len = read_up_to(&mut file, &mut head).map_err(ClientError::file(source))?;
    head.truncate(head_len);
    let photo_type = PhotoType::sniff(&head).ok_or_else(|| ClientError::NotAnImage {
        path: source.to_owned(),
    })?;
    if let Some(rules) = shrink {
        if matches!(
            photo_type,
            PhotoType::Jpeg | PhotoType::Png | PhotoType::Webp
        ) {
            match shrunk(source, photos_dir, rules)? {
                Some(photo) if photo.size <= max_bytes => {
                    return Ok(CapturedPhoto {
                        original_size: Some(declared),
                        ..photo
                    });
                }
                Some(photo) => {
                    return Err(ClientError::PhotoTooLarge {
                        path: source.to_owned(),
                        size: photo.size,
                        max: max_bytes,
                    });
                }
                None if declared > max_bytes => {
                    return Err(ClientError::PhotoTooLarge {
                        path: source.to_owned(),
                        size: declared,
                        max: max_bytes,
                    });
                }
                None => {}
            }
        }
    }

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
        original_size: None,
    })
}

/// The photo at `source` shrunk by `rules` and stored, or `None` when it needs no shrinking (small
/// enough and upright) or does not decode (it is then stored as it is).
fn shrunk(source: &Path, photos_dir: &Path, rules: PhotoShrink) -> Result<Option<CapturedPhoto>> {
    use image::{ImageDecoder, ImageEncoder};
    let decoded = (|| -> image::ImageResult<Option<(image::DynamicImage, Option<Vec<u8>>)>> {
        let mut reader = image::ImageReader::open(source)?.with_guessed_format()?;
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(20_000);
        limits.max_image_height = Some(20_000);
        limits.max_alloc = Some(512 << 20);
        reader.limits(limits);
        let mut decoder = reader.into_decoder()?;
        let orientation = decoder.orientation()?;
        let exif = decoder.exif_metadata()?;
        let (w, h) = decoder.dimensions();
        if w.max(h) <= rules.max_edge_px
            && orientation == image::metadata::Orientation::NoTransforms
        {
            return Ok(None);
        }
        let mut img = image::DynamicImage::from_decoder(decoder)?;
        img.apply_orientation(orientation);
        if img.width().max(img.height()) > rules.max_edge_px {
            img = img.resize(
                rules.max_edge_px,
                rules.max_edge_px,
                image::imageops::FilterType::Triangle,
            );
        }
        Ok(Some((img, exif)))
    })();
    let (img, exif) = match decoded {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(None),
        Err(e) => {
            tracing::warn!(path = %source.display(), "photo kept as taken: it does not decode: {e}");
            return Ok(None);
        }
    };
    let rgb = img.to_rgb8();
    drop(img);

    let temp = TempFile::create(photos_dir)?;
    let (hasher, size) = {
        let mut out = HashingWriter {
            inner: std::io::BufWriter::new(&temp.file),
            hasher: sha2::Sha256::new(),
            size: 0,
        };
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(
            &mut out,
            rules.jpeg_quality.clamp(1, 100),
        );
        if let Some(mut exif) = exif {
            // Upright now: a viewer must not turn it again.
            let _ = image::metadata::Orientation::remove_from_exif_chunk(&mut exif);
            // The JPEG encoder takes EXIF; should it ever refuse, the photo is still the photo.
            let _ = encoder.set_exif_metadata(exif);
        }
        encoder
            .write_image(
                rgb.as_raw(),
                rgb.width(),
                rgb.height(),
                image::ExtendedColorType::Rgb8,
            )
            .map_err(|e| ClientError::Internal(format!("encoding the shrunk photo failed: {e}")))?;
        out.inner.flush().map_err(ClientError::file(&temp.path))?;
        (out.hasher, out.size)
    };
    temp.file
        .sync_all()
        .map_err(ClientError::file(&temp.path))?;
    let sha256 = Sha256::from_digest(hasher.finalize().into());
    let dest = stored_path(photos_dir, &sha256);
    if !dest.exists() {
        temp.persist(&dest)?;
        sync_dir(photos_dir)?;
    }
    Ok(Some(CapturedPhoto {
        sha256,
        photo_type: PhotoType::Jpeg,
        size,
        original_size: None,
    }))
}

/// Writes through to `inner`, hashing and counting what passes.
struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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

    /// A little-endian TIFF (EXIF) chunk with one IFD entry: orientation = `value`.
    fn exif_orientation(value: u16) -> Vec<u8> {
        let mut tiff = b"II*\0".to_vec();
        tiff.extend_from_slice(&8u32.to_le_bytes());
        tiff.extend_from_slice(&1u16.to_le_bytes());
        tiff.extend_from_slice(&0x0112u16.to_le_bytes());
        tiff.extend_from_slice(&3u16.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&value.to_le_bytes());
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&0u32.to_le_bytes());
        tiff
    }

    fn jpeg(width: u32, height: u32, exif: Option<Vec<u8>>) -> Vec<u8> {
        use image::ImageEncoder;
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
        });
        let mut bytes = Vec::new();
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
        if let Some(exif) = exif {
            encoder.set_exif_metadata(exif).expect("exif");
        }
        encoder
            .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
            .expect("encode");
        bytes
    }

    #[test]
    fn shrinks_turns_upright_and_keeps_small_photos_as_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let photos = dir.path().join("photos");
        std::fs::create_dir(&photos).expect("mkdir");
        let rules = PhotoShrink {
            max_edge_px: 400,
            jpeg_quality: 80,
        };

        // Landscape 1200x600, taken with the phone turned (orientation 6: rotate 90° clockwise).
        let source = dir.path().join("IMG_0002.jpg");
        let original = jpeg(1200, 600, Some(exif_orientation(6)));
        std::fs::write(&source, &original).expect("write");
        let captured = capture(&source, &photos, 25 << 20, Some(rules)).expect("capture");
        let stored = std::fs::read(stored_path(&photos, &captured.sha256)).expect("read");
        assert_eq!(
            captured.sha256,
            Sha256::of(&stored),
            "the hash is the shrunk file's"
        );
        assert_eq!(captured.size, stored.len() as u64);
        assert_eq!(captured.original_size, Some(original.len() as u64));
        assert_eq!(captured.photo_type, PhotoType::Jpeg);
        let img = image::load_from_memory(&stored).expect("decodes");
        assert_eq!(
            (img.width(), img.height()),
            (200, 400),
            "upright and within 400 px"
        );
        // The EXIF is kept, with the orientation reset: no viewer turns it again.
        let mut decoder =
            image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&stored)).expect("decoder");
        let exif = image::ImageDecoder::exif_metadata(&mut decoder)
            .expect("exif")
            .expect("kept");
        assert_eq!(
            image::metadata::Orientation::from_exif_chunk(&exif),
            Some(image::metadata::Orientation::NoTransforms)
        );

        // Small and upright: stored byte for byte as taken.
        let small = dir.path().join("small.jpg");
        let small_bytes = jpeg(300, 200, None);
        std::fs::write(&small, &small_bytes).expect("write");
        let kept = capture(&small, &photos, 25 << 20, Some(rules)).expect("capture");
        assert_eq!(kept.sha256, Sha256::of(&small_bytes));
        assert_eq!(kept.original_size, None);

        // Bytes that only look like a JPEG do not decode: stored as they are, for the server to judge.
        let fake = dir.path().join("fake.jpg");
        let mut fake_bytes = b"\xff\xd8\xff\xe0".to_vec();
        fake_bytes.extend_from_slice(&[9u8; 5000]);
        std::fs::write(&fake, &fake_bytes).expect("write");
        let as_is = capture(&fake, &photos, 25 << 20, Some(rules)).expect("capture");
        assert_eq!(as_is.sha256, Sha256::of(&fake_bytes));
    }

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

        let captured = capture(&source, &photos, 25 << 20, None).expect("capture");
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
            capture(&text, &photos, 25 << 20, None),
            Err(ClientError::NotAnImage { .. })
        ));
        assert!(matches!(
            capture(&dir.path().join("missing.jpg"), &photos, 25 << 20, None),
            Err(ClientError::File { .. })
        ));
        let big = dir.path().join("big.png");
        std::fs::write(&big, png(&[0u8; 2000])).expect("write");
        assert!(matches!(
            capture(&big, &photos, 1000, None),
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
