//! `--web.config.file`: TLS, client certificates, basic auth, headers, rate
//! limit and live reload, with certificates made by rcgen in the test; and
//! the connection limits (`--web.read-header-timeout`, `--web.max-connections`)
//! over plain HTTP and TLS.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use monogoto_exporter::app::RunningExporter;
use monogoto_exporter::simulator::RunningSimulator;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use reqwest::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// A CA that can sign server and client certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).expect("CA").pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM) for these names, for serving or for clients.
    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("client"),
        );
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn server(&self) -> (String, String) {
        self.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client(&self, names: &[&str]) -> (String, String) {
        self.issue(names, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// A client certificate signed by its own key: no CA vouches for its names.
fn self_signed_client(names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

/// A directory holding the web configuration file and the files it names.
struct WebDir {
    dir: tempfile::TempDir,
}

impl WebDir {
    fn new() -> WebDir {
        WebDir {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn write(&self, name: &str, content: &str) {
        // Write aside and rename, as editors and config managers do, so the
        // exporter never reads half a file.
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).expect("write");
        std::fs::rename(&tmp, self.path(name)).expect("rename");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A directory with a server certificate signed by `ca`.
    fn serving(ca: &Ca) -> WebDir {
        let web = WebDir::new();
        web.server_cert(ca);
        web
    }

    /// [`WebDir::serving`], and `client-ca.crt` for clients signed by `client_ca`.
    fn mutual(server_ca: &Ca, client_ca: &Ca) -> WebDir {
        let web = WebDir::serving(server_ca);
        web.write("client-ca.crt", &client_ca.pem);
        web
    }

    fn server_cert(&self, ca: &Ca) {
        let (cert, key) = ca.server();
        self.write("server.crt", &cert);
        self.write("server.key", &key);
    }
}

const TLS: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
/// Added to [`TLS`]: client certificates signed by the CA of [`WebDir::mutual`].
const MTLS: &str =
    "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n";

async fn start(web: &WebDir, config_text: &str) -> (RunningSimulator, RunningExporter) {
    web.write("web.yml", config_text);
    start_with(&web.path("web.yml")).await
}

async fn start_with(path: &Path) -> (RunningSimulator, RunningExporter) {
    let sim = simulator(3).await;
    let mut cfg = config(&sim);
    cfg.web_config_file = Some(path.to_path_buf());
    let exporter = start_exporter(&cfg).await;
    (sim, exporter)
}

fn https_url(exporter: &RunningExporter, path: &str) -> String {
    assert!(exporter.tls);
    format!("{}{path}", exporter.url())
}

/// A client that trusts only `ca`, optionally presenting a certificate. No
/// connection reuse, so every request makes a new handshake.
fn tls_client(ca: &Ca, identity: Option<&(String, String)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("CA")])
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        builder = builder.identity(
            reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity"),
        );
    }
    builder.build().expect("client")
}

/// `GET /metrics` over HTTPS by a client trusting `ca`.
async fn https_scrape(ca: &Ca, exporter: &RunningExporter) -> reqwest::Response {
    tls_client(ca, None)
        .get(https_url(exporter, "/metrics"))
        .send()
        .await
        .expect("HTTPS scrape")
}

/// `GET path` in plain HTTP to the exporter's port.
async fn plain_http(exporter: &RunningExporter, path: &str) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}{path}", exporter.addr.port()))
        .timeout(Duration::from_secs(10))
        .send()
        .await
}

/// Two reload periods and a bit: the web config file has certainly been
/// looked at since.
async fn reload_looked_at() {
    tokio::time::sleep(monogoto_exporter::web::RELOAD_INTERVAL * 2 + Duration::from_millis(500))
        .await;
}

fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt")
}

fn users(pairs: &[(&str, &str)]) -> String {
    let mut text = String::from("basic_auth_users:\n");
    for (user, password) in pairs {
        text.push_str(&format!("  {user}: '{}'\n", hash(password)));
    }
    text
}

async fn status_as(url: &str, user: &str, password: &str) -> StatusCode {
    reqwest::Client::new()
        .get(url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("request")
        .status()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn https_scrape_with_a_client_trusting_the_ca() {
    let ca = Ca::new("server CA");
    let web = WebDir::serving(&ca);
    let (_sim, exporter) = start(
        &web,
        &format!(
            "{TLS}http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n    \
             X-Content-Type-Options: nosniff\n"
        ),
    )
    .await;

    let response = https_scrape(&ca, &exporter).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2, "h2 by ALPN");
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let body = response.text().await.expect("body");
    assert!(body.contains("monogoto_up 1"), "{body}");

    // Plain HTTP to the TLS port gets no answer.
    let plain = plain_http(&exporter, "/metrics").await;
    assert!(plain.is_err(), "plain HTTP must fail: {plain:?}");

    // A client that does not trust the CA refuses the server.
    let other = tls_client(&Ca::new("some other CA"), None)
        .get(https_url(&exporter, "/metrics"))
        .send()
        .await;
    assert!(other.is_err(), "{other:?}");

    // Shutdown still finishes promptly with TLS connections around.
    let started = Instant::now();
    exporter.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn http2_can_be_switched_off() {
    let ca = Ca::new("server CA");
    let web = WebDir::serving(&ca);
    let (_sim, exporter) =
        start(&web, &format!("{TLS}http_server_config:\n  http2: false\n")).await;
    let response = https_scrape(&ca, &exporter).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
}

#[tokio::test]
async fn mutual_tls_requires_a_certificate_from_the_client_ca() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let web = WebDir::mutual(&server_ca, &client_ca);
    let (_sim, exporter) = start(&web, &format!("{TLS}{MTLS}")).await;
    let url = https_url(&exporter, "/metrics");

    let without = tls_client(&server_ca, None).get(&url).send().await;
    assert!(without.is_err(), "no client certificate: {without:?}");

    let stranger = Ca::new("stranger CA").client(&["scraper.example"]);
    let wrong = tls_client(&server_ca, Some(&stranger))
        .get(&url)
        .send()
        .await;
    assert!(wrong.is_err(), "certificate of another CA: {wrong:?}");

    let identity = client_ca.client(&["scraper.example"]);
    let response = tls_client(&server_ca, Some(&identity))
        .get(&url)
        .send()
        .await
        .expect("scrape with a client certificate");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn client_allowed_sans_narrow_the_client_certificates() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let web = WebDir::mutual(&server_ca, &client_ca);
    let (_sim, exporter) = start(
        &web,
        &format!(
            "{TLS}{MTLS}  \
             client_allowed_sans: [\"prometheus.example\", \"10.0.0.7\"]\n"
        ),
    )
    .await;
    let url = https_url(&exporter, "/metrics");
    for (names, allowed) in [
        (&["prometheus.example"][..], true),
        (&["10.0.0.7"][..], true),
        (&["other.example", "10.0.0.8"][..], false),
    ] {
        let identity = client_ca.client(names);
        let result = tls_client(&server_ca, Some(&identity))
            .get(&url)
            .send()
            .await;
        assert_eq!(
            result.as_ref().is_ok_and(|r| r.status() == 200),
            allowed,
            "{names:?}: {result:?}"
        );
    }
}

#[tokio::test]
async fn client_allowed_sans_without_a_verified_chain_is_refused_on_reload() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let web = WebDir::mutual(&server_ca, &client_ca);
    let sans = "  client_allowed_sans: [\"prometheus.example\"]\n";
    let (_sim, exporter) = start(&web, &format!("{TLS}{MTLS}{sans}")).await;
    let url = https_url(&exporter, "/metrics");
    let trusted = client_ca.client(&["prometheus.example"]);
    let forged = self_signed_client(&["prometheus.example"]);
    let scrape = async |identity: &(String, String)| {
        tls_client(&server_ca, Some(identity))
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    };
    assert!(scrape(&trusted).await);
    assert!(!scrape(&forged).await, "a self-signed certificate");

    // The edit that would let the forged certificate in is refused: the
    // verifying configuration stays in force.
    web.write(
        "web.yml",
        &format!("{TLS}  client_auth_type: RequireAnyClientCert\n{sans}"),
    );
    reload_looked_at().await;
    assert!(!scrape(&forged).await, "still refused after the bad edit");
    assert!(scrape(&trusted).await, "still served after the bad edit");
}

#[tokio::test]
async fn basic_auth_says_nothing_about_why() {
    let web = WebDir::new();
    let (_sim, exporter) = start(
        &web,
        &format!(
            "{}http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
            users(&[("alice", "correct horse")])
        ),
    )
    .await;
    let url = format!("{}/metrics", exporter.url());

    let ok = reqwest::Client::new()
        .get(&url)
        .basic_auth("alice", Some("correct horse"))
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-frame-options"], "deny");
    assert!(ok.text().await.expect("body").contains("monogoto_up"));

    let refusals = [
        reqwest::Client::new()
            .get(&url)
            .basic_auth("alice", Some("wrong")),
        reqwest::Client::new()
            .get(&url)
            .basic_auth("mallory", Some("correct horse")),
        reqwest::Client::new().get(&url),
        reqwest::Client::new()
            .get(&url)
            .header("Authorization", "Bearer abc"),
    ];
    let mut answers = Vec::new();
    for request in refusals {
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 401);
        let headers = response.headers().clone();
        assert_eq!(headers["www-authenticate"], "Basic");
        assert_eq!(
            headers["x-frame-options"], "deny",
            "headers on refusals too"
        );
        let body = response.text().await.expect("body");
        answers.push((headers.get("www-authenticate").cloned(), body));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "the same answer for every refusal: {answers:?}"
    );
    assert_eq!(answers[0].1, "Unauthorized\n");

    // Every path is protected, unknown ones included, except exactly the two
    // probes, which Kubernetes calls without credentials.
    for path in [
        "/",
        "/no-such-page",
        "/healthz/",
        "/healthzz",
        "/readyz/x",
        "/Healthz",
    ] {
        let response = get(&format!("{}{path}", exporter.url())).await;
        assert_eq!(response.status(), 401, "{path}");
    }
    for path in ["/healthz", "/readyz", "/healthz?user=x"] {
        let url = format!("{}{path}", exporter.url());
        let response = get(&url).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["x-frame-options"],
            "deny",
            "headers on probes too"
        );
        assert_eq!(status_as(&url, "alice", "wrong").await, 200, "{path}");
    }
}

#[tokio::test]
async fn basic_auth_over_tls() {
    let ca = Ca::new("server CA");
    let web = WebDir::serving(&ca);
    let (_sim, exporter) = start(&web, &format!("{TLS}{}", users(&[("prom", "s3cret")]))).await;
    let client = tls_client(&ca, None);
    let url = https_url(&exporter, "/metrics");
    let ok = client
        .get(&url)
        .basic_auth("prom", Some("s3cret"))
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    let refused = client.get(&url).send().await.expect("request");
    assert_eq!(refused.status(), 401);

    // The probes answer without credentials, over the same TLS listener.
    for path in ["/healthz", "/readyz"] {
        let response = client
            .get(https_url(&exporter, path))
            .send()
            .await
            .expect("HTTPS probe");
        assert_eq!(response.status(), 200, "{path}");
    }
    let plain = plain_http(&exporter, "/healthz").await;
    assert!(plain.is_err(), "probes stay behind TLS: {plain:?}");
}

#[tokio::test]
async fn rate_limit_answers_429_but_not_to_the_probes() {
    let web = WebDir::new();
    let (_sim, exporter) = start(&web, "rate_limit:\n  interval: 1h\n  burst: 2\n").await;
    let url = format!("{}/metrics", exporter.url());
    assert_eq!(get(&url).await.status(), 200);
    assert_eq!(get(&url).await.status(), 200);
    assert_eq!(get(&url).await.status(), 429);
    for probe in ["/healthz", "/readyz"] {
        let url = format!("{}{probe}", exporter.url());
        assert_eq!(
            get(&url).await.status(),
            200,
            "{probe} with the limit spent"
        );
    }
}

#[tokio::test]
async fn users_reload_without_restart_and_bad_edits_are_ignored() {
    let web = WebDir::new();
    let (_sim, exporter) = start(&web, &users(&[("alice", "old password")])).await;
    let url = format!("{}/metrics", exporter.url());
    assert_eq!(status_as(&url, "alice", "old password").await, 200);
    assert_eq!(status_as(&url, "alice", "new password").await, 401);

    web.write("web.yml", &users(&[("alice", "new password")]));
    eventually("the new password", async || {
        status_as(&url, "alice", "new password").await == 200
    })
    .await;
    assert_eq!(
        status_as(&url, "alice", "old password").await,
        401,
        "the old password is gone, cached or not"
    );

    // Invalid edits: a plain-text password, broken YAML, an unknown key, and
    // a switch to TLS (which needs a restart). Each is refused; alice's new
    // password keeps working and nobody gets in without one.
    let invalid = [
        "basic_auth_users:\n  alice: new password\n".to_string(),
        "basic_auth_users: [unclosed\n".to_string(),
        "basic_auth_user:\n  alice: x\n".to_string(),
        format!("{TLS}{}", users(&[("alice", "new password")])),
        format!(
            "{}http_server_config:\n  headers:\n    Authorization: Basic x\n",
            users(&[("alice", "new password")])
        ),
    ];
    for text in invalid {
        web.write("web.yml", &text);
        reload_looked_at().await;
        assert_eq!(
            status_as(&url, "alice", "new password").await,
            200,
            "{text}"
        );
        assert_eq!(
            status_as(&url, "alice", "old password").await,
            401,
            "{text}"
        );
        assert_eq!(get(&url).await.status(), 401, "{text}");
    }

    // Removing every user is a valid edit: /metrics is open again, as the file says.
    web.write("web.yml", "basic_auth_users: {}\n");
    eventually("auth switched off", async || {
        get(&url).await.status() == 200
    })
    .await;
}

#[tokio::test]
async fn a_renewed_certificate_applies_to_new_connections() {
    let first = Ca::new("first CA");
    let second = Ca::new("second CA");
    let web = WebDir::serving(&first);
    let (_sim, exporter) = start(&web, TLS).await;
    let url = https_url(&exporter, "/healthz");
    assert!(tls_client(&first, None).get(&url).send().await.is_ok());

    // The web config file itself is unchanged: the files it names are watched too.
    web.server_cert(&second);
    eventually("the renewed certificate", async || {
        tls_client(&second, None).get(&url).send().await.is_ok()
    })
    .await;
    assert!(tls_client(&first, None).get(&url).send().await.is_err());

    // A broken renewal (a key that does not match) keeps the working pair.
    let (_, stray_key) = second.server();
    web.write("server.key", &stray_key);
    reload_looked_at().await;
    assert!(tls_client(&second, None).get(&url).send().await.is_ok());
}

/// A TLS connection to the exporter, trusting `ca`, handshake done.
async fn tls_connect(
    exporter: &RunningExporter,
    ca: &Ca,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(exporter.addr).await.expect("connect");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake")
}

/// How long after `since` the server closes `stream`, while the client
/// starts a request header and then adds a line to it every `every` (or,
/// with None, sends nothing). Panics if the server has not closed it in 20 s.
async fn closed_after(
    stream: impl AsyncRead + AsyncWrite,
    since: Instant,
    every: Option<Duration>,
) -> Duration {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let closed = async move {
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    };
    let trickle = async move {
        if let Some(every) = every {
            let mut line = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n".to_vec();
            for i in 0.. {
                if writer.write_all(&line).await.is_err() || writer.flush().await.is_err() {
                    break;
                }
                tokio::time::sleep(every).await;
                line = format!("X-Slow-{i}: still coming\r\n").into_bytes();
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        elapsed = closed => elapsed,
        () = trickle => unreachable!(),
        () = tokio::time::sleep(Duration::from_secs(20)) => panic!("still open after 20 s"),
    }
}

fn around(elapsed: Duration, expected: Duration) -> bool {
    // Never early; late by a loaded machine's scheduling at most.
    elapsed >= expected - Duration::from_millis(100) && elapsed < expected + Duration::from_secs(3)
}

async fn start_with_limits(
    read_header_timeout: Duration,
    idle_timeout: Duration,
    web_config: Option<&Path>,
) -> (RunningSimulator, RunningExporter) {
    let sim = simulator(3).await;
    let mut cfg = config(&sim);
    cfg.web_config_file = web_config.map(Path::to_path_buf);
    cfg.web_limits.read_header_timeout = read_header_timeout;
    cfg.web_limits.idle_timeout = idle_timeout;
    let exporter = start_exporter(&cfg).await;
    (sim, exporter)
}

#[tokio::test]
async fn slow_and_silent_clients_are_closed_after_the_read_header_timeout() {
    let timeout = Duration::from_secs(1);
    let (_sim, exporter) = start_with_limits(timeout, Duration::from_secs(3), None).await;
    let connect = async || {
        (
            TcpStream::connect(exporter.addr).await.expect("connect"),
            Instant::now(),
        )
    };

    let (slow, since) = connect().await;
    // A line every 300 ms keeps the socket busy, and the header never ends.
    let slow = closed_after(slow, since, Some(Duration::from_millis(300)));
    let (silent, since) = connect().await;
    let silent = closed_after(silent, since, None);
    let (slow, silent) = tokio::join!(slow, silent);
    assert!(around(slow, timeout), "slow header: closed after {slow:?}");
    assert!(
        around(silent, timeout),
        "nothing sent: closed after {silent:?}"
    );

    // On a keep-alive connection: idle longer than the read-header timeout
    // is fine, the next header must then be complete within it of its first
    // byte, and an idle connection goes after the idle timeout.
    let (mut stream, _) = connect().await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for _ in 0..2 {
        stream.write_all(request).await.expect("write");
        let mut answer = Vec::new();
        while !answer.ends_with(b"ok\n") {
            let mut buf = [0u8; 512];
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        tokio::time::sleep(timeout + Duration::from_millis(500)).await;
    }
    let slow_again = closed_after(stream, Instant::now(), Some(Duration::from_millis(300))).await;
    assert!(
        around(slow_again, timeout),
        "second request: {slow_again:?}"
    );

    let (mut stream, _) = connect().await;
    stream.write_all(request).await.expect("write");
    let mut buf = [0u8; 512];
    assert!(stream.read(&mut buf).await.expect("read") > 0);
    let idle = closed_after(stream, Instant::now(), None).await;
    assert!(
        around(idle, Duration::from_secs(3)),
        "idle: closed after {idle:?}"
    );

    // Scrapes go on.
    scrape(&exporter).await;
}

#[tokio::test]
async fn over_tls_the_read_header_timeout_includes_the_handshake() {
    let ca = Ca::new("server CA");
    let web = WebDir::serving(&ca);
    web.write("web.yml", TLS);
    let timeout = Duration::from_secs(1);
    let (_sim, exporter) =
        start_with_limits(timeout, Duration::from_secs(90), Some(&web.path("web.yml"))).await;

    // No ClientHello at all.
    let silent = async {
        let since = Instant::now();
        let tcp = TcpStream::connect(exporter.addr).await.expect("connect");
        closed_after(tcp, since, None).await
    };
    // The handshake, then a header that never ends, counted from the connect.
    let slow = async {
        let since = Instant::now();
        let tls = tls_connect(&exporter, &ca).await;
        closed_after(tls, since, Some(Duration::from_millis(300))).await
    };
    let (silent, slow) = tokio::join!(silent, slow);
    assert!(
        around(silent, timeout),
        "no handshake: closed after {silent:?}"
    );
    assert!(
        around(slow, timeout),
        "slow header over TLS: closed after {slow:?}"
    );

    let response = https_scrape(&ca, &exporter).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_scrape_succeeds_with_500_idle_connections_open() {
    // This process holds both ends of every connection.
    monogoto_exporter::web::raise_open_file_limit();
    let sim = simulator(3).await;
    let exporter = start_exporter(&config(&sim)).await;
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(TcpStream::connect(exporter.addr).await.expect("connect"));
    }
    let text = scrape(&exporter).await;
    assert!(text.contains("monogoto_up 1"));
    drop(idle);
}

#[tokio::test]
async fn beyond_max_connections_the_oldest_unfinished_connection_makes_room() {
    let sim = simulator(3).await;
    let mut cfg = config(&sim);
    cfg.web_limits.max_connections = 20;
    let exporter = start_exporter(&cfg).await;
    let mut silent = Vec::new();
    for _ in 0..60 {
        silent.push(TcpStream::connect(exporter.addr).await.expect("connect"));
    }
    // Every scrape still gets in, each making room in turn.
    for _ in 0..3 {
        scrape(&exporter).await;
    }
    // The first 40 (and then 3 more) were closed to make room; the newest stay.
    let mut buf = [0u8; 1];
    let oldest = tokio::time::timeout(Duration::from_secs(5), silent[0].read(&mut buf)).await;
    assert!(
        matches!(oldest, Ok(Ok(0) | Err(_))),
        "the oldest is closed: {oldest:?}"
    );
    let newest = tokio::time::timeout(Duration::from_millis(300), silent[59].read(&mut buf)).await;
    assert!(newest.is_err(), "the newest stays open: {newest:?}");
}

#[tokio::test]
async fn a_flood_of_wrong_passwords_does_not_hold_up_a_fresh_scrape() {
    let web = WebDir::new();
    // bcrypt cost 8: each wrong password costs a tangible slice of CPU.
    let hash = bcrypt::hash("s3cret", 8).expect("bcrypt");
    let (_sim, exporter) = start(&web, &format!("basic_auth_users:\n  prom: '{hash}'\n")).await;
    let url = format!("{}/metrics", exporter.url());

    // 60 wrong passwords at once from another address of the loopback.
    let attacker = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<IpAddr>().expect("ip"))
        .build()
        .expect("client");
    let answered = Arc::new(AtomicUsize::new(0));
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..60 {
        let (attacker, url, answered) = (attacker.clone(), url.clone(), answered.clone());
        flood.spawn(async move {
            let status = attacker
                .get(&url)
                .basic_auth("prom", Some(format!("guess {i}")))
                .send()
                .await
                .expect("request")
                .status();
            answered.fetch_add(1, Ordering::SeqCst);
            status
        });
    }
    // The flood is being checked once its first answer is back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no answer to the flood");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Never verified before: it needs bcrypt like the flood.
    assert_eq!(status_as(&url, "prom", "s3cret").await, 200);
    let before = answered.load(Ordering::SeqCst);
    assert!(
        before < 30,
        "{before} of the 60 wrong passwords were answered before the right one"
    );
    while let Some(status) = flood.join_next().await {
        assert_eq!(status.expect("task"), 401);
    }
}
