//! Any bytes as a webhook body: the event parser must return, never panic,
//! and every value it returns must be one the receiver can use as is: a
//! canonical ICCID and label values of bounded length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monogoto_exporter::push::event::{EventKind, OPERATOR_MAX_CHARS, parse_events};

fn is_digits(s: &str, lengths: std::ops::RangeInclusive<usize>) -> bool {
    lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fuzz_target!(|data: &[u8]| {
    let Ok(events) = parse_events(data) else {
        return;
    };
    // An event is at least `{}` or `{"a":0}` inside the body.
    assert!(events.len() <= data.len() / 2);
    for event in &events {
        if let Some(iccid) = &event.iccid {
            // What crate::iccid::normalize returns (private to the crate):
            // 10 to 22 characters, digits and an optional upper-case F last.
            let digits = iccid.strip_suffix('F').unwrap_or(iccid);
            assert!((10..=22).contains(&iccid.len()), "{iccid:?}");
            assert!(is_digits(digits, 9..=22), "{iccid:?}");
        }
        assert!(EventKind::ALL.contains(&event.kind));
        if let Some(network) = &event.network {
            assert!(is_digits(&network.mcc, 3..=3), "{network:?}");
            assert!(is_digits(&network.mnc, 2..=3), "{network:?}");
            let operator = &network.operator;
            assert!(!operator.is_empty() && operator.chars().count() <= OPERATOR_MAX_CHARS);
            assert!(!operator.chars().any(char::is_control), "{operator:?}");
            assert_eq!(operator.trim(), operator);
        }
        if let Some(imei) = &event.imei {
            assert!(is_digits(imei, 14..=16), "{imei:?}");
        }
    }
});
