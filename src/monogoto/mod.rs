//! The Monogoto console API: HTTP client, authentication and tolerant models.

pub mod budget;
pub mod client;
mod decode;
pub mod login;
pub mod model;
pub mod retry;

pub use client::{
    ApiError, Client, ClientOptions, DEFAULT_MAX_BODY_SIZE, DEFAULT_RETRIES, ThingIdsFormat,
};
pub use login::Credentials;
pub use model::ThingStatus;
