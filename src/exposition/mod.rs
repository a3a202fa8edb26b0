//! The Prometheus text format as this exporter writes it: sample and label
//! values, and bodies kept as pre-compressed segments. Knows nothing of SIMs.

pub mod gzip;
pub mod text;

pub use gzip::{Deflater, Segment, gzip_body, identity_body};
