//! Parsing webhook bodies: 1,000 CDRs of about 500 bytes each, bare and in
//! an envelope. `cargo bench --bench events` prints events/s and bytes/s.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use monogoto_exporter::push::event::parse_events;
use serde_json::{Value, json};

const EVENTS: usize = 1_000;

/// Data and SMS CDRs with the documented fields; the byte counts and times,
/// whose names the documentation cuts off, are stand-ins of a likely size.
fn cdrs() -> Vec<Value> {
    (0..EVENTS)
        .map(|i| {
            let iccid = format!("89883030{i:011}");
            let mut cdr = json!({
                "CdrType": if i % 4 == 0 { "MO_SMS" } else { "DATA" },
                "UniqueID": format!("b7e1c3f0-5a2d-4c1e-9f3a-{i:012}"),
                "Iccid": iccid,
                "IMSI": format!("2950509{i:08}"),
                "MSISDN": format!("4236639{i:08}"),
                "IMEI": format!("3569380{i:08}"),
                "MNO": "VZW",
                "MnoName": "Verizon Wireless",
                "MCC": "311",
                "MNC": "480",
                "ThingName": format!("cold-chain tracker {i:05}"),
                "ThingId": format!("ThingId_ICCID_{iccid}"),
                "StartTime": "2025-02-19 09:04:23",
                "EndTime": "2025-02-19 09:19:23",
                "UplinkBytes": 48_213 + i,
                "DownlinkBytes": 1_093_772 + i,
                "TotalBytes": 1_141_985 + 2 * i,
                "ApnName": "data.mono",
                "IPAddress": "10.46.12.7",
            });
            if i % 4 == 0 {
                cdr["CallingNumber"] = json!(format!("4236639{i:08}"));
                cdr["CalledNumber"] = json!("447700900123");
            }
            cdr
        })
        .collect()
}

fn parsing(c: &mut Criterion) {
    let events = cdrs();
    let bare = Value::Array(events.clone()).to_string().into_bytes();
    let enveloped = json!({ "records": events }).to_string().into_bytes();
    let mut group = c.benchmark_group("parse_events");
    for (name, body) in [("array", &bare), ("envelope", &enveloped)] {
        assert_eq!(parse_events(body).map(|e| e.len()), Ok(EVENTS));
        group.throughput(Throughput::Elements(EVENTS as u64));
        group.bench_function(format!("1,000 CDRs, {name}, events/s"), |b| {
            b.iter(|| parse_events(black_box(body)))
        });
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("1,000 CDRs, {name}, bytes/s"), |b| {
            b.iter(|| parse_events(black_box(body)))
        });
    }
    group.finish();
}

criterion_group!(benches, parsing);
criterion_main!(benches);
