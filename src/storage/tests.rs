//! A write that fails (a full disk, a read-only folder) costs the state on
//! disk, never polling or serving.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;

use super::file::{Disk, Opened, RealDisk};
use super::ledger::BudgetJournal;
use super::*;
use crate::config::PollConfig;
use crate::fleet::Fleet;
use crate::health::HealthMetrics;
use crate::monogoto::{Client, ClientOptions};
use crate::poller::Poller;
use crate::simulator::{Simulator, SimulatorConfig};

/// A disk that fails every write with `errno` while `failing` is set.
struct FailingDisk {
    errno: i32,
    failing: Arc<AtomicBool>,
    attempts: Mutex<usize>,
}

impl Disk for FailingDisk {
    fn write_synced(&self, path: &Path, parts: &[&[u8]]) -> io::Result<()> {
        *self.attempts.lock().expect("lock") += 1;
        if self.failing.load(Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(self.errno));
        }
        RealDisk.write_synced(path, parts)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealDisk.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealDisk.sync_dir(dir)
    }
}

/// Polls a simulated fleet of 30 SIMs with its state kept on a disk failing
/// with `errno`, then lets the disk recover.
async fn polling_goes_on_while_writes_fail(errno: i32) {
    let sim = Simulator::new(SimulatorConfig {
        things: 30,
        seed: 3,
        ..SimulatorConfig::default()
    });
    let iccids = sim.iccids();
    let token = sim.static_token();
    let sim = sim.spawn().await.expect("simulator starts");
    let dir = tempfile::tempdir().expect("tempdir");
    prepare(dir.path()).expect("writable at start");

    let health = Arc::new(HealthMetrics::new());
    let metrics = Arc::new(StorageMetrics::new());
    metrics.register(health.registry()).expect("registers");
    let failing = Arc::new(AtomicBool::new(true));
    let credentials = Credentials::Token(SecretString::from(token));
    let storage = Arc::new(Storage::with_disk(
        dir.path(),
        Owner::new(&sim.url(), &credentials),
        metrics.clone(),
        Box::new(FailingDisk {
            errno,
            failing: failing.clone(),
            attempts: Mutex::new(0),
        }),
    ));
    let client = Client::new(
        ClientOptions {
            budget: "100/s".parse().expect("budget"),
            ..ClientOptions::new(sim.url())
        },
        credentials,
        health.api.clone(),
    )
    .expect("client");
    client.keep_spending_in(Arc::new(BudgetJournal::new(storage.clone())));
    let fleet = Arc::new(Fleet::default());
    let poller = Poller::new(
        client,
        PollConfig {
            batch_size: 10,
            interval: Duration::from_secs(1),
            ..PollConfig::default()
        },
        iccids,
        false,
        fleet.clone(),
        health.clone(),
    )
    .with_storage(storage.clone());

    let first = poller.refresh().await.things_refreshed;
    assert!(first >= 20, "{first} SIMs answered");
    for _ in 0..2 {
        poller.save_now().await;
        let report = poller.refresh().await;
        assert!(report.things_refreshed > 0, "polling goes on");
    }
    let served = fleet.snapshot().len();
    assert_eq!(served, first, "serving goes on");
    let mut text = Vec::new();
    health.render_into(&mut text);
    let text = String::from_utf8(text).expect("utf-8");
    assert!(
        text.contains(&format!("monogoto_things_reported {served}\n")),
        "{text}"
    );
    // The state writes waited for, and the budget's (a request each), failed.
    let failures = metrics.write_failures.get();
    assert!(failures >= 3 + 3, "{failures} failures counted");
    assert_eq!(
        storage.warned.lock().expect("lock").len(),
        1,
        "one cause, warned of once"
    );
    assert_eq!(metrics.bytes.get(), 0, "nothing written");
    assert!(
        !dir.path().join(STATE_FILE).exists() && !dir.path().join(BUDGET_FILE).exists(),
        "a failed write leaves no file"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file left: {leftovers:?}"
    );

    // The disk recovers: the next write succeeds, whole.
    failing.store(false, Ordering::Relaxed);
    poller.save_now().await;
    assert!(metrics.bytes.get() > 0);
    assert!(storage.warned.lock().expect("lock").is_empty());
    match file::open(&dir.path().join(STATE_FILE), &state::KIND).expect("read") {
        Opened::Found { version, payload } => {
            let decoded = state::decode(version, &payload).expect("decodes");
            assert_eq!(decoded.sims.len(), 30, "every SIM followed");
            let answers = decoded.sims.iter().filter(|s| s.answer.is_some()).count();
            assert_eq!(answers, served, "every SIM served");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_full_disk_stops_neither_polling_nor_serving() {
    polling_goes_on_while_writes_fail(libc::ENOSPC).await;
}

#[tokio::test]
async fn a_read_only_folder_stops_neither_polling_nor_serving() {
    polling_goes_on_while_writes_fail(libc::EROFS).await;
}

#[test]
fn a_folder_that_cannot_be_created_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").expect("write");
    let under_a_file = file.join("state");
    let why = prepare(&under_a_file).expect_err("cannot be created");
    assert!(why.contains(&under_a_file.display().to_string()), "{why}");
    prepare(&dir.path().join("new/folder")).expect("created");
    assert!(dir.path().join("new/folder").is_dir());
}

#[test]
fn an_identity_never_holds_the_token_and_tells_owners_apart() {
    let token = "eyJhbGciOiJIUzI1NiJ9.secret-token.signature";
    let owner = Owner::new(
        "https://console.monogoto.io/",
        &Credentials::Token(token.to_string().into()),
    );
    let identity = owner.identity([7; 16]);
    let bytes = postcard::to_stdvec(&identity).expect("encodes");
    assert!(
        !bytes
            .windows(12)
            .any(|w| token.as_bytes().windows(12).any(|t| t == w)),
        "no part of the token is written"
    );
    assert!(owner.owns(&identity));
    assert!(owner.owns(&owner.identity([9; 16])), "whatever the key");
    let other_token = Owner::new(
        "https://console.monogoto.io",
        &Credentials::Token("other".to_string().into()),
    );
    assert!(!other_token.owns(&identity));
    let other_api = Owner::new(
        "http://127.0.0.1:1",
        &Credentials::Token(token.to_string().into()),
    );
    assert!(!other_api.owns(&identity));
    let user = Owner::new(
        "https://console.monogoto.io",
        &Credentials::Login {
            username: "ops".into(),
            password: "pw".to_string().into(),
        },
    );
    assert!(user.owns(&user.identity([1; 16])));
    assert!(!user.owns(&identity));
}
