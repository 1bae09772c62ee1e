//! A TCP proxy between a client and a server that plays the mobile network on an embankment: it can
//! refuse every connection (no signal), pass everything, or drop the connection that crosses a number of bytes
//! (the signal fades part-way through a photo).

use crate::{accept_loop, splice, Counters};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// Connections are accepted and dropped at once.
    Offline,
    /// Everything passes.
    Online,
}

pub struct Proxy {
    pub port: u16,
    pub counters: Arc<Counters>,
    mode: Arc<AtomicU8>,
    cut_budget: Arc<AtomicU64>,
    rate: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a free port in front of `target`.
    pub async fn start(target: u16, mode: NetMode) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let counters = Arc::new(Counters::default());
        let mode_cell = Arc::new(AtomicU8::new(mode as u8));
        let cut_budget = Arc::new(AtomicU64::new(u64::MAX));
        let rate = Arc::new(AtomicU64::new(0));
        let (c, m, b, r) = (
            counters.clone(),
            mode_cell.clone(),
            cut_budget.clone(),
            rate.clone(),
        );
        let task = tokio::spawn(accept_loop(listener, move |stream| {
            c.connections.fetch_add(1, Ordering::SeqCst);
            let mode = m.load(Ordering::SeqCst);
            if mode == NetMode::Offline as u8 {
                drop(stream);
                return;
            }
            tokio::spawn(splice(stream, target, c.clone(), b.clone(), r.clone()));
        }));
        Ok(Proxy {
            port,
            counters,
            mode: mode_cell,
            cut_budget,
            rate,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, mode: NetMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// The network carries at most `bytes` more from the client, then the connection that crosses
    /// the mark goes dead (once; later connections pass).
    pub fn cut_after(&self, bytes: u64) {
        self.cut_budget.store(bytes, Ordering::SeqCst);
    }

    /// Limits each direction of each connection to about `bytes_per_sec` (0: unlimited).
    pub fn throttle(&self, bytes_per_sec: u64) {
        self.rate.store(bytes_per_sec, Ordering::SeqCst);
    }

    pub fn upstream_bytes(&self) -> u64 {
        self.counters.upstream.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
