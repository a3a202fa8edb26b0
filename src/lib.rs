//! Prometheus exporter for the connectivity of Monogoto IoT SIM fleets.

pub mod app;
pub mod check;
pub mod config;
pub mod exposition;
pub mod iccid;
pub mod metrics;
pub mod monogoto;
pub mod poller;
pub mod record;
pub mod reload;
pub mod schedule;
pub mod server;
pub mod shard;
pub mod simulator;
pub mod snapshot;
pub mod status_page;
pub mod web;
