//! The sync status an app shows, and the listener it registers to hear every change.
//!
//! One [`Hub`] per core holds the status. Every change happens under its lock, takes the next
//! `seq`, and is handed, still under the lock, to the registered listener's queue; one thread per
//! registration calls the listener from that queue. So the listener hears the changes in the order
//! they happened, never two at once, never on the app's own thread; and one registered while a sync
//! runs first gets the status as it is (a sync already under way included), then every change.
//!
//! The pending counts come from the store. Reading them after every fix would cost a query per
//! fix for nobody, so they are refreshed by one task, woken when something may have changed them
//! and only while a listener is registered; a sync refreshes them before it reports its end, and
//! `Core::status` reads them fresh.

use crate::types::{SyncState, SyncStatus, UploadProgress};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What the app implements to hear the sync status.
#[uniffi::export(foreign)]
pub trait StatusListener: Send + Sync {
    /// Called with the current status when registered, then on every change, in order, from one
    /// thread of the core's (never the app's UI thread: post to it).
    fn on_status(&self, status: SyncStatus);
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub mutations: u64,
    pub urgent: u64,
    pub photos: u64,
    pub photo_bytes: u64,
}

struct State {
    seq: u64,
    state: SyncState,
    counts: Counts,
    upload: Option<UploadProgress>,
    last_sync_ms: Option<i64>,
    last_error: Option<(String, String)>,
    listener: Option<mpsc::Sender<SyncStatus>>,
    /// When upload progress was last published (it is published at most every
    /// [`UPLOAD_PUBLISH_EVERY`], and always at its start and end).
    upload_published: Option<Instant>,
}

/// Upload progress is published at most this often.
const UPLOAD_PUBLISH_EVERY: Duration = Duration::from_millis(100);

pub(crate) struct Hub {
    state: Mutex<State>,
    /// Wakes the count refresher.
    dirty: tokio::sync::Notify,
}

impl Hub {
    pub(crate) fn new(state: SyncState, counts: Counts, last_sync_ms: Option<i64>) -> Self {
        Self {
            state: Mutex::new(State {
                seq: 1,
                state,
                counts,
                upload: None,
                last_sync_ms,
                last_error: None,
                listener: None,
                upload_published: None,
            }),
            dirty: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A listener that panicked is gone with its thread; the state itself is always whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn snapshot(s: &State) -> SyncStatus {
        SyncStatus {
            seq: s.seq,
            state: s.state.clone(),
            pending_mutations: s.counts.mutations,
            pending_urgent: s.counts.urgent,
            pending_photos: s.counts.photos,
            pending_photo_bytes: s.counts.photo_bytes,
            upload: s.upload.clone(),
            last_sync_ms: s.last_sync_ms,
            last_error_en: s.last_error.as_ref().map(|e| e.0.clone()),
            last_error_zh: s.last_error.as_ref().map(|e| e.1.clone()),
        }
    }

    /// Applies `change`; when it changed anything, numbers and publishes the new status.
    fn change(&self, change: impl FnOnce(&mut State) -> bool) {
        let mut s = self.lock();
        if change(&mut s) {
            s.seq += 1;
            let status = Self::snapshot(&s);
            if let Some(tx) = &s.listener {
                if tx.send(status).is_err() {
                    s.listener = None;
                }
            }
        }
    }

    pub(crate) fn counts(&self) -> Counts {
        self.lock().counts
    }

    pub(crate) fn current(&self) -> SyncStatus {
        Self::snapshot(&self.lock())
    }

    pub(crate) fn set_listener(&self, listener: Arc<dyn StatusListener>) {
        let (tx, rx) = mpsc::channel::<SyncStatus>();
        let spawned = std::thread::Builder::new()
            .name("riverchief-status".into())
            .spawn(move || {
                for status in rx {
                    listener.on_status(status);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("no thread for the status listener: {e}");
            return;
        }
        let mut s = self.lock();
        // The current status first, under the lock: nothing can come between it and the next change.
        let _ = tx.send(Self::snapshot(&s));
        // The previous listener's thread ends when its queue is dropped here.
        s.listener = Some(tx);
        drop(s);
        self.dirty.notify_one();
    }

    pub(crate) fn clear_listener(&self) {
        self.lock().listener = None;
    }

    fn has_listener(&self) -> bool {
        self.lock().listener.is_some()
    }

    /// Something may have changed the pending counts.
    pub(crate) fn touch(&self) {
        if self.has_listener() {
            self.dirty.notify_one();
        }
    }

    pub(crate) async fn wait_dirty(&self) {
        self.dirty.notified().await;
    }

    pub(crate) fn set_counts(&self, counts: Counts) {
        self.change(|s| {
            let changed = s.counts != counts;
            s.counts = counts;
            changed
        });
    }

    pub(crate) fn set_state(&self, state: SyncState) {
        self.change(|s| {
            let changed = s.state != state;
            s.state = state;
            changed
        });
    }

    pub(crate) fn sync_started(&self) {
        self.change(|s| {
            s.state = SyncState::Syncing;
            s.upload = None;
            true
        });
    }

    /// The end of a sync: the new state, the time of a complete sync, and the error if any.
    pub(crate) fn sync_ended(
        &self,
        state: SyncState,
        last_sync_ms: Option<i64>,
        error: Option<(String, String)>,
    ) {
        self.change(|s| {
            s.state = state;
            s.upload = None;
            s.upload_published = None;
            if last_sync_ms.is_some() {
                s.last_sync_ms = last_sync_ms;
            }
            s.last_error = error;
            true
        });
    }

    pub(crate) fn upload(&self, progress: Option<UploadProgress>) {
        self.change(|s| {
            let now = Instant::now();
            let boundary = match (&s.upload, &progress) {
                (None, _) | (_, None) => true,
                (Some(old), Some(new)) => old.sha256 != new.sha256 || new.sent >= new.total,
            };
            let due = s
                .upload_published
                .is_none_or(|at| now.duration_since(at) >= UPLOAD_PUBLISH_EVERY);
            if s.upload == progress || !(boundary || due) {
                return false;
            }
            s.upload = progress;
            s.upload_published = Some(now);
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Mutex<Vec<SyncStatus>>);

    impl StatusListener for Collect {
        fn on_status(&self, status: SyncStatus) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(status);
        }
    }

    fn wait_for(listener: &Collect, n: usize) -> Vec<SyncStatus> {
        for _ in 0..400 {
            let seen = listener
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if seen.len() >= n {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the listener did not get {n} statuses");
    }

    #[test]
    fn a_late_listener_gets_the_current_status_first_then_every_change_in_order() {
        let hub = Hub::new(SyncState::Idle, Counts::default(), None);
        let early = Arc::new(Collect(Mutex::new(Vec::new())));
        hub.set_listener(early.clone());
        hub.sync_started();
        hub.set_counts(Counts {
            mutations: 3,
            ..Counts::default()
        });
        // Registered while the sync runs: it hears "syncing" first, not a stale "idle".
        let late = Arc::new(Collect(Mutex::new(Vec::new())));
        hub.set_listener(late.clone());
        hub.upload(Some(UploadProgress {
            sha256: "ab".into(),
            sent: 0,
            total: 10,
        }));
        hub.upload(Some(UploadProgress {
            sha256: "ab".into(),
            sent: 10,
            total: 10,
        }));
        hub.sync_ended(
            SyncState::Offline,
            None,
            Some(("no signal".into(), "无信号".into())),
        );
        // Nothing changed: nothing is published.
        hub.set_state(SyncState::Offline);

        let early = wait_for(&early, 3);
        assert_eq!(
            early.len(),
            3,
            "the early listener was replaced by the late one"
        );
        assert_eq!(early[0].state, SyncState::Idle);
        assert_eq!(early[1].state, SyncState::Syncing);
        assert_eq!(early[2].pending_mutations, 3);

        let late = wait_for(&late, 4);
        std::thread::sleep(Duration::from_millis(50));
        let late_now = late.len();
        assert_eq!(late_now, 4, "{late:?}");
        assert_eq!(late[0].state, SyncState::Syncing);
        assert_eq!(late[0].pending_mutations, 3);
        assert_eq!(
            late[0].seq, early[2].seq,
            "the current status, as it was last published"
        );
        assert_eq!(late[1].upload.as_ref().map(|u| u.sent), Some(0));
        assert_eq!(late[2].upload.as_ref().map(|u| u.sent), Some(10));
        assert_eq!(late[3].state, SyncState::Offline);
        assert_eq!(late[3].upload, None);
        assert_eq!(late[3].last_error_zh.as_deref(), Some("无信号"));
        for pair in late.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq + 1, "in order, none lost");
        }
    }
}
