use super::*;

const CA_SUBJECT: &str = "test CA";

struct Pki {
    dir: tempfile::TempDir,
}

/// A CA, a server certificate and key it signed, written to a temporary directory.
fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CA_SUBJECT);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(params, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("key");
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&server_key, &issuer)
        .expect("server cert");
    let write = |name: &str, text: String| {
        std::fs::write(dir.path().join(name), text).expect("write");
    };
    write("ca.crt", ca.pem());
    write("server.crt", server.pem());
    write("server.key", server_key.serialize_pem());
    Pki { dir }
}

fn parse(text: &str, dir: &Path) -> Result<WebConfig, String> {
    WebConfig::parse(text, dir).map_err(|e| e.to_string())
}

fn error(text: &str, dir: &Path) -> String {
    match parse(text, dir) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e,
    }
}

fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).expect("hash")
}

#[test]
fn empty_file_is_plain_http_without_auth() {
    let dir = Path::new(".");
    for text in ["", "\n", "{}\n"] {
        let c = parse(text, dir).expect("valid");
        assert!(c.tls.is_none() && c.users.is_empty() && c.headers.is_empty());
        assert!(c.http2 && c.rate_limit.is_none() && c.warnings.is_empty());
    }
}

#[test]
fn full_example_with_relative_paths() {
    let pki = pki();
    let text = format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
         min_version: TLS12\n  max_version: TLS13\n  client_allowed_sans: [\"client.example\"]\n\
         http_server_config:\n  http2: false\n  headers:\n    Strict-Transport-Security: max-age=31536000\n    \
         X-Frame-Options: deny\n\
         basic_auth_users:\n  alice: {}\n",
        hash("secret")
    );
    let c = parse(&text, pki.dir.path()).expect("valid");
    let tls = c.tls.as_ref().expect("TLS on");
    assert_eq!(tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert_eq!(c.client_auth, ClientAuth::RequireAndVerifyClientCert);
    assert!(!c.http2);
    assert_eq!(c.headers.len(), 2);
    assert_eq!(c.users.keys().collect::<Vec<_>>(), vec!["alice"]);
    assert!(c.warnings.is_empty());

    // The same relative names from another working directory fail: they
    // resolve against the file's directory, not the process's.
    let e = error(&text, Path::new("/nonexistent-dir"));
    assert!(
        e.contains("tls_server_config.cert_file \"/nonexistent-dir/server.crt\": cannot read"),
        "{e}"
    );
}

#[test]
fn load_resolves_against_the_files_directory() {
    let pki = pki();
    let path = pki.dir.path().join("web.yml");
    std::fs::write(
        &path,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .expect("write");
    let c = WebConfig::load(&path).expect("valid");
    assert!(c.tls.is_some());
    assert_eq!(
        tls_alpn(&c),
        vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        "http2 on by default"
    );
}

fn tls_alpn(c: &WebConfig) -> Vec<Vec<u8>> {
    c.tls.as_ref().expect("TLS").alpn_protocols.clone()
}

#[test]
fn inline_cert_and_key() {
    let pki = pki();
    let read = |name: &str| std::fs::read_to_string(pki.dir.path().join(name)).expect("read");
    let indent = |pem: String| pem.replace('\n', "\n    ");
    let text = format!(
        "tls_server_config:\n  cert: |\n    {}\n  key: |\n    {}\n",
        indent(read("server.crt")),
        indent(read("server.key"))
    );
    assert!(parse(&text, Path::new("/")).expect("valid").tls.is_some());
}

#[test]
fn missing_key_file_and_cert_file() {
    let pki = pki();
    let dir = pki.dir.path();
    let e = error("tls_server_config:\n  cert_file: server.crt\n", dir);
    assert_eq!(e, "tls_server_config: missing key_file (or key)");
    let e = error("tls_server_config:\n  key_file: server.key\n", dir);
    assert_eq!(e, "tls_server_config: missing cert_file (or cert)");
    let e = error(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: nope.key\n",
        dir,
    );
    assert!(
        e.starts_with("tls_server_config.key_file \"") && e.contains("nope.key\": cannot read"),
        "{e}"
    );
    let e = error(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: ca.crt\n",
        dir,
    );
    assert!(e.contains("key_file: no PEM private key"), "{e}");
    let e = error(
        "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n",
        dir,
    );
    assert!(e.contains("cert_file: no PEM certificate found"), "{e}");
}

#[test]
fn key_must_match_certificate() {
    let pki = pki();
    let other = rcgen::KeyPair::generate().expect("key");
    std::fs::write(pki.dir.path().join("other.key"), other.serialize_pem()).expect("write");
    let e = error(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n",
        pki.dir.path(),
    );
    assert!(e.contains("cert and key do not make a usable pair"), "{e}");
}

#[test]
fn tls_versions() {
    let pki = pki();
    let dir = pki.dir.path();
    let base = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    for old in ["TLS10", "TLS11"] {
        let e = error(&format!("{base}  min_version: {old}\n"), dir);
        assert!(
            e.starts_with(&format!(
                "tls_server_config.min_version \"{old}\": TLS 1.0 and 1.1 are not supported"
            )),
            "{e}"
        );
    }
    let e = error(&format!("{base}  max_version: SSL3\n"), dir);
    assert_eq!(
        e,
        "tls_server_config.max_version \"SSL3\": must be TLS12 or TLS13"
    );
    let e = error(
        &format!("{base}  min_version: TLS13\n  max_version: TLS12\n"),
        dir,
    );
    assert_eq!(e, "tls_server_config: min_version is above max_version");
    assert!(
        parse(&format!("{base}  min_version: TLS13\n"), dir)
            .expect("valid")
            .tls
            .is_some()
    );
}

#[test]
fn client_auth_types() {
    let pki = pki();
    let dir = pki.dir.path();
    let base = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let e = error(
        &format!("{base}  client_auth_type: RequireSomething\n"),
        dir,
    );
    assert!(
        e.starts_with(
            "tls_server_config: client_auth_type \"RequireSomething\": must be one of NoClientCert"
        ),
        "{e}"
    );
    for (name, needs_ca) in [
        ("NoClientCert", false),
        ("RequestClientCert", false),
        ("RequireAnyClientCert", false),
        ("RequireClientCert", false),
        ("VerifyClientCertIfGiven", true),
        ("RequireAndVerifyClientCert", true),
    ] {
        let without = parse(&format!("{base}  client_auth_type: {name}\n"), dir);
        assert_eq!(without.is_err(), needs_ca, "{name} without a CA");
        if needs_ca {
            let e = without.expect_err("error");
            assert!(e.contains("needs client_ca_file"), "{e}");
        }
        let with = parse(
            &format!("{base}  client_auth_type: {name}\n  client_ca_file: ca.crt\n"),
            dir,
        );
        if name == "NoClientCert" {
            let e = with.expect_err("CA without a policy");
            assert!(e.contains("client_auth_type is NoClientCert"), "{e}");
        } else {
            assert!(with.is_ok(), "{name}: {:?}", with.err());
        }
    }
    let e = error(
        &format!(
            "{base}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n  client_allowed_sans: [a]\n"
        ),
        dir,
    );
    assert!(
        e.contains("client_allowed_sans requires client_auth_type"),
        "{e}"
    );
    // Without a verified chain a self-signed certificate could carry any
    // allowed name: refused, under either spelling of the policy.
    for name in ["RequireAnyClientCert", "RequireClientCert"] {
        let e = error(
            &format!(
                "{base}  client_auth_type: {name}\n  client_ca_file: ca.crt\n  client_allowed_sans: [a]\n"
            ),
            dir,
        );
        assert!(
            e.starts_with(
                "tls_server_config: client_allowed_sans requires client_auth_type RequireAndVerifyClientCert"
            ) && e.contains("not RequireAnyClientCert"),
            "{name}: {e}"
        );
    }
    assert!(
        parse(
            &format!(
                "{base}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  client_allowed_sans: [a]\n"
            ),
            dir,
        )
        .is_ok()
    );
}

#[test]
fn ignored_keys_warn_and_tls_needs_a_certificate_setting() {
    let pki = pki();
    let dir = pki.dir.path();
    let c = parse(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         cipher_suites: [TLS_AES_128_GCM_SHA256]\n  curve_preferences: [X25519]\n  \
         prefer_server_cipher_suites: true\n",
        dir,
    )
    .expect("valid");
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    // Only min_version: TLS stays off, as in exporter-toolkit.
    let c = parse("tls_server_config:\n  min_version: TLS13\n", dir).expect("valid");
    assert!(c.tls.is_none());
}

#[test]
fn unknown_keys_are_errors() {
    let dir = Path::new(".");
    for text in [
        "tls_server_config:\n  certfile: x\n",
        "basic_auth:\n  alice: x\n",
        "http_server_config:\n  http3: true\n",
        "rate_limit:\n  every: 1s\n",
    ] {
        let e = error(text, dir);
        assert!(
            e.starts_with("invalid YAML: ") && e.contains("unknown field"),
            "{text}: {e}"
        );
    }
}

#[test]
fn users_need_bcrypt_hashes() {
    let dir = Path::new(".");
    let c = parse(
        &format!(
            "basic_auth_users:\n  alice: {}\n  bob: '{}'\n",
            hash("a"),
            hash("b")
        ),
        dir,
    )
    .expect("valid");
    assert_eq!(c.users.len(), 2);
    // htpasswd writes $2y$; accepted.
    let y = hash("a").replacen("$2b$", "$2y$", 1);
    assert!(parse(&format!("basic_auth_users:\n  alice: '{y}'\n"), dir).is_ok());

    let e = error("basic_auth_users:\n  alice: plaintext-password\n", dir);
    assert!(
        e.starts_with("basic_auth_users.alice: not a bcrypt hash"),
        "{e}"
    );
    assert!(
        !e.contains("plaintext-password"),
        "the value never shows: {e}"
    );
    let e = error("basic_auth_users:\n  alice: '$1$abc$def'\n", dir);
    assert!(
        e.starts_with("basic_auth_users.alice: not a bcrypt hash"),
        "{e}"
    );
    let e = error(&format!("basic_auth_users:\n  'a:b': {}\n", hash("x")), dir);
    assert!(e.contains("contains ':'"), "{e}");
}

#[test]
fn headers_are_limited_like_exporter_toolkit() {
    let dir = Path::new(".");
    let c = parse(
        "http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n    \
         X-Content-Type-Options: nosniff\n    X-Frame-Options: sameorigin\n    \
         X-XSS-Protection: '1; mode=block'\n    Content-Security-Policy: \"default-src 'self'\"\n",
        dir,
    )
    .expect("valid");
    assert_eq!(c.headers.len(), 5);
    let e = error(
        "http_server_config:\n  headers:\n    Authorization: Basic x\n",
        dir,
    );
    assert!(
        e.starts_with("http_server_config.headers: \"Authorization\" cannot be configured"),
        "{e}"
    );
    let e = error(
        "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
        dir,
    );
    assert_eq!(
        e,
        "http_server_config.headers.X-Frame-Options \"allow\": must be one of deny, sameorigin"
    );
    let e = error(
        "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
        dir,
    );
    assert!(e.contains("must be one of nosniff"), "{e}");
}

#[test]
fn rate_limit() {
    let dir = Path::new(".");
    let c = parse("rate_limit:\n  interval: 100ms\n  burst: 5\n", dir).expect("valid");
    assert_eq!(interval_of(&c), Some(std::time::Duration::from_millis(100)));
    for off in ["rate_limit:\n  interval: 0\n", "rate_limit:\n  burst: 3\n"] {
        assert!(parse(off, dir).expect("valid").rate_limit.is_none());
    }
    assert!(error("rate_limit:\n  interval: 1s\n", dir).contains("rate_limit.burst"));
    assert!(error("rate_limit:\n  interval: soon\n  burst: 1\n", dir).contains("invalid duration"));
}

#[test]
fn fingerprint_follows_the_named_files() {
    let first = pki();
    let dir = first.dir.path();
    let text = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let a = parse(text, dir).expect("valid").fingerprint;
    assert_eq!(a, parse(text, dir).expect("valid").fingerprint);
    let replacement = pki();
    std::fs::copy(
        replacement.dir.path().join("server.crt"),
        dir.join("server.crt"),
    )
    .expect("copy");
    std::fs::copy(
        replacement.dir.path().join("server.key"),
        dir.join("server.key"),
    )
    .expect("copy");
    assert_ne!(a, parse(text, dir).expect("valid").fingerprint);
}
