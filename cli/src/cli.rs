//! Subcommands: `serve`, `reload`, `check-config`, `ca`, `token`,
//! `mock-upstream`, `demo`, `simulate`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use syncoord_daemon::{Daemon, HostSecrets};

use crate::config_file::{apply_overrides, load_config};
use crate::{demo, mock_upstream, simulate};
use syncoord_proxy::{Proxy, ProxyConfig};

/// Many bots, one rate-limited API: a coordinating proxy for REST APIs
/// (Coinbase Advanced Trade and Exchange by default).
#[derive(Debug, Parser)]
#[command(name = "syncoord", version)]
pub struct Cli {
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a
    /// tracing-subscriber directive); `RUST_LOG` is read when unset.
    #[arg(long, global = true, env = "SYNCOORD_LOG")]
    log: Option<String>,
    /// Log line format: `text` (for people) or `json` (one object per
    /// line, for log shippers). Wins over `[server] log_format`; `text`
    /// when neither is set.
    #[arg(long, global = true, env = "SYNCOORD_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// `2026-01-01T00:00:00Z  INFO target: message key=value`.
    Text,
    /// One JSON object per line: timestamp, level, fields, target.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the coordinating proxy daemon.
    Serve(ServeArgs),
    /// Make a running daemon re-read its configuration (SIGHUP): what can
    /// change live does at once, state is kept, a bad file is refused
    /// (logged by the daemon, which keeps running as it was).
    Reload(ReloadArgs),
    /// The configuration in effect.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Validate a configuration file; print every problem with its line.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Print where the local CA's certificate is (creating the CA if it is
    /// missing) and how to make clients trust it, for HTTPS_PROXY.
    Ca {
        /// The CA folder (overrides `server.ca_dir`).
        #[arg(long, env = "SYNCOORD_CA_DIR")]
        ca_dir: Option<PathBuf>,
        /// A configuration file to read `server.ca_dir` from.
        #[arg(long, short, env = "SYNCOORD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Make a client token for signing mode: prints, on stdout, the token
    /// (line 1: give it to the bot) and, from line 3, the `[[clients]]`
    /// entry holding only its SHA-256 (for the config).
    Token {
        /// The client's name in the printed entry.
        #[arg(long, default_value = "bot")]
        name: String,
        /// The credentials the printed entry lists.
        #[arg(long = "credential", value_name = "NAME")]
        credentials: Vec<String>,
    },
    /// Run a local Coinbase-like upstream for testing bots and the daemon.
    MockUpstream(mock_upstream::MockArgs),
    /// Mock upstream + daemon + simulated bots in one process; prints a
    /// report and exits 0 only if no bot saw a rate-limit error.
    Demo(demo::DemoArgs),
    /// Run a configuration against a workload in virtual time (hours in
    /// seconds) with an upstream enforcing its limits; prints a report and
    /// exits 0 only if upstream never answered 429 past its limits.
    Simulate(simulate::SimulateArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML configuration file; without one the Coinbase defaults apply.
    #[arg(long, short, env = "SYNCOORD_CONFIG")]
    config: Option<PathBuf>,
    /// Address of the main listener (overrides `server.listen`).
    #[arg(long, env = "SYNCOORD_LISTEN")]
    listen: Option<String>,
    /// Send both Coinbase presets to this base URL, e.g. a local mock at
    /// http://127.0.0.1:9000: Advanced Trade unprefixed, Exchange under
    /// `/exchange`, each still answering for its real host (`origins`), so
    /// bots signing for api.coinbase.com reach the mock through
    /// HTTPS_PROXY or proxyUrl. Replaces the configured upstreams; what it
    /// replaced is printed.
    #[arg(long, env = "SYNCOORD_UPSTREAM")]
    upstream: Option<String>,
    /// Override one configuration value, e.g. `--set server.drain_secs=30`
    /// or `--set upstreams.exchange.url=http://127.0.0.1:9001` (repeatable;
    /// `SYNCOORD_SET` takes several separated by `;`). Applied last.
    #[arg(
        long = "set",
        value_name = "KEY=VALUE",
        env = "SYNCOORD_SET",
        value_delimiter = ';'
    )]
    overrides: Vec<String>,
    /// Write the daemon's process id here (for `syncoord reload`); removed
    /// on exit.
    #[arg(long, env = "SYNCOORD_PID_FILE")]
    pid_file: Option<PathBuf>,
    /// Access log, one line per request: `-` for stderr, or a file
    /// (reopened on SIGUSR1, for logrotate). Off when unset. Its lines are
    /// JSON with `--log-format json`.
    #[arg(long, value_name = "PATH|-", env = "SYNCOORD_ACCESS_LOG")]
    access_log: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration as TOML, each value marked with
    /// where it came from (FILE:LINE, `--set`, `preset <name>`, `default`);
    /// the output, read back as a file, is the same configuration.
    Show {
        /// The configuration file; without one, the Coinbase defaults.
        #[arg(long, short, env = "SYNCOORD_CONFIG")]
        config: Option<PathBuf>,
        /// Only what differs from the presets and defaults.
        #[arg(long)]
        diff: bool,
        /// Override one value, as `serve --set` (repeatable).
        #[arg(
            long = "set",
            value_name = "KEY=VALUE",
            env = "SYNCOORD_SET",
            value_delimiter = ';'
        )]
        overrides: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct ReloadArgs {
    /// The pid file `serve --pid-file` wrote.
    #[arg(long, env = "SYNCOORD_PID_FILE", conflicts_with = "pid")]
    pid_file: Option<PathBuf>,
    /// The daemon's process id.
    #[arg(long)]
    pid: Option<i32>,
    /// Check this file first (as `check-config`, every problem printed
    /// here) and signal only if it is valid.
    #[arg(long, short, env = "SYNCOORD_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // The demo prints its own progress; the daemon's info lines would
    // drown it.
    let quiet = matches!(cli.command, Command::Demo(_) | Command::Simulate(_)).then_some("warn");
    let format = cli.log_format.unwrap_or_else(|| match &cli.command {
        Command::Serve(args) => file_log_format(args),
        _ => LogFormat::Text,
    });
    init_logging(cli.log.as_deref().or(quiet), format);
    match cli.command {
        Command::Serve(args) => serve(args, format == LogFormat::Json),
        Command::Reload(args) => reload(args),
        Command::Config(ConfigCommand::Show {
            config,
            diff,
            overrides,
        }) => config_show(config.as_deref(), diff, &overrides),
        Command::CheckConfig { file } => check_config(&file),
        Command::Ca { ca_dir, config } => ca(ca_dir, config.as_deref()),
        Command::Token { name, credentials } => token(&name, &credentials),
        Command::MockUpstream(args) => {
            mock_upstream::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => Ok(if demo::run(args)?.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Command::Simulate(args) => Ok(if simulate::run(args)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
    }
}

/// `[server] log_format` of `serve`'s file, read before logging starts
/// (`text` when unset, or when the file cannot be read: `serve` then
/// reports why, in text).
fn file_log_format(args: &ServeArgs) -> LogFormat {
    let file = args
        .config
        .as_deref()
        .and_then(|p| load_config(p).ok())
        .and_then(|c| c.server.log_format);
    match file {
        Some(syncoord_proxy::LogFormat::Json) => LogFormat::Json,
        Some(syncoord_proxy::LogFormat::Text) | None => LogFormat::Text,
    }
}

/// `--log` (or `quiet`) wins, then `RUST_LOG`, then `info`. Colours only
/// on a terminal, and never with `NO_COLOR` set (no-color.org): escape
/// codes in a redirected log file or the journal are noise.
fn init_logging(filter: Option<&str>, format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Every line redacted, raw wire dumps dropped (see log_redact).
        .with_writer(crate::log_redact::Redacting(std::io::stderr));
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// The configuration `serve` runs: the file, then `--upstream`,
/// `--listen` and `--set`. Read again, the same way, on each reload.
fn serve_config(args: &ServeArgs, loud: bool) -> anyhow::Result<ProxyConfig> {
    let mut config = match &args.config {
        Some(path) => load_config(path)?,
        None => ProxyConfig::default(),
    };
    if let Some(url) = &args.upstream {
        let server = config.server.clone();
        // The cluster is kept: `--upstream` replaces where calls go, not
        // whom the budget is shared with (dropping it silently made a
        // daemon pace a shared budget alone). Its keys follow the new URL.
        let cluster = config.cluster.take();
        let before = config.describe_upstreams();
        config = ProxyConfig::presets_at(url);
        config.server = server;
        config.cluster = cluster;
        // Loud on purpose: a preset silently dropped shows up later as a
        // confusing upstream 401.
        if loud {
            eprintln!("syncoord: --upstream {url} replaces the configured upstreams:");
            for line in before {
                eprintln!("  was: {line}");
            }
            for line in config.describe_upstreams() {
                eprintln!("  now: {line}");
            }
        }
    }
    if let Some(listen) = &args.listen {
        config.server.listen = listen.clone();
    }
    apply_overrides(&mut config, &args.overrides)?;
    Ok(config)
}

fn serve(args: ServeArgs, json: bool) -> anyhow::Result<ExitCode> {
    let config = serve_config(&args, true)?;
    // Register for signals before binding, so a signal during start-up is
    // not lost.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])?;
    let daemon = Daemon::start_with_secrets(config, &secrets_for(args.config.as_deref()))?;
    let access = daemon.access_log();
    match args.access_log.as_deref() {
        None => {}
        Some(p) if p.as_os_str() == "-" => access.to_stderr(json),
        Some(p) => access
            .to_file(p, json)
            .map_err(|e| anyhow::anyhow!("--access-log {}: cannot open it: {e}", p.display()))?,
    }
    tracing::info!(listen = %daemon.local_addr(), "syncoord ready");
    syncoord_daemon::notify::ready(&format!("serving on {}", daemon.local_addr()));
    let pid_file = PidFile::write(args.pid_file.as_deref())?;
    for signal in signals.forever() {
        if signal == SIGUSR1 {
            // logrotate moved the file: write to a new one at the path.
            match access.reopen() {
                Ok(()) => tracing::info!("SIGUSR1: access log reopened"),
                Err(error) => tracing::error!(%error, "SIGUSR1: cannot reopen the access log"),
            }
            continue;
        }
        if signal == SIGHUP {
            // What `systemctl reload` (ExecReload) and `syncoord reload`
            // send: never fatal.
            syncoord_daemon::notify::reloading();
            reload_from_files(&daemon, &args);
            syncoord_daemon::notify::reloaded(&format!("serving on {}", daemon.local_addr()));
            continue;
        }
        tracing::info!(signal, "stopping: draining queued requests");
        break;
    }
    syncoord_daemon::notify::stopping();
    // A second signal stops without waiting for upstream: calls still in
    // flight are answered `outcome_unknown` (never a retry hint).
    let stopper = daemon.stopper();
    let forced = std::thread::Builder::new()
        .name("signal-force".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().find(|&s| s != SIGHUP && s != SIGUSR1) {
                tracing::warn!(
                    signal,
                    "second signal: stopping now; calls in flight are answered outcome_unknown"
                );
                stopper.force();
            }
        });
    if let Err(e) = forced {
        tracing::warn!(error = %e, "cannot watch for a second signal");
    }
    daemon.shutdown();
    drop(pid_file);
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP: the file (and flags) read again and applied; a bad file is
/// logged with every problem located and changes nothing.
fn reload_from_files(daemon: &Daemon, args: &ServeArgs) {
    tracing::info!("SIGHUP: reloading the configuration");
    let config = match serve_config(args, false) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!("reload refused, the running configuration is kept:\n{error:#}");
            return;
        }
    };
    let shown = args
        .config
        .as_deref()
        .map_or_else(|| "config".to_owned(), |p| p.display().to_string());
    match daemon.reload(config, &secrets_for(args.config.as_deref())) {
        Ok(_) => {}
        Err(syncoord_daemon::ReloadError::Config(errors)) => tracing::error!(
            "reload refused, the running configuration is kept:\n{}",
            errors.display_with(&shown)
        ),
        Err(error) => {
            tracing::error!("reload refused, the running configuration is kept: {error}")
        }
    }
}

/// `serve --pid-file`: written at start, removed on exit.
struct PidFile(Option<PathBuf>);

impl PidFile {
    fn write(path: Option<&Path>) -> anyhow::Result<PidFile> {
        if let Some(path) = path {
            std::fs::write(path, format!("{}\n", std::process::id()))
                .map_err(|e| anyhow::anyhow!("--pid-file {}: {e}", path.display()))?;
        }
        Ok(PidFile(path.map(Path::to_path_buf)))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `syncoord config show`.
fn config_show(path: Option<&Path>, diff: bool, overrides: &[String]) -> anyhow::Result<ExitCode> {
    let (mut config, from) = match path {
        None => (
            ProxyConfig::default(),
            syncoord_proxy::Provenance::default(),
        ),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let shown = path.display().to_string();
            let from = syncoord_proxy::Provenance::from_file(&shown, &text)
                .map_err(|errors| anyhow::anyhow!("{}", errors.display_with(&shown)))?;
            (load_config(path)?, from)
        }
    };
    apply_overrides(&mut config, overrides)?;
    let keys = overrides
        .iter()
        .filter_map(|o| o.split_once('=').map(|(k, _)| k.trim().to_owned()));
    print!("{}", config.show(&from.with_overrides(keys), diff));
    Ok(ExitCode::SUCCESS)
}

/// `syncoord reload`: checks the file when given, then sends SIGHUP.
fn reload(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    if let Some(file) = &args.config {
        if let Err(error) = load_config(file) {
            eprintln!("{error}");
            eprintln!("syncoord: not reloaded: the daemon keeps its running configuration");
            return Ok(ExitCode::FAILURE);
        }
    }
    let pid = match (args.pid, &args.pid_file) {
        (Some(pid), _) => pid,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--pid-file {}: {e}", path.display()))?
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("--pid-file {}: not a process id: {e}", path.display()))?,
        (None, None) => {
            anyhow::bail!("which daemon? give --pid-file (as given to `serve --pid-file`) or --pid")
        }
    };
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| anyhow::anyhow!("{pid} is not a process id"))?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP)
        .map_err(|e| anyhow::anyhow!("cannot signal process {}: {e}", pid.as_raw_nonzero()))?;
    eprintln!(
        "syncoord: asked process {} to reload; its log says what changed (and what needs a restart)",
        pid.as_raw_nonzero()
    );
    Ok(ExitCode::SUCCESS)
}

fn ca(dir: Option<PathBuf>, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = config.map(load_config).transpose()?;
    let listen = loaded.as_ref().map_or_else(
        || ProxyConfig::default().server.listen,
        |c| c.server.listen.clone(),
    );
    let dir = match (dir, loaded) {
        (Some(dir), _) => dir,
        (None, Some(config)) => config
            .server
            .ca_dir
            .map(PathBuf::from)
            .unwrap_or_else(syncoord_daemon::ca::default_ca_dir),
        (None, None) => syncoord_daemon::ca::default_ca_dir(),
    };
    let ca = syncoord_daemon::ca::LocalCa::open(&dir)?;
    let pem = ca.cert_path();
    println!("{}", pem.display());
    let proxy = format!("http://{listen}");
    eprintln!(
        "\nThe local CA that signs syncoord's certificates for the hosts it intercepts.\n\
         Clients sending through HTTPS_PROXY={proxy} must trust it; what each client family sets:"
    );
    for t in syncoord_daemon::trust::trust_settings(&pem, &proxy) {
        eprintln!("  {}:\n    {}", t.family, t.settings);
    }
    eprintln!(
        "REQUESTS_CA_BUNDLE and SSL_CERT_FILE replace the system roots for that process; syncoord only ever intercepts configured hosts.\n\
         Its key ({}) is readable by its owner only.",
        dir.join("ca.key").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Secrets (signing mode) from this process's env, and files relative to
/// the config file's folder.
fn secrets_for(config: Option<&Path>) -> HostSecrets {
    match config.and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => HostSecrets::relative_to(dir),
        _ => HostSecrets::default(),
    }
}

/// Checks the file, then loads the secrets it names (signing mode), as
/// `serve` would: a key that is missing or unreadable fails here too.
/// Prints what each credential is, never a secret.
fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    let shown = path.display().to_string();
    let config = match load_config(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
    let clients = config.clients.len();
    let proxy = match Proxy::with_secrets(config, &secrets_for(Some(path))) {
        Ok(proxy) => proxy,
        Err(errors) => {
            eprintln!("{}", errors.display_with(&shown));
            return Ok(ExitCode::FAILURE);
        }
    };
    for warning in proxy.warnings() {
        eprintln!("{shown}: warning: {warning}");
    }
    println!(
        "{shown}: OK ({} upstream(s): {})",
        names.len(),
        names.join(", ")
    );
    for signer in proxy.keyring().iter() {
        println!(
            "  credential `{}`: signs for upstream `{}` with {} key `{}`",
            signer.name(),
            signer.upstream(),
            signer.algorithm(),
            signer.key_id()
        );
    }
    if clients > 0 {
        println!("  {clients} client(s) authenticate with tokens");
    }
    Ok(ExitCode::SUCCESS)
}

/// `syncoord token`: 32 random bytes, hex, and the entry for the config.
fn token(name: &str, credentials: &[String]) -> anyhow::Result<ExitCode> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let list = credentials
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    // Both on stdout, so that each can be captured: line 1 is the token
    // (`| head -n 1`), the entry starts at line 3 (`| tail -n +3 >>
    // syncoord.toml`). The explanation goes to stderr.
    println!(
        "{token}\n\n[[clients]]\nname = {name:?}\ntoken_sha256 = \"{}\"\ncredentials = [{list}]",
        syncoord_wire::token_sha256_hex(&token)
    );
    eprintln!(
        "\nLine 1 is the token: give it to the bot (X-Syncoord-Token: TOKEN, or HTTPS_PROXY=http://{name}:TOKEN@host:port).\n\
         The [[clients]] entry below it holds only the token's SHA-256: put it in the config."
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `serve --config FILE --upstream URL` keeps the file's `[cluster]`
    /// (and its server settings); only the upstreams are replaced.
    #[test]
    fn upstream_keeps_the_files_cluster() {
        let dir = std::env::temp_dir().join(format!("syncoord-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("cluster.toml");
        std::fs::write(
            &path,
            "[server]\ndrain_secs = 3.0\n\n[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nname = \"prod\"\n",
        )
        .expect("written");
        let cli = Cli::try_parse_from([
            "syncoord",
            "serve",
            "--config",
            path.to_str().expect("utf-8 path"),
            "--upstream",
            "http://127.0.0.1:9000",
        ])
        .expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let config = serve_config(&args, false).expect("config");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(config.cluster.map(|c| c.name).as_deref(), Some("prod"));
        assert_eq!(config.server.drain_secs, 3.0);
        assert!(config
            .upstreams
            .iter()
            .all(|u| u.url == "http://127.0.0.1:9000"));
    }
}
