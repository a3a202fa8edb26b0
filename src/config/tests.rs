use super::validate::{parse_byte_size, parse_iccids};
use super::*;
use clap::Parser as _;
use secrecy::ExposeSecret;
use std::io::Write;

const A: &str = "898820000000000001";
const B: &str = "8988200000000000002";

fn parse(args: &[&str]) -> ExporterArgs {
    let mut argv = vec!["monogoto-exporter"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv)
        .expect("test flags parse")
        .exporter
}

fn token_env() -> Environment {
    Environment {
        token: Some(SecretString::from("tok")),
        ..Environment::default()
    }
}

fn yaml(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write temp file");
    f
}

fn resolve(args: &[&str]) -> Result<Config, ConfigError> {
    Config::resolve(&parse(args), token_env(), Mode::Exporter)
}

/// The error of a configuration file holding `text` (with one ICCID given as a flag).
fn yaml_error(text: &str) -> String {
    let f = yaml(text);
    error(&[
        "--config.file",
        f.path().to_str().expect("utf-8"),
        "--monogoto.iccid",
        A,
    ])
}

/// [`error`] with an ICCID added unless `args` names one, so that the error
/// is about what `args` set, not about a fleet with no SIMs.
fn error_with_an_iccid(args: &[&str]) -> String {
    let mut all = args.to_vec();
    if !args.contains(&"--monogoto.iccid") {
        all.extend_from_slice(&["--monogoto.iccid", A]);
    }
    error(&all)
}

fn error(args: &[&str]) -> String {
    resolve(args)
        .expect_err("config must be rejected")
        .to_string()
}

#[test]
fn defaults() {
    let c = resolve(&["--monogoto.iccid", A]).expect("valid");
    assert_eq!(c.listen_address, DEFAULT_LISTEN_ADDRESS);
    assert_eq!(c.telemetry_path, "/metrics");
    assert_eq!(c.url, "https://console.monogoto.io");
    assert_eq!(c.poll, PollConfig::default());
    assert_eq!(c.poll.stale_after, None, "derived from the refresh target");
    assert_eq!(c.rate_limit.to_string(), "60/min,1000/h");
    assert_eq!(c.poll.inactive_interval, Duration::from_secs(3600));
    assert_eq!(
        c.log,
        LogConfig {
            filter: "info".into(),
            format: LogFormat::Text
        }
    );
    assert!(!c.discover);
    assert!(matches!(c.credentials, Some(Credentials::Token(_))));
}

#[test]
fn flags_override_file_which_overrides_defaults() {
    let f = yaml(
        "web:\n  listen_address: 127.0.0.1:1234\n  telemetry-path: /m\n\
         monogoto:\n  url: http://127.0.0.1:9/\n  iccids: [\"898820000000000001\"]\n  discover: true\n\
         poll:\n  interval: 30s\n  batch_size: 20\n  concurrency: 2\n  timeout: 5s\n\
         log:\n  level: debug\n  format: json\n",
    );
    let path = f.path().to_str().expect("utf-8 path");
    let c = resolve(&["--config.file", path]).expect("valid");
    assert_eq!(c.listen_address, "127.0.0.1:1234");
    assert_eq!(c.telemetry_path, "/m");
    assert_eq!(c.url, "http://127.0.0.1:9");
    assert_eq!(c.iccids, vec![A.to_string()]);
    assert!(c.discover);
    assert_eq!(c.poll.interval, Duration::from_secs(30));
    assert_eq!(c.poll.stale_after, None);
    assert_eq!(c.poll.batch_size, 20);
    assert_eq!(c.poll.concurrency, 2);
    assert_eq!(c.poll.timeout, Duration::from_secs(5));
    assert_eq!(c.log.filter, "debug");
    assert_eq!(c.log.format, LogFormat::Json);

    let c = resolve(&[
        "--config.file",
        path,
        "--poll.interval",
        "2m",
        "--poll.batch-size",
        "7",
        "--monogoto.iccid",
        B,
        "--monogoto.discover=false",
        "--log.format",
        "text",
    ])
    .expect("valid");
    assert_eq!(c.poll.interval, Duration::from_secs(120));
    assert_eq!(c.poll.stale_after, None);
    assert_eq!(c.poll.batch_size, 7);
    assert_eq!(c.iccids, vec![B.to_string()]);
    assert!(!c.discover);
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(
        c.poll.concurrency, 2,
        "file value survives where no flag is given"
    );
}

#[test]
fn environment_overrides_file_secrets_and_log_level() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, "from-file\n").expect("write");
    let f = yaml(&format!(
        "monogoto:\n  token_file: {}\n  iccid: {A}\nlog:\n  level: warn\n",
        token_path.display()
    ));
    let path = f.path().to_str().expect("utf-8 path");
    let env = Environment {
        token: Some(SecretString::from("from-env")),
        password: None,
        webhook_token: None,
        rust_log: Some("debug".into()),
    };
    let c = Config::resolve(&parse(&["--config.file", path]), env, Mode::Exporter).expect("valid");
    match c.credentials {
        Some(Credentials::Token(t)) => assert_eq!(t.expose_secret(), "from-env"),
        other => panic!("unexpected credentials {other:?}"),
    }
    assert_eq!(c.log.filter, "debug");

    let c = Config::resolve(
        &parse(&["--config.file", path]),
        Environment::default(),
        Mode::Exporter,
    )
    .expect("valid");
    match c.credentials {
        Some(Credentials::Token(t)) => assert_eq!(t.expose_secret(), "from-file"),
        other => panic!("unexpected credentials {other:?}"),
    }
    assert_eq!(c.log.filter, "warn");

    let flag_path = dir.path().join("flag-token");
    std::fs::write(&flag_path, "  from-flag-file \n").expect("write");
    let env = Environment {
        token: Some(SecretString::from("from-env")),
        ..Environment::default()
    };
    let args = parse(&[
        "--config.file",
        path,
        "--monogoto.token-file",
        flag_path.to_str().expect("utf-8"),
    ]);
    match Config::resolve(&args, env, Mode::Exporter)
        .expect("valid")
        .credentials
    {
        Some(Credentials::Token(t)) => assert_eq!(t.expose_secret(), "from-flag-file"),
        other => panic!("unexpected credentials {other:?}"),
    }
}

#[test]
fn login_credentials() {
    let env = Environment {
        password: Some(SecretString::from("pw")),
        ..Environment::default()
    };
    let c = Config::resolve(
        &parse(&["--monogoto.username", "ops", "--monogoto.discover"]),
        env,
        Mode::Exporter,
    )
    .expect("valid");
    assert!(c.discover);
    match c.credentials {
        Some(Credentials::Login { username, password }) => {
            assert_eq!(username, "ops");
            assert_eq!(password.expose_secret(), "pw");
        }
        other => panic!("unexpected credentials {other:?}"),
    }
    let e = Config::resolve(
        &parse(&["--monogoto.username", "ops", "--monogoto.discover"]),
        Environment::default(),
        Mode::Exporter,
    )
    .expect_err("no password");
    assert!(
        e.to_string().starts_with("config: monogoto.password:"),
        "{e}"
    );
}

#[test]
fn secrets_from_the_environment_are_trimmed() {
    let token = |env: Environment| match Config::resolve(
        &parse(&["--monogoto.iccid", A]),
        env,
        Mode::Exporter,
    )
    .expect("valid")
    .credentials
    {
        Some(Credentials::Token(t)) => t.expose_secret().to_string(),
        other => panic!("unexpected credentials {other:?}"),
    };
    for raw in ["tok\n", " tok ", "\ttok\r\n"] {
        let env = Environment {
            token: Some(SecretString::from(raw)),
            ..Environment::default()
        };
        assert_eq!(token(env), "tok", "{raw:?}");
    }
    let env = Environment {
        password: Some(SecretString::from("pw\n")),
        ..Environment::default()
    };
    let c = Config::resolve(
        &parse(&["--monogoto.username", "ops", "--monogoto.discover"]),
        env,
        Mode::Exporter,
    )
    .expect("valid");
    match c.credentials {
        Some(Credentials::Login { password, .. }) => assert_eq!(password.expose_secret(), "pw"),
        other => panic!("unexpected credentials {other:?}"),
    }
    // As from the YAML file.
    let f = yaml(&format!("monogoto:\n  token: |\n    tok\n  iccid: {A}\n"));
    let c = Config::resolve(
        &parse(&["--config.file", f.path().to_str().expect("utf-8")]),
        Environment::default(),
        Mode::Exporter,
    )
    .expect("valid");
    match c.credentials {
        Some(Credentials::Token(t)) => assert_eq!(t.expose_secret(), "tok"),
        other => panic!("unexpected credentials {other:?}"),
    }
}

#[test]
fn blank_or_unsendable_secrets_are_errors() {
    let resolve_env = |args: &[&str], env: Environment| {
        Config::resolve(&parse(args), env, Mode::Exporter)
            .expect_err("refused")
            .to_string()
    };
    for blank in ["", "\n", "  \t "] {
        let e = resolve_env(
            &["--monogoto.iccid", A],
            Environment {
                token: Some(SecretString::from(blank)),
                ..Environment::default()
            },
        );
        assert_eq!(
            e,
            "config: monogoto.token: MONOGOTO_TOKEN is set but empty; give it a value or unset it"
        );
        let e = resolve_env(
            &["--monogoto.username", "ops", "--monogoto.iccid", A],
            Environment {
                password: Some(SecretString::from(blank)),
                ..Environment::default()
            },
        );
        assert!(
            e.starts_with("config: monogoto.password: MONOGOTO_PASSWORD is set but empty"),
            "{e}"
        );
    }
    let e = resolve_env(
        &["--monogoto.iccid", A],
        Environment {
            token: Some(SecretString::from("first\nsecond")),
            ..Environment::default()
        },
    );
    assert!(
        e.starts_with("config: monogoto.token: contains a control character"),
        "{e}"
    );
    assert!(!e.contains("first"), "the secret stays out: {e}");
}

#[test]
fn secrets_do_not_show_in_debug() {
    let env = Environment {
        token: Some(SecretString::from("s3cr3t-token")),
        ..Environment::default()
    };
    let c = Config::resolve(&parse(&["--monogoto.iccid", A]), env, Mode::Exporter).expect("valid");
    assert!(!format!("{c:?}").contains("s3cr3t-token"));
}

#[test]
fn every_validation_error_names_its_key() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--poll.interval", "5x"],
            "config: poll.interval \"5x\": invalid duration",
        ),
        (
            &["--poll.interval", "0s"],
            "config: poll.interval \"0s\": must be greater than zero",
        ),
        (&["--poll.timeout", "soon"], "config: poll.timeout \"soon\""),
        (
            &["--poll.batch-size", "0"],
            "config: poll.batch-size \"0\": must be a whole number from 1 to 50",
        ),
        (
            &["--poll.batch-size", "51"],
            "config: poll.batch-size \"51\"",
        ),
        (
            &["--poll.batch-size", "ten"],
            "config: poll.batch-size \"ten\"",
        ),
        (
            &["--poll.concurrency", "0"],
            "config: poll.concurrency \"0\"",
        ),
        (
            &["--poll.stale-after", "soon"],
            "config: poll.stale-after \"soon\": invalid duration",
        ),
        (
            &["--monogoto.thing-ids-format", "semicolon"],
            "config: monogoto.thing-ids-format \"semicolon\": must be comma, repeat or auto",
        ),
        (
            &["--poll.inactive-interval", "often"],
            "config: poll.inactive-interval \"often\": invalid duration",
        ),
        (
            &["--monogoto.rate-limit", "60/min,1000"],
            "config: monogoto.rate-limit \"60/min,1000\"",
        ),
        (
            &["--web.listen-address", "nowhere"],
            "config: web.listen-address \"nowhere\"",
        ),
        (
            &["--web.listen-address", "host:99999"],
            "config: web.listen-address",
        ),
        (
            &["--web.telemetry-path", "metrics"],
            "config: web.telemetry-path \"metrics\"",
        ),
        (
            &["--web.telemetry-path", "/healthz"],
            "config: web.telemetry-path \"/healthz\"",
        ),
        (
            &["--web.telemetry-path", "/-/reload"],
            "config: web.telemetry-path \"/-/reload\": is taken",
        ),
        (
            &["--monogoto.url", "console.monogoto.io"],
            "config: monogoto.url \"console.monogoto.io\": invalid URL",
        ),
        (
            &["--monogoto.url", "ftp://x"],
            "config: monogoto.url \"ftp://x\"",
        ),
        (
            &["--monogoto.url", "https://u:p@x/"],
            "config: monogoto.url \"https://x/\": must not carry",
        ),
        (&["--log.format", "xml"], "config: log.format \"xml\""),
        (&["--log.level", "loud=="], "config: log.level"),
        (
            &["--monogoto.iccid", "12345"],
            "config: monogoto.iccid \"12345\": not an ICCID",
        ),
        (
            &["--config.file", "/nonexistent/monogoto.yml"],
            "config: config.file \"/nonexistent/monogoto.yml\": cannot read",
        ),
        (
            &["--monogoto.token-file", "/nonexistent/token"],
            "config: monogoto.token-file \"/nonexistent/token\": cannot read",
        ),
    ];
    for (args, expected) in cases {
        let e = error_with_an_iccid(args);
        assert!(
            e.starts_with(expected),
            "{args:?}: got {e:?}, want prefix {expected:?}"
        );
        assert!(!e.contains('\n'), "one line: {e:?}");
    }
}

#[test]
fn every_duration_is_bounded() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--poll.interval", "1ms"],
            "config: poll.interval \"1ms\": must be from 1s to 24h",
        ),
        (
            &["--poll.interval", "25h"],
            "config: poll.interval \"25h\": must be from 1s to 24h",
        ),
        (
            &["--poll.interval", "10000000000000000000s"],
            "config: poll.interval \"10000000000000000000s\"",
        ),
        (
            &["--poll.interval", "300000000000y"],
            "config: poll.interval \"300000000000y\"",
        ),
        (
            &["--poll.timeout", "10ms"],
            "config: poll.timeout \"10ms\": must be from 100ms to 10m",
        ),
        (
            &["--poll.timeout", "11m"],
            "config: poll.timeout \"11m\": must be from 100ms to 10m",
        ),
        (
            &["--poll.stale-after", "31days"],
            "config: poll.stale-after \"31days\": must be from 1s to 30d",
        ),
        (
            &["--poll.inactive-interval", "31days"],
            "config: poll.inactive-interval \"31days\": must be from 1s to 30d, or 0",
        ),
        (
            &["--poll.stale-after", "300000000000y"],
            "config: poll.stale-after \"300000000000y\"",
        ),
        (
            &["--monogoto.discover-interval", "30s"],
            "config: monogoto.discover-interval \"30s\": must be from 1m to 30d",
        ),
        (
            &["--monogoto.discover-interval", "300000000000y"],
            "config: monogoto.discover-interval \"300000000000y\"",
        ),
        (
            &["--monogoto.rate-limit", "1/300000000000y"],
            "config: monogoto.rate-limit \"1/300000000000y\"",
        ),
        (
            &["--monogoto.rate-limit", "1/8d"],
            "config: monogoto.rate-limit \"1/8d\": the period must be at most 7d",
        ),
    ];
    for (args, expected) in cases {
        let e = error_with_an_iccid(args);
        assert!(e.starts_with(expected), "{args:?}: {e:?}");
    }
    // The ends of each range are accepted.
    let c = resolve(&[
        "--monogoto.iccid",
        A,
        "--poll.interval",
        "24h",
        "--poll.timeout",
        "100ms",
        "--poll.stale-after",
        "30d",
        "--monogoto.discover-interval",
        "30d",
        "--monogoto.rate-limit",
        "1/7d",
    ])
    .expect("valid");
    assert_eq!(c.poll.interval, Duration::from_secs(24 * 3600));
    assert_eq!(c.poll.stale_after, Some(MAX_STALE_AFTER));
    assert_eq!(c.discover_interval, Duration::from_secs(30 * 24 * 3600));
    assert_eq!(
        c.rate_limit.windows()[0].period,
        crate::monogoto::budget::MAX_WINDOW
    );
    let c = resolve(&[
        "--monogoto.iccid",
        A,
        "--poll.interval",
        "1s",
        "--poll.timeout",
        "10m",
        "--monogoto.discover-interval",
        "1m",
    ])
    .expect("valid");
    assert_eq!(
        c.poll.stale_after, None,
        "3 refresh targets, known once polling"
    );
    // The YAML file goes through the same checks.
    let e = yaml_error("poll:\n  interval: 1ms\n");
    assert!(e.starts_with("config: poll.interval \"1ms\""), "{e}");
}

#[test]
fn telemetry_paths_the_router_would_misread_and_url_fragments_are_refused() {
    for path in [
        "/:metrics",
        "/*rest",
        "/m/{x}",
        "/metrics?x=1",
        "/metrics#top",
        "/m}",
    ] {
        let e = error(&["--web.telemetry-path", path, "--monogoto.iccid", A]);
        assert!(
            e.starts_with(&format!(
                "config: web.telemetry-path {path:?}: must be a plain path"
            )),
            "{e}"
        );
    }
    for path in ["/metrics", "/prometheus/metrics", "/m-1_x.txt", "/metrics/"] {
        let c = resolve(&["--web.telemetry-path", path, "--monogoto.iccid", A]).expect(path);
        assert_eq!(c.telemetry_path, path);
    }
    let e = error(&[
        "--monogoto.url",
        "https://console.monogoto.io/#frag",
        "--monogoto.iccid",
        A,
    ]);
    assert!(
        e.starts_with(
            "config: monogoto.url \"https://console.monogoto.io/\": must not carry a #fragment"
        ),
        "{e}"
    );
}

#[test]
fn missing_credentials_or_things_are_errors_only_for_the_exporter() {
    let e = Config::resolve(
        &parse(&["--monogoto.iccid", A]),
        Environment::default(),
        Mode::Exporter,
    )
    .expect_err("no credentials");
    assert!(
        e.to_string()
            .starts_with("config: monogoto.token: no credentials"),
        "{e}"
    );
    let e = error(&[]);
    assert!(
        e.starts_with("config: monogoto.iccid: no Things to export"),
        "{e}"
    );
    assert!(Config::resolve(&parse(&[]), Environment::default(), Mode::Demo).is_ok());
}

#[test]
fn bad_yaml_and_unknown_keys_are_errors() {
    let e = yaml_error("poll:\n  intervall: 30s\n");
    assert!(e.contains("invalid YAML") && e.contains("intervall"), "{e}");
    let e = yaml_error("poll: [unclosed\n");
    assert!(e.starts_with("config: config.file"), "{e}");
    let e = yaml_error("poll:\n  batch_size: 99\n");
    assert!(e.starts_with("config: poll.batch-size \"99\""), "{e}");
}

#[test]
fn resilience_settings() {
    let c = resolve(&["--monogoto.iccid", A]).expect("valid");
    assert_eq!(c.rate_limit.to_string(), "60/min,1000/h");
    assert_eq!(c.poll.retries, 3);
    assert_eq!(c.max_body_size, 16 * 1024 * 1024);
    let c = resolve(&[
        "--monogoto.iccid",
        A,
        "--monogoto.rate-limit",
        "5/s",
        "--poll.retries",
        "0",
        "--monogoto.max-body-size",
        "512KiB",
    ])
    .expect("valid");
    assert_eq!(Some(c.rate_limit.to_string()), Some("5/s".to_string()));
    assert_eq!(c.poll.retries, 0);
    assert_eq!(c.max_body_size, 512 * 1024);
    let c = resolve(&["--monogoto.iccid", A, "--monogoto.rate-limit", "0"]).expect("valid");
    assert!(c.rate_limit.is_unlimited());

    let f = yaml(
        "monogoto:\n  rate_limit: 300/min,10000/h\n  max-body-size: 1MB\npoll:\n  retries: 5\n  inactive-interval: 0\n  stale_after: 10s\n",
    );
    let c = resolve(&[
        "--config.file",
        f.path().to_str().expect("utf-8"),
        "--monogoto.iccid",
        A,
    ])
    .expect("valid");
    assert_eq!(c.rate_limit.to_string(), "300/min,10000/h");
    assert_eq!(c.poll.inactive_interval, Duration::ZERO);
    assert_eq!(c.poll.stale_after, Some(Duration::from_secs(10)));
    assert_eq!(c.max_body_size, 1_000_000);
    assert_eq!(c.poll.retries, 5);

    for (args, expected) in [
        (
            ["--monogoto.rate-limit", "fast"],
            "config: monogoto.rate-limit \"fast\"",
        ),
        (
            ["--poll.retries", "11"],
            "config: poll.retries \"11\": must be a whole number from 0 to 10",
        ),
        (
            ["--monogoto.max-body-size", "huge"],
            "config: monogoto.max-body-size \"huge\"",
        ),
        (
            ["--monogoto.max-body-size", "10"],
            "config: monogoto.max-body-size \"10\"",
        ),
    ] {
        let e = error_with_an_iccid(&args);
        assert!(e.starts_with(expected), "{e}");
    }
}

#[test]
fn shards() {
    let c = resolve(&["--monogoto.iccid", A]).expect("valid");
    assert_eq!(c.shard, Shard { index: 0, count: 1 });
    let c = resolve(&[
        "--monogoto.iccid",
        A,
        "--shard.count",
        "3",
        "--shard.index",
        "monogoto-exporter-2",
    ])
    .expect("valid");
    assert_eq!(c.shard, Shard { index: 2, count: 3 });
    let f = yaml("shard:\n  index: 1\n  count: 4\n");
    let c = resolve(&[
        "--config.file",
        f.path().to_str().expect("utf-8"),
        "--monogoto.iccid",
        A,
    ])
    .expect("valid");
    assert_eq!(c.shard, Shard { index: 1, count: 4 });
    for (args, expected) in [
        (
            ["--shard.count", "3", "--shard.index", "3"],
            "config: shard.index \"3\": must be less than shard.count (3)",
        ),
        (
            ["--shard.count", "0", "--shard.index", "0"],
            "config: shard.count \"0\"",
        ),
        (
            ["--shard.count", "2", "--shard.index", "pod"],
            "config: shard.index \"pod\"",
        ),
    ] {
        let e = error_with_an_iccid(&args);
        assert!(e.starts_with(expected), "{e}");
    }
}

#[test]
fn sizes() {
    assert_eq!(parse_byte_size("16MiB"), Some(16 * 1024 * 1024));
    assert_eq!(parse_byte_size("2048"), Some(2048));
    assert_eq!(parse_byte_size("1.5 KiB"), Some(1536));
    assert_eq!(parse_byte_size("1gb"), Some(1_000_000_000));
    assert_eq!(parse_byte_size("100"), None, "below 1 KiB");
    assert_eq!(parse_byte_size("MiB"), None);
    assert_eq!(parse_byte_size("5 parsecs"), None);
}

#[cfg(unix)]
#[test]
fn world_readable_secret_files_are_warned_about() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "t").expect("write");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let args = parse(&[
        "--monogoto.iccid",
        A,
        "--monogoto.token-file",
        token.to_str().expect("utf-8"),
    ]);
    let c = Config::resolve(&args, Environment::default(), Mode::Exporter).expect("valid");
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].starts_with("monogoto.token-file"),
        "{:?}",
        c.warnings
    );
    assert!(
        !c.warnings[0].contains("t\""),
        "the warning names the file, not the secret"
    );

    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let c = Config::resolve(&args, Environment::default(), Mode::Exporter).expect("valid");
    assert!(c.warnings.is_empty());

    let f = yaml(&format!("monogoto:\n  token: inline\n  iccid: {A}\n"));
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let c = resolve(&["--config.file", f.path().to_str().expect("utf-8")]).expect("valid");
    assert!(
        c.warnings.iter().any(|w| w.starts_with("config.file")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn web_config_file_from_flag_or_yaml_and_validated() {
    let web = yaml("basic_auth_users: {}\n");
    let web_path = web.path().to_str().expect("utf-8");
    let c = resolve(&["--web.config.file", web_path, "--monogoto.iccid", A]).expect("valid");
    assert_eq!(c.web_config_file.as_deref(), Some(web.path()));
    assert_eq!(
        resolve(&["--monogoto.iccid", A])
            .expect("valid")
            .web_config_file,
        None
    );
    for key in ["config_file", "config-file"] {
        let f = yaml(&format!("web:\n  {key}: {web_path}\n"));
        let c = resolve(&[
            "--config.file",
            f.path().to_str().expect("utf-8"),
            "--monogoto.iccid",
            A,
        ])
        .expect("valid");
        assert_eq!(c.web_config_file.as_deref(), Some(web.path()), "{key}");
    }

    let bad = yaml("basic_auth_users:\n  alice: not-a-hash\n");
    let bad_path = bad.path().to_str().expect("utf-8");
    let e = error(&["--web.config.file", bad_path, "--monogoto.iccid", A]);
    assert!(
        e.starts_with(&format!(
            "config: web.config.file {bad_path:?}: basic_auth_users.alice: not a bcrypt hash"
        )),
        "{e}"
    );
    let e = error(&[
        "--web.config.file",
        "/nonexistent/web.yml",
        "--monogoto.iccid",
        A,
    ]);
    assert!(
        e.starts_with("config: web.config.file \"/nonexistent/web.yml\": cannot read"),
        "{e}"
    );
}

#[test]
fn iccids_are_normalised_and_the_documented_example_is_accepted() {
    // The API page's own example has 16 digits; a trailing f is upper-cased.
    let c = resolve(&[
        "--monogoto.iccid",
        "8912372646888991",
        "--monogoto.iccid",
        "8988200000000000001f",
        "--monogoto.iccid",
        "8988200000000000001F",
    ])
    .expect("valid");
    assert_eq!(c.iccids, vec!["8912372646888991", "8988200000000000001F"]);
    let e = error(&["--monogoto.iccid", "123456789"]);
    assert!(
        e.starts_with("config: monogoto.iccid \"123456789\": not an ICCID (10 to 22"),
        "{e}"
    );
}

#[test]
fn web_limits_from_flags_or_yaml_and_validated() {
    let c = resolve(&["--monogoto.iccid", A]).expect("valid");
    assert_eq!(c.web_limits, crate::web::Limits::default());
    assert_eq!(c.web_limits.read_header_timeout, Duration::from_secs(10));
    assert_eq!(c.web_limits.max_connections, 512);

    let c = resolve(&[
        "--web.read-header-timeout",
        "3s",
        "--web.max-connections",
        "64",
        "--monogoto.iccid",
        A,
    ])
    .expect("valid");
    assert_eq!(c.web_limits.read_header_timeout, Duration::from_secs(3));
    assert_eq!(c.web_limits.max_connections, 64);

    for text in [
        "web:\n  read_header_timeout: 1m\n  max_connections: 1000\n",
        "web:\n  read-header-timeout: 1m\n  max-connections: \"1000\"\n",
    ] {
        let f = yaml(text);
        let path = f.path().to_str().expect("utf-8");
        let c = resolve(&["--config.file", path, "--monogoto.iccid", A]).expect("valid");
        assert_eq!(c.web_limits.read_header_timeout, Duration::from_secs(60));
        assert_eq!(c.web_limits.max_connections, 1000);
        let c = resolve(&[
            "--config.file",
            path,
            "--web.max-connections",
            "2",
            "--monogoto.iccid",
            A,
        ])
        .expect("valid");
        assert_eq!(c.web_limits.max_connections, 2, "the flag wins");
    }

    for (args, expected) in [
        (
            ["--web.read-header-timeout", "999ms"],
            "config: web.read-header-timeout \"999ms\": must be from 1s to 10m",
        ),
        (
            ["--web.read-header-timeout", "10m1s"],
            "config: web.read-header-timeout \"10m1s\": must be from 1s to 10m",
        ),
        (
            ["--web.read-header-timeout", "0"],
            "config: web.read-header-timeout \"0\": must be greater than zero",
        ),
        (
            ["--web.max-connections", "0"],
            "config: web.max-connections \"0\": must be a whole number from 1 to 1000000",
        ),
        (
            ["--web.max-connections", "many"],
            "config: web.max-connections \"many\": must be a whole number from 1 to 1000000",
        ),
    ] {
        assert_eq!(error(&[args[0], args[1], "--monogoto.iccid", A]), expected);
    }
    assert!(
        resolve(&[
            "--web.read-header-timeout",
            "10m",
            "--web.max-connections",
            "1000000",
            "--monogoto.iccid",
            A
        ])
        .is_ok(),
        "the bounds themselves"
    );
    let e = yaml_error("web:\n  max_connections: -1\n");
    assert!(e.starts_with("config: web.max-connections \"-1\""), "{e}");
}

#[test]
fn what_a_reload_compares_is_recorded() {
    let c = resolve(&["--monogoto.iccid", A]).expect("valid");
    assert!(!c.enable_lifecycle, "off by default, as in Prometheus");
    assert_eq!(c.iccids_file, None);
    assert_eq!(
        c.credentials_source,
        CredentialsSource {
            token: Some(SecretSource::Environment),
            password: None
        }
    );

    let fleet = yaml(&format!("{B}\n"));
    let token = yaml("t\n");
    let f = yaml(&format!(
        "monogoto:\n  iccids_file: {}\n  token_file: {}\n",
        fleet.path().display(),
        token.path().display()
    ));
    let c = Config::resolve(
        &parse(&[
            "--config.file",
            f.path().to_str().expect("utf-8"),
            "--web.enable-lifecycle",
        ]),
        Environment::default(),
        Mode::Exporter,
    )
    .expect("valid");
    assert!(c.enable_lifecycle);
    assert_eq!(c.iccids_file.as_deref(), Some(fleet.path()));
    assert_eq!(c.iccids, vec![B.to_string()]);
    assert_eq!(
        c.credentials_source.token,
        Some(SecretSource::File(token.path().to_path_buf()))
    );

    let f = yaml("monogoto:\n  username: u\n  password: p\n");
    let c = Config::resolve(
        &parse(&[
            "--config.file",
            f.path().to_str().expect("utf-8"),
            "--monogoto.iccid",
            A,
        ]),
        Environment::default(),
        Mode::Exporter,
    )
    .expect("valid");
    assert_eq!(
        c.credentials_source,
        CredentialsSource {
            token: None,
            password: Some(SecretSource::Inline)
        }
    );
}

/// Relative paths in the YAML file are read against the file's folder (the
/// tests run in the package's folder, which holds none of these files);
/// absolute ones as they are.
#[test]
fn relative_paths_in_the_yaml_file_are_read_against_its_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        path
    };
    let fleet = write("lists/fleet.txt", &format!("{B}\n"));
    let token = write("secrets/token", "t\n");
    let password = write("secrets/password", "p\n");
    let web = write("web.yml", "");
    let config = write(
        "config.yml",
        "monogoto:\n  iccids_file: lists/fleet.txt\n  token_file: ./secrets/token\nweb:\n  config_file: web.yml\n",
    );
    let c = Config::resolve(
        &parse(&["--config.file", config.to_str().expect("utf-8")]),
        Environment::default(),
        Mode::Exporter,
    )
    .expect("valid");
    assert_eq!(c.iccids, vec![B.to_string()]);
    // The path a reload reads again and watches.
    assert_eq!(c.iccids_file.as_ref(), Some(&fleet));
    assert_eq!(c.credentials_source.token, Some(SecretSource::File(token)));
    assert!(matches!(c.credentials, Some(Credentials::Token(t)) if t.expose_secret() == "t"));
    assert_eq!(c.web_config_file, Some(web));

    let config = write(
        "login.yml",
        &format!(
            "monogoto:\n  username: u\n  password_file: secrets/password\n  iccids_file: {}\n",
            fleet.display()
        ),
    );
    let c = Config::resolve(
        &parse(&["--config.file", config.to_str().expect("utf-8")]),
        Environment::default(),
        Mode::Exporter,
    )
    .expect("valid");
    assert!(
        matches!(&c.credentials, Some(Credentials::Login { password: p, .. }) if p.expose_secret() == "p"),
        "the password file, relative"
    );
    assert_eq!(
        c.credentials_source.password,
        Some(SecretSource::File(password))
    );
    assert_eq!(c.iccids_file, Some(fleet), "absolute, as it is");
}

/// A relative path in the file that names nothing is refused, and the error
/// names the path it was read as: against the file's folder.
#[test]
fn a_missing_relative_path_in_the_yaml_file_is_named_as_resolved() {
    let f = yaml("monogoto:\n  iccids_file: no/such/fleet.txt\n");
    let folder = f.path().parent().expect("a folder");
    let e = resolve(&["--config.file", f.path().to_str().expect("utf-8")])
        .expect_err("no such file")
        .to_string();
    let resolved = folder.join("no/such/fleet.txt");
    assert!(
        e.contains(resolved.to_str().expect("utf-8")),
        "the path as resolved: {e}"
    );
}

#[test]
fn an_iccids_file_may_start_with_a_byte_order_mark() {
    let f = yaml(&format!("\u{feff}{A}\n{B}\n"));
    let c = resolve(&["--monogoto.iccids-file", f.path().to_str().expect("utf-8")]).expect("valid");
    assert_eq!(c.iccids, vec![A.to_string(), B.to_string()]);
    // Only at the start: elsewhere it is not part of an ICCID.
    assert!(parse_iccids(&format!("{A}\n\u{feff}{B}\n")).is_err());
}

#[test]
fn iccids_file_comments_blanks_duplicates_and_bad_lines() {
    let text = format!("# fleet\n\n{A}\n  {B}  # gateway\n{A}\n");
    assert_eq!(
        parse_iccids(&text),
        Ok(vec![A.to_string(), B.to_string(), A.to_string()])
    );
    let f = yaml(&text);
    let c = resolve(&[
        "--monogoto.iccids-file",
        f.path().to_str().expect("utf-8"),
        "--monogoto.iccid",
        B,
    ])
    .expect("valid");
    assert_eq!(
        c.iccids,
        vec![B.to_string(), A.to_string()],
        "union, duplicates removed"
    );

    let f = yaml(&format!("{A}\n# ok\nnot-an-iccid\n"));
    let e = error(&["--monogoto.iccids-file", f.path().to_str().expect("utf-8")]);
    assert!(
        e.starts_with("config: monogoto.iccids-file") && e.contains("line 3: \"not-an-iccid\""),
        "{e}"
    );
}

/// Token and password come from the first of: the flag's file, the
/// environment, the YAML's file, the YAML's own value; each source is recorded.
#[test]
fn secrets_take_the_first_source_in_order_for_token_and_password_alike() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("utf-8").to_string()
    };
    let flag_file = write("flag", "from-flag-file\n");
    let yaml_file = write("yaml", "from-yaml-file\n");
    for secret in ["token", "password"] {
        let user = if secret == "password" {
            "  username: u\n"
        } else {
            ""
        };
        let with_file = yaml(&format!(
            "monogoto:\n  {secret}_file: {yaml_file}\n  {secret}: inline\n{user}  iccid: {A}\n"
        ));
        let inline_only = yaml(&format!(
            "monogoto:\n  {secret}: \" inline \"\n{user}  iccid: {A}\n"
        ));
        let env = |set: bool| {
            let value = set.then(|| SecretString::from("from-env"));
            if secret == "token" {
                Environment {
                    token: value,
                    ..Environment::default()
                }
            } else {
                Environment {
                    password: value,
                    ..Environment::default()
                }
            }
        };
        let flag = format!("--monogoto.{secret}-file");
        let cases: [(Vec<&str>, bool, &str, SecretSource); 4] = [
            (
                vec![&flag, &flag_file],
                true,
                "from-flag-file",
                SecretSource::File(flag_file.clone().into()),
            ),
            (vec![], true, "from-env", SecretSource::Environment),
            (
                vec![],
                false,
                "from-yaml-file",
                SecretSource::File(yaml_file.clone().into()),
            ),
            (vec![], false, "inline", SecretSource::Inline),
        ];
        for (i, (extra, env_set, expected, source)) in cases.into_iter().enumerate() {
            let file = if i == 3 { &inline_only } else { &with_file };
            let mut args = vec!["--config.file", file.path().to_str().expect("utf-8")];
            args.extend(extra);
            let c = Config::resolve(&parse(&args), env(env_set), Mode::Exporter)
                .unwrap_or_else(|e| panic!("{secret} case {i}: {e}"));
            let (value, recorded) = match c.credentials {
                Some(Credentials::Token(t)) => (t, c.credentials_source.token),
                Some(Credentials::Login { password, .. }) => {
                    (password, c.credentials_source.password)
                }
                None => panic!("{secret} case {i}: no credentials"),
            };
            assert_eq!(value.expose_secret(), expected, "{secret} case {i}");
            assert_eq!(recorded, Some(source), "{secret} case {i}");
        }
        let missing = format!("{}/missing", dir.path().display());
        let e = Config::resolve(
            &parse(&[
                &flag,
                &missing,
                "--monogoto.iccid",
                A,
                "--monogoto.username",
                "u",
            ]),
            Environment::default(),
            Mode::Exporter,
        )
        .expect_err("unreadable");
        assert!(
            e.to_string().starts_with(&format!(
                "config: monogoto.{secret}-file \"{missing}\": cannot read"
            )),
            "{e}"
        );
    }
}
