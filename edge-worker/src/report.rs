//! What each scope object reports about itself, and the Worker's answer to
//! the stats and health endpoints over all the shards it knows.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::proxy_shim::ProxyResponse;

/// One shard's state, as its object reports it (JSON between object and
/// Worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardReport {
    /// e.g. `coinbase-exchange/cred/key:abc` or `upstream/global`.
    pub shard: String,
    /// Name of the upstream the shard's core talks to.
    pub upstream: String,
    /// The core's `StatsSnapshot`, serialised.
    pub stats: Value,
    /// The core's `Health`, serialised.
    pub health: Value,
}

/// A shard that could not report (evicted mid-call, an exception).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unreachable {
    pub shard: String,
    pub error: String,
}

fn rank(status: &str) -> u8 {
    match status {
        "healthy" => 0,
        "degraded" => 1,
        _ => 2,
    }
}

/// The worst status over all shards (`healthy` when there are none yet);
/// an unreachable shard counts as degraded.
pub fn overall_status(reports: &[ShardReport], unreachable: &[Unreachable]) -> &'static str {
    let worst = reports
        .iter()
        .map(|r| {
            rank(
                r.health
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown"),
            )
        })
        .chain(unreachable.iter().map(|_| 1))
        .max()
        .unwrap_or(0);
    ["healthy", "degraded", "unhealthy"][usize::from(worst)]
}

fn json_response(status: u16, body: &Value) -> ProxyResponse {
    ProxyResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

/// `GET` stats: every shard's snapshot.
pub fn stats_response(reports: &[ShardReport], unreachable: &[Unreachable]) -> ProxyResponse {
    json_response(
        200,
        &json!({
            "status": overall_status(reports, unreachable),
            "shards": reports,
            "unreachable": unreachable,
        }),
    )
}

/// `GET` health: 503 when any shard is unhealthy.
pub fn health_response(reports: &[ShardReport], unreachable: &[Unreachable]) -> ProxyResponse {
    let status = overall_status(reports, unreachable);
    let shards: Vec<Value> = reports
        .iter()
        .map(|r| json!({ "shard": r.shard, "health": r.health }))
        .collect();
    let code = if status == "unhealthy" { 503 } else { 200 };
    json_response(
        code,
        &json!({ "status": status, "shards": shards, "unreachable": unreachable }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(shard: &str, status: &str) -> ShardReport {
        ShardReport {
            shard: shard.into(),
            upstream: "u".into(),
            stats: json!({ "requests": { "submitted": 1 } }),
            health: json!({ "status": status, "reasons": [] }),
        }
    }

    #[test]
    fn the_worst_shard_decides() {
        assert_eq!(overall_status(&[], &[]), "healthy");
        let rs = [
            report("u/global", "healthy"),
            report("u/cred/a", "degraded"),
        ];
        assert_eq!(overall_status(&rs, &[]), "degraded");
        let rs = [
            report("u/global", "unhealthy"),
            report("u/cred/a", "degraded"),
        ];
        assert_eq!(overall_status(&rs, &[]), "unhealthy");
        let gone = [Unreachable {
            shard: "u/cred/b".into(),
            error: "evicted".into(),
        }];
        assert_eq!(
            overall_status(&[report("u/global", "healthy")], &gone),
            "degraded"
        );
    }

    #[test]
    fn health_is_503_only_when_unhealthy() {
        assert_eq!(
            health_response(&[report("u/global", "degraded")], &[]).status,
            200
        );
        assert_eq!(
            health_response(&[report("u/global", "unhealthy")], &[]).status,
            503
        );
    }

    #[test]
    fn stats_carry_every_shard() {
        let rs = [report("u/global", "healthy"), report("u/cred/a", "healthy")];
        let body: Value = serde_json::from_slice(&stats_response(&rs, &[]).body).expect("json");
        let shards: Vec<&str> = body["shards"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|s| s["shard"].as_str())
            .collect();
        assert_eq!(shards, ["u/global", "u/cred/a"]);
        let back: ShardReport = serde_json::from_value(body["shards"][1].clone()).expect("report");
        assert_eq!(back, rs[1]);
    }
}
