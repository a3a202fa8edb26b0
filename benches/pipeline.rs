//! Micro-benchmarks of the refresh pipeline: parsing status answers,
//! building snapshots, rendering the exposition and answering a scrape.
//! `cargo bench` prints throughput in elements (Things or series) and bytes.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use monogoto_exporter::exposition::{self, Deflater};
use monogoto_exporter::fleet::Snapshot;
use monogoto_exporter::fleet::families;
use monogoto_exporter::monogoto::parse_status_page;

mod common;
use common::{fleet_in_round, status_body};

fn parsing(c: &mut Criterion) {
    let body = status_body(50, 0, 0);
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
        let things = fleet_in_round(n, 0);
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

    // One hinted SIM's new answer, published at once: only its bucket is
    // rendered again (the webhook's goal: at most 5 ms at 100,000 SIMs).
    let mut group = c.benchmark_group("hinted answer");
    group.sample_size(20);
    for n in [10_000usize, 100_000] {
        let things = fleet_in_round(n, 0);
        let previous = Snapshot::empty().next(things.clone(), t0, stale);
        let changed = fleet_in_round(n, 1).swap_remove(n / 2);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::new("publish one", n),
            &changed,
            |b, changed| {
                b.iter(|| previous.with_touched(vec![changed.clone()], t0 + Duration::from_secs(1)))
            },
        );
    }
    group.finish();
}

/// The per-Thing exposition from records: the text alone, and the text with
/// its deflate, as a refresh renders a changed bucket.
fn rendering(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    let records = fleet_in_round(10_000, 0);
    let mut text = Vec::new();
    families::render_things(records.iter(), &mut text);
    let series = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .count();
    group.throughput(Throughput::Elements(series as u64));
    group.bench_function("10000 Things, series/s", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(text.len());
            families::render_things(black_box(&records).iter(), &mut out);
            out
        })
    });
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("10000 Things, bytes/s", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(text.len());
            families::render_things(black_box(&records).iter(), &mut out);
            out
        })
    });
    let mut deflater = Deflater::default();
    group.bench_function("10000 Things deflated, bytes/s", |b| {
        b.iter(|| deflater.segments(black_box(&text), &[text.len()]))
    });
    group.finish();
}

fn scrapes(c: &mut Criterion) {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut group = c.benchmark_group("scrape body");
    for n in [1_000usize, 100_000] {
        let snapshot = Snapshot::empty().next(fleet_in_round(n, 0), t0, Duration::from_secs(180));
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

criterion_group!(benches, parsing, snapshots, rendering, scrapes);
criterion_main!(benches);
