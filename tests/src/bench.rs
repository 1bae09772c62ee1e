//! Helpers the benchmarks share: the bare-work baselines they measure beside the real thing.

use anyhow::Result;
use sha2::Digest;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Inserts one mutation's fixes, as the baselines store them: `stmt` is
/// `INSERT INTO track_points VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)` (patrol, device sequence, index,
/// time, lon, lat, accuracy).
pub fn insert_track_points(
    stmt: &mut rusqlite::CachedStatement<'_>,
    patrol: &str,
    device_seq: i64,
    points: &[riverchief_shared::domain::TrackPoint],
) -> rusqlite::Result<()> {
    for (i, p) in points.iter().enumerate() {
        stmt.execute(rusqlite::params![
            patrol,
            device_seq,
            i as i64,
            p.t.to_rfc3339(),
            p.lon.get(),
            p.lat.get(),
            p.accuracy_m
        ])?;
    }
    Ok(())
}

/// Sends each photo over a fresh loopback TCP connection to a receiver that writes it to a file
/// (fsync'd) and, when `hash` is set, computes its SHA-256 as the bytes arrive. Answers the time
/// from the first connection to the last acknowledgement.
pub async fn loopback_copy(photos: &[Vec<u8>], dir: &Path, hash: bool) -> Result<Duration> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let dir = dir.to_path_buf();
    let n = photos.len();
    let receiver = tokio::spawn(async move {
        for i in 0..n {
            let (mut s, _) = listener.accept().await?;
            let mut f = tokio::fs::File::create(dir.join(format!("{i}"))).await?;
            let mut sha = sha2::Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let k = s.read(&mut buf).await?;
                if k == 0 {
                    break;
                }
                if hash {
                    sha.update(&buf[..k]);
                }
                f.write_all(&buf[..k]).await?;
            }
            f.sync_all().await?;
            std::hint::black_box(sha.finalize());
            s.write_all(b"k").await?;
        }
        anyhow::Ok(())
    });
    let started = Instant::now();
    for p in photos {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(p).await?;
        s.shutdown().await?;
        let mut ack = [0u8; 1];
        s.read_exact(&mut ack).await?;
    }
    let t = started.elapsed();
    receiver.await??;
    Ok(t)
}
