//! The riverchief server: the HTTP API for patrol sync, photo uploads, segments and issues.
//!
//! - [`app`]: configuration, start-up, the actix application.
//! - [`routes`]: one module per area of the HTTP API.
//! - [`sync`]: applying pushed mutations (the server half of the sync protocol).
//! - [`db`]: the only place that talks to the database.
//! - [`photo_store`]: content-addressed photo storage and partial uploads.
//! - [`auth`]: passwords, tokens, the authenticated-user extractor.
//! - [`error`]: the one error type and its mapping to HTTP.
//! - [`demo`]: the Qinhuai demo world.
//! - [`cli`]: the `riverchief-server` command line.

pub mod app;
pub mod auth;
pub mod cli;
pub mod coverage;
pub mod db;
pub mod demo;
pub mod error;
pub mod photo_store;
pub mod routes;
pub mod sync;
pub mod workflow;

pub use app::{Application, Config};
