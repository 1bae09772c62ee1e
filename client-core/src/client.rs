//! The [`Client`]: one data directory, its local store, and the way to the server.

use crate::error::{ClientError, Result};
use crate::store::{self, DeviceColumn};
use crate::sync::api::{self, Api};
use crate::sync::RetryPolicy;
use riverchief_shared::api::{LoginRequest, UserInfo};
use riverchief_shared::id::DeviceId;
use riverchief_shared::photo::Sha256;
use riverchief_shared::Limits;
use rusqlite::Connection;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How a [`Client`] talks to the server.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server to use. When `None`, the one stored at the last login is used; when set, it
    /// takes precedence over the stored one.
    pub server_url: Option<String>,
    pub retry: RetryPolicy,
    /// Mutations per push request (also kept under the protocol's byte and count limits).
    pub push_batch: usize,
    /// Changes asked for per pull page.
    pub pull_limit: usize,
    pub connect_timeout: Duration,
    /// How long a request may wait for its answer, and how long a photo upload may go without
    /// the connection taking a byte, before it counts as failed and is retried.
    pub read_timeout: Duration,
    /// The protocol limits to keep under; the server's defaults unless a test wants smaller ones.
    pub limits: Limits,
    /// Shrink photos at capture (`None`: store them as taken, as the CLI does).
    pub photo_shrink: Option<crate::capture::PhotoShrink>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            server_url: None,
            retry: RetryPolicy::default(),
            push_batch: 100,
            pull_limit: 5000,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            limits: Limits::DEFAULT,
            photo_shrink: None,
        }
    }
}

/// An offline-first client bound to one data directory.
///
/// Cheap to clone (clones share the store); `Send + Sync`, so it can be used from any task. Every
/// method that touches the store runs its SQLite work on tokio's blocking pool, so the methods must
/// be called inside a tokio runtime (except [`Client::open`] and the path accessors).
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) data_dir: PathBuf,
    pub(crate) options: ClientOptions,
    pub(crate) http: reqwest::Client,
    /// For photo uploads: reqwest's read timeout runs from the start of a request to its answer,
    /// which would cut off a large photo on a slow link, so uploads watch for stalls instead.
    pub(crate) upload_http: reqwest::Client,
    /// One connection, used by one closure at a time on the blocking pool. SQLite serializes
    /// writers anyway; a second connection would only add lock waits.
    pub(crate) conn: Mutex<Connection>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("data_dir", &self.inner.data_dir)
            .finish_non_exhaustive()
    }
}

const DB_FILE: &str = "client.sqlite3";
const PHOTOS_DIR: &str = "photos";
const SYNC_LOCK_FILE: &str = "sync.lock";

impl Client {
    /// Opens the data directory, creating and migrating it if needed.
    pub fn open(data_dir: &Path, options: ClientOptions) -> Result<Client> {
        std::fs::create_dir_all(data_dir.join(PHOTOS_DIR)).map_err(ClientError::file(data_dir))?;
        let conn = store::open(&data_dir.join(DB_FILE))?;
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("riverchief-client/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(options.connect_timeout)
                .tcp_keepalive(Duration::from_secs(30))
        };
        let http = builder().read_timeout(options.read_timeout).build()?;
        let upload_http = builder().build()?;
        Ok(Client {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_owned(),
                options,
                http,
                upload_http,
                conn: Mutex::new(conn),
            }),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// `<data_dir>/client.sqlite3`.
    pub fn db_path(&self) -> PathBuf {
        self.inner.data_dir.join(DB_FILE)
    }

    /// `<data_dir>/photos`: captured photos, each named by its SHA-256.
    pub fn photos_dir(&self) -> PathBuf {
        self.inner.data_dir.join(PHOTOS_DIR)
    }

    /// Where the captured photo with this digest is kept.
    pub fn photo_path(&self, sha: &Sha256) -> PathBuf {
        crate::capture::stored_path(&self.photos_dir(), sha)
    }

    /// `<data_dir>/sync.lock`: held (an OS file lock) while a sync runs.
    pub fn sync_lock_path(&self) -> PathBuf {
        self.inner.data_dir.join(SYNC_LOCK_FILE)
    }

    /// Removes confirmed photos from the device (see the photo lane): those confirmed longer than
    /// `retention` ago, and the oldest confirmed ones while the device keeps more than
    /// `budget_bytes` of photos. Never a photo the server has not confirmed.
    pub async fn prune_photos(
        &self,
        retention: chrono::Duration,
        budget_bytes: u64,
    ) -> Result<u64> {
        let dir = self.photos_dir();
        self.db(move |conn| {
            crate::photos::prune(conn, &dir, retention, budget_bytes, chrono::Utc::now())
        })
        .await
    }

    /// The stored file of a captured photo, while the device keeps it.
    pub async fn photo_file(&self, sha: Sha256) -> Result<Option<PathBuf>> {
        let path = self.photo_path(&sha);
        let kept = self.db(move |conn| crate::photos::kept(conn, &sha)).await?;
        Ok((kept && path.exists()).then_some(path))
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    pub(crate) fn limits(&self) -> Limits {
        self.inner.options.limits
    }

    /// Runs `f` with the store on the blocking pool.
    pub(crate) async fn db<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // A panic inside an earlier closure rolled its transaction back when it unwound, so
            // the connection is still sound: recover it rather than failing forever.
            let mut conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|e| ClientError::Internal(format!("a store task failed: {e}")))?
    }

    /// This installation's id, made when the data directory was created.
    pub async fn device_id(&self) -> Result<DeviceId> {
        self.db(|conn| store::device_id(conn)).await
    }

    /// The user of the last login, if any.
    pub async fn user(&self) -> Result<Option<UserInfo>> {
        self.db(|conn| stored_user(conn)).await
    }

    /// The server in use: the one given in the options, else the one stored at login.
    pub async fn server_url(&self) -> Result<Option<String>> {
        if let Some(url) = &self.inner.options.server_url {
            return Ok(Some(api::normalize_server_url(url)?));
        }
        self.db(|conn| store::device_text(conn, DeviceColumn::ServerUrl))
            .await
    }

    /// Logs in and keeps the token, the user and the server URL in the store. It does not pull:
    /// call [`Client::sync`] or [`Client::pull`] next to mirror the segments (the CLI's `login`
    /// does).
    ///
    /// Logging in as a different user than before drops the mirrored server data (what one user
    /// may see is not what another may), but never the queued work.
    pub async fn login(
        &self,
        server_url: &str,
        username: &str,
        password: &str,
        device_name: &str,
    ) -> Result<UserInfo> {
        let server_url = api::normalize_server_url(server_url)?;
        // Refuse before asking the server for a token, when the name already tells.
        let (name, url) = (username.to_owned(), server_url.clone());
        self.db(move |conn| unsent_work_of_another(conn, |u| u.username == name, &url))
            .await?;
        let api = self.api(&server_url, None)?;
        let request = LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            device_name: device_name.to_owned(),
        };
        let response = crate::sync::retry::retrying(&self.inner.options.retry, "login", |_| {
            api.login(&request)
        })
        .await?;
        let user = response.user.clone();
        let user_json = serde_json::to_string(&response.user)?;
        self.db(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Again by id, in the transaction that would switch accounts (usernames may be renamed).
            unsent_work_of_another(&tx, |u| u.id == response.user.id, &server_url)?;
            let previous = stored_user(&tx)?;
            let stored_server = store::device_text(&tx, DeviceColumn::ServerUrl)?;
            let same_user = previous.as_ref().map(|u| u.id) == Some(response.user.id);
            let same_server = stored_server.as_deref() == Some(server_url.as_str());
            if !(same_user && same_server) {
                crate::store::forget_mirror(&tx)?;
                store::set_device_text(&tx, DeviceColumn::PullCursor, None)?;
            }
            store::set_device_text(&tx, DeviceColumn::ServerUrl, Some(&server_url))?;
            store::set_device_text(&tx, DeviceColumn::Token, Some(&response.token))?;
            store::set_device_text(&tx, DeviceColumn::UserJson, Some(&user_json))?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        Ok(user)
    }

    /// Forgets the token (queued work stays, and is sent after the next login).
    pub async fn logout(&self) -> Result<()> {
        self.db(|conn| store::set_device_text(conn, DeviceColumn::Token, None))
            .await
    }

    /// The API session for syncing: the server URL and the stored token.
    pub(crate) async fn session(&self) -> Result<Api> {
        let server_url = self.server_url().await?.ok_or(ClientError::NoServer)?;
        let token = self
            .db(|conn| store::device_text(conn, DeviceColumn::Token))
            .await?
            .ok_or(ClientError::NotLoggedIn)?;
        self.api(&server_url, Some(token))
    }

    fn api(&self, server_url: &str, token: Option<String>) -> Result<Api> {
        Api::new(
            self.inner.http.clone(),
            self.inner.upload_http.clone(),
            server_url,
            token,
        )
    }
}

/// Refuses a login that would switch to another account (as `same_user` judges) or another server
/// while the previous account's work waits to be sent: pushed with the new token it would be refused
/// as someone else's, and it must never be sent to a different server.
fn unsent_work_of_another(
    conn: &Connection,
    same_user: impl Fn(&UserInfo) -> bool,
    server_url: &str,
) -> Result<()> {
    let Some(previous) = stored_user(conn)? else {
        return Ok(());
    };
    let server = store::device_text(conn, DeviceColumn::ServerUrl)?.unwrap_or_default();
    if same_user(&previous) && server == server_url {
        return Ok(());
    }
    let records = crate::outbox::count_pending(conn)?;
    let photos = crate::photos::count_waiting(conn)?;
    let pending = u64::try_from(records + photos).unwrap_or(u64::MAX);
    if pending == 0 {
        return Ok(());
    }
    Err(ClientError::UnsentWorkOfAnother {
        user: previous.username,
        server,
        pending,
    })
}

pub(crate) fn stored_user(conn: &Connection) -> Result<Option<UserInfo>> {
    store::device_text(conn, DeviceColumn::UserJson)?
        .map(|json| serde_json::from_str(&json).map_err(ClientError::from))
        .transpose()
}
