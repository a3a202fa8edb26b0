//! Any bytes as a `GET /thing/status` or `GET /things` answer: the parsers
//! must return, never panic, and the status parser's counts must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monogoto_exporter::monogoto::{parse_status_page, parse_things_page};

fuzz_target!(|data: &[u8]| {
    if let Ok(page) = parse_status_page(data) {
        assert!(page.things.len() <= page.returned);
        for thing in &page.things {
            assert!(!thing.iccid.is_empty());
            for value in [thing.uplink_throughput, thing.downlink_throughput, thing.last_connection]
                .into_iter()
                .flatten()
            {
                assert!(value.is_finite() && value >= 0.0);
            }
        }
    }
    let _ = parse_things_page(data);
});
