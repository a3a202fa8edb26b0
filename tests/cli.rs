//! The binary as an operator runs it: flags, environment, exit codes, signals,
//! demo mode, and what reaches the logs.

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use monogoto_exporter::simulator::{FaultRule, RunningSimulator, SimEndpoint};

const BIN: &str = env!("CARGO_BIN_EXE_monogoto-exporter");
const ICCID: &str = "898820000000000001";

fn command() -> Command {
    let mut cmd = Command::new(BIN);
    // The tests decide every input; nothing leaks in from the caller's shell.
    for var in [
        "MONOGOTO_EXPORTER_CONFIG",
        "MONOGOTO_URL",
        "MONOGOTO_TOKEN",
        "MONOGOTO_USERNAME",
        "MONOGOTO_PASSWORD",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Sends `signal` (as `kill` names it: "-TERM") to the child.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

fn sigterm(child: &Child) {
    signal(child, "-TERM");
}

/// Waits for the child to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base} never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Spawns `cmd` listening on a free port, stderr piped, and waits until it is
/// ready; returns the child and its base URL.
async fn serve(cmd: &mut Command) -> (Child, String) {
    let port = free_port();
    let child = cmd
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    (child, base)
}

#[test]
fn invalid_configuration_exits_2_with_one_line() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["--poll.interval", "5x"],
            &[],
            "config: poll.interval \"5x\": invalid duration",
        ),
        (
            &["--poll.batch-size", "51"],
            &[],
            "config: poll.batch-size \"51\"",
        ),
        (
            &[],
            &[("MONOGOTO_URL", "not a url")],
            "config: monogoto.url \"not a url\"",
        ),
        (
            &["--monogoto.iccid", "123"],
            &[],
            "config: monogoto.iccid \"123\"",
        ),
        (
            &[],
            &[("MONOGOTO_EXPORTER_CONFIG", "/nonexistent.yml")],
            "config: config.file \"/nonexistent.yml\"",
        ),
        (
            &["--web.config.file", "/nonexistent-web.yml"],
            &[],
            "config: web.config.file \"/nonexistent-web.yml\": cannot read",
        ),
        (
            &["--web.read-header-timeout", "500ms"],
            &[],
            "config: web.read-header-timeout \"500ms\": must be from 1s to 10m",
        ),
        (
            &["--web.read-header-timeout", "11m"],
            &[],
            "config: web.read-header-timeout \"11m\": must be from 1s to 10m",
        ),
        (
            &["--web.read-header-timeout", "soon"],
            &[],
            "config: web.read-header-timeout \"soon\": invalid duration",
        ),
        (
            &["--web.max-connections", "0"],
            &[],
            "config: web.max-connections \"0\": must be a whole number from 1 to 1000000",
        ),
        (
            &["--web.max-connections", "1000001"],
            &[],
            "config: web.max-connections \"1000001\"",
        ),
    ];
    for (args, env, expected) in cases {
        let mut cmd = command();
        cmd.env("MONOGOTO_TOKEN", "t");
        if !args.contains(&"--monogoto.iccid") {
            cmd.args(["--monogoto.iccid", ICCID]);
        }
        cmd.args(*args);
        for (k, v) in *env {
            cmd.env(k, v);
        }
        let out = run(&mut cmd);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with(expected), "{args:?}: {err:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    }

    let out = run(command().args(["--monogoto.iccid", ICCID]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("config: monogoto.token: no credentials"));

    let out = run(command().args(["--no-such-flag"]));
    assert_eq!(
        out.status.code(),
        Some(2),
        "unknown flags are configuration errors too"
    );
}

#[test]
fn client_allowed_sans_without_a_verified_chain_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    std::fs::write(dir.path().join("server.crt"), cert.pem()).expect("write");
    std::fs::write(dir.path().join("server.key"), key.serialize_pem()).expect("write");
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [prometheus.example]\n",
    )
    .expect("write");
    // Spawned and bounded: a binary that accepted the file would serve forever.
    let mut child = command()
        .env("MONOGOTO_TOKEN", "t")
        .args([
            "--monogoto.iccid",
            ICCID,
            "--web.config.file",
            web.to_str().expect("utf-8"),
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (status, err) = exit_and_stderr(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("config: web.config.file ")
            && err.contains(
                "tls_server_config: client_allowed_sans requires client_auth_type RequireAndVerifyClientCert"
            ),
        "{err}"
    );
}

#[test]
fn flags_beat_environment() {
    // The environment's URL is invalid, the flag's is fine: the flag wins and
    // the process starts (and is then stopped).
    let port = free_port();
    let mut child = command()
        .env("MONOGOTO_TOKEN", "t")
        .env("MONOGOTO_URL", "not a url")
        .args([
            "--monogoto.url",
            "http://127.0.0.1:1",
            "--monogoto.iccid",
            ICCID,
        ])
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still running"
    );
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
}

#[tokio::test]
async fn sigterm_and_sigint_exit_0_within_5_seconds() {
    for signal in ["-TERM", "-INT"] {
        let sim = simulator(20).await;
        let port = free_port();
        let mut child = command()
            .env("MONOGOTO_TOKEN", sim.simulator.static_token())
            .env("MONOGOTO_URL", sim.url())
            .args([
                "--monogoto.discover",
                "--web.listen-address",
                &format!("127.0.0.1:{port}"),
            ])
            .spawn()
            .expect("spawn");
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&base).await;
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let started = Instant::now();
        let exit = wait_exit(&mut child, Duration::from_secs(5));
        assert!(exit.success(), "{signal}: {exit:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[tokio::test]
async fn demo_mode_serves_a_simulated_fleet() {
    let port = free_port();
    let mut child = command()
        .args([
            "demo",
            "--things",
            "30",
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("piped stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("join")
    .expect("read stdout");
    let url = format!("http://127.0.0.1:{port}/metrics");
    assert!(
        line.contains(&url),
        "demo prints the /metrics URL: {line:?}"
    );

    wait_ready(&format!("http://127.0.0.1:{port}")).await;
    let text = get(&url).await.text().await.expect("body");
    let s = samples(&text);
    assert_eq!(value(&s, "monogoto_up"), Some(1.0));
    assert_eq!(value(&s, "monogoto_things_reported"), Some(30.0));
    assert_eq!(api_requests(&s, "200", "auth"), Some(1.0));

    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
}

/// Runs the binary against `sim` with `args` and `env` at trace level while
/// `faults` are injected one after another, and returns its logs and a scrape.
async fn faulty_run(
    sim: &RunningSimulator,
    env: &[(&str, &str)],
    args: &[&str],
    faults: &[&str],
) -> (String, String) {
    let mut cmd = command();
    cmd.env("MONOGOTO_URL", sim.url());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (mut child, base) = serve(
        cmd.args(args)
            .args([
                "--monogoto.discover",
                "--poll.interval",
                "1s",
                "--poll.timeout",
                "500ms",
            ])
            .args(["--monogoto.rate-limit", "0"])
            .args(["--log.level", "trace", "--log.format", "json"]),
    )
    .await;
    for fault in faults {
        let rule: FaultRule = fault.parse().expect("valid fault spec");
        let before = sim.simulator.requests(SimEndpoint::Status);
        sim.simulator.add_fault(rule);
        // Two refreshes see each fault.
        let deadline = Instant::now() + Duration::from_secs(20);
        while sim.simulator.requests(SimEndpoint::Status) < before + 2 {
            if Instant::now() > deadline {
                let _ = child.kill();
                let mut logs = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = stderr.read_to_string(&mut logs);
                }
                panic!("no refresh saw {fault}; logs:\n{logs}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sim.simulator.clear_faults();
    }
    let metrics = scrape_text(&base).await;
    let (_, logs) = stop(&mut child);
    (logs, metrics)
}

const FAULTS: &[&str] = &[
    "unauthorized,endpoint=status,count=1",
    "status=500,endpoint=status,count=2",
    "truncated_json,endpoint=status,count=1",
    "malformed_json,endpoint=status,count=1",
    "rate_limited=retry_after:0,endpoint=status,count=1",
    "hang,endpoint=status,count=1",
    "success_false,endpoint=status,count=1",
];

#[tokio::test]
async fn secrets_never_reach_the_logs_of_a_faulty_run() {
    let sim = simulator(10).await;
    let (username, password) = sim.simulator.credentials();
    let dir = tempfile::tempdir().expect("temp dir");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{password}\n")).expect("write");
    let password_arg = password_file.to_str().expect("utf-8");
    let (logs, metrics) = faulty_run(
        &sim,
        &[("MONOGOTO_USERNAME", &username)],
        &["--monogoto.password-file", password_arg],
        FAULTS,
    )
    .await;
    assert!(
        sim.simulator.requests(SimEndpoint::Auth) >= 2,
        "the 401 made it log in again"
    );
    assert!(logs.contains("logged in"), "the run logged in: {logs}");
    assert!(
        logs.contains("HTTP 500"),
        "the faults reached the logs: {logs}"
    );
    assert!(!logs.contains(&password), "password in logs");
    assert!(!metrics.contains(&password), "password in metrics");
    assert!(!logs.contains("eyJ"), "a JWT in logs");

    let sim = simulator(10).await;
    let token = sim.simulator.static_token();
    let (logs, metrics) = faulty_run(&sim, &[("MONOGOTO_TOKEN", &token)], &[], FAULTS).await;
    assert!(logs.contains("unauthorized"), "the 401 was logged: {logs}");
    assert!(!logs.contains(&token), "token in logs");
    assert!(!metrics.contains(&token), "token in metrics");
}

/// A token mapped from a Kubernetes Secret often ends in a newline: it is
/// trimmed, so requests succeed instead of failing as garbled "connect" errors.
#[tokio::test]
async fn a_token_from_the_environment_is_trimmed() {
    let sim = simulator(10).await;
    let (mut child, base) = serve(
        command()
            .env(
                "MONOGOTO_TOKEN",
                format!("{}\n", sim.simulator.static_token()),
            )
            .env("MONOGOTO_URL", sim.url())
            .args(["--monogoto.discover", "--monogoto.rate-limit", "0"]),
    )
    .await;
    let s = samples(&scrape_text(&base).await);
    let (_, logs) = stop(&mut child);
    assert_eq!(value(&s, "monogoto_up"), Some(1.0), "{logs}");
    assert_eq!(value(&s, "monogoto_things_reported"), Some(10.0), "{logs}");
    assert!(!logs.contains("<url>"), "{logs}");

    // Blank after trimming is a configuration error, as an empty token file is.
    let out = run(command()
        .env("MONOGOTO_TOKEN", " \n")
        .args(["--monogoto.iccid", ICCID]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("config: monogoto.token: MONOGOTO_TOKEN is set but empty"),
        "{}",
        stderr(&out)
    );
}

/// Values that used to panic (exit 101, some only after "started"), to act
/// otherwise than asked, or to flood the logs, are refused at start-up.
#[test]
fn values_the_exporter_cannot_honour_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--web.telemetry-path", "/:metrics"],
            "config: web.telemetry-path \"/:metrics\": must be a plain path",
        ),
        (
            &["--web.telemetry-path", "/*rest"],
            "config: web.telemetry-path \"/*rest\": must be a plain path",
        ),
        (
            &["--web.telemetry-path", "/m/{x}"],
            "config: web.telemetry-path \"/m/{x}\": must be a plain path",
        ),
        (
            &["--web.telemetry-path", "/metrics?x=1"],
            "config: web.telemetry-path \"/metrics?x=1\": must be a plain path",
        ),
        (
            &["--poll.interval", "10000000000000000000s"],
            "config: poll.interval \"10000000000000000000s\"",
        ),
        (
            &["--poll.interval", "300000000000y"],
            "config: poll.interval \"300000000000y\": must be from 1s to 24h",
        ),
        (
            &["--poll.interval", "1ms"],
            "config: poll.interval \"1ms\": must be from 1s to 24h",
        ),
        (
            &["--monogoto.rate-limit", "1/300000000000y"],
            "config: monogoto.rate-limit \"1/300000000000y\"",
        ),
        (
            &["--monogoto.url", "http://127.0.0.1:1/#x"],
            "config: monogoto.url \"http://127.0.0.1:1/\": must not carry a #fragment",
        ),
    ];
    for (args, expected) in cases {
        let port = free_port();
        let mut child = command()
            .env("MONOGOTO_TOKEN", "t")
            .env("MONOGOTO_URL", "http://127.0.0.1:1")
            .args(["--monogoto.iccid", ICCID])
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .args(*args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Before these were refused, some ran on: do not wait for them forever.
        let (status, err) = exit_and_stderr(&mut child, Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with(expected), "{args:?}: {err:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    }
}
/// A child process killed if a failed assertion leaves it running.
#[cfg(unix)]
struct Running(Child);

#[cfg(unix)]
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The demo, started through sh under `ulimit {limits}`; with its base URL.
#[cfg(unix)]
async fn demo_under_ulimit(limits: &str) -> (Running, String) {
    let port = free_port();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit {limits} && exec \"$0\" \"$@\""))
        .args([BIN, "demo", "--things", "5"])
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let child = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    (child, base)
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let (mut child, _) = demo_under_ulimit("-Sn 256").await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.0.id())).expect("limits");
    sigterm(&child.0);
    assert!(wait_exit(&mut child.0, Duration::from_secs(5)).success());
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers.len(), 2, "{line}");
    assert_eq!(numbers[0], numbers[1], "soft raised to hard: {line}");
    assert_ne!(numbers[0], "256", "{line}");
}

/// 500 connections that never send a byte against a process allowed 256
/// open files: the silent ones make room, and scrapes still get in.
#[cfg(unix)]
#[tokio::test]
async fn scrapes_get_in_past_500_silent_connections_with_256_open_files() {
    // This process holds the other ends.
    monogoto_exporter::web::raise_open_file_limit();
    let (mut child, base) = demo_under_ulimit("-n 256").await;
    let addr = base.trim_start_matches("http://").to_string();
    let mut silent = Vec::new();
    for _ in 0..500 {
        silent.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    for _ in 0..3 {
        let response = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("scrape");
        assert_eq!(response.status(), 200);
        assert!(
            response
                .text()
                .await
                .expect("body")
                .contains("monogoto_up 1")
        );
    }
    drop(silent);
    sigterm(&child.0);
    assert!(wait_exit(&mut child.0, Duration::from_secs(5)).success());
}

#[test]
fn version_names_the_revision_and_the_rustc_version() {
    let out = run(command().arg("--version"));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let expected = format!(
        "monogoto-exporter {} (revision {}, rustc ",
        env!("CARGO_PKG_VERSION"),
        monogoto_exporter::config::LONG_VERSION
            .split("revision ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .expect("a revision in the version")
    );
    assert!(text.starts_with(&expected), "{text:?}");
    // build.rs says "unknown" rather than nothing when git or rustc cannot tell.
    let rustc = text
        .trim_end()
        .strip_suffix(')')
        .and_then(|t| t.rsplit("rustc ").next())
        .expect("a rustc version");
    assert!(
        rustc == "unknown" || rustc.split('.').count() >= 3,
        "{text:?}"
    );
    assert!(
        text.contains(env!("MONOGOTO_EXPORTER_RUSTC")),
        "the same rustc as build_info: {text:?}"
    );
}

/// A directory with a configuration that is valid throughout: YAML, token
/// file, ICCIDs file and a web configuration with one basic auth user.
struct CheckFixture {
    dir: tempfile::TempDir,
}

impl CheckFixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write fixture");
        };
        write("token", "s3cr3t-token-value\n");
        write(
            "fleet.txt",
            "# two SIMs\n898820000000000001\n8988200000000000002\n\n898820000000000003\n",
        );
        write(
            "web.yml",
            "basic_auth_users:\n  prometheus: $2y$10$1Wz5NXQE1Ukg7PHvBLk/Ee9priOMbB7KhcbHJJEdgUe6a7NIIpKlC\n",
        );
        let config = format!(
            "monogoto:\n  iccids_file: {fleet}\n  rate_limit: 1/min\npoll:\n  interval: 60s\n  batch_size: 2\nweb:\n  config_file: {web}\n",
            fleet = dir.path().join("fleet.txt").display(),
            web = dir.path().join("web.yml").display(),
        );
        write("config.yml", &config);
        CheckFixture { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).expect("write fixture");
    }

    /// `--config.check` with the fixture's files, the API URL pointing at `api`.
    fn check(&self, api: &str, extra: &[&str]) -> Output {
        run(command()
            .args(["--config.check", "--config.file", &self.path("config.yml")])
            .args(["--monogoto.token-file", &self.path("token")])
            .args(["--monogoto.url", api])
            .args(extra))
    }
}

#[test]
fn config_check_summarizes_a_good_configuration_without_contacting_the_api() {
    let fixture = CheckFixture::new();
    // A listener no one may connect to: the check must not.
    let api = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    api.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", api.local_addr().expect("addr"));
    let out = fixture.check(&url, &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    for expected in [
        "configuration OK",
        "SIMs: 3 configured",
        "auth: token",
        "budget: 1/min (monogoto.rate-limit)",
        // 3 SIMs in batches of 2: 2 requests, at 1 a minute as the limiter
        // keeps it (62 s).
        "refresh target: 2m 4s (poll.interval 1m; 2 status request(s) of up to 2 SIMs within 1/min)",
        "web: TLS no, basic auth users 1, client auth NoClientCert",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    assert!(!text.contains("s3cr3t"), "no secret in the summary: {text}");
    assert!(
        matches!(api.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the check connected to the API"
    );

    let out = run(command()
        .env("MONOGOTO_TOKEN", "s3cr3t")
        .args(["--config.check", "--monogoto.discover"]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("SIMs: discovery"), "{text}");
}

#[test]
fn config_check_reports_every_problem_and_exits_2() {
    let url = "http://127.0.0.1:1";
    // Each broken input alone.
    type Case<'a> = (&'a str, &'a str, &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (
            "",
            "",
            &["--poll.interval", "5x"],
            "config: poll.interval \"5x\"",
        ),
        (
            "config.yml",
            "poll: [not, a, mapping\n",
            &[],
            "invalid YAML",
        ),
        (
            "fleet.txt",
            "898820000000000001\nnot-an-iccid\n",
            &[],
            "line 2: \"not-an-iccid\"",
        ),
        (
            "web.yml",
            "basic_auth_users:\n  prometheus: not-a-bcrypt-hash\n",
            &[],
            "config: web.config.file",
        ),
    ];
    for (file, text, args, expected) in cases {
        let fixture = CheckFixture::new();
        if !file.is_empty() {
            fixture.write(file, text);
        }
        let out = fixture.check(url, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{file} {args:?}: {err}");
        assert!(err.contains(expected), "{expected:?} in {err}");
        assert!(
            err.contains("configuration invalid: 1 problem(s)"),
            "{file} {args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "no summary for a bad configuration");
    }

    // All of them at once, and a bad flag value on top: each is reported.
    let fixture = CheckFixture::new();
    fixture.write("fleet.txt", "not-an-iccid\n");
    fixture.write("web.yml", "tls_server_config: {}\nno_such_key: 1\n");
    let out = fixture.check(url, &["--poll.interval", "5x", "--shard.index", "7"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for expected in [
        "config: web.config.file",
        "config: poll.interval \"5x\"",
        "config: monogoto.iccids-file",
        "config: shard.index \"7\"",
        "configuration invalid: 4 problem(s)",
    ] {
        assert!(err.contains(expected), "{expected:?} in {err}");
    }
}

/// Stops `child` with SIGTERM (waiting at most 5 s) and returns its status and
/// everything it wrote to its piped stderr.
fn stop(child: &mut Child) -> (std::process::ExitStatus, String) {
    sigterm(child);
    exit_and_stderr(child, Duration::from_secs(5))
}

/// Waits for `child` to exit (killing it after `timeout`) and returns its
/// status and everything it wrote to its piped stderr.
fn exit_and_stderr(
    child: &mut std::process::Child,
    timeout: Duration,
) -> (std::process::ExitStatus, String) {
    let status = wait_exit(child, timeout);
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    (status, err)
}

#[cfg(unix)]
fn sighup(child: &Child) {
    signal(child, "-HUP");
}

async fn scrape_text(base: &str) -> String {
    get(&format!("{base}/metrics"))
        .await
        .text()
        .await
        .expect("body")
}

#[cfg(unix)]
/// Waits (generously) until the exporter at `base` serves metrics for which `done` holds.
async fn wait_metrics(base: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape_text(base).await;
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGHUP re-reads the YAML file: a SIM added is exported; a changed listen
/// address is refused by name, and the process serves on as it was.
#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_configuration_file() {
    let sim = simulator(3).await;
    let ids = sim.simulator.iccids();
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = dir.path().join("config.yml");
    let port = free_port();
    let write = |listen: &str, iccids: &[&String]| {
        let list: Vec<String> = iccids.iter().map(|i| format!("\"{i}\"")).collect();
        let next = dir.path().join("config.next");
        std::fs::write(
            &next,
            format!(
                "web:\n  listen_address: {listen}\nmonogoto:\n  iccids: [{}]\n  rate_limit: \"0\"\npoll:\n  interval: 1s\n",
                list.join(", ")
            ),
        )
        .expect("write");
        std::fs::rename(&next, &yaml).expect("rename");
    };
    let listen = format!("127.0.0.1:{port}");
    write(&listen, &[&ids[0]]);
    let child = command()
        .env("MONOGOTO_TOKEN", sim.simulator.static_token())
        .env("MONOGOTO_URL", sim.url())
        .args(["--config.file", yaml.to_str().expect("utf-8")])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = Running(child);
    let base = format!("http://{listen}");
    wait_ready(&base).await;
    let exported =
        |text: &str, iccid: &str| text.contains(&format!("monogoto_thing_info{{iccid=\"{iccid}\""));
    let text = scrape_text(&base).await;
    assert!(
        exported(&text, &ids[0]) && !exported(&text, &ids[1]),
        "{text}"
    );
    assert!(
        text.contains("monogoto_config_last_reload_successful 1\n"),
        "{text}"
    );

    write(&listen, &[&ids[0], &ids[1]]);
    sighup(&child.0);
    wait_metrics(&base, "the SIM added by SIGHUP", |text| {
        exported(text, &ids[1])
    })
    .await;

    write("127.0.0.1:1", &[&ids[0], &ids[1], &ids[2]]);
    sighup(&child.0);
    let text = wait_metrics(&base, "the failed reload", |text| {
        text.contains("monogoto_config_last_reload_successful 0\n")
    })
    .await;
    assert!(
        exported(&text, &ids[1]) && !exported(&text, &ids[2]),
        "{text}"
    );
    assert!(
        child.0.try_wait().expect("try_wait").is_none(),
        "a failed reload does not stop the process"
    );

    let (status, logs) = stop(&mut child.0);
    assert!(status.success());
    assert!(
        logs.contains("configuration reloaded") && logs.contains("SIGHUP"),
        "{logs}"
    );
    assert!(
        logs.contains("reloading the configuration failed") && logs.contains("web.listen-address"),
        "{logs}"
    );
    assert!(
        !logs.contains(&sim.simulator.static_token()),
        "no token in logs"
    );
}

/// A SIGHUP while the exporter starts, before a reload loop listens for it,
/// is ignored: its default action would end the process. The configuration
/// file is a FIFO, so the test knows when the exporter is reading it (the
/// first thing it does) and holds it there while the SIGHUPs arrive. A
/// SIGHUP sent right after spawning could land before `main` runs, which no
/// handler can cover.
#[cfg(unix)]
#[tokio::test]
async fn a_sighup_while_starting_is_ignored() {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let sim = simulator(3).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = dir.path().join("config.yml");
    let made = Command::new("mkfifo")
        .arg(&yaml)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Running(
        command()
            .env("MONOGOTO_TOKEN", sim.simulator.static_token())
            .env("MONOGOTO_URL", sim.url())
            .args(["--config.file", yaml.to_str().expect("utf-8")])
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    // Opening a FIFO to write without blocking works once a reader has it open.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut fifo = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&yaml)
        {
            Ok(fifo) => break fifo,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                assert!(
                    child.0.try_wait().expect("try_wait").is_none(),
                    "exited before reading its configuration"
                );
                assert!(
                    Instant::now() < deadline,
                    "never opened its configuration file"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => panic!("cannot open the FIFO: {e}"),
        }
    };
    for _ in 0..3 {
        sighup(&child.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        child.0.try_wait().expect("try_wait"),
        None,
        "a SIGHUP while reading the configuration ended the process"
    );
    let iccids: Vec<String> = sim
        .simulator
        .iccids()
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect();
    let text = format!(
        "monogoto:\n  iccids: [{}]\n  rate_limit: \"0\"\n",
        iccids.join(", ")
    );
    fifo.write_all(text.as_bytes()).expect("write the FIFO");
    drop(fifo);
    // A later reading of the file (a reload's) finds a plain file, not a FIFO
    // no one writes to.
    let next = dir.path().join("config.next");
    std::fs::write(&next, &text).expect("write");
    std::fs::rename(&next, &yaml).expect("rename");

    wait_ready(&base).await;
    let s = samples(&scrape_text(&base).await);
    assert_eq!(value(&s, "monogoto_up"), Some(1.0));
    assert_eq!(value(&s, "monogoto_things_reported"), Some(3.0));
    let (status, logs) = stop(&mut child.0);
    assert!(status.success(), "{status:?}: {logs}");
}

/// Relative paths in the YAML file are read against its folder, relative
/// flags against the working directory, whichever directory that is.
#[test]
fn relative_paths_follow_the_yaml_file_and_flags_the_working_directory() {
    let etc = tempfile::tempdir().expect("temp dir");
    let cwd = tempfile::tempdir().expect("temp dir");
    let write = |dir: &tempfile::TempDir, name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).expect("write");
    };
    write(&etc, "token", "s3cr3t-token-value\n");
    write(
        &etc,
        "fleet.txt",
        "898820000000000001\n8988200000000000002\n898820000000000003\n",
    );
    write(
        &etc,
        "config.yml",
        "monogoto:\n  iccids_file: fleet.txt\n  token_file: token\n",
    );
    // Same names in the working directory, with another fleet and no token.
    write(&cwd, "fleet.txt", "8988200000000000009\n");
    let config = etc.path().join("config.yml");
    let check = |extra: &[&str]| {
        let out = run(command()
            .current_dir(cwd.path())
            .args(["--config.check", "--config.file"])
            .arg(&config)
            .args(extra));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{extra:?}: {text}{}",
            stderr(&out)
        );
        text
    };
    let text = check(&[]);
    assert!(text.contains("SIMs: 3 configured"), "{text}");
    assert!(text.contains("auth: token"), "{text}");
    let text = check(&["--monogoto.iccids-file", "fleet.txt"]);
    assert!(
        text.contains("SIMs: 1 configured"),
        "the flag's file, in the working directory: {text}"
    );
}
