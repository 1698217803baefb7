"""The status page the AdminServer serves at `/` (see `status.py`): one HTML document with
inline CSS and JS, no external asset and no build step.

The script reads `/status.json`, each member's `server_stats` through
`/status/member/<sid>/server_stats` and `/status/znodes.json`, every 5 seconds.  Znode
paths are client-chosen text: everything is written with `textContent`, never as HTML.
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>zkpy status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2430; background: #f4f6f9; }
header { background: #1d2430; color: #fff; padding: 10px 20px; display: flex; gap: 20px;
         align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
header span { color: #aab4c3; }
main { padding: 14px 20px; display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
section { background: #fff; border: 1px solid #d9dee6; border-radius: 6px; padding: 10px 14px; }
section.wide { grid-column: 1 / 3; }
h2 { font-size: 14px; margin: 0 0 8px; text-transform: uppercase; color: #5a6578;
     letter-spacing: .04em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eef1f5;
         font-variant-numeric: tabular-nums; }
th { color: #5a6578; font-weight: 600; }
td.num, th.num { text-align: right; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
         color: #fff; background: #7a8599; }
.leader { background: #2f7d32; } .follower { background: #1f64b3; }
.observer { background: #7b4fb0; } .standalone { background: #2f7d32; }
.down { background: #c62828; } .not-serving { background: #d98a00; }
.kv { display: grid; grid-template-columns: auto 1fr; gap: 2px 16px; }
.kv div:nth-child(odd) { color: #5a6578; }
svg text { font: 11px system-ui, sans-serif; fill: #5a6578; }
.muted { color: #7a8599; font-size: 12px; }
</style>
</head>
<body>
<header><h1>zkpy</h1><span id="me">loading...</span><span id="updated"></span></header>
<main>
<section class="wide"><h2>Ensemble</h2>
<table id="members"><thead><tr><th>Server</th><th>Admin address</th><th>Role</th>
<th class="num">zxid</th><th class="num">Epoch</th><th class="num">Latency min/avg/max ms</th>
<th class="num">Connections</th><th class="num">Outstanding</th><th class="num">Znodes</th></tr></thead>
<tbody></tbody></table></section>
<section class="wide"><h2>Requests per second and latency (this server)</h2>
<div id="chart"></div>
<div class="muted" id="chartnote"></div></section>
<section><h2>Sessions and watches (this server)</h2><div class="kv" id="counts"></div></section>
<section><h2>Biggest znodes (data size)</h2>
<table id="znodes"><thead><tr><th>Path</th><th class="num">Bytes</th></tr></thead><tbody></tbody></table>
<div class="muted" id="znodenote"></div></section>
</main>
<script>
"use strict";
const SVGNS = "http://www.w3.org/2000/svg";

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = String(text);
  return e;
}
async function getJSON(url) {
  const r = await fetch(url, {cache: "no-store"});
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}
function hex(n) { return "0x" + BigInt.asUintN(64, BigInt(n)).toString(16); }

async function memberRow(m) {
  const tr = el("tr");
  tr.id = "member-" + m.sid;
  tr.dataset.sid = m.sid;
  const name = m.sid === 0 ? "standalone" : "server." + m.sid + (m.self ? " (this)" : "");
  tr.appendChild(el("td", name));
  tr.appendChild(el("td", m.host + ":" + m.admin_port));
  let st = null, err = null;
  try {
    const d = await getJSON("/status/member/" + m.sid + "/server_stats");
    if (d.error) err = d.error; else st = d;
  } catch (e) { err = "down"; }
  const role = el("td");
  if (st === null) {
    const down = err === "down";
    role.appendChild(el("span", down ? "down" : "not serving", "badge " + (down ? "down" : "not-serving")));
    tr.dataset.state = down ? "down" : "not-serving";
    tr.appendChild(role);
    for (let i = 0; i < 6; i++) tr.appendChild(el("td", "-", "num"));
    return tr;
  }
  const s = st.server_stats;
  role.appendChild(el("span", s.server_state, "badge " + s.server_state));
  tr.dataset.state = s.server_state;
  tr.appendChild(role);
  const z = s.last_processed_zxid;
  tr.appendChild(el("td", hex(z), "num"));
  tr.appendChild(el("td", Number(BigInt.asUintN(64, BigInt(z)) >> 32n), "num"));
  tr.appendChild(el("td", s.min_latency + " / " + s.avg_latency + " / " + s.max_latency, "num"));
  tr.appendChild(el("td", s.num_alive_client_connections, "num"));
  tr.appendChild(el("td", s.outstanding_requests, "num"));
  tr.appendChild(el("td", st.node_count, "num"));
  return tr;
}

function line(points, w, h, pad, max, color, now, span) {
  const pts = points.map(([t, v]) => {
    const x = pad + (1 - (now - t) / span) * (w - 2 * pad);
    const y = h - pad - (max > 0 ? v / max : 0) * (h - 2 * pad);
    return x.toFixed(1) + "," + y.toFixed(1);
  });
  return svg("polyline", {points: pts.join(" "), fill: "none", stroke: color, "stroke-width": "1.5"});
}

function chart(hist) {
  const box = document.getElementById("chart");
  const w = Math.max(400, box.clientWidth || 1000), h = 130, pad = 24;
  const rows = hist.samples;
  box.replaceChildren();
  const series = [
    {name: "requests/s", idx: 1, color: "#1f64b3", id: "chart-requests"},
    {name: "latency ms: avg (green), max (orange)", idx: 2, idx2: 3, color: "#2f7d32",
     color2: "#d98a00", id: "chart-latency"},
  ];
  // the last minute at least, ten minutes at most (the server keeps 600 samples)
  const secs = Math.min(600, Math.max(60, rows.length));
  const span = secs * 1000, now = rows.length ? rows[rows.length - 1][0] : Date.now();
  for (const s of series) {
    const g = svg("svg", {width: w, height: h, viewBox: "0 0 " + w + " " + h, id: s.id,
                          "data-samples": rows.length});
    const a = rows.map(r => [r[0], r[s.idx]]);
    const b = s.idx2 ? rows.map(r => [r[0], r[s.idx2]]) : [];
    const max = Math.max(1, ...a.map(p => p[1]), ...b.map(p => p[1]));
    g.appendChild(svg("rect", {x: pad, y: pad, width: w - 2 * pad, height: h - 2 * pad,
                               fill: "#fafbfc", stroke: "#d9dee6"}));
    g.appendChild(svg("text", {x: pad, y: 14}, s.name + " (max " + max + ")"));
    g.appendChild(svg("text", {x: pad, y: h - 8}, "-" + secs + " s"));
    g.appendChild(svg("text", {x: w - pad, y: h - 8, "text-anchor": "end"}, "now"));
    if (rows.length) {
      g.appendChild(line(a, w, h, pad, max, s.color, now, span));
      if (b.length) g.appendChild(line(b, w, h, pad, max, s.color2, now, span));
    }
    box.appendChild(g);
  }
  const total = rows.reduce((t, r) => t + r[1], 0);
  document.getElementById("chartnote").textContent =
    rows.length + " one-second samples, " + total + " requests; whole milliseconds, as ZooKeeper";
}

function counts(st) {
  const kv = document.getElementById("counts");
  kv.replaceChildren();
  const items = [["Role", st.server_state], ["Client connections", st.connections],
                 ["Global sessions", st.sessions], ["Local sessions", st.local_sessions],
                 ["Watches", st.watches], ["Znodes", st.znode_count],
                 ["Approximate data size", st.approximate_data_size + " bytes"]];
  for (const [k, v] of items) { kv.appendChild(el("div", k)); kv.appendChild(el("div", v)); }
}

async function znodes() {
  const tb = document.querySelector("#znodes tbody");
  try {
    const d = await getJSON("/status/znodes.json");
    tb.replaceChildren();
    for (const z of d.znodes) {
      const tr = el("tr");
      tr.appendChild(el("td", z.path));
      tr.appendChild(el("td", z.bytes, "num"));
      tb.appendChild(tr);
    }
    document.getElementById("znodenote").textContent = "paths and sizes only, computed at " +
      new Date(d.computed_at_ms).toLocaleTimeString() + " (cached " + d.cache_seconds + " s)";
  } catch (e) { document.getElementById("znodenote").textContent = "unavailable"; }
}

async function refresh() {
  let st;
  try { st = await getJSON("/status.json"); } catch (e) {
    document.getElementById("me").textContent = "this server is not answering";
    return;
  }
  document.getElementById("me").textContent = st.myid ? "server." + st.myid + ", " + st.server_state
                                                      : st.server_state;
  counts(st);
  chart(st.history);
  const rows = await Promise.all(st.members.map(memberRow));
  document.querySelector("#members tbody").replaceChildren(...rows);
  await znodes();
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  document.body.dataset.loaded = "1";
}
refresh();
setInterval(refresh, 5000);
</script>
</body>
</html>
"""
