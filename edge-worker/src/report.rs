//! What each scope object reports about itself. The Worker collects the
//! reports of every shard it knows and renders the stats, health and
//! metrics endpoints from them with the shared renderer
//! (`syncoord_proxy::Endpoint::render`), one row per shard, exactly
//! as the native daemon renders one row per upstream.

use serde::{Deserialize, Serialize};
use syncoord_core::{Health, StatsSnapshot};

/// One shard's state, as its object reports it (JSON between object and
/// Worker).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardReport {
    /// e.g. `exchange/cred/key:abc` or `advanced/global`.
    pub shard: String,
    pub stats: StatsSnapshot,
    pub health: Health,
}

/// The rows the endpoint renderer takes: (name, stats, health), by shard
/// name, so the output is stable whatever order the reports arrived in.
pub fn rows(mut reports: Vec<ShardReport>) -> Vec<(String, StatsSnapshot, Health)> {
    reports.sort_by(|a, b| a.shard.cmp(&b.shard));
    reports
        .into_iter()
        .map(|r| (r.shard, r.stats, r.health))
        .collect()
}

/// Most shards one stats, health or metrics call asks for a report. Every
/// report is a subrequest, and a Worker invocation may make at most 50 on
/// the free plan (1000 on paid plans); the registry listing and the
/// request that prunes it are two more. Past this many, a call would fail
/// part-way for reasons unrelated to the shards, so the rest are left out
/// and counted in the response instead.
pub const MAX_REPORTS: usize = 47;

/// The shards to ask, at most `max`, and how many were left out. Global
/// shards (each upstream's shared public budget) come first, then
/// per-credential ones, each by name: the same shards on every call.
pub fn shards_to_ask(mut shards: Vec<String>, max: usize) -> (Vec<String>, usize) {
    shards.sort_by(|a, b| {
        let global = |s: &str| !s.ends_with("/global");
        (global(a), a).cmp(&(global(b), b))
    });
    shards.dedup();
    let omitted = shards.len().saturating_sub(max);
    shards.truncate(max);
    (shards, omitted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncoord_core::{
        Admission, Config, Coordinator, Instant, Outcome, Output, Request, Response,
    };
    use syncoord_proxy::Endpoint;

    /// A report as an object would make it, after one call upstream and
    /// one cache hit.
    fn report(shard: &str) -> ShardReport {
        let t0 = Instant::now();
        let mut core: Coordinator<()> =
            Coordinator::new(Config::default().compile().expect("valid"), t0, 7);
        let path = "/api/v3/brokerage/market/products/BTC-USD/ticker";
        assert!(matches!(
            core.submit(t0, Request::get(path, "bot-1"), ()),
            Admission::Waiting { .. }
        ));
        let Output::Dispatch(call) = core.poll_output(t0) else {
            panic!("due");
        };
        core.complete(t0, call.call, Outcome::response(Response::new(200, "{}")))
            .expect("in flight");
        assert!(matches!(
            core.submit(t0, Request::get(path, "bot-2"), ()),
            Admission::Answered(_)
        ));
        ShardReport {
            shard: shard.into(),
            stats: core.stats(t0),
            health: core.health(t0),
        }
    }

    #[test]
    fn reports_are_capped_global_shards_first() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (ask, omitted) = shards_to_ask(
            names(&["a/cred/key:z", "a/cred/key:b", "b/global", "a/global"]),
            3,
        );
        assert_eq!(ask, names(&["a/global", "b/global", "a/cred/key:b"]));
        assert_eq!(omitted, 1);
        let (ask, omitted) = shards_to_ask(names(&["a/global"]), MAX_REPORTS);
        assert_eq!((ask.len(), omitted), (1, 0));
    }

    #[test]
    fn a_report_survives_the_trip_from_object_to_worker() {
        let sent = report("advanced/global");
        let json = serde_json::to_string(&sent).expect("serialises");
        let got: ShardReport = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(got.shard, sent.shard);
        assert_eq!(got.stats.requests, sent.stats.requests);
        assert_eq!(got.health, sent.health);
    }

    #[test]
    fn endpoints_render_one_row_per_shard_in_name_order() {
        let rows = rows(vec![
            report("advanced/global"),
            report("advanced/cred/key:a"),
        ]);
        let names: Vec<&str> = rows.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["advanced/cred/key:a", "advanced/global"]);

        let stats = Endpoint::Stats.render(&rows);
        assert_eq!(stats.status, 200);
        let body = String::from_utf8(stats.body).expect("utf-8");
        assert!(
            body.contains("advanced/cred/key:a") && body.contains("advanced/global"),
            "{body}"
        );

        let metrics = Endpoint::Metrics.render(&rows);
        let text = String::from_utf8(metrics.body).expect("utf-8");
        assert!(text.contains("advanced/global"), "{text}");
        assert_eq!(Endpoint::Health.render(&rows).status, 200);
    }
}
