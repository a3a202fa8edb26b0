//! The Monogoto console API: HTTP client, login, request budget, retries and
//! tolerant models of its answers.

pub mod budget;
pub mod client;
mod decode;
pub mod error;
pub mod login;
pub mod metrics;
pub mod model;
pub(crate) mod paging;
pub mod retry;

pub use client::{Client, ClientOptions, ThingIdsFormat};
pub(crate) use client::{DEFAULT_MAX_BODY_SIZE, DEFAULT_RETRIES, DEFAULT_TIMEOUT};
pub use decode::{parse_status_page, parse_things_page};
pub use error::ApiError;
pub(crate) use error::ErrorKind;
pub use login::Credentials;
pub use metrics::ApiMetrics;
pub use model::ThingStatus;
