//! The Worker's fetch handler: answers the stats, health and metrics
//! endpoints from the shards' reports and the dashboard page from the
//! binary, and forwards every other request to the `ScopeCoordinator`
//! object of its shard.

use futures_util::future::join_all;
use syncoord_proxy::{endpoint, Endpoint};
use worker::{console_warn, event, Context, Env, Request, Response, Result};

use super::convert::{build_request, read_request, to_response};
use super::settings::proxy;
use crate::protocol::{
    bot_headers, too_large, worker_failure, RegisteredShard, FORGET_PATH, INTERNAL_ORIGIN,
    REGISTRY_BINDING, REGISTRY_NAME, REPORT_PATH, SCOPE_BINDING, SHARDS_PATH, SHARD_HEADER,
};
use crate::report::{rows, shards_to_ask, ShardReport, MAX_REPORTS};

/// Response header on the endpoints: how many registered shards did not
/// report (and so are missing from the rendered figures).
const UNREACHABLE_HEADER: &str = "x-syncoord-unreachable-shards";
/// Response header on the endpoints: how many registered shards were not
/// asked at all, past [`MAX_REPORTS`].
const OMITTED_HEADER: &str = "x-syncoord-omitted-shards";

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    // Every request gets syncoord's answer, never the runtime's error page.
    match handle(req, &env).await {
        Ok(response) => Ok(response),
        Err(e) => {
            console_warn!("syncoord: request failed in the Worker: {e}");
            to_response(worker_failure("the Worker failed", &e.to_string()))
        }
    }
}

async fn handle(mut req: Request, env: &Env) -> Result<Response> {
    let proxy = match proxy(env) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let incoming = read_request(&mut req).await?;
    if let Some(ep) = endpoint(&incoming.method, &incoming.target) {
        return render(env, ep, incoming.method == "HEAD").await;
    }
    let max_body = proxy.config().server.max_body_bytes;
    if incoming.body.len() > max_body {
        return to_response(too_large(max_body));
    }
    let mut headers = bot_headers(incoming.headers);
    let forward = match proxy.route(
        None,
        &incoming.method,
        &incoming.target,
        &headers,
        incoming.body.clone(),
    ) {
        Ok(f) => f,
        Err(rejection) => {
            let shape = proxy.error_shape_for(None, &incoming.target);
            return to_response(rejection.into_response_shaped(shape));
        }
    };
    let shard = proxy.shard(&forward);
    headers.push((SHARD_HEADER.to_owned(), shard.as_str().to_owned()));
    let stub = env
        .durable_object(SCOPE_BINDING)?
        .get_by_name(shard.as_str())?;
    let url = format!("{INTERNAL_ORIGIN}{}", incoming.target);
    let forwarded = build_request(&url, &incoming.method, &headers, &incoming.body)?;
    match stub.fetch_with_request(forwarded).await {
        Ok(response) => Ok(response),
        Err(e) => {
            console_warn!("syncoord: shard `{}` failed: {e}", shard.as_str());
            to_response(worker_failure(
                &format!("shard `{}` did not answer", shard.as_str()),
                &e.to_string(),
            ))
        }
    }
}

/// An endpoint over every shard's report, rendered as the native daemon
/// renders it over its upstreams.
async fn render(env: &Env, ep: Endpoint, head: bool) -> Result<Response> {
    if !ep.reads_stats() {
        // The dashboard page and its assets are static: no shard is asked.
        let mut response = ep.render::<&str>(&[]);
        if head {
            response.body.clear();
        }
        return to_response(response);
    }
    let (reports, unreachable, omitted) = collect_reports(env).await?;
    let mut response = ep.render(&rows(reports));
    response
        .headers
        .push((UNREACHABLE_HEADER.to_owned(), unreachable.to_string()));
    response
        .headers
        .push((OMITTED_HEADER.to_owned(), omitted.to_string()));
    if head {
        response.body.clear();
    }
    to_response(response)
}

/// Asks the registered shards for their reports, all at once, at most
/// [`MAX_REPORTS`] of them: each report is a subrequest, and the Workers
/// limit on subrequests per invocation bounds how many one endpoint call
/// can make (see the README). Returns the reports, how many shards failed
/// to give one, and how many were not asked.
async fn collect_reports(env: &Env) -> Result<(Vec<ShardReport>, usize, usize)> {
    let registry = env
        .durable_object(REGISTRY_BINDING)?
        .get_by_name(REGISTRY_NAME)?;
    let mut listing = registry
        .fetch_with_str(&format!("{INTERNAL_ORIGIN}{SHARDS_PATH}"))
        .await?;
    let registered: Vec<RegisteredShard> = listing.json().await?;
    let names = registered.iter().map(|r| r.name.clone()).collect();
    let (shards, omitted) = shards_to_ask(names, MAX_REPORTS);
    if omitted > 0 {
        console_warn!("syncoord: {omitted} shards left out of the report (at most {MAX_REPORTS})");
    }
    let namespace = env.durable_object(SCOPE_BINDING)?;
    let asks = shards.iter().map(|shard| {
        let stub = namespace.get_by_name(shard);
        async move {
            let mut resp = stub?
                .fetch_with_str(&format!("{INTERNAL_ORIGIN}{REPORT_PATH}"))
                .await?;
            match resp.status_code() {
                200 => Ok(Some(resp.json::<ShardReport>().await?)),
                // Evicted since its last request: no state to report.
                204 => Ok(None),
                s => Err(worker::Error::RustError(format!("report answered {s}"))),
            }
        }
    });
    let mut reports = Vec::new();
    let mut unreachable = 0;
    let mut empty = Vec::new();
    for (shard, result) in shards.iter().zip(join_all(asks).await) {
        match result {
            Ok(Some(r)) => reports.push(r),
            Ok(None) => empty.extend(registered.iter().find(|r| &r.name == shard).cloned()),
            Err(e) => {
                unreachable += 1;
                console_warn!("syncoord: shard `{shard}` did not report: {e}");
            }
        }
    }
    if !empty.is_empty() {
        // Best effort: a shard left registered is only asked again.
        if let Err(e) = forget(&registry, &empty).await {
            console_warn!("syncoord: pruning the shard registry failed: {e}");
        }
    }
    Ok((reports, unreachable, omitted))
}

/// Asks the registry to forget `shards` (each only if it has not
/// registered again since it was listed).
async fn forget(registry: &worker::Stub, shards: &[RegisteredShard]) -> Result<()> {
    let body = serde_json::to_vec(shards)?;
    let req = build_request(
        &format!("{INTERNAL_ORIGIN}{FORGET_PATH}"),
        "POST",
        &[("content-type".to_owned(), "application/json".to_owned())],
        &body,
    )?;
    let resp = registry.fetch_with_request(req).await?;
    match resp.status_code() {
        200..=299 => Ok(()),
        s => Err(worker::Error::RustError(format!("registry answered {s}"))),
    }
}
