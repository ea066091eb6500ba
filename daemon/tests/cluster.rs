//! Daemons in a cluster (`[cluster]`), against a real Redis: Debian's
//! `redis-server` (scripts/install-redis.sh), started here on an ephemeral
//! loopback port with persistence off, one per test.
//!
//! - three daemons in front of one mock with Coinbase's limits, order
//!   placing bots split across them: together they stay under the budget
//!   (0 upstream 429s; alone, the same three daemons get 429s);
//! - a ticker one daemon fetched is answered to another from Redis; a
//!   private answer only to the same credential;
//! - daemons under one name in front of different upstreams share no
//!   answer, and each reports the other; a peer with other limits for the
//!   same upstream is reported;
//! - Redis killed mid-run: no bot sees an error, 429s stay bounded, health
//!   is degraded naming the store; Redis back: sharing resumes;
//! - the GCRA script's arithmetic is the core's (`syncoord_core::gcra`),
//!   property-tested through the real script.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use syncoord::Cluster;
use syncoord_core::{gcra, Gcra, SharedBucket, SharedRefusal, SharedSpend};
use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_wire::ClusterSettings;

mod common;
use common::{agent, get, public_bucket};

const REDIS: &str = "/usr/bin/redis-server";

/// A redis-server of our own, killed when dropped.
struct Redis {
    child: Option<Child>,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Redis {
    fn start() -> Redis {
        Self::start_on(free_port())
    }

    /// On `port`, no persistence, no protected mode games: loopback only.
    fn start_on(port: u16) -> Redis {
        assert!(
            std::path::Path::new(REDIS).exists(),
            "{REDIS} is missing: run scripts/install-redis.sh (CI's setup step does)"
        );
        let child = Command::new(REDIS)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                // DEBUG SLEEP makes a slow Redis (from loopback only).
                "--enable-debug-command",
                "local",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = Redis {
            child: Some(child),
            port,
        };
        let until = Instant::now() + Duration::from_secs(10);
        while !redis.pings() {
            assert!(Instant::now() < until, "redis-server did not answer PING");
            std::thread::sleep(Duration::from_millis(10));
        }
        redis
    }

    fn pings(&self) -> bool {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Blocks the server for `secs` (a slow Redis), from another thread.
    fn stall(&self, secs: f64) -> std::thread::JoinHandle<()> {
        let port = self.port;
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("redis");
            s.write_all(format!("DEBUG SLEEP {secs}\r\n").as_bytes())
                .expect("sent");
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).expect("+OK after the sleep");
        })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A daemon in front of `mock`, in cluster `name` on `redis` (none: alone).
fn daemon(mock: &MockUpstream, redis: Option<&str>, name: &str) -> (Daemon, String) {
    let cluster = redis.map_or(String::new(), |url| {
        format!("\n[cluster]\nredis_url = \"{url}\"\nname = \"{name}\"\nheartbeat_secs = 0.2\n")
    });
    common::daemon(mock, &cluster)
}

fn orders_placed(mock: &MockUpstream) -> u64 {
    mock.stats()
        .by_route
        .get("POST /api/v3/brokerage/orders")
        .copied()
        .unwrap_or(0)
}

#[derive(Default)]
struct Bots {
    ok: AtomicU64,
    errors: AtomicU64,
}

/// `bots` order-placing bots, one credential, split round-robin across
/// `bases`, for `run`; `during` runs meanwhile on this thread.
fn place_orders(bases: &[String], bots: usize, run: Duration, during: impl FnOnce()) -> Bots {
    let counts = Bots::default();
    let until = Instant::now() + run;
    std::thread::scope(|s| {
        for bot in 0..bots {
            let (base, counts) = (&bases[bot % bases.len()], &counts);
            s.spawn(move || {
                let agent = agent();
                let client = format!("bot-{bot}");
                let mut n = 0;
                while Instant::now() < until {
                    n += 1;
                    let body = format!(
                        r#"{{"client_order_id":"{client}-{n}","product_id":"BTC-USD","side":"BUY","order_configuration":{{"market_market_ioc":{{"quote_size":"10"}}}}}}"#
                    );
                    let reply = agent
                        .post(&format!("{base}/api/v3/brokerage/orders"))
                        .header("CB-ACCESS-KEY", "cluster-key")
                        .header("X-Syncoord-Client", &client)
                        .header("Content-Type", "application/json")
                        .send(body.as_bytes());
                    match reply {
                        Ok(r) if r.status().as_u16() == 200 => {
                            counts.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(mut r) => {
                            let status = r.status();
                            let text = r.body_mut().read_to_string().unwrap_or_default();
                            eprintln!("bot {bot}: {status} {text}");
                            counts.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("bot {bot}: {e}");
                            counts.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        during();
    });
    counts
}

fn health(base: &str) -> serde_json::Value {
    let reply = get(
        &agent(),
        &format!("{base}/api/v1/sync-coordination/health"),
        &[],
    );
    serde_json::from_str(&reply.body).expect("health is JSON")
}

fn store_unreachable(base: &str) -> bool {
    health(base)["reasons"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["code"] == "shared_store_unreachable"))
}

fn cluster_stats(base: &str) -> serde_json::Value {
    let reply = get(
        &agent(),
        &format!("{base}/api/v1/sync-coordination/stats"),
        &[],
    );
    let stats: serde_json::Value = serde_json::from_str(&reply.body).expect("stats are JSON");
    stats["upstreams"][0]["stats"].clone()
}

/// The private budget of Coinbase Advanced Trade as the preset paces it:
/// 30/s at 90% headroom, burst 27. The mock admits 30/s, burst 30.
const RATE: f64 = 27.0;
const BURST: f64 = 27.0;

#[test]
fn three_daemons_share_one_order_budget_without_a_429() {
    // Alone, three daemons each pace the whole budget: upstream says 429.
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let alone: Vec<_> = (0..3).map(|_| daemon(&mock, None, "")).collect();
    let bases: Vec<String> = alone.iter().map(|(_, b)| b.clone()).collect();
    let _ = place_orders(&bases, 30, Duration::from_secs(3), || {});
    let alone_429s = mock.stats().rate_limited;
    assert!(
        alone_429s > 0,
        "three daemons alone stayed under the budget?"
    );
    for (d, _) in alone {
        d.shutdown();
    }
    mock.shutdown();

    let redis = Redis::start();
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let daemons: Vec<_> = (0..3)
        .map(|_| daemon(&mock, Some(&redis.url()), "orders"))
        .collect();
    let bases: Vec<String> = daemons.iter().map(|(_, b)| b.clone()).collect();
    let run = Duration::from_secs(4);
    let started = Instant::now();
    let bots = place_orders(&bases, 30, run, || {});
    let secs = started.elapsed().as_secs_f64();
    let stats = mock.stats();
    let placed = orders_placed(&mock);
    eprintln!(
        "cluster: {placed} orders upstream in {secs:.1} s, {} upstream 429s; alone: {alone_429s} 429s",
        stats.rate_limited
    );
    assert_eq!(
        stats.rate_limited, 0,
        "upstream 429s in a cluster (alone: {alone_429s})"
    );
    assert_eq!(bots.errors.load(Ordering::Relaxed), 0);
    assert!(bots.ok.load(Ordering::Relaxed) > 0);
    // Never more than the burst plus the rate over the run, all daemons
    // together (the mock counts what reached it).
    let bound = BURST + RATE * secs;
    assert!(
        placed as f64 <= bound + 1.0,
        "{placed} orders reached upstream in {secs:.1} s; the budget allows {bound:.0}"
    );
    let most = stats
        .max_admitted_in_1s
        .iter()
        .filter(|(k, _)| k.starts_with("advanced_private"))
        .map(|(_, v)| *v)
        .max()
        .unwrap_or(0);
    // Counted where the calls arrive: a call sent on time but delayed on
    // its way (two cores, six tests at once) shifts the mock's window by
    // its delay, so one or two more may fall in it than were sent in any
    // one second. Upstream's own limit is the 0 429s above.
    assert!(most as f64 <= BURST + RATE + 2.0, "{most} in one second");
    assert!(
        placed as f64 >= RATE * secs * 0.7,
        "the budget was used: {placed}"
    );
    // The daemons did share: the store refused some of their dispatches.
    let refusals: u64 = bases
        .iter()
        .map(|b| {
            cluster_stats(b)["upstream"]["shared_refusals"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert!(refusals > 0, "no shared refusal: were the daemons sharing?");
    // (A Redis call slower than call_timeout_secs on a loaded machine
    // would only move a daemon to its local share for a moment, so
    // errors are not asserted here; the outage tests cover them.)
    for b in &bases {
        let c = &cluster_stats(b)["cluster"];
        assert_eq!(c["daemons_alive"], 3, "{c}");
        assert!(c["round_trips"].as_u64().unwrap_or(0) > 0, "{c}");
    }
    for (d, _) in daemons {
        d.shutdown();
    }
    mock.shutdown();
}

#[test]
fn a_ticker_one_daemon_fetched_is_answered_to_another_from_redis() {
    let redis = Redis::start();
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let (a, base_a) = daemon(&mock, Some(&redis.url()), "answers");
    let (b, base_b) = daemon(&mock, Some(&redis.url()), "answers");
    let agent = agent();
    let ticker = "/api/v3/brokerage/market/products/BTC-USD/ticker";
    let first = get(&agent, &format!("{base_a}{ticker}"), &[]);
    assert_eq!(first.status, 200);
    let upstream = mock.stats().requests_total;
    assert_eq!(upstream, 1);
    let second = get(&agent, &format!("{base_b}{ticker}"), &[]);
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body);
    assert_eq!(mock.stats().requests_total, upstream, "B called upstream");
    assert_eq!(second.cache.as_deref(), Some("hit"));
    // A private answer is keyed by credential, exactly as locally.
    let accounts = "/api/v3/brokerage/accounts";
    let mine = get(
        &agent,
        &format!("{base_a}{accounts}"),
        &[("CB-ACCESS-KEY", "key-1")],
    );
    assert_eq!(mine.status, 200);
    let calls = mock.stats().requests_total;
    let again = get(
        &agent,
        &format!("{base_b}{accounts}"),
        &[("CB-ACCESS-KEY", "key-1")],
    );
    assert_eq!(again.body, mine.body);
    assert_eq!(
        mock.stats().requests_total,
        calls,
        "same credential: from Redis"
    );
    let other = get(
        &agent,
        &format!("{base_b}{accounts}"),
        &[("CB-ACCESS-KEY", "key-2")],
    );
    assert_eq!(other.status, 200);
    assert_ne!(other.body, mine.body, "another credential's answer leaked");
    assert_eq!(
        mock.stats().requests_total,
        calls + 1,
        "another credential: upstream"
    );
    let c = &cluster_stats(&base_b)["cluster"];
    assert!(c["answers_found"].as_u64().unwrap_or(0) >= 2, "{c}");
    a.shutdown();
    b.shutdown();
    mock.shutdown();
}

/// Polls `base`'s cluster stats until `peers_disagreeing` is `n` (a few
/// heartbeats of 0.2 s), returning the last value seen.
fn disagreeing_peers(base: &str, n: u64) -> u64 {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = cluster_stats(base)["cluster"]["peers_disagreeing"]
            .as_u64()
            .unwrap_or(u64::MAX);
        if seen == n || Instant::now() > until {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn daemons_under_one_name_in_front_of_other_upstreams_share_nothing() {
    // A staging and a production daemon, the same cluster name, the same
    // upstream name (`mock`), two different upstreams.
    let redis = Redis::start();
    let staging = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let prod = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let (a, base_a) = daemon(&staging, Some(&redis.url()), "shared-name");
    let (b, base_b) = daemon(&prod, Some(&redis.url()), "shared-name");
    let agent = agent();
    let ticker = "/api/v3/brokerage/market/products/BTC-USD/ticker";
    let first = get(&agent, &format!("{base_a}{ticker}"), &[]);
    assert_eq!(first.status, 200);
    assert_eq!(staging.stats().requests_total, 1);
    let second = get(&agent, &format!("{base_b}{ticker}"), &[]);
    assert_eq!(second.status, 200);
    assert_eq!(
        prod.stats().requests_total,
        1,
        "production's bot got staging's answer"
    );
    assert_ne!(second.cache.as_deref(), Some("hit"));
    let c = &cluster_stats(&base_b)["cluster"];
    assert_eq!(c["answers_found"], 0, "{c}");
    // Each sees the other as a peer that disagrees (and logs it).
    assert_eq!(disagreeing_peers(&base_a, 1), 1);
    assert_eq!(disagreeing_peers(&base_b, 1), 1);
    a.shutdown();
    // Gone: forgotten within three heartbeats.
    assert_eq!(disagreeing_peers(&base_b, 0), 0);
    b.shutdown();
    staging.shutdown();
    prod.shutdown();
}

#[test]
fn a_peer_with_other_limits_for_the_same_upstream_is_reported() {
    let redis = Redis::start();
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let (a, base_a) = daemon(&mock, Some(&redis.url()), "limits");
    let other = format!(
        "\n[upstreams.coordination.queue]\ntop_class_reserve = 3\n\n[cluster]\nredis_url = \"{}\"\nname = \"limits\"\nheartbeat_secs = 0.2\n",
        redis.url()
    );
    let (b, base_b) = common::daemon(&mock, &other);
    let (c, base_c) = daemon(&mock, Some(&redis.url()), "limits");
    assert_eq!(disagreeing_peers(&base_a, 1), 1, "A sees B");
    assert_eq!(disagreeing_peers(&base_b, 2), 2, "B sees A and C");
    assert_eq!(disagreeing_peers(&base_c, 1), 1, "C sees B");
    // One upstream, one budget: the three still share it.
    assert_eq!(cluster_stats(&base_a)["cluster"]["daemons_alive"], 3);
    a.shutdown();
    b.shutdown();
    c.shutdown();
    mock.shutdown();
}

#[test]
fn concurrent_misses_on_two_daemons_make_one_upstream_call() {
    let redis = Redis::start();
    let mock = MockUpstream::start(MockOptions {
        latency: Duration::from_millis(300),
        ..MockOptions::default()
    })
    .expect("mock starts");
    let (a, base_a) = daemon(&mock, Some(&redis.url()), "lease");
    let (b, base_b) = daemon(&mock, Some(&redis.url()), "lease");
    let ticker = "/api/v3/brokerage/market/products/SOL-USD/ticker";
    let replies: Vec<common::Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let base = if i % 2 == 0 { &base_a } else { &base_b };
                s.spawn(move || {
                    // The second daemon's reads arrive while the first's call is out.
                    std::thread::sleep(Duration::from_millis(if i % 2 == 0 { 0 } else { 100 }));
                    get(&agent(), &format!("{base}{ticker}"), &[])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(mock.stats().requests_total, 1, "both daemons fetched");
    // Whichever daemon asked second waited on the other's lease (or, on a
    // slow machine, found its answer already stored).
    let (mut waits, mut found) = (0, 0);
    for base in [&base_a, &base_b] {
        let c = &cluster_stats(base)["cluster"];
        waits += c["lease_waits"].as_u64().unwrap_or(0);
        found += c["answers_found"].as_u64().unwrap_or(0);
    }
    assert!(
        waits <= 1 && found == 1,
        "lease waits {waits}, answers found {found}"
    );
    a.shutdown();
    b.shutdown();
    mock.shutdown();
}

#[test]
fn redis_killed_mid_run_fails_no_bot_and_sharing_resumes() {
    let mut redis = Redis::start();
    let port = redis.port;
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let daemons: Vec<_> = (0..3)
        .map(|_| daemon(&mock, Some(&redis.url()), "outage"))
        .collect();
    let bases: Vec<String> = daemons.iter().map(|(_, b)| b.clone()).collect();
    // Every daemon has seen the others' heartbeats.
    let until = Instant::now() + Duration::from_secs(5);
    while bases
        .iter()
        .any(|b| cluster_stats(b)["cluster"]["daemons_alive"] != 3)
    {
        assert!(Instant::now() < until, "heartbeats not seen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut degraded = Vec::new();
    let mut recovered = false;
    let bots = place_orders(&bases, 30, Duration::from_secs(7), || {
        std::thread::sleep(Duration::from_millis(1500));
        redis.kill();
        std::thread::sleep(Duration::from_millis(1000));
        degraded = bases.iter().map(|b| store_unreachable(b)).collect();
        std::thread::sleep(Duration::from_millis(1000));
        redis = Redis::start_on(port);
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if bases.iter().all(|b| !store_unreachable(b)) {
                recovered = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert_eq!(bots.errors.load(Ordering::Relaxed), 0, "a bot saw an error");
    assert!(bots.ok.load(Ordering::Relaxed) > 50);
    assert_eq!(degraded, vec![true; 3], "health while Redis was down");
    assert!(recovered, "health still degraded after Redis came back");
    let limited = mock.stats().rate_limited;
    eprintln!(
        "outage: {} orders answered, {} bot errors, {limited} upstream 429s, {} orders upstream",
        bots.ok.load(Ordering::Relaxed),
        bots.errors.load(Ordering::Relaxed),
        orders_placed(&mock)
    );
    assert!(limited <= 10, "{limited} upstream 429s around the outage");
    for b in &bases {
        let c = &cluster_stats(b)["cluster"];
        assert_eq!(c["connected"], true, "{c}");
        assert!(c["fallbacks"].as_u64().unwrap_or(0) >= 1, "{c}");
        assert!(c["errors"].as_u64().unwrap_or(0) >= 1, "{c}");
        assert!(c["fallback_secs"].as_f64().unwrap_or(0.0) >= 0.5, "{c}");
    }
    // Sharing resumed: an answer fetched by one daemon reaches another.
    let agent = agent();
    let ticker = "/api/v3/brokerage/market/products/ETH-USD/ticker";
    assert_eq!(
        get(&agent, &format!("{}{ticker}", bases[0]), &[]).status,
        200
    );
    let calls = mock.stats().requests_total;
    assert_eq!(
        get(&agent, &format!("{}{ticker}", bases[1]), &[]).status,
        200
    );
    assert_eq!(
        mock.stats().requests_total,
        calls,
        "not shared after the restart"
    );
    for (d, _) in daemons {
        d.shutdown();
    }
    mock.shutdown();
}

#[test]
fn a_slow_redis_times_out_into_local_limiting_without_failing_a_bot() {
    let redis = Redis::start();
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let daemons: Vec<_> = (0..2)
        .map(|_| daemon(&mock, Some(&redis.url()), "slow"))
        .collect();
    let bases: Vec<String> = daemons.iter().map(|(_, b)| b.clone()).collect();
    let mut degraded = Vec::new();
    let mut recovered = false;
    let bots = place_orders(&bases, 10, Duration::from_secs(4), || {
        std::thread::sleep(Duration::from_millis(500));
        let stall = redis.stall(1.5);
        std::thread::sleep(Duration::from_millis(700));
        degraded = bases.iter().map(|b| store_unreachable(b)).collect();
        stall.join().expect("stall ended");
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if bases.iter().all(|b| !store_unreachable(b)) {
                recovered = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert_eq!(bots.errors.load(Ordering::Relaxed), 0, "a bot saw an error");
    assert_eq!(degraded, vec![true; 2], "health while Redis was slow");
    assert!(recovered, "still degraded after Redis answered again");
    assert!(
        mock.stats().rate_limited <= 5,
        "{:?}",
        mock.stats().rate_limited
    );
    let timeouts: u64 = bases
        .iter()
        .map(|b| {
            cluster_stats(b)["cluster"]["timeouts"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert!(timeouts >= 1, "no Redis call timed out");
    for (d, _) in daemons {
        d.shutdown();
    }
    mock.shutdown();
}

fn cluster_on(redis: &Redis, name: &str) -> std::sync::Arc<Cluster> {
    let settings = ClusterSettings {
        redis_url: redis.url(),
        name: name.into(),
        call_timeout_secs: 1.0,
        ..ClusterSettings::default()
    };
    let cluster = Cluster::new(settings, 1).expect("cluster");
    assert!(cluster.is_up());
    cluster
}

static CASE: AtomicU64 = AtomicU64::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The Lua script, run by Redis, decides and waits exactly as the
    /// core's GCRA (`syncoord_core::gcra`), one bucket or two, with the
    /// reserve a lower class leaves.
    #[test]
    fn the_redis_script_computes_the_cores_gcra(
        intervals in prop::collection::vec(1u64..200_000, 1..3),
        bursts in prop::collection::vec(1u32..20, 2),
        steps in prop::collection::vec((0u64..300_000, 1u32..4, 0u32..3), 1..40),
    ) {
        thread_local! {
            static REDIS: Redis = Redis::start();
        }
        let case = CASE.fetch_add(1, Ordering::Relaxed);
        let cluster = REDIS.with(|r| cluster_on(r, &format!("prop{case}")));
        let buckets: Vec<SharedBucket> = intervals
            .iter()
            .zip(&bursts)
            .enumerate()
            .map(|(i, (&us, &burst))| SharedBucket {
                scope: format!("s{i}"),
                credential: None,
                interval: Duration::from_micros(us),
                burst,
            })
            .collect();
        let mut tats: Vec<Option<u64>> = vec![None; buckets.len()];
        let mut now = 1_000_000_000_000u64;
        for (dt, cost, reserve) in steps {
            now += dt;
            let model: Vec<Gcra> = buckets
                .iter()
                .zip(&tats)
                .map(|(b, t)| gcra(*t, now, b.interval.as_micros() as u64, b.burst, cost, reserve))
                .collect();
            let wait = model.iter().filter_map(|g| match g {
                Gcra::Wait { wait } => Some(*wait),
                Gcra::Spend { .. } => None,
            }).max();
            let spend = SharedSpend { buckets: buckets.clone(), cost, reserve };
            let script = cluster.spend(&spend, Some(now));
            match wait {
                None => {
                    prop_assert_eq!(script, None, "at {} cost {} reserve {}", now, cost, reserve);
                    for (t, g) in tats.iter_mut().zip(&model) {
                        if let Gcra::Spend { tat } = g {
                            *t = Some(*tat);
                        }
                    }
                }
                Some(w) => prop_assert_eq!(
                    script,
                    Some(SharedRefusal::Until(Duration::from_micros(w))),
                    "at {} cost {} reserve {}", now, cost, reserve
                ),
            }
        }
    }
}

#[test]
fn a_rate_one_daemon_learned_reaches_the_others_through_redis() {
    let redis = Redis::start();
    let rates = syncoord_mock::MockRates {
        advanced_public: syncoord_mock::BucketSpec::new(2.0, 2.0),
        ..syncoord_mock::MockRates::default()
    };
    let mock = MockUpstream::start(MockOptions {
        rates,
        ..MockOptions::default()
    })
    .expect("mock starts");
    let (a, base_a) = daemon(&mock, Some(&redis.url()), "learn");
    let (b, base_b) = daemon(&mock, Some(&redis.url()), "learn");
    // Only A is used: the presets' 9/s meets the mock's 2/s.
    let end = Instant::now() + Duration::from_secs(3);
    let mut n = 0;
    while Instant::now() < end {
        let url = format!("{base_a}/api/v3/brokerage/market/products/BTC-USD/ticker?n={n}");
        assert_ne!(get(&agent(), &url, &[]).status, 429, "a 429 reached a bot");
        n += 1;
    }
    assert!(mock.stats().rate_limited > 0, "A met the mock's limit");
    let learned_a = public_bucket(&base_a)["learned_per_sec"]
        .as_f64()
        .expect("A learned a rate");
    // B, which sent nothing, takes it up within a few heartbeats (0.2 s).
    let until = Instant::now() + Duration::from_secs(3);
    let learned_b = loop {
        let bucket = public_bucket(&base_b);
        if let Some(rate) = bucket["learned_per_sec"].as_f64() {
            break rate;
        }
        assert!(Instant::now() < until, "B never took A's rate up: {bucket}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // One entry per daemon in the additive `learned` hash (inline RESP,
    // as `pings` does; the key is under the upstream URL's hash).
    let key = inline(&redis, "KEYS learn:*:learned");
    let key = key
        .lines()
        .nth(2)
        .unwrap_or_else(|| panic!("no learned hash: {key:?}"));
    let entries = inline(&redis, &format!("HLEN {key}"));
    a.shutdown();
    b.shutdown();
    assert!(
        learned_b < 9.0,
        "B runs under the configured 9/s: {learned_b}"
    );
    assert!(
        learned_b <= learned_a * 1.2 + 0.01,
        "B {learned_b} vs A {learned_a}"
    );
    assert_eq!(entries.trim_end(), ":2", "one entry per daemon");
}

/// One inline command to `redis` and its whole reply as text.
fn inline(redis: &Redis, command: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", redis.port)).expect("redis");
    s.write_all(format!("{command}\r\n").as_bytes())
        .expect("sent");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("a timeout");
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    // The reply is complete when nothing more comes.
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&reply).into_owned()
}
