//! The offline-first riverchief client: a local SQLite store, an outbox of mutations, a sync engine
//! with resumable photo uploads, and the `riverchief` command line.
//!
//! A patroller on the embankment often has no signal. Every action ([`Client::start_patrol`],
//! [`Client::add_points`], [`Client::report_issue`], ...) is therefore recorded locally first: the
//! entity and the mutation that tells the server about it are written in one SQLite transaction,
//! and the mutation is validated with the same rules the server applies
//! ([`riverchief_shared::sync::Mutation::validate`]). Photos are copied into the data directory,
//! named by their SHA-256, at the moment they are attached. [`Client::sync`] later pushes the
//! outbox, uploads the photos and pulls the server's changes; see [`sync`] for how.
//!
//! Every JSON shape on the wire is a type of `riverchief-shared`; this crate defines none.
//!
//! A data directory holds:
//!
//! - `client.sqlite3`: the store (schema in `src/store.rs`, migrated on open);
//! - `photos/<sha256>`: captured photos;
//! - `sync.lock`: locked while a sync runs.
//!
//! Architecture invariants:
//!
//! - Nothing is marked sent until the server has answered for it; a crash at any point loses no
//!   action and sends none twice (a replayed mutation is a server-side `duplicate`).
//! - A pull never touches the outbox or what the device captured; a server reset rebuilds only
//!   the mirror.
//! - No SQLite call runs on an async worker thread: store work goes through `Client::db`, which
//!   runs it on tokio's blocking pool.
//!
//! ```no_run
//! # async fn demo() -> Result<(), riverchief_client::ClientError> {
//! use riverchief_client::{Client, ClientOptions};
//! let client = Client::open("./riverchief-client".as_ref(), ClientOptions::default())?;
//! client.login("http://127.0.0.1:8080", "volunteer1", "secret", "phone").await?;
//! client.pull(&|_| {}).await?; // mirror the segments
//! let segment = client.resolve_segment("QH-01").await?;
//! let patrol = client.start_patrol(&[segment], None, Some("小雨".into())).await?;
//! client.finish_patrol(patrol, None).await?;
//! let report = client.sync(&|_| {}).await?;
//! println!("{} pushed", report.pushed);
//! # Ok(()) }
//! ```

mod capture;
#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod error;
#[cfg(feature = "cli")]
mod flood_cli;
mod gpx_import;
mod outbox;
mod photos;
mod query;
mod record;
mod stats;
mod store;
pub mod sync;
mod track;

pub use capture::PhotoShrink;
pub use client::{Client, ClientOptions};
pub use error::{ClientError, Result};
pub use gpx_import::Imported;
pub use outbox::OutboxState;
pub use query::{FailedPhoto, IssueSummary, LocalState, PatrolSummary, RejectedMutation, Status};
pub use record::{IssueDraft, Walk};
pub use stats::PatrollerStats;
pub use sync::{ProgressFn, RetryPolicy, SyncProgress, SyncReport};
pub use track::{judge as judge_fix, Fix, FixOutcome, FixRules, LastFix, RecordedPatrol};
