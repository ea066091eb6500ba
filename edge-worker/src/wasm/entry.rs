//! The Worker's fetch handler: answers the stats and health endpoints from
//! the shards' reports, and forwards every other request to the
//! `ScopeCoordinator` object of its shard.

use futures_util::future::join_all;
use worker::{event, Context, Env, Request, Response, Result};

use super::convert::{build_request, error_response, read_request, to_response};
use super::settings::proxy;
use crate::protocol::{
    forwardable_headers, INTERNAL_ORIGIN, REGISTRY_BINDING, REGISTRY_NAME, REPORT_PATH,
    SCOPE_BINDING, SHARDS_PATH, SHARD_HEADER,
};
use crate::proxy_shim::{HEALTH_PATH, METRICS_PATH, STATS_PATH};
use crate::report::{health_response, stats_response, ShardReport, Unreachable};

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let proxy = match proxy(&env) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let incoming = read_request(&mut req).await?;
    if incoming.method == "GET" {
        match incoming.target.split('?').next().unwrap_or_default() {
            STATS_PATH => {
                let (reports, unreachable) = collect_reports(&env).await?;
                return to_response(stats_response(&reports, &unreachable));
            }
            HEALTH_PATH => {
                let (reports, unreachable) = collect_reports(&env).await?;
                return to_response(health_response(&reports, &unreachable));
            }
            METRICS_PATH => {
                return error_response(501, "metrics are not rendered by the edge host yet");
            }
            _ => {}
        }
    }
    let mut headers = forwardable_headers(incoming.headers);
    let forward = match proxy.route(
        None,
        &incoming.method,
        &incoming.target,
        &headers,
        incoming.body.clone(),
    ) {
        Ok(f) => f,
        Err(rejection) => return to_response(rejection.into_response()),
    };
    let shard = proxy.shard(&forward);
    headers.push((SHARD_HEADER.to_owned(), shard.clone()));
    let stub = env.durable_object(SCOPE_BINDING)?.get_by_name(&shard)?;
    let url = format!("{INTERNAL_ORIGIN}{}", incoming.target);
    let forwarded = build_request(&url, &incoming.method, &headers, &incoming.body)?;
    stub.fetch_with_request(forwarded).await
}

/// Asks every registered shard for its report, all at once. Each report is
/// a subrequest: the Workers limit on subrequests per request (1000 on
/// paid plans) bounds how many shards one stats call can cover.
async fn collect_reports(env: &Env) -> Result<(Vec<ShardReport>, Vec<Unreachable>)> {
    let registry = env
        .durable_object(REGISTRY_BINDING)?
        .get_by_name(REGISTRY_NAME)?;
    let mut listing = registry
        .fetch_with_str(&format!("{INTERNAL_ORIGIN}{SHARDS_PATH}"))
        .await?;
    let shards: Vec<String> = listing.json().await?;
    let namespace = env.durable_object(SCOPE_BINDING)?;
    let asks = shards.iter().map(|shard| {
        let stub = namespace.get_by_name(shard);
        async move {
            let mut resp = stub?
                .fetch_with_str(&format!("{INTERNAL_ORIGIN}{REPORT_PATH}"))
                .await?;
            match resp.status_code() {
                200 => Ok(Some(resp.json::<ShardReport>().await?)),
                204 => Ok(None),
                s => Err(worker::Error::RustError(format!("report answered {s}"))),
            }
        }
    });
    let mut reports = Vec::new();
    let mut unreachable = Vec::new();
    for (shard, result) in shards.iter().zip(join_all(asks).await) {
        match result {
            Ok(Some(r)) => reports.push(r),
            // Evicted since its last request: no state to report.
            Ok(None) => {}
            Err(e) => unreachable.push(Unreachable {
                shard: shard.clone(),
                error: e.to_string(),
            }),
        }
    }
    Ok((reports, unreachable))
}
