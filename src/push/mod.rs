//! Monogoto's webhook events as hints: which SIMs to poll next.

pub mod event;
