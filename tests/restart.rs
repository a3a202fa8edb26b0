//! Restarts with `--storage.path`: the binary stopped (SIGTERM) or killed
//! (SIGKILL) and started again against a simulator that enforces a request
//! budget. What the budget bought survives: the SIMs are served at once, the
//! pass goes on where it stopped, and the account's windows are never exceeded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{frozen_time, samples};
use monogoto_exporter::monogoto::budget::Budget;
use monogoto_exporter::shard::Shard;
use monogoto_exporter::simulator::{RunningSimulator, SimEndpoint, Simulator, SimulatorConfig};

const BIN: &str = env!("CARGO_BIN_EXE_monogoto-exporter");
/// The scaled budget: a pass of 600 SIMs takes about 6 s.
const BUDGET: &str = "4/s,20/10s";

async fn simulator(things: usize, budget: Option<&str>) -> RunningSimulator {
    let rate_limit = budget
        .map(|b| {
            let budget: Budget = b.parse().expect("valid budget");
            budget
                .windows()
                .iter()
                .map(|w| (w.requests, w.period))
                .collect()
        })
        .unwrap_or_default();
    let sim = Simulator::new(SimulatorConfig {
        things,
        seed: 11,
        rate_limit,
        ..SimulatorConfig::default()
    });
    // Things keep their values: a value after a restart is the one saved.
    sim.set_time(Some(frozen_time()));
    sim.spawn().await.expect("simulator starts")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One run of the exporter binary; its log goes to a file.
struct Run {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Run {
    fn start(sim: &RunningSimulator, dir: &Path, name: &str, args: &[&str]) -> Run {
        Run::start_as(sim, dir, name, args, &sim.simulator.static_token())
    }

    fn start_as(sim: &RunningSimulator, dir: &Path, name: &str, args: &[&str], token: &str) -> Run {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let file = File::create(&log).expect("log file");
        let mut cmd = Command::new(BIN);
        for var in [
            "MONOGOTO_EXPORTER_CONFIG",
            "MONOGOTO_USERNAME",
            "MONOGOTO_PASSWORD",
            "MONOGOTO_EXPORTER_STORAGE_PATH",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        let child = cmd
            .env("MONOGOTO_TOKEN", token)
            .args(["--monogoto.url", &sim.url()])
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("the exporter starts");
        Run {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never ready; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body")
    }

    async fn sample(&self, series: &str) -> f64 {
        samples(&self.metrics().await)
            .get(series)
            .copied()
            .unwrap_or(f64::NAN)
    }

    async fn wait_for(&self, what: &str, mut done: impl FnMut(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Not listening yet is not done yet.
            let text = match reqwest::get(format!("{}/metrics", self.base)).await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if done(&text) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// SIGTERM, and the exit status, which must be 0.
    fn stop(mut self) -> String {
        self.signal("-TERM");
        let status = wait_exit(&mut self.child);
        let log = self.log();
        assert_eq!(status.code(), Some(0), "log:\n{log}");
        log
    }

    fn kill(mut self) -> String {
        self.signal("-KILL");
        wait_exit(&mut self.child);
        self.log()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the exporter did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The per-SIM lines of an exposition, by ICCID.
fn things(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("monogoto_thing_")) {
        if let Some(iccid) = line
            .split_once("iccid=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(iccid, _)| iccid.to_string())
        {
            out.entry(iccid).or_default().push(line.to_string());
        }
    }
    out
}

fn iccids_file(dir: &Path, iccids: &[String]) -> String {
    let path = dir.join("iccids.txt");
    std::fs::write(&path, iccids.join("\n")).expect("write");
    path.display().to_string()
}

/// The ICCIDs each status request named, in order.
fn queried(sim: &RunningSimulator) -> Vec<BTreeSet<String>> {
    sim.simulator
        .status_queries()
        .iter()
        .map(|query| {
            query
                .split(['&', ',', '='])
                .filter_map(|part| {
                    let part = part.replace("%2C", ",");
                    part.strip_prefix("ThingId_ICCID_").map(str::to_string)
                })
                .collect()
        })
        .collect()
}

fn stats(sim: &RunningSimulator) -> String {
    format!(
        "status {}, things {}, 429s {}",
        sim.simulator.requests(SimEndpoint::Status),
        sim.simulator.requests(SimEndpoint::Things),
        sim.simulator.budget_refusals()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_restart_late_in_a_pass_serves_at_once_and_goes_on_where_it_stopped() {
    let sim = simulator(600, Some(BUDGET)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let iccids = sim.simulator.iccids();
    let file = iccids_file(dir.path(), &iccids);
    let args = [
        "--monogoto.iccids-file",
        &file,
        "--monogoto.rate-limit",
        BUDGET,
        "--poll.interval",
        "1s",
        "--poll.concurrency",
        "1",
        "--storage.path",
        storage.to_str().expect("utf-8"),
    ];
    let first = Run::start(&sim, dir.path(), "first", &args);
    first.wait_ready().await;
    first
        .wait_for("a whole pass", |m| {
            samples(m).get("monogoto_things_reported") == Some(&600.0)
        })
        .await;
    // Late in the next pass: most SIMs answered twice, some once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let twice = iccids
            .iter()
            .filter(|i| sim.simulator.polls_of(i).is_some_and(|(n, _)| n >= 2))
            .count();
        if twice >= 350 {
            break;
        }
        assert!(Instant::now() < deadline, "the second pass never got far");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = things(&first.metrics().await);
    let stopped = Instant::now();
    first.stop();
    let downtime = Duration::from_millis(500);
    tokio::time::sleep(downtime).await;
    // What the stopped pass had not reached yet: answered once, and polled
    // every pass (SUSPENDED and RETIRED SIMs wait for their own interval).
    let every_pass = |iccid: &String| {
        sim.simulator
            .truth(iccid)
            .is_some_and(|t| !matches!(t.provision_status.as_str(), "SUSPENDED" | "RETIRED"))
    };
    let not_reached: BTreeSet<String> = iccids
        .iter()
        .filter(|i| every_pass(i) && sim.simulator.polls_of(i).is_some_and(|(n, _)| n == 1))
        .cloned()
        .collect();
    assert!(!not_reached.is_empty() && not_reached.len() < 600);
    sim.simulator.reset_counters();

    let second = Run::start(&sim, dir.path(), "second", &args);
    second.wait_ready().await;
    let served = things(&second.metrics().await);
    assert_eq!(
        served.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "every SIM served at readiness; log:\n{}",
        second.log()
    );
    for (iccid, lines) in &before {
        assert_eq!(&served[iccid], lines, "the values served before the stop");
    }
    assert_eq!(second.sample("monogoto_storage_loaded_things").await, 600.0);

    // The pass goes on with the SIMs the stopped one had not reached.
    let requests_for_them = not_reached.len().div_ceil(50) + 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    while queried(&sim).len() < requests_for_them {
        assert!(Instant::now() < deadline, "no pass after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_asked: BTreeSet<String> = queried(&sim)
        .into_iter()
        .take(requests_for_them)
        .flatten()
        .collect();
    let skipped: Vec<_> = not_reached.difference(&first_asked).collect();
    assert!(
        skipped.is_empty(),
        "{} SIMs the stopped pass had not reached waited for others: {:?}",
        skipped.len(),
        skipped.iter().take(5).collect::<Vec<_>>()
    );
    // A whole pass after the restart, within the budget the last process left.
    second
        .wait_for("a pass after the restart", |_| {
            iccids.iter().filter(|i| every_pass(i)).all(|i| {
                sim.simulator
                    .polls_of(i)
                    .is_some_and(|(n, _)| n >= if not_reached.contains(i) { 2 } else { 3 })
            })
        })
        .await;
    let summary = sim.simulator.poll_summary();
    eprintln!(
        "longest wait across the restart: {:.1} s ({:.1} s since the stop); {}",
        summary.worst_gap_seconds,
        stopped.elapsed().as_secs_f64(),
        stats(&sim)
    );
    assert_eq!(
        sim.simulator.budget_refusals(),
        0,
        "no 429: {}",
        stats(&sim)
    );
    second.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loop_never_exceeds_the_budget() {
    // A window the loop fills: without the ledger every start would send
    // its first request at once, a dozen in a few seconds.
    let budget = "2/s,6/10s";
    let sim = simulator(300, Some(budget)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let file = iccids_file(dir.path(), &sim.simulator.iccids());
    let args = [
        "--monogoto.iccids-file",
        &file,
        "--monogoto.rate-limit",
        budget,
        "--poll.interval",
        "1s",
        "--storage.path",
        storage.to_str().expect("utf-8"),
    ];
    for restart in 0..12 {
        let run = Run::start(&sim, dir.path(), &format!("run{restart}"), &args);
        tokio::time::sleep(Duration::from_millis(300 + fastrand::u64(..500))).await;
        let log = run.kill();
        assert!(!log.contains("cannot be used"), "run {restart}:\n{log}");
    }
    let last = Run::start(&sim, dir.path(), "last", &args);
    last.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        sim.simulator.requests(SimEndpoint::Status) >= 6,
        "the loop polled: {}",
        stats(&sim)
    );
    assert_eq!(
        sim.simulator.budget_refusals(),
        0,
        "a crash loop exceeded the budget: {}",
        stats(&sim)
    );
    last.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_with_discovery_serves_the_fleet_without_listing_it_again() {
    let sim = simulator(300, Some(BUDGET)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let args = [
        "--monogoto.discover",
        "--monogoto.rate-limit",
        BUDGET,
        "--poll.interval",
        "1s",
        "--storage.path",
        storage.to_str().expect("utf-8"),
    ];
    let first = Run::start(&sim, dir.path(), "first", &args);
    first
        .wait_for("the fleet listed and polled", |m| {
            samples(m).get("monogoto_things_reported") == Some(&300.0)
        })
        .await;
    assert!(sim.simulator.requests(SimEndpoint::Things) > 0);
    first.stop();
    sim.simulator.reset_counters();

    let second = Run::start(&sim, dir.path(), "second", &args);
    second.wait_ready().await;
    assert_eq!(
        things(&second.metrics().await).len(),
        300,
        "{}",
        second.log()
    );
    // A pass goes by, polling from the saved listing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.simulator.requests(SimEndpoint::Status) < 7 {
        assert!(Instant::now() < deadline, "no polling: {}", stats(&sim));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        sim.simulator.requests(SimEndpoint::Things),
        0,
        "the fleet was listed again"
    );
    assert_eq!(sim.simulator.budget_refusals(), 0, "{}", stats(&sim));
    second.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_always_leaves_a_state_that_loads() {
    let sim = simulator(400, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let file = iccids_file(dir.path(), &sim.simulator.iccids());
    let args = [
        "--monogoto.iccids-file",
        &file,
        "--monogoto.rate-limit",
        "20/s",
        "--poll.interval",
        "1s",
        "--poll.batch-size",
        "10",
        "--storage.path",
        storage.to_str().expect("utf-8"),
    ];
    let mut loaded_once = false;
    for round in 0..10 {
        let run = Run::start(&sim, dir.path(), &format!("run{round}"), &args);
        // Every other round at once (mid-start, mid-load), the others after
        // the first pass (2.2 s here) wrote a state: mid-write at times.
        let after = if round % 2 == 0 {
            fastrand::u64(..1000)
        } else {
            2500 + fastrand::u64(..2500)
        };
        tokio::time::sleep(Duration::from_millis(after)).await;
        let log = run.kill();
        assert!(
            !log.contains("cannot be used") && !log.contains("panicked"),
            "round {round} found a bad state:\n{log}"
        );
        loaded_once |= log.contains("took back the saved state");
    }
    let last = Run::start(&sim, dir.path(), "last", &args);
    last.wait_ready().await;
    let log = last.log();
    assert!(log.contains("took back the saved state"), "{log}");
    assert!(last.sample("monogoto_storage_loaded_things").await > 0.0);
    assert!(loaded_once || log.contains("served="));
    last.stop();
}

/// A state file written by a run against `sim`, for the damage tests.
async fn saved_state(sim: &RunningSimulator, dir: &Path, args: &[&str]) -> Vec<u8> {
    let run = Run::start(sim, dir, "saving", args);
    run.wait_ready().await;
    run.stop();
    std::fs::read(dir.join("state/state")).expect("a state was written")
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_truncated_empty_and_foreign_files_mean_a_cold_start_with_a_warning() {
    let sim = simulator(100, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let file = iccids_file(dir.path(), &sim.simulator.iccids());
    let args = [
        "--monogoto.iccids-file",
        &file,
        "--storage.path",
        storage.to_str().expect("utf-8"),
    ];
    let good = saved_state(&sim, dir.path(), &args).await;
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let cases: [(&str, Vec<u8>); 5] = [
        ("damaged", flipped),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        (
            "foreign",
            b"{\"not\": \"a state of this exporter\"}\n".to_vec(),
        ),
        ("header only", good[..24].to_vec()),
    ];
    let path = storage.join("state");
    for (what, bytes) in cases {
        std::fs::write(&path, &bytes).expect("write");
        let run = Run::start(&sim, dir.path(), what, &args);
        run.wait_ready().await;
        assert_eq!(
            run.sample("monogoto_storage_loaded_things").await,
            0.0,
            "{what}: cold"
        );
        run.wait_for("polling", |m| {
            samples(m).get("monogoto_things_reported") == Some(&100.0)
        })
        .await;
        let log = run.stop();
        let warning = log
            .lines()
            .find(|l| l.contains("WARN") && l.contains("cannot be used"))
            .unwrap_or_else(|| panic!("{what}: no warning:\n{log}"));
        assert!(warning.contains(&path.display().to_string()), "{warning}");
        assert_eq!(
            std::fs::read(storage.join("state.corrupt")).expect("moved aside"),
            bytes,
            "{what}: the last bad file is kept aside"
        );
        assert!(!log.contains("panicked"), "{log}");
    }

    // Another account's state is not used, and not called damaged.
    std::fs::write(&path, &good).expect("write");
    std::fs::remove_file(storage.join("state.corrupt")).expect("remove");
    let run = Run::start_as(
        &sim,
        dir.path(),
        "another-token",
        &args,
        "a-token-of-another-account",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !run.log().contains("monogoto-exporter started") {
        assert!(Instant::now() < deadline, "{}", run.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = run.stop();
    assert!(log.contains("belongs to another API or account"), "{log}");
    assert!(!storage.join("state.corrupt").exists(), "not moved aside");
}

#[test]
fn a_storage_path_that_cannot_be_written_is_exit_2_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"").expect("write");
    let path = blocker.join("state");
    let shown = path.display().to_string();
    for check in [false, true] {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("MONOGOTO_EXPORTER_CONFIG")
            .env_remove("MONOGOTO_EXPORTER_STORAGE_PATH")
            .env("MONOGOTO_TOKEN", "t")
            .args(["--monogoto.iccid", "89882806660000000001"])
            .args(["--monogoto.url", "http://127.0.0.1:9"])
            .args(["--storage.path", &shown]);
        if check {
            cmd.arg("--config.check");
        }
        let out = cmd.output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "check {check}: {stderr}");
        assert!(
            stderr.contains(&format!("config: storage.path {shown:?}")),
            "check {check}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_shard_layout_or_a_shrunk_list_serves_only_this_shards_configured_sims() {
    let sim = simulator(200, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let storage = storage.to_str().expect("utf-8");
    let iccids = sim.simulator.iccids();
    let file = iccids_file(dir.path(), &iccids);
    let first = Run::start(
        &sim,
        dir.path(),
        "unsharded",
        &["--monogoto.iccids-file", &file, "--storage.path", storage],
    );
    first
        .wait_for("the fleet polled", |m| {
            samples(m).get("monogoto_things_reported") == Some(&200.0)
        })
        .await;
    first.stop();

    let shard = Shard { index: 1, count: 2 };
    let owned: BTreeSet<String> = iccids.iter().filter(|i| shard.owns(i)).cloned().collect();
    assert!(!owned.is_empty() && owned.len() < 200);
    // Started as shard 1 of 2 with the SIMs of `file`: the SIMs it serves
    // at readiness.
    let served_as_shard = |name: &'static str, file: String| {
        let (sim, dir) = (&sim, dir.path());
        async move {
            let args = [
                "--monogoto.iccids-file",
                &file,
                "--storage.path",
                storage,
                "--shard.count",
                "2",
                "--shard.index",
                "1",
            ];
            let run = Run::start(sim, dir, name, &args);
            run.wait_ready().await;
            let served: BTreeSet<String> = things(&run.metrics().await).into_keys().collect();
            run.stop();
            served
        }
    };
    assert_eq!(
        served_as_shard("sharded", file).await,
        owned,
        "only this shard's SIMs, at once"
    );

    // Fewer SIMs configured: only those still configured.
    let kept = &iccids[..60];
    let expected: BTreeSet<String> = kept.iter().filter(|i| shard.owns(i)).cloned().collect();
    assert_eq!(
        served_as_shard("shrunk", iccids_file(dir.path(), kept)).await,
        expected,
        "only this shard's configured SIMs"
    );
}
