//! The Monogoto console API: HTTP client, authentication and tolerant models.

pub mod auth;
pub mod client;
mod decode;
pub mod model;
pub mod rate_limit;
pub mod retry;

pub use client::{ApiError, Client, ClientOptions, ThingIdsFormat};
pub use model::ThingStatus;
