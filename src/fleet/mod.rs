//! The fleet state this exporter serves: each SIM's last status as a compact
//! [`Record`], the per-Thing metric families rendered from it, and the
//! immutable snapshots that scrapes read while the poller builds the next one.

pub mod families;
pub(crate) mod record;
pub mod snapshot;

pub use record::{PushInfo, Record};
pub use snapshot::{Fleet, Snapshot};
