//! The Monogoto console API: HTTP client, login, request budget, retries and
//! tolerant models of its answers.

pub mod budget;
pub mod client;
mod decode;
pub mod error;
pub mod login;
pub mod metrics;
pub mod model;
pub mod paging;
pub mod retry;

pub use client::{Client, ClientOptions, DEFAULT_MAX_BODY_SIZE, DEFAULT_RETRIES, ThingIdsFormat};
pub use error::{ApiError, Endpoint, ErrorKind};
pub use login::Credentials;
pub use metrics::ApiMetrics;
pub use model::ThingStatus;
