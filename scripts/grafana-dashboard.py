#!/usr/bin/env python3
"""Writes docs/grafana-dashboard.json: the built-in dashboard's panels over
the Prometheus metrics (docs/metrics.md). Edit here, run, commit both:

    python3 scripts/grafana-dashboard.py

Import in Grafana (Dashboards > New > Import), pick the Prometheus data
source that scrapes syncoord's /metrics. proxy/src/endpoints.rs has a test
that every metric this dashboard queries is one the coordinator exports.
"""
import json
import os

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# `instance`: one daemon (or several) of those Prometheus scrapes; without
# it two daemons' series were summed into one line.
SEL = 'instance=~"$instance",upstream=~"$upstream"'
RI = "$__rate_interval"

panels = []
next_id = [1]


def target(expr, legend="", instant=False):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(64 + next_id[0] % 26 + 1)}
    if instant:
        t["instant"] = True
        t["range"] = False
    return t


def panel(kind, title, grid, targets, unit=None, extra=None, description=None):
    p = {
        "id": next_id[0],
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": dict(zip("xywh", grid)),
        "targets": [],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
    }
    next_id[0] += 1
    for i, t in enumerate(targets):
        t["refId"] = chr(65 + i)
        p["targets"].append(t)
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    if description:
        p["description"] = description
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"lineWidth": 2, "fillOpacity": 8, "showPoints": "never"}
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom"},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    if extra:
        for k, v in extra.items():
            if isinstance(v, dict) and isinstance(p.get(k), dict):
                deep_merge(p[k], v)
            else:
                p[k] = v
    panels.append(p)
    return p


def deep_merge(a, b):
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            deep_merge(a[k], v)
        else:
            a[k] = v


def stat(title, grid, expr, unit, thresholds, mappings=None, description=None):
    return panel("stat", title, grid, [target(expr, instant=True)], unit, {
        "options": {"colorMode": "background", "graphMode": "none", "textMode": "value",
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        "fieldConfig": {"defaults": {
            "thresholds": {"mode": "absolute", "steps": thresholds},
            "mappings": mappings or [],
            "color": {"mode": "thresholds"},
        }},
    }, description)


ended = f'sum(rate(syncoord_requests_total{{{SEL}}}[{RI}]))'
hits = f'sum(rate(syncoord_requests_total{{{SEL},outcome=~"hit|stale"}}[{RI}]))'

# --- the four numbers that matter, large at the top ---------------------------
stat("Health", (0, 0, 6, 5), f"max(syncoord_health_status{{{SEL}}})", None,
     [{"color": "green", "value": None}, {"color": "orange", "value": 1}, {"color": "red", "value": 2}],
     [{"type": "value", "options": {
         "0": {"text": "healthy", "index": 0}, "1": {"text": "degraded", "index": 1},
         "2": {"text": "unhealthy", "index": 2}}}],
     "The worst upstream's (or shard's) health.")
stat("Upstream 429s (health window)", (6, 0, 6, 5), f"sum(syncoord_recent_rate_limited{{{SEL}}})", "none",
     [{"color": "green", "value": None}, {"color": "red", "value": 1}])
stat("Cache hit rate", (12, 0, 6, 5), f"{hits} / {ended}", "percentunit",
     [{"color": "red", "value": None}, {"color": "orange", "value": 0.5}, {"color": "green", "value": 0.9}])
stat("Queue wait p99 · $top_class", (18, 0, 6, 5),
     f'histogram_quantile(0.99, sum by (le) (rate(syncoord_queue_wait_seconds_bucket{{{SEL},class="$top_class"}}[{RI}])))', "s",
     [{"color": "green", "value": None}, {"color": "orange", "value": 1}, {"color": "red", "value": 5}],
     description="Over the rate interval, from the histogram's buckets (every daemon selected added up).")

# --- health reasons -----------------------------------------------------------
panel("timeseries", "Health reasons by code", (0, 5, 24, 5),
      [target(f"sum by (code) (syncoord_health_reasons{{{SEL}}}) > 0", "{{code}}")], "none",
      description="upstream_rate_limited, queue_wait, queue_full, breaker_open, scope_paused; the stats JSON has each reason's message.")

# --- rates -------------------------------------------------------------------
panel("timeseries", "Requests per second, by outcome", (0, 10, 24, 8),
      [target(f"sum by (outcome) (rate(syncoord_requests_total{{{SEL}}}[{RI}]))", "{{outcome}}")], "reqps")
panel("timeseries", "Cache hit rate and API call reduction", (0, 18, 12, 8),
      [target(f"{hits} / {ended}", "hit rate"),
       target(f"1 - sum(rate(syncoord_upstream_calls_total{{{SEL}}}[{RI}])) / "
              f"sum(rate(syncoord_requests_submitted_total{{{SEL}}}[{RI}]))", "call reduction")],
      "percentunit", {"fieldConfig": {"defaults": {"min": 0, "max": 1}}})
panel("timeseries", "Upstream calls, 429s and 5xx per second", (12, 18, 12, 8),
      [target(f"sum(rate(syncoord_upstream_calls_total{{{SEL}}}[{RI}]))", "calls"),
       target(f"sum(rate(syncoord_upstream_rate_limited_total{{{SEL}}}[{RI}]))", "429s"),
       target(f"sum(rate(syncoord_upstream_server_errors_total{{{SEL}}}[{RI}]))", "5xx"),
       target(f"sum(rate(syncoord_upstream_transport_errors_total{{{SEL}}}[{RI}]))", "no answer")],
      "reqps")

# --- budget ------------------------------------------------------------------
bucket = "upstream, scope, credential"
panel("timeseries", "Budget used per bucket (calls/s ÷ budget)", (0, 26, 12, 8),
      [target(f"sum by ({bucket}) (rate(syncoord_bucket_calls_total{{{SEL}}}[{RI}])) / on ({bucket}) "
              f"max by ({bucket}) (syncoord_bucket_budget_per_second{{{SEL}}})",
              "{{upstream}} {{scope}} {{credential}}")],
      "percentunit", {"fieldConfig": {"defaults": {"min": 0}}})
panel("timeseries", "Tokens left per bucket (share of burst)", (12, 26, 12, 8),
      [target(f"syncoord_bucket_tokens{{{SEL}}} / on ({bucket}) syncoord_bucket_burst{{{SEL}}}",
              "{{upstream}} {{scope}} {{credential}}")],
      "percentunit", {"fieldConfig": {"defaults": {"min": 0, "max": 1}}})
panel("state-timeline", "Bucket pauses and breakers", (0, 34, 24, 6),
      [target(f"max by (upstream, route, credential) (syncoord_route_breaker_state{{{SEL}}})",
              "breaker {{upstream}} {{route}} {{credential}}"),
       target(f"max by ({bucket}) (syncoord_bucket_pause_remaining_seconds{{{SEL}}} > bool 0)",
              "paused {{upstream}} {{scope}} {{credential}}")],
      None, {"fieldConfig": {"defaults": {
          "mappings": [{"type": "value", "options": {
              "0": {"text": "ok", "color": "green"}, "1": {"text": "paused / half-open", "color": "orange"},
              "2": {"text": "open", "color": "red"}}}],
          "color": {"mode": "thresholds"},
          "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]}}},
          "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.8}})

# --- queue ---------------------------------------------------------------------
panel("timeseries", "Queue depth per class", (0, 40, 12, 8),
      [target(f"sum by (class) (syncoord_queue_depth{{{SEL}}})", "{{class}}")], "none")
panel("timeseries", "Queue wait per class", (12, 40, 12, 8),
      [target(f"histogram_quantile(0.99, sum by (class, le) (rate(syncoord_queue_wait_seconds_bucket{{{SEL}}}[{RI}])))",
              "p99 {{class}}"),
       target(f"sum by (class) (rate(syncoord_queue_wait_seconds_sum{{{SEL}}}[{RI}])) / "
              f"sum by (class) (rate(syncoord_queue_wait_seconds_count{{{SEL}}}[{RI}]))", "mean {{class}}")],
      "s")

# --- served age -------------------------------------------------------------------
panel("timeseries", "Served age", (0, 48, 12, 8),
      [target(f"histogram_quantile({q}, sum by (le) (rate(syncoord_served_age_seconds_bucket{{{SEL}}}[{RI}])))",
              f"p{round(q * 100)} all") for q in (0.5, 0.99)]
      + [target(f'histogram_quantile(0.99, sum by (le) (rate(syncoord_served_age_seconds_bucket{{{SEL},source="hit"}}[{RI}])))',
                "p99 cache hits")],
      "s", description="Age of the answers served over the rate interval: all of them (answers from upstream count as age 0), and fresh cache hits alone.")

# --- who ----------------------------------------------------------------------
panel("bargauge", "Top clients by requests per second", (12, 48, 12, 8),
      [target(f"topk(10, sum by (client) (rate(syncoord_client_requests_total{{{SEL}}}[5m])))",
              "{{client}}", instant=True)],
      "reqps", {"options": {"orientation": "horizontal", "displayMode": "basic",
                            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}},
      "Client names as the stats show them (X-Syncoord-Client, or the credential's alias); at most 50 per upstream are exported.")
panel("timeseries", "Requests per second, per upstream (per shard on the Worker)", (0, 56, 12, 8),
      [target(f"sum by (upstream) (rate(syncoord_requests_submitted_total{{{SEL}}}[{RI}]))", "{{upstream}}")],
      "reqps")
panel("timeseries", "Health per upstream (0 healthy, 1 degraded, 2 unhealthy)", (12, 56, 12, 8),
      [target(f"max by (upstream) (syncoord_health_status{{{SEL}}})", "{{upstream}}")],
      "none", {"fieldConfig": {"defaults": {"min": 0, "max": 2}}})

# --- upstream latency -----------------------------------------------------------
panel("timeseries", "Upstream latency", (0, 64, 12, 8),
      [target(f"histogram_quantile({q}, sum by (upstream, le) "
              f"(rate(syncoord_upstream_latency_seconds_bucket{{{SEL}}}[{RI}])))",
              f"p{round(q * 100)} {{{{upstream}}}}") for q in (0.5, 0.99)],
      "s", description="From sending a call to its answer, over the rate interval.")
panel("timeseries", "Refreshes stopped by upstream", (12, 64, 12, 8),
      [target(f"sum by (reason) (rate(syncoord_upstream_refreshes_stopped_total{{{SEL}}}[{RI}]))", "{{reason}}")],
      "ops", description="Refresh-ahead calls upstream stopped (a 429, a 5xx, no answer, an answer not to keep): the key's cached answer ages meanwhile. The daemon logs one line per route a minute.")

dashboard = {
    "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                  "pluginId": "prometheus", "pluginName": "Prometheus"}],
    "__requires": [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
                   {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"}],
    "title": "syncoord",
    "uid": "syncoord",
    "description": "What the coordinator is doing: the panels of its built-in /dashboard, over /metrics.",
    "tags": ["syncoord", "rate-limit"],
    "editable": True,
    "graphTooltip": 1,
    "refresh": "10s",
    "schemaVersion": 39,
    "time": {"from": "now-30m", "to": "now"},
    "templating": {"list": [
        {"name": "instance", "label": "instance", "type": "query", "datasource": DS,
         "query": {"query": "label_values(syncoord_health_status, instance)", "refId": "instances"},
         "definition": "label_values(syncoord_health_status, instance)",
         "multi": True, "includeAll": True, "allValue": ".*", "refresh": 2,
         "current": {"text": "All", "value": "$__all"}},
        {"name": "upstream", "label": "upstream", "type": "query", "datasource": DS,
         "query": {"query": 'label_values(syncoord_health_status{instance=~"$instance"}, upstream)', "refId": "upstreams"},
         "definition": 'label_values(syncoord_health_status{instance=~"$instance"}, upstream)',
         "multi": True, "includeAll": True, "allValue": ".*", "refresh": 2,
         "current": {"text": "All", "value": "$__all"}},
        {"name": "top_class", "label": "top class", "type": "query", "datasource": DS,
         "query": {"query": "label_values(syncoord_queue_depth, class)", "refId": "classes"},
         "definition": "label_values(syncoord_queue_depth, class)",
         "refresh": 2, "current": {"text": "trading", "value": "trading"}},
    ]},
    "panels": panels,
    "version": 1,
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "grafana-dashboard.json")
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    json.dump(dashboard, f, indent=2, ensure_ascii=False)
    f.write("\n")
print(f"wrote {os.path.normpath(out)}: {len(panels)} panels")
