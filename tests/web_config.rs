//! `--web.config.file`: TLS, client certificates, basic auth, headers, rate
//! limit and live reload, with certificates made by rcgen in the test.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use monogoto_exporter::app::RunningExporter;
use monogoto_exporter::simulator::RunningSimulator;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use reqwest::StatusCode;

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

    fn server_cert(&self, ca: &Ca) {
        let (cert, key) = ca.server();
        self.write("server.crt", &cert);
        self.write("server.key", &key);
    }
}

const TLS: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

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
    let web = WebDir::new();
    web.server_cert(&ca);
    let (_sim, exporter) = start(
        &web,
        &format!(
            "{TLS}http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n    \
             X-Content-Type-Options: nosniff\n"
        ),
    )
    .await;

    let response = tls_client(&ca, None)
        .get(https_url(&exporter, "/metrics"))
        .send()
        .await
        .expect("HTTPS scrape");
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
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/metrics", exporter.addr.port()))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
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
    let web = WebDir::new();
    web.server_cert(&ca);
    let (_sim, exporter) =
        start(&web, &format!("{TLS}http_server_config:\n  http2: false\n")).await;
    let response = tls_client(&ca, None)
        .get(https_url(&exporter, "/metrics"))
        .send()
        .await
        .expect("HTTPS scrape");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
}

#[tokio::test]
async fn mutual_tls_requires_a_certificate_from_the_client_ca() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let web = WebDir::new();
    web.server_cert(&server_ca);
    web.write("client-ca.crt", &client_ca.pem);
    let (_sim, exporter) = start(
        &web,
        &format!(
            "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n"
        ),
    )
    .await;
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
    let web = WebDir::new();
    web.server_cert(&server_ca);
    web.write("client-ca.crt", &client_ca.pem);
    let (_sim, exporter) = start(
        &web,
        &format!(
            "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n  \
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
    let web = WebDir::new();
    web.server_cert(&server_ca);
    web.write("client-ca.crt", &client_ca.pem);
    let sans = "  client_allowed_sans: [\"prometheus.example\"]\n";
    let (_sim, exporter) = start(
        &web,
        &format!(
            "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n{sans}"
        ),
    )
    .await;
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
    tokio::time::sleep(monogoto_exporter::web::RELOAD_INTERVAL * 2 + Duration::from_millis(500))
        .await;
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
    let web = WebDir::new();
    web.server_cert(&ca);
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
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", exporter.addr.port()))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err(), "probes stay behind TLS: {plain:?}");
}

#[tokio::test]
async fn rate_limit_answers_429() {
    let web = WebDir::new();
    let (_sim, exporter) = start(&web, "rate_limit:\n  interval: 1h\n  burst: 2\n").await;
    let url = format!("{}/healthz", exporter.url());
    assert_eq!(get(&url).await.status(), 200);
    assert_eq!(get(&url).await.status(), 200);
    assert_eq!(get(&url).await.status(), 429);
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
        // Two reload periods and a bit: the file has certainly been looked at.
        tokio::time::sleep(
            monogoto_exporter::web::RELOAD_INTERVAL * 2 + Duration::from_millis(500),
        )
        .await;
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
    let web = WebDir::new();
    web.server_cert(&first);
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
    tokio::time::sleep(monogoto_exporter::web::RELOAD_INTERVAL * 2 + Duration::from_millis(500))
        .await;
    assert!(tls_client(&second, None).get(&url).send().await.is_ok());
}
