//! One integration test binary (one link, one set of compiled dependencies) with a module per area.
//! Every test starts real servers on port 0 over fresh SQLite files and talks to them over HTTP.

mod alerts;
mod bad_input;
mod common;
mod coverage;
mod dashboard;
mod delivery;
mod faults;
mod flood;
mod hostile;
mod instances;
mod offline_loop;
mod openapi;
mod ops;
mod supplies;
mod workflow;
