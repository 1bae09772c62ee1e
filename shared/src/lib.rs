//! The one vocabulary of the riverchief server and client.
//!
//! Everything that crosses the wire is defined here, together with every validation rule, so that the
//! server and the client accept and refuse exactly the same things. This crate is pure: it knows nothing
//! about HTTP, diesel, rusqlite or reqwest (CI checks with `cargo tree -p riverchief-shared -i diesel`).
//!
//! - [`id`]: UUIDv7 id newtypes.
//! - [`alert`]: alerts the server raises, their kinds, levels and states.
//! - [`domain`]: segments, chainage, patrols, issues, categories, roles.
//! - [`geo`]: coordinates parsed at the edge ([`geo::Lon`], [`geo::Lat`]) and segment geometry arithmetic.
//! - [`coverage`]: which stretches of a segment a track covers; requirements per flood stage.
//! - [`flood`]: gauge stations, readings, flood stages with hysteresis, rapid rise, response levels,
//!   drills, and the readings CSV.
//! - [`gcj02`]: GCJ-02 ↔ WGS-84.
//! - [`photo`]: content addresses ([`photo::Sha256`]) and photo-type sniffing rules.
//! - [`stock`]: what a stock movement does ([`stock::MovementKind`]).
//! - [`sync`]: the sync protocol wire types (push, pull, mutations) and their validation.
//! - [`api`]: the other request and response bodies, and the error envelope.
//! - [`validate`]: field-path errors and limits.
//! - [`webhook`]: webhooks, their deliveries, and what a generic webhook receives.

pub mod alert;
pub mod api;
pub mod authenticity;
pub mod coverage;
pub mod csv;
pub mod domain;
pub mod flood;
pub mod gcj02;
pub mod geo;
pub mod id;
mod names;
pub mod photo;
pub mod report;
pub mod stock;
pub mod sync;
pub mod validate;
pub mod webhook;

pub use validate::{FieldError, Limits};
