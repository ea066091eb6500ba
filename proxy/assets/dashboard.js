// syncoord dashboard. Polls the stats endpoint of the coordinator that
// served this page (no other host), keeps five minutes of samples in
// memory, and draws them with uPlot. No build step: plain ES2017.
//
// Everything shown comes from the stats JSON. Identity strings (clients,
// bucket credentials, shard names) are shown exactly as the stats give
// them, always through textContent, never as markup.
(function () {
  "use strict";

  var STATS = "/api/v1/sync-coordination/stats";
  var EVERY_MS = 1500;
  var KEEP_SECS = 300;
  var MAX_BUCKET_SERIES = 8;
  var MAX_CLIENTS = 10;
  var OUTCOMES = ["hit", "stale", "coalesced", "upstream", "shed", "expired", "failed"];
  var COLORS = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#a371f7", "#39c5cf",
    "#ff7b72", "#e3b341", "#8b98a8", "#db61a2"];
  var OUTCOME_COLORS = { hit: "#3fb950", stale: "#e3b341", coalesced: "#39c5cf",
    upstream: "#58a6ff", shed: "#db61a2", expired: "#ff7b72", failed: "#f85149" };

  // --- errors: shown in the page (the browser test reads #errors) -------
  var errorCount = 0;
  function reportError(msg) {
    errorCount += 1;
    var box = document.getElementById("errors");
    if (!box) return;
    box.hidden = false;
    box.dataset.count = String(errorCount);
    box.textContent += msg + "\n";
  }
  window.addEventListener("error", function (e) {
    reportError("error: " + (e.message || e.type) + (e.filename ? " at " + e.filename + ":" + e.lineno : ""));
  });
  window.addEventListener("unhandledrejection", function (e) {
    reportError("unhandled rejection: " + (e.reason && e.reason.message || e.reason));
  });

  // --- formatting ------------------------------------------------------
  function num(v) { return typeof v === "number" && isFinite(v) ? v : 0; }
  function pct(v) { return (num(v) * 100).toFixed(1) + "%"; }
  function rate(v) {
    v = num(v);
    return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + "/s";
  }
  function dur(ms) {
    ms = num(ms);
    if (ms < 1) return ms === 0 ? "0 ms" : ms.toFixed(2) + " ms";
    if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
    return (ms / 60000).toFixed(1) + " min";
  }
  function int(v) { return Math.round(num(v)).toLocaleString("en-US"); }

  // --- tiny DOM helpers (textContent only) --------------------------------
  function $(id) { return document.getElementById(id); }
  function setText(id, text) { var el = $(id); if (el && el.textContent !== text) el.textContent = text; }
  function td(text, cls) {
    var c = document.createElement("td");
    c.textContent = text;
    if (cls) c.className = cls;
    return c;
  }
  function bar(share, cls) {
    var c = document.createElement("td");
    var b = document.createElement("span");
    b.className = "bar" + (cls ? " " + cls : "");
    var f = document.createElement("span");
    f.style.width = Math.max(0, Math.min(100, share * 100)).toFixed(1) + "%";
    b.appendChild(f);
    c.appendChild(b);
    c.appendChild(document.createTextNode(pct(share)));
    return c;
  }
  function fillBody(tableId, rows) {
    var body = $(tableId).tBodies[0];
    while (body.firstChild) body.removeChild(body.firstChild);
    rows.forEach(function (cells) {
      var tr = document.createElement("tr");
      cells.forEach(function (c) { tr.appendChild(c); });
      body.appendChild(tr);
    });
  }

  // --- history -----------------------------------------------------------
  // times[i] in Unix seconds; series[key][i] a number or null (a series
  // that appeared later is padded with nulls so every array lines up).
  var times = [];
  var series = {};
  function push(t, values) {
    times.push(t);
    Object.keys(values).forEach(function (k) {
      if (!series[k]) series[k] = new Array(times.length - 1).fill(null);
    });
    Object.keys(series).forEach(function (k) {
      series[k].push(k in values ? values[k] : null);
    });
    var cut = 0;
    while (cut < times.length && times[times.length - 1] - times[cut] > KEEP_SECS) cut++;
    if (cut > 0) {
      times.splice(0, cut);
      Object.keys(series).forEach(function (k) {
        series[k].splice(0, cut);
        if (series[k].every(function (v) { return v === null; })) delete series[k];
      });
    }
  }
  function keysWith(prefix) {
    return Object.keys(series).filter(function (k) { return k.indexOf(prefix) === 0; }).sort();
  }

  // --- charts ------------------------------------------------------------
  // One uPlot per panel; rebuilt when its set of series changes (a class,
  // bucket or shard appears or goes).
  var charts = {};
  function chartWidth(el) { return Math.max(240, el.clientWidth || 600); }
  function clock(t) { return new Date(t * 1000).toLocaleTimeString("en-GB"); }
  function axisFor(fmt) {
    return {
      stroke: "#8b98a8",
      grid: { stroke: "#263140", width: 1 },
      ticks: { stroke: "#263140", width: 1 },
      size: 64,
      values: function (u, vals) { return vals.map(fmt); }
    };
  }
  var X_AXIS = {
    stroke: "#8b98a8",
    grid: { stroke: "#263140", width: 1 },
    ticks: { stroke: "#263140", width: 1 },
    space: 90,
    values: function (u, vals) { return vals.map(clock); }
  };
  // Axis labels: whole percents, shorter rates.
  function pctAxis(v) { return Math.round(v * 100) + "%"; }
  function shadeHook(marksKey) {
    // Shades the time ranges where series[marksKey] is 1 (paused) or 2
    // (breaker open).
    return function (u) {
      var m = series[marksKey];
      if (!m) return;
      var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
      ctx.save();
      for (var i = 0; i < m.length; i++) {
        if (!m[i]) continue;
        var x0 = u.valToPos(times[i], "x", true);
        var x1 = i + 1 < times.length ? u.valToPos(times[i + 1], "x", true) : x0 + 4;
        ctx.fillStyle = m[i] >= 2 ? "rgba(248,81,73,0.22)" : "rgba(210,153,34,0.20)";
        ctx.fillRect(x0, top, Math.max(2, x1 - x0), h);
      }
      ctx.restore();
    };
  }
  function draw(id, keys, labels, fmt, opts) {
    opts = opts || {};
    var el = $(id);
    if (!el || typeof uPlot === "undefined") return;
    var sig = keys.join("|");
    var c = charts[id];
    if (c && c.sig !== sig) { c.plot.destroy(); delete charts[id]; c = null; }
    var data = [times.slice()].concat(keys.map(function (k) { return (series[k] || []).slice(); }));
    if (!c) {
      var s = [{ label: "time", value: function (u, v) { return v == null ? "–" : clock(v); } }].concat(keys.map(function (k, i) {
        var color = (opts.colors && opts.colors[i]) || COLORS[i % COLORS.length];
        return {
          label: labels[i],
          stroke: color,
          width: 2,
          fill: opts.fill ? color + "22" : undefined,
          dash: opts.dashed && opts.dashed[i] ? [6, 4] : undefined,
          spanGaps: false,
          // Points only while there are too few samples to draw a line.
          points: { show: function (u) { return u.data[0].length < 4; } },
          value: function (u, v) { return v == null ? "–" : fmt(v); }
        };
      }));
      var yScale = { auto: true };
      if (opts.range) yScale = { range: opts.range };
      var plot = new uPlot({
        width: chartWidth(el),
        height: opts.height || 165,
        series: s,
        scales: { x: { time: true }, y: yScale },
        axes: [X_AXIS, axisFor(opts.axis || fmt)],
        legend: { live: true },
        cursor: { drag: { x: false, y: false } },
        hooks: opts.marks ? { drawClear: [shadeHook(opts.marks)] } : {}
      }, data, el);
      charts[id] = c = { plot: plot, sig: sig, el: el };
      el.dataset.series = String(keys.length);
    } else {
      c.plot.setData(data);
    }
    // With the pointer elsewhere, the legend shows the latest values.
    if (c.plot.cursor.left == null || c.plot.cursor.left < 0) {
      c.plot.setLegend({ idx: times.length - 1 });
    }
    el.dataset.points = String(times.length);
  }
  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (id) {
      var c = charts[id];
      c.plot.setSize({ width: chartWidth(c.el), height: c.plot.height });
    });
  });
  function rangeUpTo(min, max) {
    return function (u, lo, hi) { return [min, Math.max(max, hi == null ? max : hi * 1.05)]; };
  }

  // --- reading one stats answer -------------------------------------------
  var prev = null; // { at: ms, upstreams: {name: stats}, clients: {...}, buckets: {...}, totals }

  function delta(now, before, dt) {
    if (before == null || dt <= 0) return null;
    var d = now - before;
    // A counter that went down belongs to a restarted coordinator (or an
    // evicted shard): count from zero.
    if (d < 0) d = now;
    return d / dt;
  }

  // The served-age figures, if the stats carry them (`served_age`, per
  // source: fresh hits, stale hits, upstream), as {source: {p50, p99, max}}
  // in milliseconds. Absent: null, and the panel stays hidden.
  function servedAge(totals, ups) {
    var found = totals && totals.served_age;
    if (!found) {
      for (var i = 0; i < ups.length && !found; i++) {
        found = ups[i].stats && ups[i].stats.served_age;
      }
    }
    if (!found || typeof found !== "object") return null;
    var rows = {};
    function read(name, o) {
      if (!o || typeof o !== "object") return;
      var r = {};
      Object.keys(o).forEach(function (k) {
        var v = o[k];
        if (typeof v !== "number") return;
        var m = /^(p50|p90|p99|max|mean)(?:_(ms|millis|s|secs|seconds))?$/.exec(k);
        if (!m) return;
        r[m[1]] = m[2] === "ms" || m[2] === "millis" ? v : v * 1000;
      });
      if (Object.keys(r).length) rows[name] = r;
    }
    var list = Array.isArray(found) ? found : Array.isArray(found.classes) ? found.classes : null;
    if (list) {
      list.forEach(function (o, i) { read(String(o.class || o.source || o.name || i), o); });
    } else {
      Object.keys(found).forEach(function (k) { read(k, found[k]); });
    }
    return Object.keys(rows).length ? rows : null;
  }

  function bucketKey(up, b) {
    return up + " · " + b.scope + (b.credential ? " · " + b.credential : "");
  }

  function sample(body, isWorker, shardHeaders) {
    var at = performance.now();
    var before = prev;
    var T = body.totals || {};
    var O = T.outcomes || {};
    var ups = Array.isArray(body.upstreams) ? body.upstreams : [];
    // Rates are per second of the coordinator's own clock (each
    // upstream's uptime), so a slow or throttled browser tab, or a
    // headless browser's virtual time, does not skew them.
    function elapsed(s, p) {
      var d = p ? num(s.uptime_secs) - num(p.uptime_secs) : 0;
      return d > 0 ? d : 0;
    }
    var dt = 0;
    ups.forEach(function (u) {
      dt = Math.max(dt, elapsed(u.stats || {}, prev && prev.upstreams[String(u.name)]));
    });
    if (!dt && prev) dt = (at - prev.at) / 1000;
    var v = {};
    var cur = { at: at, totals: T, upstreams: {}, clients: {}, buckets: {}, classes: {} };

    // Requests by outcome, hit rate and call reduction per interval.
    var ended = 0, served = 0;
    OUTCOMES.forEach(function (o) {
      var r = prev ? delta(num(O[o]), num(prev.totals.outcomes && prev.totals.outcomes[o]), dt) : null;
      v["req." + o] = r;
      if (r != null) ended += r;
      if (r != null && (o === "hit" || o === "stale")) served += r;
    });
    var submitted = prev ? delta(num(T.requests), num(prev.totals.requests), dt) : null;
    var calls = prev ? delta(num(T.upstream_calls), num(prev.totals.upstream_calls), dt) : null;
    v["ratio.hit"] = prev && ended > 0 ? served / ended : null;
    v["ratio.reduction"] = prev && submitted > 0 ? Math.max(0, 1 - calls / submitted) : null;
    v["up.calls"] = calls;
    v["up.429"] = prev ? delta(num(T.upstream_429s), num(prev.totals.upstream_429s), dt) : null;
    v["up.5xx"] = prev ? delta(num(T.upstream_server_errors), num(prev.totals.upstream_server_errors), dt) : null;

    // Per upstream (per shard on the Worker), per class, per bucket, per client.
    var classOrder = [];
    var classes = {};
    var bucketRows = [];
    var reasons = [];
    var upRows = [];
    var clients = {};
    var marks = 0;
    ups.forEach(function (u) {
      var s = u.stats || {};
      var name = String(u.name);
      cur.upstreams[name] = s;
      var p = prev && prev.upstreams[name];
      var udt = elapsed(s, p);
      if (p && !udt) p = null; // restarted (evicted shard): no rate yet
      var req = p ? delta(num(s.requests && s.requests.submitted), num(p.requests && p.requests.submitted), udt) : null;
      var upCalls = p ? delta(num(s.upstream && s.upstream.calls), num(p.upstream && p.upstream.calls), udt) : null;
      upRows.push([td(name, "id"), td(String(u.status || "–"), "st-" + u.status),
        td(req == null ? "–" : rate(req), "n"), td(pct(s.cache_hit_rate), "n"),
        td(upCalls == null ? "–" : rate(upCalls), "n"), td(int(s.upstream && s.upstream.rate_limited), "n"),
        td(int(s.upstream && s.upstream.server_errors), "n"), td(int(s.queue && s.queue.depth), "n"),
        td(int(s.calls_in_flight), "n"),
        td(int(num(s.orders && s.orders.outcome_unknown) + num(s.orders && s.orders.bot_gone)), "n")]);
      ((s.health && s.health.reasons) || []).forEach(function (r) {
        reasons.push({ up: name, severity: r.severity, code: r.code, message: r.message });
      });
      ((s.queue && s.queue.classes) || []).forEach(function (c) {
        if (!classes[c.class]) { classes[c.class] = { depth: 0, p99: 0, count: 0, sum: 0 }; classOrder.push(c.class); }
        var k = classes[c.class];
        k.depth += num(c.depth);
        k.p99 = Math.max(k.p99, num(c.wait && c.wait.p99_ms));
        k.count += num(c.wait && c.wait.count);
        k.sum += num(c.wait && c.wait.mean_ms) * num(c.wait && c.wait.count);
      });
      (s.scopes || []).forEach(function (b) {
        var key = bucketKey(name, b);
        cur.buckets[key] = b;
        var pb = p && prev.buckets[key];
        var cps = pb ? delta(num(b.calls), num(pb.calls), udt) : null;
        // The budget a bucket is measured against: what it learned, if it
        // learned anything under its configured rate.
        var budget = num(b.learned_per_sec) || num(b.budget_per_sec) || num(b.rate_per_sec);
        var state = b.paused_for_secs != null ? "paused" : "ok";
        if (state === "paused" && marks < 1) marks = 1;
        bucketRows.push({ key: key, up: name, b: b, cps: cps, budget: budget, state: state });
      });
      // Breakers are per route: each tripped one is a row of its own,
      // and any one open shades the chart.
      (s.breakers || []).forEach(function (br) {
        if (br.state === "closed") return;
        if (br.state === "open") marks = 2;
        var b = { scope: "route " + br.route, credential: br.credential, burst: 0, tokens: 0 };
        bucketRows.push({ key: name + " route " + br.route, up: name, b: b, cps: null, budget: 0, state: br.state });
      });
      (s.clients || []).forEach(function (c) {
        var k = clients[c.client] || (clients[c.client] = { requests: 0, hit: 0, stale: 0, upstream: 0, failed: 0 });
        k.requests += num(c.requests); k.hit += num(c.hit); k.stale += num(c.stale);
        k.upstream += num(c.upstream); k.failed += num(c.failed);
      });
    });
    cur.clients = clients;
    cur.classes = classes;
    classOrder.forEach(function (c) {
      var k = classes[c];
      v["depth." + c] = k.depth;
      v["wait." + c] = k.p99;
    });
    // The busiest buckets get a series each.
    bucketRows.sort(function (a, b) { return num(b.b.calls) - num(a.b.calls) || (a.key < b.key ? -1 : 1); });
    bucketRows.slice(0, MAX_BUCKET_SERIES).forEach(function (r) {
      v["budget." + r.key] = r.cps == null || !r.budget ? null : r.cps / r.budget;
      v["tokens." + r.key] = num(r.b.burst) ? num(r.b.tokens) / num(r.b.burst) : null;
    });
    v["marks.buckets"] = marks;

    var age = servedAge(T, ups);
    if (age) {
      Object.keys(age).forEach(function (k) { if (age[k].p99 != null) v["age." + k] = age[k].p99; });
    }

    push(Date.now() / 1000, v);
    prev = cur;
    document.body.dataset.samples = String(times.length);

    // --- the tiles ---
    var status = String(T.status || worst(ups) || "unknown");
    $("tile-health").dataset.status = status;
    setText("v-health", status);
    setText("v-health-sub", reasons.length ? reasons.length + (reasons.length === 1 ? " reason" : " reasons") + " below"
      : ups.length + (isWorker ? " shard" : " upstream") + (ups.length === 1 ? "" : "s") + ", all clear");
    var recent = num(T.recent_rate_limited);
    $("tile-429").dataset.alert = recent > 0 ? "yes" : "no";
    setText("v-429", int(recent));
    setText("v-429-sub", int(T.upstream_429s) + " since start · " + int(T.upstream_server_errors) + " 5xx");
    setText("v-hit", pct(T.cache_hit_rate));
    setText("v-hit-sub", "API call reduction " + pct(T.api_call_reduction) + " · " + int(T.requests) + " requests · upstream " + int(T.upstream_bot_calls) + " for bots + " + int(T.upstream_refreshes) + " refreshes");
    var top = classOrder[0];
    setText("v-top-class", top || "top class");
    if (top) {
      var k = classes[top];
      var pk = before && before.classes[top];
      // The mean wait of the requests sent since the last sample, when any were.
      var sent = pk ? k.count - pk.count : 0;
      var recentMean = sent > 0 ? (k.sum - pk.sum) / sent : null;
      setText("v-wait", dur(k.p99));
      setText("v-wait-sub", int(k.depth) + " queued · " + int(k.count) + " sent" +
        (recentMean == null ? "" : " · just now: mean " + dur(recentMean)));
    } else {
      setText("v-wait", "–");
    }

    // --- reasons ---
    var list = $("reason-list");
    while (list.firstChild) list.removeChild(list.firstChild);
    reasons.forEach(function (r) {
      var li = document.createElement("li");
      li.dataset.severity = String(r.severity);
      li.textContent = String(r.severity) + " · " + r.up + ": " + String(r.message) + " (" + String(r.code) + ")";
      list.appendChild(li);
    });
    $("reasons").hidden = reasons.length === 0;

    // --- charts ---
    var outcomeKeys = OUTCOMES.map(function (o) { return "req." + o; });
    draw("c-requests", outcomeKeys, OUTCOMES, rate,
      { colors: OUTCOMES.map(function (o) { return OUTCOME_COLORS[o]; }), height: 180, fill: true });
    draw("c-ratios", ["ratio.hit", "ratio.reduction"], ["hit rate", "call reduction"], pct,
      { range: [0, 1.02], axis: pctAxis, colors: ["#3fb950", "#58a6ff"] });
    draw("c-upstream", ["up.calls", "up.429", "up.5xx"], ["calls", "429s", "5xx"], rate,
      { colors: ["#58a6ff", "#f85149", "#d29922"] });
    var bk = keysWith("budget.");
    draw("c-budget", bk, bk.map(function (k) { return k.slice(7); }), pct,
      { range: rangeUpTo(0, 0.1), axis: pctAxis, marks: "marks.buckets" });
    var tk = keysWith("tokens.");
    draw("c-tokens", tk, tk.map(function (k) { return k.slice(7); }), pct, { range: [0, 1.02], axis: pctAxis, marks: "marks.buckets" });
    var dk = classOrder.map(function (c) { return "depth." + c; });
    draw("c-depth", dk, classOrder, function (x) { return int(x); }, { range: rangeUpTo(0, 4) });
    var wk = classOrder.map(function (c) { return "wait." + c; });
    draw("c-wait", wk, classOrder, dur, { range: rangeUpTo(0, 1) });

    // --- served age (only when the stats carry it) ---
    $("panel-age").hidden = !age;
    if (age) {
      var ak = keysWith("age.");
      draw("c-age", ak, ak.map(function (k) { return k.slice(4); }), dur, { range: rangeUpTo(0, 1) });
      fillBody("t-age", Object.keys(age).map(function (k) {
        return [td(k), td(dur(age[k].p50)), td(dur(age[k].p99)), td(dur(age[k].max))];
      }));
    }

    // --- tables ---
    setText("h-bucket-upstream", isWorker ? "shard" : "upstream");
    fillBody("t-buckets", bucketRows.map(function (r) {
      var used = r.cps == null || !r.budget ? 0 : r.cps / r.budget;
      var left = num(r.b.burst) ? num(r.b.tokens) / num(r.b.burst) : 0;
      var stateText = r.state === "paused" ? "paused " + dur(num(r.b.paused_for_secs) * 1000)
        : r.state === "open" ? "breaker open" : r.state === "half_open" ? "breaker half-open" : "ok";
      return [td(r.up, "id"), td(String(r.b.scope)), td(r.b.credential == null ? "shared" : String(r.b.credential), "id"),
        td(r.cps == null ? "–" : rate(r.cps), "n"), td(rate(num(r.b.budget_per_sec) || r.budget), "n"),
        td(r.b.learned_per_sec == null ? "–" : rate(num(r.b.learned_per_sec)) + " (" + String(r.b.learned_from) +
          ", " + dur(num(r.b.learned_secs_ago) * 1000) + " ago)", "n"),
        bar(used, used > 0.9 ? "hot" : ""), bar(left, left < 0.2 ? "low" : ""), td(stateText, "state-" + r.state)];
    }));
    var names = Object.keys(clients);
    var pc = prevClients;
    var clientRows = names.map(function (n) {
      var c = clients[n];
      var r = pc && pc[n] ? delta(c.requests, pc[n].requests, dt) : null;
      return { n: n, c: c, r: r };
    });
    clientRows.sort(function (a, b) { return b.c.requests - a.c.requests || (a.n < b.n ? -1 : 1); });
    fillBody("t-clients", clientRows.slice(0, MAX_CLIENTS).map(function (x) {
      var ended = x.c.hit + x.c.stale + x.c.upstream + x.c.failed;
      return [td(x.n, "id"), td(x.r == null ? "–" : rate(x.r), "n"), td(int(x.c.requests), "n"),
        td(ended ? pct((x.c.hit + x.c.stale) / ended) : "–", "n"), td(int(x.c.upstream), "n"), td(int(x.c.failed), "n")];
    }));
    prevClients = clients;
    setText("h-per-upstream", isWorker ? "Per shard" : "Per upstream");
    setText("h-upstream-col", isWorker ? "shard" : "upstream");
    fillBody("t-upstreams", upRows);
    var note = $("shard-note");
    if (isWorker && (shardHeaders.unreachable > 0 || shardHeaders.omitted > 0)) {
      note.hidden = false;
      note.textContent = shardHeaders.unreachable + " shard(s) did not report, " + shardHeaders.omitted + " not asked (per-call limit)";
    } else {
      note.hidden = true;
    }
    setText("where", location.host + " · " + ups.length + (isWorker ? " shard" : " upstream") + (ups.length === 1 ? "" : "s") +
      " · updated " + new Date().toLocaleTimeString("en-GB"));
    // For the browser test: does the page fit the window's width?
    document.body.dataset.overflow = document.documentElement.scrollWidth > window.innerWidth + 1 ? "yes" : "no";
  }
  var prevClients = null;

  function worst(ups) {
    var order = { healthy: 0, degraded: 1, unhealthy: 2 };
    var w = null;
    ups.forEach(function (u) { if (w == null || order[u.status] > order[w]) w = u.status; });
    return w;
  }

  // --- the admin token ----------------------------------------------------
  // A daemon with server.admin_token_env answers its stats only to
  // requests carrying the token. Open the page as /dashboard#token=TOKEN:
  // a fragment never leaves the browser (no request line, no log has it);
  // the page keeps it in this tab's sessionStorage, takes it out of the
  // address bar and sends it as `Authorization: Bearer` on its fetches.
  var TOKEN_KEY = "syncoord-admin-token";
  function adminToken() {
    var m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {
      var t = decodeURIComponent(m[1]);
      try { sessionStorage.setItem(TOKEN_KEY, t); } catch (e) { /* storage off: this load only */ }
      try { history.replaceState(null, "", location.pathname + location.search); } catch (e) { /* keep the URL */ }
      return t;
    }
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }
  var adminHeaders = (function () {
    var t = adminToken();
    return t ? { Authorization: "Bearer " + t } : {};
  })();

  // --- polling -----------------------------------------------------------
  var failures = 0;
  function conn(state, text) {
    var el = $("conn");
    el.dataset.state = state;
    el.textContent = text;
  }
  function poll() {
    fetch(STATS, { cache: "no-store", credentials: "same-origin", headers: adminHeaders })
      .then(function (r) {
        if (r.status === 401) throw new Error("the stats need the admin token: open this page as /dashboard#token=TOKEN");
        if (!r.ok) throw new Error("stats answered " + r.status);
        var unreachable = r.headers.get("x-syncoord-unreachable-shards");
        var omitted = r.headers.get("x-syncoord-omitted-shards");
        return r.json().then(function (body) {
          sample(body, unreachable !== null, { unreachable: Number(unreachable) || 0, omitted: Number(omitted) || 0 });
        });
      })
      .then(function () { failures = 0; conn("live", "live"); },
        function (e) {
          // The coordinator is away (restarting, say): say so and keep
          // trying; not a page error.
          failures += 1;
          conn("error", "no answer (" + failures + "): " + (e && e.message || e));
        })
      .then(function () { setTimeout(poll, EVERY_MS); });
  }
  function start() {
    if (typeof uPlot === "undefined") {
      reportError("uPlot did not load");
      return;
    }
    poll();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
