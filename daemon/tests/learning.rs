//! The learning limiter end to end: a daemon configured with the presets
//! in front of a mock whose public limit is a fifth of them learns the
//! real one from its 429s, shows it in its stats, saves it while running
//! and at shutdown (`server.state_file`), and a daemon started on that file does not start
//! over.

use std::time::{Duration, Instant};

use syncoord_daemon::Daemon;
use syncoord_mock::{BucketSpec, HeaderStyle, MockOptions, MockRates, MockUpstream};
use syncoord_proxy::ProxyConfig;

mod common;
use common::{agent, get, public_bucket};

fn start(mock: &MockUpstream, state: &std::path::Path) -> (Daemon, String) {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndrain_secs = 1.0\nstate_file = \"{}\"\n\n[[upstreams]]\nname = \"mock\"\nurl = \"{}\"\npreset = \"coinbase-advanced\"\n",
        state.display(),
        mock.base_url()
    );
    let config = ProxyConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let daemon = Daemon::start(config).expect("daemon starts");
    let base = format!("http://{}", daemon.local_addr());
    (daemon, base)
}

/// Distinct public reads (nothing cached) for `for_`, one at a time.
fn drive(base: &str, for_: Duration, from: usize) -> usize {
    let agent = agent();
    let end = Instant::now() + for_;
    let mut n = from;
    while Instant::now() < end {
        let url = format!("{base}/api/v3/brokerage/market/products/BTC-USD/ticker?limit={n}");
        let reply = get(&agent, &url, &[]);
        assert_ne!(reply.status, 429, "a 429 reached the bot");
        n += 1;
    }
    n
}

#[test]
fn a_learned_limit_shows_in_stats_and_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("syncoord-learning-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let state = dir.join("learned.json");
    let _ = std::fs::remove_file(&state);
    let rates = MockRates {
        advanced_public: BucketSpec::new(2.0, 2.0),
        ..MockRates::default()
    };
    let mock = MockUpstream::start(MockOptions {
        rates,
        ..MockOptions::default()
    })
    .expect("mock starts");

    let (daemon, base) = start(&mock, &state);
    let n = drive(&base, Duration::from_secs(4), 0);
    let learned = mock.stats().rate_limited;
    assert!(learned > 0, "the presets' 9/s met the mock's 2/s");
    let bucket = public_bucket(&base);
    let rate = bucket["learned_per_sec"]
        .as_f64()
        .unwrap_or_else(|| panic!("{bucket}"));
    assert!(rate < 9.0, "learned {rate}/s under the configured 9/s");
    assert_eq!(bucket["learned_from"], "rate-limited");
    // Saved while running (every 5 s when the rates changed), not only at
    // shutdown: a daemon that is killed keeps what it learned.
    let deadline = Instant::now() + Duration::from_secs(8);
    let saved = loop {
        match std::fs::read_to_string(&state) {
            Ok(text) => break text,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("no state file 8 s after learning, before shutdown: {e}"),
        }
    };
    assert!(saved.contains("\"rate-limited\""), "{saved}");
    daemon.shutdown();
    let saved = std::fs::read_to_string(&state).expect("state file written at shutdown");
    assert!(saved.contains("\"mock\""), "{saved}");

    // Restarted on the same file: the learned rate is there before any
    // call, and driving the same load costs no new 429.
    std::thread::sleep(Duration::from_secs(1));
    let (daemon, base) = start(&mock, &state);
    let bucket = public_bucket(&base);
    let restored = bucket["learned_per_sec"]
        .as_f64()
        .unwrap_or_else(|| panic!("{bucket}"));
    assert!(
        (restored - rate).abs() < 0.05 * rate,
        "{restored} vs {rate}"
    );
    let before = mock.stats().rate_limited;
    drive(&base, Duration::from_secs(3), n);
    let extra = mock.stats().rate_limited - before;
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(extra, 0, "429s after the restart (before it: {learned})");
}

#[test]
fn stated_limits_in_each_header_style_are_learned_without_a_429() {
    for style in [HeaderStyle::RateLimit, HeaderStyle::XRateLimit] {
        let rates = MockRates {
            advanced_public: BucketSpec::new(2.0, 2.0),
            ..MockRates::default()
        };
        let mock = MockUpstream::start(MockOptions {
            rates,
            headers: style,
            ..MockOptions::default()
        })
        .expect("mock starts");
        // `x-ratelimit-limit` says no window: the configuration does.
        let (daemon, base) = common::daemon(
            &mock,
            "[upstreams.coordination.limiter.signals]\nlimit_window_secs = 1.0\n",
        );
        drive(&base, Duration::from_secs(2), 0);
        let bucket = public_bucket(&base);
        daemon.shutdown();
        assert_eq!(bucket["learned_from"], "stated", "{style:?}: {bucket}");
        let rate = bucket["learned_per_sec"].as_f64().unwrap_or(0.0);
        // The mock's 2/s at the scope's headroom (0.9).
        assert!((rate - 1.8).abs() < 0.01, "{style:?}: {rate}");
        assert_eq!(mock.stats().rate_limited, 0, "{style:?}");
    }
}

/// `RateLimit-Policy` and `RateLimit` on an answer, as `sfv` parses them:
/// (policy name, parameters) per member.
fn ratelimit_fields(url: &str) -> Option<(sfv::List, sfv::List)> {
    let response = agent().get(url).call().expect("an answer");
    let field = |name: &str| {
        let value = response.headers().get(name)?.to_str().ok()?;
        Some(
            sfv::Parser::new(value)
                .parse_list::<sfv::List>()
                .unwrap_or_else(|e| panic!("{name}: {value}: {e}")),
        )
    };
    Some((field("ratelimit-policy")?, field("ratelimit")?))
}

fn param<'a>(entry: &'a sfv::ListEntry, key: &str) -> &'a sfv::BareItem {
    let sfv::ListEntry::Item(item) = entry else {
        panic!("an inner list")
    };
    item.params
        .iter()
        .find(|(k, _)| k.as_str() == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no `{key}` in {item:?}"))
}

#[test]
fn answers_tell_the_bot_its_budget_in_ratelimit_fields() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let (daemon, base) = common::daemon(&mock, "");
    let url = format!("{base}/api/v3/brokerage/market/products/BTC-USD/ticker");
    let first = ratelimit_fields(&url);
    // The second is a cache hit: it says where the bucket stands too.
    let second = ratelimit_fields(&url);
    daemon.shutdown();
    for (policy, limit) in [first, second].into_iter().map(|f| f.expect("both fields")) {
        assert_eq!(policy.len(), 1, "{policy:?}");
        let sfv::ListEntry::Item(item) = &policy[0] else {
            panic!("an inner list")
        };
        assert_eq!(
            item.bare_item.as_string().map(|s| s.as_str()),
            Some("public")
        );
        // The preset's public 10/s at 90%: 9 per second.
        assert_eq!(param(&policy[0], "q").as_integer(), Some(sfv::integer(9)));
        assert_eq!(param(&policy[0], "w").as_integer(), Some(sfv::integer(1)));
        assert_eq!(
            param(&policy[0], "syncoord-per")
                .as_token()
                .map(|t| t.as_str()),
            Some("global")
        );
        let r = param(&limit[0], "r").as_integer().expect("r");
        assert!((sfv::integer(0)..=sfv::integer(9)).contains(&r), "{r}");
        assert!(param(&limit[0], "t").as_integer().is_some());
    }

    // Turned off for an API whose clients misread them: absent.
    let (daemon, base) = common::daemon(
        &mock,
        "[upstreams.coordination.limiter.signals]\nsend_ratelimit_fields = false\n",
    );
    let off = ratelimit_fields(&format!(
        "{base}/api/v3/brokerage/market/products/BTC-USD/ticker"
    ));
    daemon.shutdown();
    assert!(off.is_none(), "{off:?}");
}

#[test]
fn weight_headers_show_in_the_buckets_level() {
    // Binance style: upstream counts each key's calls in the minute and
    // says so; the preset's public 10/s is 600 a minute. Another client
    // of the same IP (not behind syncoord) spends them all first.
    let rates = MockRates {
        advanced_public: BucketSpec::new(1000.0, 1000.0),
        ..MockRates::default()
    };
    let mock = MockUpstream::start(MockOptions {
        rates,
        headers: HeaderStyle::Weight,
        ..MockOptions::default()
    })
    .expect("mock starts");
    let (daemon, base) = common::daemon(
        &mock,
        "[upstreams.coordination.limiter.signals]\nweight = \"x-mbx-used-weight-1m\"\nweight_window_secs = 60\n",
    );
    let outside = agent();
    for n in 0..600 {
        let url = format!(
            "{}/api/v3/brokerage/market/products/BTC-USD/ticker?outside={n}",
            mock.base_url()
        );
        assert_eq!(get(&outside, &url, &[]).status, 200);
    }
    // One call through syncoord: upstream says 601 of 600 are used.
    let url = format!("{base}/api/v3/brokerage/market/products/BTC-USD/ticker");
    assert_eq!(get(&agent(), &url, &[]).status, 200);
    let bucket = public_bucket(&base);
    daemon.shutdown();
    let tokens = bucket["tokens"]
        .as_f64()
        .unwrap_or_else(|| panic!("{bucket}"));
    // Without the header it would hold 8 of its 9 (the burst at 90%).
    assert!(
        tokens < 1.0,
        "the weight header emptied the bucket: {bucket}"
    );
    assert_eq!(mock.stats().rate_limited, 0);
}
