//! The riverchief server: the HTTP API for patrol sync, photo uploads, segments and issues.
//!
//! - [`app`]: configuration, start-up, the actix application.
//! - [`routes`]: one module per area of the HTTP API.
//! - [`state`]: the application state every handler reaches.
//! - [`sync`]: applying pushed mutations (the server half of the sync protocol).
//! - [`supplies`]: one stock movement, judged and recorded the same way for devices and the API.
//! - [`db`]: the only place that talks to the database.
//! - [`alerting`]: the rules that raise and resolve alerts.
//! - [`flood`]: the flood watch: readings folded into stages (hysteresis) and rises, the stage in force.
//! - [`checks`]: the scheduled checks (overdue segments, expiring lots, stock below quota).
//! - [`drill`]: drills that replay a hydrograph in their own series.
//! - [`delivery`]: the live alert stream's feed and the webhook sender.
//! - [`photo_store`]: content-addressed photo storage and partial uploads.
//! - [`auth`]: tokens, the authenticated-user extractor, the login limit.
//! - [`password`]: Argon2id password hashes and generated passwords.
//! - [`error`]: the one error type and its mapping to HTTP.
//! - [`maintenance`]: background housekeeping (change-log compaction, stale uploads).
//! - [`metrics`]: Prometheus metrics (`GET /metrics`).
//! - [`demo`]: the Qinhuai demo world.
//! - [`cli`]: the `riverchief-server` command line.

pub mod alerting;
pub mod app;
pub mod auth;
pub mod checks;
pub mod cli;
pub mod coverage;
pub mod db;
pub mod delivery;
pub mod demo;
pub mod drill;
pub mod error;
pub mod flood;
pub mod maintenance;
pub mod metrics;
pub mod password;
pub mod photo_store;
pub mod routes;
pub mod schedule;
pub mod state;
pub mod supplies;
pub mod sync;
pub mod workflow;

pub use app::{Application, Config};
