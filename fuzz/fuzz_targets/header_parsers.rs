//! Any bytes as a `Retry-After` or `X-RateLimit-Reset` value, read at any
//! clock: the parsers must return, never panic, and never ask for a pause
//! longer than `MAX_SERVER_PAUSE`.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use monogoto_exporter::monogoto::retry::{
    MAX_SERVER_PAUSE, parse_rate_limit_reset, parse_retry_after,
};

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes choose the clock (up to year 36812, either side of
    // 1970), the rest is the header value.
    let (clock, value) = data.split_at(data.len().min(8));
    let mut bytes = [0u8; 8];
    bytes[..clock.len()].copy_from_slice(clock);
    let offset = i64::from_le_bytes(bytes) % (1 << 40);
    let now = if offset >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(offset.unsigned_abs()))
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(offset.unsigned_abs()))
    };
    let (Some(now), Ok(value)) = (now, std::str::from_utf8(value)) else {
        return;
    };
    for pause in [parse_retry_after(value, now), parse_rate_limit_reset(value, now)]
        .into_iter()
        .flatten()
    {
        assert!(pause <= MAX_SERVER_PAUSE, "{value:?} at {now:?}: {pause:?}");
    }
});
