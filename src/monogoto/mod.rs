//! The Monogoto console API: HTTP client, authentication and tolerant models.

pub mod auth;
pub mod client;
pub mod model;

pub use client::{ApiError, Client, ClientOptions};
pub use model::ThingStatus;
