use super::*;

#[test]
fn fault_rules_as_json() {
    let rule: FaultRule = serde_json::from_str(
        r#"{"kind": {"type": "rate_limited", "retry_after": {"http_date": {"seconds_from_now": 3}}}, "endpoint": "things"}"#,
    )
    .expect("json");
    assert_eq!(
        rule,
        FaultRule::new(FaultKind::RateLimited {
            retry_after: RetryAfter::HttpDate {
                seconds_from_now: 3
            }
        })
        .endpoint(SimEndpoint::Things)
    );
    let kinds = [
        FaultKind::Latency { millis: 5 },
        FaultKind::Hang,
        FaultKind::Status { code: 503 },
        FaultKind::RateLimited {
            retry_after: RetryAfter::Seconds(2),
        },
        FaultKind::RateLimited {
            retry_after: RetryAfter::None,
        },
        FaultKind::Unauthorized,
        FaultKind::TruncatedJson,
        FaultKind::MalformedJson,
        FaultKind::WrongTypes,
        FaultKind::SuccessFalse,
        FaultKind::Oversized { bytes: 10 },
        FaultKind::RawRetryAfter {
            value: "Wed, 21 Oct 2015 07:28:00 GMT".into(),
            code: 503,
        },
        FaultKind::RawRateLimitReset {
            value: "1e300".into(),
        },
    ];
    for kind in kinds {
        let rule = FaultRule::new(kind).after(2).count(3);
        let v = serde_json::to_value(&rule).expect("serialize");
        assert_eq!(
            serde_json::from_value::<FaultRule>(v).expect("deserialize"),
            rule
        );
    }
    assert_eq!(
        serde_json::to_value(FaultRule::new(FaultKind::Status { code: 502 })).expect("serialize"),
        json!({"kind": {"type": "status", "code": 502}, "endpoint": null, "after": 0, "count": null})
    );
    assert_eq!(
        serde_json::to_value(RetryAfter::Seconds(2)).expect("serialize"),
        json!({"seconds": 2})
    );
    assert_eq!(
        serde_json::to_value(RetryAfter::None).expect("serialize"),
        json!("none")
    );
    for (endpoint, name) in [
        (SimEndpoint::Auth, "auth"),
        (SimEndpoint::Things, "things"),
        (SimEndpoint::Status, "status"),
    ] {
        assert_eq!(
            serde_json::to_value(endpoint).expect("serialize"),
            json!(name)
        );
    }
}

#[test]
fn fault_specs_parse() {
    use FaultKind as K;
    let new = FaultRule::new;
    let cases = [
        ("latency=200ms", new(K::Latency { millis: 200 })),
        ("latency=2s", new(K::Latency { millis: 2000 })),
        ("latency=150", new(K::Latency { millis: 150 })),
        ("hang", new(K::Hang)),
        ("hang,after=10", new(K::Hang).after(10)),
        (
            "status=503,count=5,endpoint=status",
            new(K::Status { code: 503 })
                .count(5)
                .endpoint(SimEndpoint::Status),
        ),
        (
            " Status = 502 , endpoint = Things , after = 1 , count = 2 ",
            new(K::Status { code: 502 })
                .endpoint(SimEndpoint::Things)
                .after(1)
                .count(2),
        ),
        (
            "rate_limited",
            new(K::RateLimited {
                retry_after: RetryAfter::None,
            }),
        ),
        (
            "rate_limited=none",
            new(K::RateLimited {
                retry_after: RetryAfter::None,
            }),
        ),
        (
            "rate_limited=retry_after:2",
            new(K::RateLimited {
                retry_after: RetryAfter::Seconds(2),
            }),
        ),
        (
            "rate-limited=3",
            new(K::RateLimited {
                retry_after: RetryAfter::Seconds(3),
            }),
        ),
        (
            "rate_limited=retry_after:1m",
            new(K::RateLimited {
                retry_after: RetryAfter::Seconds(60),
            }),
        ),
        (
            "rate_limited=date:30,endpoint=auth",
            new(K::RateLimited {
                retry_after: RetryAfter::HttpDate {
                    seconds_from_now: 30,
                },
            })
            .endpoint(SimEndpoint::Auth),
        ),
        ("unauthorized,after=100", new(K::Unauthorized).after(100)),
        ("truncated_json", new(K::TruncatedJson)),
        ("malformed_json", new(K::MalformedJson)),
        ("wrong_types", new(K::WrongTypes)),
        ("success_false,endpoint=all", new(K::SuccessFalse)),
        ("oversized=20MiB", new(K::Oversized { bytes: 20 << 20 })),
        ("oversized=500KB", new(K::Oversized { bytes: 500_000 })),
        ("oversized=2gib", new(K::Oversized { bytes: 2 << 30 })),
        ("oversized=3m", new(K::Oversized { bytes: 3_000_000 })),
        ("oversized=1048576", new(K::Oversized { bytes: 1 << 20 })),
        (
            "raw_retry_after=18446744073709551615",
            new(K::RawRetryAfter {
                value: "18446744073709551615".into(),
                code: 429,
            }),
        ),
        (
            "raw_retry_after=503:-1,endpoint=status",
            new(K::RawRetryAfter {
                value: "-1".into(),
                code: 503,
            })
            .endpoint(SimEndpoint::Status),
        ),
        (
            "raw_rate_limit_reset=1e300,count=1",
            new(K::RawRateLimitReset {
                value: "1e300".into(),
            })
            .count(1),
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(spec.parse::<FaultRule>().as_ref(), Ok(&want), "{spec}");
        // Display writes a spec that parses back to the same rule.
        assert_eq!(want.to_string().parse::<FaultRule>(), Ok(want), "{spec}");
    }
    assert_eq!(
        rule("status=503,count=5,endpoint=status").to_string(),
        "status=503,endpoint=status,count=5"
    );
    assert_eq!(rule("oversized=1KiB").to_string(), "oversized=1024");

    for (spec, error) in [
        ("", "empty fault"),
        (" ", "empty fault"),
        ("statuz=503", "unknown fault \"statuz\""),
        ("status", "status needs a value"),
        ("status=abc", "must be a number"),
        ("status=200", "between 400 and 599"),
        ("status=600", "between 400 and 599"),
        ("status=70000", "must be a number"),
        ("hang=5", "hang takes no value"),
        ("truncated_json=1", "takes no value"),
        ("latency", "latency needs a value"),
        ("latency=fast", "invalid duration"),
        ("latency=1500us", "whole milliseconds"),
        ("oversized", "needs a value"),
        ("oversized=20XB", "invalid size"),
        ("oversized=MiB", "invalid size"),
        ("oversized=99999999999GiB", "too large"),
        ("rate_limited=soon", "rate_limited takes"),
        ("rate_limited=date:x", "invalid wait"),
        ("rate_limited=date:1500ms", "invalid wait"),
        ("hang,count=0", "at least 1"),
        ("hang,after=-1", "whole number"),
        ("hang,count=many", "whole number"),
        ("hang,after=1,after=2", "after given twice"),
        ("hang,endpoint=metrics", "endpoint must be"),
        ("hang,retries=3", "unknown option \"retries\""),
        ("hang,", "empty option"),
        ("hang,after", "needs a value"),
        ("raw_retry_after", "needs a value"),
        ("raw_retry_after=404:5", "429 or 500 to 599"),
        ("raw_rate_limit_reset", "needs a value"),
    ] {
        let err = spec.parse::<FaultRule>().expect_err(spec).to_string();
        assert!(err.contains(error), "{spec:?}: {err}");
    }
}

#[test]
fn simulate_flags_take_fault_specs() {
    use crate::config::{Cli, Command};
    use clap::Parser as _;
    let cli = Cli::try_parse_from([
        "monogoto-exporter",
        "simulate",
        "--fault",
        "status=503,count=5,endpoint=status",
        "--fault",
        "hang,after=10",
        "--token-lifetime",
        "90s",
    ])
    .expect("valid flags");
    let Some(Command::Simulate(args)) = cli.command else {
        panic!("not the simulate command");
    };
    assert_eq!(
        args.faults,
        [
            rule("status=503,count=5,endpoint=status"),
            rule("hang,after=10")
        ]
    );
    assert_eq!(args.token_lifetime, Duration::from_secs(90));
    let err = Cli::try_parse_from(["monogoto-exporter", "simulate", "--fault", "status=200"])
        .expect_err("invalid spec");
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("between 400 and 599"), "{err}");
}
