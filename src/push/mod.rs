//! Monogoto's webhook events as hints: which SIMs to poll next.
//!
//! `POST /webhook` (see `receiver`) reads events (see `event`), hands the SIMs
//! this exporter follows to the poller as hints, and forwards those of other
//! shards to their replicas (see `forward`). The status values still come
//! only from the status endpoint.

pub mod event;
mod forward;
pub mod metrics;
pub mod receiver;

pub use metrics::WebhookMetrics;
pub use receiver::Receiver;
