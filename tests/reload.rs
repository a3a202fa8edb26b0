//! Reloading the configuration while running: `POST /-/reload` (with and
//! without `--web.enable-lifecycle`) and edits of the ICCIDs file on disk,
//! against the simulator. SIGHUP is tested with the binary in tests/cli.rs.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser as _;
use common::*;
use monogoto_exporter::app::{self, RunningExporter};
use monogoto_exporter::config::{Cli, Config, Environment, Mode};
use monogoto_exporter::reload::Resolve;
use monogoto_exporter::simulator::{RunningSimulator, SimEndpoint};
use secrecy::SecretString;

/// Generous: the machine running the tests may be busy.
const PATIENCE: Duration = Duration::from_secs(60);

/// Waits until `condition` holds, checking every 100 ms.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes `text` to `path` as tools should: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).expect("write");
    std::fs::rename(&next, path).expect("rename");
}

fn lines(iccids: &[&String]) -> String {
    iccids.iter().map(|i| format!("{i}\n")).collect()
}

/// Resolves `args` (flags as on the command line) as the binary would, with
/// the simulator's token in the environment, at start and at each reload.
fn resolver(sim: &RunningSimulator, args: &[&str]) -> (Config, Resolve) {
    let mut argv = vec![
        "monogoto-exporter".to_string(),
        "--monogoto.url".to_string(),
        sim.url(),
        "--monogoto.rate-limit".to_string(),
        "0".to_string(),
    ];
    // With a YAML file, the file gives it (a flag would win over the file).
    if !args.contains(&"--config.file") {
        argv.extend([
            "--web.listen-address".to_string(),
            "127.0.0.1:0".to_string(),
        ]);
    }
    argv.extend(args.iter().map(|a| a.to_string()));
    let exporter = Cli::try_parse_from(argv).expect("flags parse").exporter;
    let token = sim.simulator.static_token();
    let resolve: Resolve = Arc::new(move || {
        let env = Environment {
            token: Some(SecretString::from(token.clone())),
            ..Environment::default()
        };
        Config::resolve(&exporter, env, Mode::Exporter)
    });
    let config = resolve().expect("the configuration resolves");
    (config, resolve)
}

async fn start(config: &Config, resolve: Resolve) -> RunningExporter {
    let exporter = app::start_reloadable(config, resolve)
        .await
        .expect("exporter starts");
    wait_until("first refresh", || exporter.fleet.is_ready()).await;
    exporter
}

async fn metrics(exporter: &RunningExporter) -> String {
    scrape(exporter).await
}

fn exported(text: &str, iccid: &str) -> bool {
    text.contains(&format!("monogoto_thing_info{{iccid=\"{iccid}\""))
}

fn reload_successful(text: &str) -> Option<f64> {
    value(&samples(text), "monogoto_config_last_reload_successful")
}

async fn post(exporter: &RunningExporter, method: reqwest::Method) -> (u16, String) {
    let response = reqwest::Client::new()
        .request(method, format!("{}/-/reload", exporter.url()))
        .send()
        .await
        .expect("request succeeds");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Waits until the simulator has answered two more status requests: a whole
/// refresh has run since.
async fn another_refresh(sim: &RunningSimulator) {
    let before = sim.simulator.requests(SimEndpoint::Status);
    eventually("another refresh", || async {
        sim.simulator.requests(SimEndpoint::Status) > before + 1
    })
    .await;
}

/// An exporter following the ICCIDs file `fleet.txt` in `files`, which first
/// lists `first`; `args` are its other flags. Returns the file's path.
async fn start_following(
    sim: &RunningSimulator,
    files: &Files,
    first: &[&String],
    args: &[&str],
) -> (PathBuf, RunningExporter) {
    let fleet = files.path("fleet.txt");
    replace(&fleet, &lines(first));
    let fleet_arg = files.arg("fleet.txt");
    let mut flags = vec!["--monogoto.iccids-file", fleet_arg.as_str()];
    flags.extend_from_slice(args);
    let (config, resolve) = resolver(sim, &flags);
    (fleet, start(&config, resolve).await)
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Files {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

#[tokio::test]
async fn reload_is_403_without_enable_lifecycle_and_get_is_405() {
    let sim = simulator(3).await;
    let iccids = sim.simulator.iccids();
    let (config, resolve) = resolver(&sim, &["--monogoto.iccid", &iccids[0]]);
    assert!(!config.enable_lifecycle, "off by default");
    let exporter = start(&config, resolve).await;

    let text = metrics(&exporter).await;
    let s = samples(&text);
    assert_eq!(reload_successful(&text), Some(1.0), "1 from the start");
    let loaded = value(&s, "monogoto_config_last_reload_success_timestamp_seconds")
        .expect("the timestamp is exported");
    assert!(loaded > 1.7e9, "set at start: {loaded}");

    for method in [reqwest::Method::POST, reqwest::Method::PUT] {
        let (status, body) = post(&exporter, method.clone()).await;
        assert_eq!(status, 403, "{method}: {body}");
        assert!(body.contains("Lifecycle API is not enabled"), "{body}");
    }
    let (status, body) = post(&exporter, reqwest::Method::GET).await;
    assert_eq!(status, 405, "{body}");
    assert!(body.contains("Only POST or PUT requests allowed"), "{body}");
    exporter.shutdown().await;
}

/// A YAML file edited, then `POST /-/reload`: SIMs added and removed, a
/// changed listen address refused by name, a bad file refused, then fixed.
#[tokio::test]
async fn post_reload_applies_the_yaml_file_or_says_why_not() {
    let sim = simulator(4).await;
    let ids = sim.simulator.iccids();
    let files = Files::new();
    let yaml = files.path("config.yml");
    let write_yaml = |iccids: &[&String], listen: &str| {
        let list: Vec<String> = iccids.iter().map(|i| format!("\"{i}\"")).collect();
        replace(
            &yaml,
            &format!(
                "web:\n  listen_address: {listen}\nmonogoto:\n  iccids: [{}]\npoll:\n  interval: 1s\n",
                list.join(", ")
            ),
        );
    };
    const LISTEN: &str = "127.0.0.1:0";
    write_yaml(&[&ids[0], &ids[1]], LISTEN);
    let (config, resolve) = resolver(
        &sim,
        &[
            "--config.file",
            &files.arg("config.yml"),
            "--web.enable-lifecycle",
        ],
    );
    let exporter = start(&config, resolve).await;
    let text = metrics(&exporter).await;
    assert!(
        exported(&text, &ids[0]) && exported(&text, &ids[1]),
        "{text}"
    );
    assert!(!exported(&text, &ids[2]));

    // Nothing changed: 200 all the same.
    let (status, body) = post(&exporter, reqwest::Method::POST).await;
    assert_eq!(
        (status, body.trim()),
        (200, "configuration reloaded, nothing changed")
    );

    write_yaml(&[&ids[1], &ids[2]], LISTEN);
    let (status, body) = post(&exporter, reqwest::Method::POST).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("1 SIM(s) added, 1 removed"), "{body}");
    eventually("the added SIM exported, the removed one gone", || async {
        let text = metrics(&exporter).await;
        exported(&text, &ids[2]) && !exported(&text, &ids[0]) && exported(&text, &ids[1])
    })
    .await;

    // The listen address cannot change without a restart: named, and nothing applied.
    write_yaml(&[&ids[1], &ids[2], &ids[3]], "127.0.0.1:1");
    let (status, body) = post(&exporter, reqwest::Method::PUT).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.starts_with(
            "failed to reload config: cannot apply without a restart: web.listen-address"
        ),
        "{body}"
    );
    assert!(body.contains("127.0.0.1:1"), "{body}");
    let text = metrics(&exporter).await;
    assert_eq!(reload_successful(&text), Some(0.0), "{text}");
    let failed_at = value(
        &samples(&text),
        "monogoto_config_last_reload_success_timestamp_seconds",
    );

    // Invalid YAML: refused too, with the parser's word.
    replace(&yaml, "poll: [unclosed\n");
    let (status, body) = post(&exporter, reqwest::Method::POST).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("config: config.file") && body.contains("invalid YAML"),
        "{body}"
    );
    assert!(
        !body.contains(&sim.simulator.static_token()),
        "no secret: {body}"
    );

    // The old set is still polled meanwhile.
    another_refresh(&sim).await;
    let text = metrics(&exporter).await;
    assert!(
        exported(&text, &ids[1]) && exported(&text, &ids[2]),
        "{text}"
    );
    assert!(
        !exported(&text, &ids[3]),
        "nothing of a failed reload applies"
    );
    assert_eq!(
        value(
            &samples(&text),
            "monogoto_config_last_reload_success_timestamp_seconds"
        ),
        failed_at,
        "a failure leaves the time of the last success"
    );

    // Fixed: applies, and the metric is 1 again.
    write_yaml(&[&ids[1], &ids[2], &ids[3]], LISTEN);
    let (status, body) = post(&exporter, reqwest::Method::POST).await;
    assert_eq!(status, 200, "{body}");
    eventually("the SIM of the fixed file", || async {
        exported(&metrics(&exporter).await, &ids[3])
    })
    .await;
    let text = metrics(&exporter).await;
    assert_eq!(reload_successful(&text), Some(1.0), "{text}");
    let s = samples(&text);
    assert!(
        value(&s, "monogoto_config_last_reload_success_timestamp_seconds") >= failed_at,
        "{text}"
    );
    exporter.shutdown().await;
}

/// The ICCIDs file is watched: an edit applies without a signal or request.
#[tokio::test]
async fn an_edited_iccids_file_applies_by_itself() {
    let sim = simulator(5).await;
    let ids = sim.simulator.iccids();
    let files = Files::new();
    let (fleet, exporter) = start_following(
        &sim,
        &files,
        &[&ids[0], &ids[1], &ids[2]],
        &["--poll.interval", "1s"],
    )
    .await;
    let text = metrics(&exporter).await;
    assert!((0..3).all(|i| exported(&text, &ids[i])), "{text}");
    assert!(!exported(&text, &ids[3]));

    // One added, one removed.
    replace(&fleet, &lines(&[&ids[1], &ids[2], &ids[3]]));
    eventually("the edit applied", || async {
        let text = metrics(&exporter).await;
        exported(&text, &ids[3]) && !exported(&text, &ids[0])
    })
    .await;
    let text = metrics(&exporter).await;
    assert!(
        exported(&text, &ids[1]) && exported(&text, &ids[2]),
        "{text}"
    );
    assert_eq!(reload_successful(&text), Some(1.0));
    assert_eq!(
        value(&samples(&text), "monogoto_things_configured"),
        Some(3.0)
    );

    // A bad line: the old set stays, the metric says so.
    replace(
        &fleet,
        &format!("{}{}\nnot-an-iccid\n", lines(&[&ids[1]]), ids[4]),
    );
    eventually("the failed reload", || async {
        reload_successful(&metrics(&exporter).await) == Some(0.0)
    })
    .await;
    another_refresh(&sim).await;
    let text = metrics(&exporter).await;
    assert!((1..4).all(|i| exported(&text, &ids[i])), "{text}");
    assert!(!exported(&text, &ids[4]), "nothing of the bad file applies");

    // Unreadable: the same.
    std::fs::remove_file(&fleet).expect("remove");
    tokio::time::sleep(2 * monogoto_exporter::reload::WATCH_INTERVAL).await;
    let text = metrics(&exporter).await;
    assert_eq!(reload_successful(&text), Some(0.0));
    assert!((1..4).all(|i| exported(&text, &ids[i])), "{text}");

    // Fixed: applies, and the metric is 1 again.
    replace(&fleet, &lines(&[&ids[1], &ids[4]]));
    eventually("the fixed file applied", || async {
        let text = metrics(&exporter).await;
        reload_successful(&text) == Some(1.0)
            && exported(&text, &ids[4])
            && !exported(&text, &ids[2])
            && !exported(&text, &ids[3])
    })
    .await;
    exporter.shutdown().await;
}

/// The poll settings that apply live do; a reload of an exporter started
/// with a long interval makes the next refresh start at once.
#[tokio::test]
async fn an_added_sim_does_not_wait_for_the_interval() {
    let sim = simulator(2).await;
    let ids = sim.simulator.iccids();
    let files = Files::new();
    let (fleet, exporter) =
        start_following(&sim, &files, &[&ids[0]], &["--poll.interval", "1h"]).await;
    replace(&fleet, &lines(&[&ids[0], &ids[1]]));
    eventually("the added SIM, well before the hour", || async {
        exported(&metrics(&exporter).await, &ids[1])
    })
    .await;
    exporter.shutdown().await;
}

/// A refresh the API makes long: a SIM removed meanwhile leaves /metrics
/// while it goes on, not at its end (nor at its next periodic publication:
/// with an interval of an hour it has none).
#[tokio::test]
async fn a_removed_sim_leaves_during_a_long_refresh() {
    let sim = simulator(20).await;
    let ids = sim.simulator.iccids();
    let files = Files::new();
    let all: Vec<&String> = ids.iter().collect();
    let (fleet, exporter) = start_following(
        &sim,
        &files,
        &all[1..],
        &[
            "--poll.interval",
            "1h",
            "--poll.batch-size",
            "1",
            "--poll.concurrency",
            "1",
            // Every SIM every refresh: a refresh sends one request per SIM.
            "--poll.inactive-interval",
            "0",
        ],
    )
    .await;
    let reloader = exporter.reloader.clone().expect("reloadable");
    let status = || sim.simulator.requests(SimEndpoint::Status);
    assert!(exported(&metrics(&exporter).await, &ids[1]));

    // A SIM added: the next refresh starts at once, and takes 20 s.
    sim.simulator
        .add_fault("latency=1s,endpoint=status".parse().expect("fault"));
    let base = status();
    replace(&fleet, &lines(&all));
    let reloaded = reloader.reload("test").await.expect("reloads");
    assert_eq!((reloaded.changed.added, reloaded.changed.removed), (1, 0));
    eventually("the second refresh under way", || async { status() > base }).await;

    let without: Vec<&String> = all.iter().copied().filter(|i| **i != ids[1]).collect();
    replace(&fleet, &lines(&without));
    let reloaded = reloader.reload("test").await.expect("reloads");
    assert_eq!((reloaded.changed.added, reloaded.changed.removed), (0, 1));
    eventually("the removed SIM gone", || async {
        !exported(&metrics(&exporter).await, &ids[1])
    })
    .await;
    let sent = status() - base;
    assert!(
        sent < ids.len() as u64,
        "gone while the refresh went on: {sent} of its {} requests sent",
        ids.len()
    );
    exporter.shutdown().await;
}
