//! `syncoord mock-upstream`: the flags of the mock upstream, what they
//! mean as [`MockOptions`], and running it until a signal.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use syncoord_mock::{BucketSpec, Faults, MockOptions, MockRates, MockUpstream, Verifier};
use syncoord_server::Limits;

/// Why `mock-upstream` could not run.
#[derive(Debug, thiserror::Error)]
pub enum MockUpstreamError {
    #[error("invalid --{option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },
    /// The `--verify-keys` file, every problem as `file:line:column: ...`.
    #[error("invalid --verify-keys file:\n{0}")]
    VerifyKeys(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("cannot install the SIGINT/SIGTERM handler: {0}")]
    Signals(io::Error),
}

/// `syncoord mock-upstream`: a Coinbase-like upstream for local testing.
#[derive(Debug, Clone, clap::Args)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: String,
    /// Strict mode: verify every credential against the keys this TOML
    /// file lists (`[[cdp]]` keys, `[[exchange]]` secrets, `accept_hosts`)
    /// and answer 401 as Coinbase does for a bad signature, an expired
    /// JWT, a `uri` naming another host or path, or a stale Exchange
    /// timestamp. The format is in docs/mock.md.
    #[arg(long, value_name = "FILE")]
    pub verify_keys: Option<PathBuf>,
    /// Latency added to every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Exchange public limit per client IP (requests per second).
    #[arg(long, default_value_t = 10.0)]
    pub exchange_public_rate: f64,
    #[arg(long, default_value_t = 15.0)]
    pub exchange_public_burst: f64,
    /// Exchange private limit per credential (requests per second).
    #[arg(long, default_value_t = 15.0)]
    pub exchange_private_rate: f64,
    #[arg(long, default_value_t = 30.0)]
    pub exchange_private_burst: f64,
    /// Exchange /fills limit per credential (requests per second).
    #[arg(long, default_value_t = 10.0)]
    pub exchange_fills_rate: f64,
    #[arg(long, default_value_t = 20.0)]
    pub exchange_fills_burst: f64,
    /// Advanced Trade public limit per client IP (requests per second).
    #[arg(long, default_value_t = 10.0)]
    pub advanced_public_rate: f64,
    #[arg(long, default_value_t = 10.0)]
    pub advanced_public_burst: f64,
    /// Advanced Trade private limit per credential (requests per second).
    #[arg(long, default_value_t = 30.0)]
    pub advanced_private_rate: f64,
    #[arg(long, default_value_t = 30.0)]
    pub advanced_private_burst: f64,
    /// Send `Retry-After: <seconds>` with rate-limit 429s.
    #[arg(long)]
    pub retry_after_secs: Option<u64>,
    /// State each bucket on every answer it counts: `x-ratelimit`
    /// (`x-ratelimit-limit/remaining/reset`) or `ratelimit` (the IETF
    /// `RateLimit-Policy`/`RateLimit` fields, draft 12).
    #[arg(long, value_enum, default_value_t = RateLimitHeaders::None)]
    pub rate_limit_headers: RateLimitHeaders,
    /// Ban (418 to everything for --ban-secs) after this many 429s within
    /// --ban-within-secs, as Binance does.
    #[arg(long)]
    pub ban_after: Option<u32>,
    #[arg(long, default_value_t = 60)]
    pub ban_within_secs: u64,
    #[arg(long, default_value_t = 600)]
    pub ban_secs: u64,

    /// Status of injected failures.
    #[arg(long)]
    pub fault_status: Option<u16>,
    /// Fraction (0 to 1) of requests answered with --fault-status.
    #[arg(long, default_value_t = 0.0)]
    pub fault_fraction: f64,
    /// The first N requests are answered with --fault-status.
    #[arg(long, default_value_t = 0)]
    pub fault_next: u32,
    /// Fraction (0 to 1) of requests whose connection is dropped unanswered.
    #[arg(long, default_value_t = 0.0)]
    pub drop_fraction: f64,
    /// The first N requests have their connection dropped unanswered.
    #[arg(long, default_value_t = 0)]
    pub drop_next: u32,
    /// Answer 429 to everything for this many milliseconds after start.
    #[arg(long, default_value_t = 0)]
    pub storm_ms: u64,

    /// Most simultaneous connections.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Enforce no rate limits at all (for load benchmarks of a proxy in
    /// front of the mock); overrides every rate and burst flag.
    #[arg(long)]
    pub unlimited: bool,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest request header section, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Keep-alive idle timeout, in seconds.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Time a request's header section, then its body, has to arrive, and
    /// a client has to take its answer, in seconds.
    #[arg(long, default_value_t = 30)]
    pub read_timeout_secs: u64,
}

impl MockArgs {
    /// The options these flags describe, validated.
    pub fn options(&self) -> Result<MockOptions, MockUpstreamError> {
        let bucket = |option: &'static str, rate: f64, burst: f64| {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(MockUpstreamError::InvalidOption {
                    option,
                    reason: format!("rate must be a positive number, got {rate}"),
                });
            }
            if !(burst.is_finite() && burst >= 1.0) {
                return Err(MockUpstreamError::InvalidOption {
                    option,
                    reason: format!("burst must be at least 1, got {burst}"),
                });
            }
            Ok(BucketSpec::new(rate, burst))
        };
        for (option, value) in [
            ("fault-fraction", self.fault_fraction),
            ("drop-fraction", self.drop_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(MockUpstreamError::InvalidOption {
                    option,
                    reason: format!("must be between 0 and 1, got {value}"),
                });
            }
        }
        if self.max_connections == 0 {
            return Err(MockUpstreamError::InvalidOption {
                option: "max-connections",
                reason: "must be at least 1".to_owned(),
            });
        }
        let verify = match &self.verify_keys {
            Some(file) => Some(Arc::new(Verifier::from_toml_file(file).map_err(|e| {
                MockUpstreamError::VerifyKeys(
                    e.display_with(&file.display().to_string()).to_string(),
                )
            })?)),
            None => None,
        };
        let rates = if self.unlimited {
            MockRates::uniform(BucketSpec::new(1e9, 1e9))
        } else {
            MockRates {
                exchange_public: bucket(
                    "exchange-public-rate",
                    self.exchange_public_rate,
                    self.exchange_public_burst,
                )?,
                exchange_private: bucket(
                    "exchange-private-rate",
                    self.exchange_private_rate,
                    self.exchange_private_burst,
                )?,
                exchange_fills: bucket(
                    "exchange-fills-rate",
                    self.exchange_fills_rate,
                    self.exchange_fills_burst,
                )?,
                advanced_public: bucket(
                    "advanced-public-rate",
                    self.advanced_public_rate,
                    self.advanced_public_burst,
                )?,
                advanced_private: bucket(
                    "advanced-private-rate",
                    self.advanced_private_rate,
                    self.advanced_private_burst,
                )?,
            }
        };
        Ok(MockOptions {
            listen: self.listen.clone(),
            limits: Limits {
                max_header_bytes: self.max_header_bytes,
                max_headers: Limits::default().max_headers,
                max_body_bytes: self.max_body_bytes,
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                header_timeout: Duration::from_secs(self.read_timeout_secs),
                body_timeout: Duration::from_secs(self.read_timeout_secs),
                write_timeout: Duration::from_secs(self.read_timeout_secs),
                max_connections: self.max_connections,
                ..Limits::default()
            },
            latency: Duration::from_millis(self.latency_ms),
            rates,
            retry_after: self.retry_after_secs,
            headers: match self.rate_limit_headers {
                RateLimitHeaders::None => syncoord_mock::HeaderStyle::None,
                RateLimitHeaders::XRatelimit => syncoord_mock::HeaderStyle::XRateLimit,
                RateLimitHeaders::Ratelimit => syncoord_mock::HeaderStyle::RateLimit,
                RateLimitHeaders::Weight => syncoord_mock::HeaderStyle::Weight,
            },
            ban: self.ban_after.map(|after| syncoord_mock::Ban {
                after,
                within: Duration::from_secs(self.ban_within_secs),
                ban_for: Duration::from_secs(self.ban_secs),
            }),
            faults: Faults {
                status: self.fault_status,
                status_fraction: self.fault_fraction,
                status_next: self.fault_next,
                drop_fraction: self.drop_fraction,
                drop_next: self.drop_next,
                latency_ms: 0,
                storm_ms: self.storm_ms,
            },
            verify,
        })
    }
}

/// Runs a mock until SIGINT or SIGTERM, then shuts it down gracefully.
pub fn run(args: MockArgs) -> Result<(), MockUpstreamError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let options = args.options()?;
    let strict = options.verify.clone();
    // Install the handler before binding, so a signal that arrives while
    // the server starts is not lost.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(MockUpstreamError::Signals)?;
    let mock = MockUpstream::start(options).map_err(|source| MockUpstreamError::Bind {
        addr: args.listen.clone(),
        source,
    })?;
    tracing::info!(url = %mock.base_url(), "mock upstream listening");
    println!("mock upstream listening on {}", mock.base_url());
    if let Some(verifier) = &strict {
        println!(
            "strict mode: verifying signatures of {} CDP and {} Exchange keys",
            verifier.cdp_keys(),
            verifier.exchange_keys()
        );
    }
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "shutting down the mock upstream");
    }
    mock.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use syncoord_server::test_client::Client;

    use super::*;

    /// The status of one GET on a fresh connection.
    fn status_of(mock: &MockUpstream, path: &str) -> u16 {
        let mut client = Client::connect(mock.addr());
        client.send(format!("GET {path} HTTP/1.1\r\nHost: m\r\n\r\n").as_bytes());
        client.read_response().expect("an answer").status
    }

    #[test]
    fn args_become_options_and_shutdown_refuses_connections() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: MockArgs,
        }
        let cli = Cli::try_parse_from([
            "mock",
            "--listen",
            "127.0.0.1:0",
            "--exchange-public-rate",
            "3",
            "--exchange-public-burst",
            "4",
            "--fault-next",
            "1",
            "--fault-status",
            "500",
        ])
        .unwrap();
        let options = cli.args.options().unwrap();
        assert_eq!(options.rates.exchange_public, BucketSpec::new(3.0, 4.0));
        assert_eq!(options.rates.exchange_private, BucketSpec::new(15.0, 30.0));
        let mock = MockUpstream::start(options).expect("mock starts");
        assert_eq!(status_of(&mock, "/time"), 500);
        assert_eq!(status_of(&mock, "/time"), 200);
        let addr = mock.addr();
        mock.shutdown();
        assert!(TcpStream::connect(addr).is_err());

        let bad = Cli::try_parse_from(["mock", "--drop-fraction", "2"]).unwrap();
        let err = bad.args.options().unwrap_err();
        assert!(err.to_string().contains("drop-fraction"), "{err}");
    }

    #[test]
    fn verify_keys_makes_the_mock_strict_and_a_bad_file_is_located() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: MockArgs,
        }
        let dir = std::env::temp_dir().join(format!("syncoord-cli-verify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ex.secret"), "c2VjcmV0\n").unwrap();
        let keys = dir.join("keys.toml");
        std::fs::write(
            &keys,
            "[[exchange]]\nkey = \"abc\"\nsecret_file = \"ex.secret\"\npassphrase = \"p\"\n",
        )
        .unwrap();
        let parse = |file: &std::path::Path| {
            Cli::try_parse_from([
                "mock".as_ref(),
                "--listen".as_ref(),
                "127.0.0.1:0".as_ref(),
                "--verify-keys".as_ref(),
                file.as_os_str(),
            ])
            .unwrap()
            .args
            .options()
        };
        let options = parse(&keys).unwrap();
        assert_eq!(options.verify.as_ref().map(|v| v.exchange_keys()), Some(1));
        let mock = MockUpstream::start(options).expect("mock starts");
        // An unsigned key is refused as Coinbase refuses it; public routes
        // stay open.
        let mut client = Client::connect(mock.addr());
        client.send(b"GET /accounts HTTP/1.1\r\nHost: m\r\nCB-ACCESS-KEY: abc\r\n\r\n");
        let seen = client.read_response().expect("an answer");
        assert_eq!(seen.status, 401, "{}", seen.text());
        assert_eq!(status_of(&mock, "/time"), 200);
        assert_eq!(
            mock.stats().signature_failures.get("missing_header"),
            Some(&1)
        );
        mock.shutdown();

        std::fs::write(
            &keys,
            "[[exchange]]\nkey = \"abc\"\nsecret_file = \"nope\"\npassphrase = \"p\"\n",
        )
        .unwrap();
        let err = parse(&keys).unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            err.contains(&format!(
                "{}:3:15: exchange[0].secret_file: cannot read ",
                keys.display()
            )),
            "{err}"
        );
    }
}

/// `--rate-limit-headers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RateLimitHeaders {
    /// None (Coinbase).
    None,
    /// `x-ratelimit-limit`, `-remaining`, `-reset`.
    XRatelimit,
    /// `RateLimit-Policy` and `RateLimit` (draft 12).
    Ratelimit,
    /// `X-MBX-USED-WEIGHT-1M`: calls in the current minute (Binance style).
    Weight,
}
