//! `--config.check`: resolves the configuration exactly as a start would
//! (flags, environment, YAML, the ICCIDs file, the web configuration file),
//! without contacting the API, and reports what the exporter would do or
//! every problem found.
//!
//! [`Config::resolve`] stops at the first problem. To report them all, the
//! check resolves again with the offending setting replaced by a harmless
//! value given as a flag (flags win over the file and the environment), until
//! the configuration resolves or a problem repeats. So the problems are those
//! of the real resolution, in its order, with its wording.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::config::{self, Config, Environment, ExporterArgs, Mode};
use crate::monogoto::Credentials;
use crate::poller::schedule;
use crate::web::WebConfig;

/// More rounds than there are settings: a safety net, not a limit one meets.
const MAX_ROUNDS: usize = 64;

/// A file that reads as empty: a valid ICCIDs file and a valid web
/// configuration, standing in for a broken one.
const EMPTY_FILE: &str = "/dev/null";

/// A valid ICCID standing in for broken ones, so that "no Things to export"
/// does not follow an error that already explains it.
const STAND_IN_ICCID: &str = "89000000000000000000";

/// The outcome of a successful check: the summary lines and the warnings a
/// start would log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub summary: Vec<String>,
    pub warnings: Vec<String>,
}

/// Checks the exporter's configuration: the report, or every problem found.
pub fn check(args: &ExporterArgs, env: &Environment) -> Result<Report, Vec<String>> {
    let mut args = args.clone();
    let mut env = env.clone();
    let mut problems: Vec<String> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        match Config::resolve(&args, env.clone(), Mode::Exporter) {
            Ok(config) => {
                // Not part of resolving: a start checks it once, a reload not.
                if let Err(e) = config.check_storage() {
                    problems.push(e.to_string());
                }
                return if problems.is_empty() {
                    summarize(&config)
                } else {
                    Err(problems)
                };
            }
            Err(e) => {
                let message = e.to_string();
                if problems.contains(&message) {
                    break;
                }
                let stood_in = stand_in(key_of(&message), &mut args, &mut env);
                problems.push(message);
                if !stood_in {
                    break;
                }
            }
        }
    }
    Err(problems)
}

/// The key a [`config::ConfigError`] names: its text is `config: KEY ...`.
fn key_of(message: &str) -> &str {
    let rest = message.strip_prefix("config: ").unwrap_or(message);
    let end = rest.find([' ', ':']).unwrap_or(rest.len());
    &rest[..end]
}

/// Replaces the setting `key` by a valid value, given as a flag so that it
/// wins over the file. False for a key this does not know: checking stops.
fn stand_in(key: &str, args: &mut ExporterArgs, env: &mut Environment) -> bool {
    let set = |value: &str| Some(value.to_string());
    match key {
        // A file that cannot be read or parsed: check the rest without it,
        // standing in for the credentials and SIMs it may have named, so
        // that their absence is not reported as well.
        "config.file" => {
            args.config_file = None;
            if args.iccids.is_empty() {
                args.iccids.push(STAND_IN_ICCID.to_string());
            }
            if args.token_file.is_none() && env.token.is_none() {
                env.token = Some(SecretString::from("config-check"));
            }
        }
        "web.listen-address" => args.listen_address = set(config::DEFAULT_LISTEN_ADDRESS),
        "web.telemetry-path" => args.telemetry_path = set(config::DEFAULT_TELEMETRY_PATH),
        "web.config.file" => args.web_config_file = Some(PathBuf::from(EMPTY_FILE)),
        "web.read-header-timeout" => args.read_header_timeout = set("10s"),
        "web.max-connections" => args.max_connections = set("512"),
        "monogoto.url" => args.url = set(config::DEFAULT_URL),
        "poll.interval" => args.interval = set("60s"),
        "poll.batch-size" => args.batch_size = set("50"),
        "poll.concurrency" => args.concurrency = set("4"),
        "poll.timeout" => args.timeout = set("10s"),
        "poll.retries" => args.retries = set("3"),
        // The longest allowed: a shorter one is raised to the refresh target
        // with a warning, which would be reported for a value never given.
        "poll.stale-after" => args.stale_after = set("30d"),
        "poll.inactive-interval" => args.inactive_interval = set("1h"),
        "log.format" => args.log_format = set("text"),
        "log.level" => args.log_level = set("info"),
        "monogoto.token"
        | "monogoto.token-file"
        | "monogoto.username"
        | "monogoto.password"
        | "monogoto.password-file" => {
            // A token from the environment wins over everything but the flag.
            args.token_file = None;
            env.token = Some(SecretString::from("config-check"));
        }
        "monogoto.iccid" => {
            // Drop the first bad flag value so the next one is reported too;
            // a bad value from the file stands in whole.
            match args
                .iccids
                .iter()
                .position(|raw| crate::iccid::normalize(raw).is_err())
            {
                Some(bad) => {
                    args.iccids.remove(bad);
                }
                None => args.iccids.clear(),
            }
            if args.iccids.is_empty() {
                args.iccids.push(STAND_IN_ICCID.to_string());
            }
        }
        "monogoto.iccids-file" => {
            args.iccids_file = Some(PathBuf::from(EMPTY_FILE));
            if args.iccids.is_empty() {
                args.iccids.push(STAND_IN_ICCID.to_string());
            }
        }
        "monogoto.discover-interval" => args.discover_interval = set("1h"),
        "webhook.token" | "webhook.token-file" => {
            args.webhook_token_file = None;
            env.webhook_token = Some(SecretString::from("config-check"));
        }
        "webhook.max-body-size" => args.webhook_max_body_size = set("1MiB"),
        "shard.peer-url-template" => {
            args.shard_peer_url_template = set("http://monogoto-exporter-{index}:19540")
        }
        "monogoto.rate-limit" => args.rate_limit = set(config::DEFAULT_RATE_LIMIT),
        "monogoto.max-body-size" => args.max_body_size = set("16MiB"),
        "monogoto.thing-ids-format" => args.thing_ids_format = set("auto"),
        // The largest count, so that a valid index is not reported against it.
        "shard.count" => args.shard_count = Some(config::MAX_SHARDS.to_string()),
        "shard.index" => args.shard_index = set("0"),
        _ => return false,
    }
    true
}

fn summarize(config: &Config) -> Result<Report, Vec<String>> {
    let mut warnings = config.warnings.clone();
    let web = match &config.web_config_file {
        None => {
            "TLS no, basic auth users 0, client auth NoClientCert (no web.config.file)".to_string()
        }
        Some(path) => {
            // The file may have changed since it was resolved; report it then.
            let web = WebConfig::load(path).map_err(|e| {
                vec![
                    config::ConfigError::value("web.config.file", &path.display().to_string(), e)
                        .to_string(),
                ]
            })?;
            warnings.extend(web.warnings.iter().map(|w| format!("web.config.file: {w}")));
            format!(
                "TLS {}, basic auth users {}, client auth {}",
                if web.tls.is_some() { "yes" } else { "no" },
                web.users.len(),
                web.client_auth
            )
        }
    };

    let shard = config.shard;
    let owned = config.iccids.iter().filter(|i| shard.owns(i)).count();
    let mut things = if config.iccids.is_empty() {
        String::new()
    } else if shard.count > 1 {
        format!(
            "{} configured, {owned} of them on this shard ({shard})",
            config.iccids.len()
        )
    } else {
        format!("{} configured", config.iccids.len())
    };
    if config.discover {
        if !things.is_empty() {
            things.push_str(", and ");
        }
        things.push_str(&format!(
            "discovery (every Thing of the account, listed every {})",
            humantime::format_duration(config.discover_interval)
        ));
    }
    // With discovery, the fleet's size is known only once it has been listed.
    let sims = (!config.discover).then_some(owned);
    // The plan the poller starts with: every SIM active until its first
    // answer says otherwise, so this is the first refresh's (the longest) target.
    let plan = schedule::plan(
        schedule::Fleet {
            active: sims.unwrap_or(0),
            ..schedule::Fleet::default()
        },
        &config.poll,
        &config.rate_limit,
        config.discover_interval,
    );
    let target = plan.target;
    if plan.stale_after_raised {
        warnings.push(format!(
            "{} ({} raised to {})",
            schedule::STALE_AFTER_RAISED,
            humantime::format_duration(config.poll.stale_after.unwrap_or_default()),
            format_seconds(plan.stale_after)
        ));
    }
    let why = match (sims, config.rate_limit.is_unlimited()) {
        (None, _) => "the number of SIMs is known after discovery".to_string(),
        (Some(_), true) => "no request budget".to_string(),
        (Some(sims), false) => format!(
            "{} status request(s) of up to {} SIMs within {}",
            sims.div_ceil(config.poll.batch_size.max(1)),
            config.poll.batch_size,
            config.rate_limit
        ),
    };
    let mut target_line = format!(
        "refresh target: {} (poll.interval {}; {why})",
        format_seconds(target),
        humantime::format_duration(config.poll.interval)
    );
    if target > config.poll.interval {
        target_line.push_str(
            ": the budget, not the interval, sets the pace; SUSPENDED and RETIRED SIMs, polled once per poll.inactive-interval, make it shorter",
        );
    }

    let summary = vec![
        format!("SIMs: {things}"),
        format!(
            "auth: {}",
            match &config.credentials {
                Some(Credentials::Token(_)) => "token",
                Some(Credentials::Login { .. }) => "login",
                None => "none",
            }
        ),
        format!("API: {}", config.url),
        format!(
            "budget: {} (monogoto.rate-limit)",
            if config.rate_limit.is_unlimited() {
                "unlimited".to_string()
            } else {
                config.rate_limit.to_string()
            }
        ),
        target_line,
        format!("shard: {shard}"),
        match &config.storage_path {
            Some(dir) => format!(
                "storage: {} (writable; the state is kept across restarts)",
                dir.display()
            ),
            None => "storage: none (a restart starts cold; see storage.path)".to_string(),
        },
        format!("listen: {}{}", config.listen_address, config.telemetry_path),
        format!("web: {web}"),
    ];
    Ok(Report { summary, warnings })
}

/// Whole seconds as humantime writes them (`1m 40s`); the arithmetic gives fractions.
fn format_seconds(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(
        d.as_secs() + u64::from(d.subsec_nanos() > 0),
    ))
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn args(flags: &[&str]) -> ExporterArgs {
        let mut argv = vec!["monogoto-exporter"];
        argv.extend_from_slice(flags);
        config::Cli::try_parse_from(argv)
            .expect("test flags parse")
            .exporter
    }

    fn token() -> Environment {
        Environment {
            token: Some(SecretString::from("s3cr3t-token-value")),
            ..Environment::default()
        }
    }

    #[test]
    fn a_good_configuration_is_summarized() {
        let report = check(
            &args(&[
                "--monogoto.iccid",
                "898820000000000001",
                "--poll.interval",
                "30s",
            ]),
            &token(),
        )
        .expect("valid");
        let text = report.summary.join("\n");
        assert!(text.contains("SIMs: 1 configured"), "{text}");
        assert!(text.contains("auth: token"), "{text}");
        assert!(text.contains("budget: 60/min"), "{text}");
        assert!(text.contains("refresh target: 30s"), "{text}");
        assert!(text.contains("web: TLS no, basic auth users 0"), "{text}");
        assert!(!text.contains("s3cr3t"), "the secret never shows: {text}");
    }

    #[test]
    fn every_problem_is_reported_once() {
        let problems = check(
            &args(&[
                "--poll.interval",
                "5x",
                "--poll.batch-size",
                "51",
                "--monogoto.iccid",
                "123",
                "--monogoto.iccid",
                "898820000000000001",
                "--monogoto.iccid",
                "456",
                "--monogoto.rate-limit",
                "often",
            ]),
            &Environment::default(),
        )
        .expect_err("invalid");
        let keys: Vec<&str> = problems.iter().map(|p| key_of(p)).collect();
        assert_eq!(
            keys,
            [
                "poll.interval",
                "poll.batch-size",
                "monogoto.iccid",
                "monogoto.iccid",
                "monogoto.rate-limit",
                "monogoto.token"
            ],
            "{problems:#?}"
        );
        assert!(problems[2].contains("\"123\""), "{problems:#?}");
        assert!(problems[3].contains("\"456\""), "{problems:#?}");
    }

    #[test]
    fn discovery_and_shards_in_the_summary() {
        let report = check(
            &args(&[
                "--monogoto.discover",
                "--shard.count",
                "3",
                "--shard.index",
                "monogoto-exporter-2",
                "--monogoto.rate-limit",
                "20/min",
            ]),
            &token(),
        )
        .expect("valid");
        let text = report.summary.join("\n");
        assert!(text.contains("SIMs: discovery"), "{text}");
        assert!(text.contains("after discovery"), "{text}");
        assert!(text.contains("shard: 2 of 3"), "{text}");
        assert!(text.contains("budget: 20/min"), "{text}");
    }

    /// Every exporter flag that takes a value, given a bad one at once: each
    /// is reported, and nothing else is. A new flag without a bad value here,
    /// or one `stand_in` does not know, fails this test.
    #[test]
    fn a_bad_value_for_every_flag_is_reported_once_each() {
        use clap::CommandFactory as _;
        let bad: &[(&str, &str)] = &[
            ("config.file", "/nonexistent/config.yml"),
            ("web.listen-address", "nowhere"),
            ("web.telemetry-path", "metrics"),
            ("web.config.file", "/nonexistent/web.yml"),
            ("web.read-header-timeout", "0s"),
            ("web.max-connections", "0"),
            ("monogoto.url", "ftp://x"),
            ("monogoto.token-file", "/nonexistent/token"),
            ("monogoto.username", ""),
            ("monogoto.password-file", "/nonexistent/password"),
            ("monogoto.iccid", "123"),
            ("monogoto.iccids-file", "/nonexistent/iccids"),
            ("monogoto.discover-interval", "1s"),
            ("monogoto.rate-limit", "often"),
            ("monogoto.max-body-size", "huge"),
            ("monogoto.thing-ids-format", "sideways"),
            ("poll.interval", "5x"),
            ("poll.batch-size", "51"),
            ("poll.concurrency", "0"),
            ("poll.timeout", "0s"),
            ("poll.retries", "99"),
            ("poll.stale-after", "31d"),
            ("poll.inactive-interval", "31d"),
            ("shard.count", "0"),
            ("shard.index", "pod"),
            ("log.level", "x=loud"),
            ("log.format", "xml"),
            ("storage.path", "/dev/null/state"),
            ("webhook.token-file", "/nonexistent/webhook-token"),
            ("webhook.max-body-size", "vast"),
            ("shard.peer-url-template", "http://peer:19540"),
        ];
        let flags: Vec<String> = config::Cli::command()
            .get_arguments()
            .filter(|a| {
                matches!(
                    a.get_action(),
                    clap::ArgAction::Set | clap::ArgAction::Append
                )
            })
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        // Clap itself refuses anything but true or false there.
        let parsed_by_clap = ["monogoto.discover"];
        for flag in flags
            .iter()
            .filter(|f| !parsed_by_clap.contains(&f.as_str()))
        {
            assert!(
                bad.iter().any(|(key, _)| key == flag),
                "--{flag} has no bad value in this test"
            );
        }
        // A login user name is blank-as-absent, and a token wins over a
        // password: those two are not errors on their own.
        let quiet = ["monogoto.username", "monogoto.password-file"];
        let mut argv = Vec::new();
        for (key, value) in bad {
            if !quiet.contains(key) {
                argv.push(format!("--{key}={value}"));
            }
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let problems = check(&args(&argv), &token()).expect_err("invalid");
        let mut reported: Vec<&str> = problems.iter().map(|p| key_of(p)).collect();
        reported.sort_unstable();
        let mut expected: Vec<&str> = bad
            .iter()
            .map(|(key, _)| *key)
            .filter(|key| !quiet.contains(key))
            .collect();
        expected.sort_unstable();
        assert_eq!(reported, expected, "{problems:#?}");
    }

    #[test]
    fn a_stale_after_the_budget_raises_is_a_warning() {
        let iccids: Vec<String> = (0..3200).map(|i| format!("8988200000{i:09}")).collect();
        let mut flags = vec!["--poll.stale-after", "2m"];
        for iccid in &iccids {
            flags.extend(["--monogoto.iccid", iccid.as_str()]);
        }
        let report = check(&args(&flags), &token()).expect("valid");
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.starts_with(schedule::STALE_AFTER_RAISED)
                    && w.contains("2m raised to 3m 51s")),
            "{:?}",
            report.warnings
        );
        flags[1] = "1h";
        let report = check(&args(&flags), &token()).expect("valid");
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }
}
