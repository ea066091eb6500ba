// Screenshot of the live dashboard in real time (not virtual time), for
// docs/dashboard.png. Drives headless chromium over the DevTools protocol
// with Node 22's built-in WebSocket (the .toolchain's node).
//
//   node scripts/dashboard-screenshot.mjs URL OUT.png [SECONDS] [WIDTHxHEIGHT]
//
// scripts/dashboard-screenshot.sh runs the demo and this together.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, out, secs = "40", size = "1400x900"] = process.argv.slice(2);
if (!url || !out) {
  console.error("usage: node dashboard-screenshot.mjs URL OUT.png [SECONDS] [WIDTHxHEIGHT]");
  process.exit(2);
}
const [width, height] = size.split("x").map(Number);
const profile = mkdtempSync(join(tmpdir(), "syncoord-shot-"));
const chrome = spawn("chromium", [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--hide-scrollbars", `--user-data-dir=${profile}`, "--remote-debugging-port=0",
  `--window-size=${width},${height}`, "about:blank",
], { stdio: ["ignore", "ignore", "pipe"] });

const wsUrl = await new Promise((resolve, reject) => {
  let buf = "";
  chrome.stderr.on("data", (d) => {
    buf += d;
    const m = /DevTools listening on (ws:\/\/\S+)/.exec(buf);
    if (m) resolve(m[1]);
  });
  chrome.on("exit", (c) => reject(new Error(`chromium exited ${c}`)));
});
const port = new URL(wsUrl).port;
const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
const page = targets.find((t) => t.type === "page");
const ws = new WebSocket(page.webSocketDebuggerUrl);
await new Promise((r) => ws.addEventListener("open", r, { once: true }));
let id = 0;
const waiting = new Map();
const problems = [];
ws.addEventListener("message", (e) => {
  const msg = JSON.parse(e.data);
  if (msg.id && waiting.has(msg.id)) {
    waiting.get(msg.id)(msg);
    waiting.delete(msg.id);
  } else if (msg.method === "Runtime.exceptionThrown") {
    problems.push(msg.params.exceptionDetails.text);
  } else if (msg.method === "Runtime.consoleAPICalled" && msg.params.type === "error") {
    problems.push(JSON.stringify(msg.params.args));
  } else if (msg.method === "Log.entryAdded" && msg.params.entry.level === "error") {
    problems.push(msg.params.entry.text);
  }
});
const send = (method, params = {}) => new Promise((resolve) => {
  id += 1;
  waiting.set(id, resolve);
  ws.send(JSON.stringify({ id, method, params }));
});
await send("Runtime.enable");
await send("Log.enable");
await send("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile: width < 600 });
await send("Page.navigate", { url });
await new Promise((r) => setTimeout(r, Number(secs) * 1000));
const shot = await send("Page.captureScreenshot", { format: "png" });
writeFileSync(out, Buffer.from(shot.result.data, "base64"));
ws.close();
await new Promise((r) => { chrome.on("exit", r); chrome.kill(); });
rmSync(profile, { recursive: true, force: true });
if (problems.length) {
  console.error("console errors:\n" + problems.join("\n"));
  process.exit(1);
}
console.log(`wrote ${out} (${width}x${height}) after ${secs} s`);
