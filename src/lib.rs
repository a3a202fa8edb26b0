//! Prometheus exporter for the connectivity of Monogoto IoT SIM fleets.
//!
//! The data flow, one way: `monogoto` (the API) → `poller` (what to ask for,
//! and when) → `fleet` (records and snapshots, rendered with `exposition`)
//! → `http` (routes, served by `web`). `config` resolves the settings, `app`
//! wires the parts together, `reload` applies a changed configuration.

pub mod app;
pub mod check;
pub mod config;
pub mod exposition;
pub mod fleet;
mod hangup;
pub mod health;
mod http;
mod iccid;
pub mod monogoto;
pub mod poller;
pub mod push;
pub mod reload;
pub mod shard;
pub mod simulator;
pub mod storage;
pub mod web;
