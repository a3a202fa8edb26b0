//! Heap used by the fleet state, counted by the allocator: what one snapshot
//! holds per Thing, and the peak while a refresh in which every Thing changed
//! replaces it (the fresh records, the new snapshot as it grows, and what is
//! left of the previous one). `cargo bench --bench memory` prints a table.
//!
//! These are live heap bytes, without the allocator's own overhead or the
//! rest of the process: the end-to-end benchmark reports the resident size.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use monogoto_exporter::fleet::snapshot::{self, Snapshot};

mod common;

/// The exporter's allocator, counting live and peak bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a new peak from what is live now.
fn reset_peak() -> usize {
    let now = live();
    PEAK.store(now, Ordering::Relaxed);
    now
}

fn mb(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

fn main() {
    // `cargo bench` passes harness flags such as --bench; sizes may follow.
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        sizes
    };
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let stale = Duration::from_secs(3600);
    println!(
        "| N | snapshot (MB) | per Thing (bytes) | fresh records (MB) | peak during a refresh (MB) | peak per Thing (bytes) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for n in sizes {
        let first = common::fleet_in_round(n, 0);
        let base = reset_peak();
        // Stands for the Fleet: only what was published last stays alive.
        let mut current = Snapshot::empty().next(first, t0, stale);
        let snapshot = live() - base;

        let fresh = common::fleet_in_round(n, 1);
        let fresh_bytes = live() - base - snapshot;
        reset_peak();
        let previous = current.clone();
        let at = t0 + Duration::from_secs(60);
        let keep = snapshot::refreshed_within(at, stale);
        let next = previous.into_next(fresh, at, keep, |partial| current = partial);
        current = next;
        let peak = PEAK.load(Ordering::Relaxed) - base;
        assert_eq!(current.len(), n);
        println!(
            "| {n} | {} | {} | {} | {} | {} |",
            mb(snapshot),
            snapshot / n,
            mb(fresh_bytes),
            mb(peak),
            peak / n
        );
        drop(current);
    }
}
