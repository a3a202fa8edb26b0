//! Micro-benchmarks of the refresh pipeline: parsing status answers,
//! building snapshots, rendering the exposition and answering a scrape.
//! `cargo bench` prints throughput in elements (Things or series) and bytes.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use monogoto_exporter::exposition;
use monogoto_exporter::monogoto::ThingStatus;
use monogoto_exporter::monogoto::model::parse_status_page;
use monogoto_exporter::snapshot::Snapshot;

/// A status answer for `n` Things in the documented shapes, as the API sends it.
fn status_body(n: usize, offset: usize) -> Vec<u8> {
    let data: Vec<serde_json::Value> = (offset..offset + n)
        .map(|i| {
            let connected = i % 5 != 0;
            let sessions = if connected {
                serde_json::json!([{"ActiveSessionId": format!("s{i}"), "ApnName": "data.mono", "IPAddress": "10.0.0.7",
                    "LastConnectedTime": 1_739_955_863_000u64 + i as u64, "UplinkThroughput": i % 5000, "DownlinkThroughput": i % 70000}])
            } else {
                serde_json::json!([])
            };
            serde_json::json!({
                "ThingId": format!("ThingId_ICCID_8988{i:015}"), "CustomerId": "cid_0f1e2d3c",
                "ThingName": format!("tracker-{i:05}"), "ThingDescription": "cold-chain tracker",
                "ProvisionStatus": "ACTIVE", "ConnectionStatus": if connected { "CONNECTED" } else { "DISCONNECTED" },
                "ActiveSessions": sessions, "ActiveIMSI": format!("9014{i:011}"),
                "LastConnectionTime": "2025-02-19 09:04:23", "LastDisconnectionTime": 1_739_952_000_000u64,
                "MSISDN": format!("+44{i:010}"),
            })
        })
        .collect();
    serde_json::json!({"Success": true, "Message": "Operation succeeded", "Data": data})
        .to_string()
        .into_bytes()
}

fn fleet(n: usize) -> Vec<ThingStatus> {
    (0..n / 50)
        .flat_map(|batch| {
            parse_status_page(&status_body(50, batch * 50))
                .map(|p| p.things)
                .unwrap_or_default()
        })
        .collect()
}

fn parsing(c: &mut Criterion) {
    let body = status_body(50, 0);
    let mut group = c.benchmark_group("parse_status_page");
    group.throughput(Throughput::Elements(50));
    group.bench_function("50 Things, Things/s", |b| {
        b.iter(|| parse_status_page(black_box(&body)))
    });
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("50 Things, bytes/s", |b| {
        b.iter(|| parse_status_page(black_box(&body)))
    });
    group.finish();
}

fn snapshots(c: &mut Criterion) {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let stale = Duration::from_secs(180);
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    for n in [1_000usize, 10_000, 100_000] {
        let things = fleet(n);
        group.throughput(Throughput::Elements(n as u64));
        // Every Thing new: the first refresh, everything rendered and compressed.
        group.bench_with_input(
            BenchmarkId::new("first refresh", n),
            &things,
            |b, things| b.iter(|| Snapshot::empty().next(things.clone(), t0, stale)),
        );
        // Same values again: the steady state, nothing re-rendered.
        let previous = Snapshot::empty().next(things.clone(), t0, stale);
        group.bench_with_input(
            BenchmarkId::new("unchanged refresh", n),
            &things,
            |b, things| {
                b.iter(|| previous.next(things.clone(), t0 + Duration::from_secs(60), stale))
            },
        );
    }
    group.finish();
}

fn scrapes(c: &mut Criterion) {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut group = c.benchmark_group("scrape body");
    for n in [1_000usize, 100_000] {
        let snapshot = Snapshot::empty().next(fleet(n), t0, Duration::from_secs(180));
        let bytes = snapshot.exposition().len() as u64;
        let tail = vec![b'#'; 12 * 1024];
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(BenchmarkId::new("identity", n), |b| {
            b.iter(|| exposition::identity_body(snapshot.segments(), tail.clone()))
        });
        group.bench_function(BenchmarkId::new("gzip", n), |b| {
            b.iter(|| exposition::gzip_body(snapshot.segments(), &tail))
        });
    }
    group.finish();
}

criterion_group!(benches, parsing, snapshots, scrapes);
criterion_main!(benches);
