//! Flags, configuration, logging, and running one of the three modes.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser as _;
use secrecy::SecretString;

use monogoto_exporter::config::{
    Cli, Command, Config, DemoArgs, Environment, ExporterArgs, LogConfig, LogFormat, Mode,
    SimulateArgs, WebhookConfig,
};
use monogoto_exporter::monogoto::Credentials;
use monogoto_exporter::simulator::{Simulator, SimulatorConfig};
use monogoto_exporter::{app, check};

/// mimalloc returns freed memory to the system and keeps fragmentation low
/// while snapshots of a large fleet are built and dropped, which glibc's
/// per-thread arenas do not (see [`return_freed_memory_at_once`]).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for invalid configuration, as clap uses for invalid flags.
const EXIT_CONFIG: u8 = 2;
/// The demo webhook's body limit, as the exporter's default.
const DEFAULT_WEBHOOK_BODY: usize = 1024 * 1024;
/// Demo Things move quickly enough to be watched.
const DEMO_INTERVAL: &str = "15s";

/// mimalloc 3's `mi_option_purge_delay` (its mimalloc.h), which
/// libmimalloc-sys does not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// A refresh frees the previous snapshot's memory as it builds the next one;
/// mimalloc 3 keeps freed pages a second before returning them, which during
/// such a burst of frees left the resident size twice what was live (100,000
/// Things: 181 MB resident for 94 MB live; purged at once: 139 MB). An
/// operator's own `MIMALLOC_PURGE_DELAY` is left as it is.
fn return_freed_memory_at_once() {
    // mimalloc reads its variables in any case, and the old name too.
    let set_by_operator = std::env::vars_os().any(|(name, _)| {
        name.to_str().is_some_and(|name| {
            name.eq_ignore_ascii_case("MIMALLOC_PURGE_DELAY")
                || name.eq_ignore_ascii_case("MIMALLOC_RESET_DELAY")
        })
    });
    if set_by_operator {
        return;
    }
    // SAFETY: sets a process-wide option while no other thread runs.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

fn main() -> ExitCode {
    return_freed_memory_at_once();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.config_check {
        return check_config(&cli);
    }
    if !matches!(cli.command, Some(Command::Simulate(_))) {
        // Before anything else: the exporter and the demo reload on SIGHUP,
        // and one sent while they start must not end them.
        let _entered = runtime.enter();
        app::ignore_sighup_until_listened();
    }
    match cli.command {
        None => {
            let config =
                match Config::resolve(&cli.exporter, Environment::from_process(), Mode::Exporter) {
                    Ok(config) => config,
                    Err(e) => return config_error(e),
                };
            if let Err(e) = config.check_storage() {
                return config_error(e);
            }
            init_logging(&config.log);
            monogoto_exporter::web::raise_open_file_limit();
            runtime.block_on(run_exporter(config, cli.exporter))
        }
        Some(Command::Demo(demo)) => runtime.block_on(run_demo(demo)),
        Some(Command::Simulate(args)) => runtime.block_on(run_simulator(args)),
    }
}

/// `--config.check`: the summary on stdout and exit 0, or every problem on
/// stderr and exit 2.
fn check_config(cli: &Cli) -> ExitCode {
    if cli.command.is_some() {
        return config_error(
            "config: config.check: checks the exporter's own configuration; give it without a command",
        );
    }
    match check::check(&cli.exporter, &Environment::from_process()) {
        Ok(report) => {
            println!("monogoto-exporter: configuration OK (the API was not contacted)");
            for line in &report.summary {
                println!("  {line}");
            }
            for warning in &report.warnings {
                println!("  warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!(
                "monogoto-exporter: configuration invalid: {} problem(s)",
                problems.len()
            );
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn config_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(EXIT_CONFIG)
}

async fn run_exporter(config: Config, args: ExporterArgs) -> ExitCode {
    // A reload resolves again exactly as the start did: the same flags, the
    // environment, the YAML file and the ICCIDs file as they are then.
    let resolve =
        Arc::new(move || Config::resolve(&args, Environment::from_process(), Mode::Exporter));
    let exporter = match app::start_reloadable(&config, resolve).await {
        Ok(exporter) => exporter,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    run_until_stopped(exporter).await
}

/// Serves until SIGTERM or SIGINT (exit 0), or until polling stops
/// unexpectedly (exit 1, so that systemd or Kubernetes restarts the process).
async fn run_until_stopped(exporter: app::RunningExporter) -> ExitCode {
    let code = tokio::select! {
        _ = app::shutdown_signal() => ExitCode::SUCCESS,
        _ = exporter.polling_failed() => ExitCode::FAILURE,
    };
    exporter.shutdown().await;
    code
}

async fn run_demo(demo: Box<DemoArgs>) -> ExitCode {
    let demo = *demo;
    let mut args = demo.exporter;
    if args.config_file.is_none() {
        args.interval
            .get_or_insert_with(|| DEMO_INTERVAL.to_string());
        // The simulator has no rate limit to respect.
        args.rate_limit.get_or_insert_with(|| "0".to_string());
    }
    let mut config = match Config::resolve(&args, Environment::from_process(), Mode::Demo) {
        Ok(config) => config,
        Err(e) => return config_error(e),
    };
    if let Err(e) = config.check_storage() {
        return config_error(e);
    }
    init_logging(&config.log);
    monogoto_exporter::web::raise_open_file_limit();

    // The simulator pushes a Data CDR to the exporter's webhook whenever a
    // session ends, so the demo shows hints at work (unless the operator gave
    // a webhook token of their own, or no port is known before listening).
    let demo_webhook = match (&config.webhook, demo_webhook_url(&config)) {
        (None, Some((url, token))) => {
            config.webhook = Some(WebhookConfig {
                token: SecretString::from(token),
                max_body_size: DEFAULT_WEBHOOK_BODY,
            });
            Some(url)
        }
        _ => None,
    };
    let simulator = Simulator::new(SimulatorConfig {
        things: demo.things,
        seed: demo.seed,
        webhook_url: demo_webhook,
        ..SimulatorConfig::default()
    });
    let (username, password) = simulator.credentials();
    let running = match simulator.spawn().await {
        Ok(running) => running,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the simulator");
            return ExitCode::FAILURE;
        }
    };
    // The demo drives the whole path a real account takes: login, discovery, status.
    let url = running.url();
    let demo_token = config.webhook.clone();
    let demo_overrides = move |config: &mut Config| {
        config.url = url.clone();
        if config.webhook.is_none() {
            config.webhook = demo_token.clone();
        }
        config.credentials = Some(Credentials::Login {
            username: username.clone(),
            password: SecretString::from(password.clone()),
        });
        config.discover = true;
    };
    demo_overrides(&mut config);
    let resolve = Arc::new(move || {
        let mut config = Config::resolve(&args, Environment::from_process(), Mode::Demo)?;
        demo_overrides(&mut config);
        Ok(config)
    });

    let exporter = match app::start_reloadable(&config, resolve).await {
        Ok(exporter) => exporter,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "monogoto-exporter demo: {} simulated SIMs (API at {}); metrics at {}{}",
        demo.things,
        running.url(),
        browsable(exporter.addr, exporter.tls),
        config.telemetry_path
    );
    let code = run_until_stopped(exporter).await;
    drop(running);
    code
}

async fn run_simulator(args: SimulateArgs) -> ExitCode {
    init_logging(&LogConfig {
        filter: args.log_level.clone(),
        format: LogFormat::Text,
    });
    monogoto_exporter::web::raise_open_file_limit();
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let simulator = Simulator::new(SimulatorConfig {
        things: args.things,
        seed: args.seed,
        page_cap: args.page_cap,
        flap_period: args.flap_period,
        token_lifetime: args.token_lifetime,
        rate_limit: args
            .rate_limit
            .windows()
            .iter()
            .map(|w| (w.requests, w.period))
            .collect(),
        thing_ids_format: args.thing_ids_format,
        lowercase_iccids: args.lowercase_iccids,
        webhook_url: args.webhook_url.clone(),
        ..SimulatorConfig::default()
    });
    for rule in &args.faults {
        simulator.add_fault(rule.clone());
    }
    let (username, password) = simulator.credentials();
    let addr = listener
        .local_addr()
        .map(|addr| browsable(addr, false))
        .unwrap_or_else(|_| args.listen.clone());
    println!(
        "simulated Monogoto API with {} Things at {addr}; log in as {username:?}/{password:?} or use the token {:?}",
        args.things,
        simulator.static_token()
    );
    for rule in &args.faults {
        println!("injecting fault: {rule}");
    }
    if let Some(url) = &args.webhook_url {
        // Without the query: it may hold the receiver's secret.
        let shown = url.split_once('?').map_or(url.as_str(), |(base, _)| base);
        println!("posting Data CDRs to {shown} when sessions end");
    }
    match simulator.serve(listener, app::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simulator failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The demo's own webhook URL (plain HTTP on loopback, at the configured
/// port) and a fresh token; none when TLS is on or the port is chosen at bind.
fn demo_webhook_url(config: &Config) -> Option<(String, String)> {
    if config.web_config_file.is_some() {
        return None;
    }
    let port: u16 = config.listen_address.rsplit(':').next()?.parse().ok()?;
    if port == 0 {
        return None;
    }
    let token: String = (0..32)
        .map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap_or('0'))
        .collect();
    Some((
        format!("http://127.0.0.1:{port}/webhook?token={token}"),
        token,
    ))
}

/// A URL a person on this machine can open, even when listening on all interfaces.
fn browsable(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    if addr.ip().is_unspecified() {
        format!("{scheme}://127.0.0.1:{}", addr.port())
    } else {
        format!("{scheme}://{addr}")
    }
}

fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let Err(e) = result {
        eprintln!("cannot set up logging: {e}");
    }
}
