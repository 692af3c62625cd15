// lb stats page: fetches stats.json every 2 s and history.json every 10 s,
// and draws them. No dependency; names are set as text, never as HTML.
"use strict";

const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
};

const num = (v) => (v == null ? "-" : Math.round(v).toLocaleString("en-US"));
const bytes = (v) => {
  if (v == null) return "-";
  const u = ["B", "KB", "MB", "GB", "TB", "PB"];
  let i = 0;
  while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
  return (i ? v.toFixed(1) : v) + " " + u[i];
};
const secs = (s) => (s == null || s === 0 ? "-" : s < 1 ? Math.round(s * 1000) + " ms" : s.toFixed(2) + " s");
const ago = (t, now) => {
  if (!t) return "";
  let d = Math.max(0, Math.round(now - t));
  if (d < 60) return d + "s";
  if (d < 3600) return Math.floor(d / 60) + "m" + (d % 60) + "s";
  if (d < 86400) return Math.floor(d / 3600) + "h" + Math.floor((d % 3600) / 60) + "m";
  return Math.floor(d / 86400) + "d" + Math.floor((d % 86400) / 3600) + "h";
};
const code = (v, c) => (v && v[c]) || 0;

// quantile estimates a quantile from cumulative buckets (upper bounds).
function quantile(h, q) {
  if (!h || !h.count) return 0;
  const rank = q * h.count;
  const les = Object.keys(h.buckets).map(Number).sort((a, b) => a - b);
  for (const le of les) if (h.buckets[String(le)] >= rank) return le;
  return les[les.length - 1];
}

// base is the page's address without the credentials a user may have typed
// in it, which fetch refuses.
const base = location.origin + location.pathname;
const url = (path) => new URL(path, base).toString();

let history = {};
let last = null;

function draw(canvas, points, key, color) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 200, h = canvas.clientHeight || 60;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#d0d7de"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(0, h - 0.5); ctx.lineTo(w, h - 0.5); ctx.stroke();
  if (!points || points.length === 0) { canvas.dataset.points = "0"; return 0; }
  const max = Math.max(...points.map((p) => p[key]), 1e-9);
  const span = 90; // the points kept
  const x = (i) => w - (points.length - 1 - i) * (w / (span - 1));
  ctx.strokeStyle = color; ctx.fillStyle = color + "33"; ctx.lineWidth = 1.5;
  ctx.beginPath();
  points.forEach((p, i) => { const y = h - 2 - (p[key] / max) * (h - 6); i ? ctx.lineTo(x(i), y) : ctx.moveTo(x(i), y); });
  ctx.stroke();
  ctx.lineTo(x(points.length - 1), h); ctx.lineTo(x(0), h); ctx.closePath(); ctx.fill();
  canvas.dataset.points = String(points.length);
  return max;
}

function graph(name, points, key, color, fmt) {
  const c = el("canvas", { "data-series": key });
  const has = points && points.length;
  const cur = has ? "now " + fmt(points[points.length - 1][key]) + " · peak " + fmt(Math.max(...points.map((p) => p[key]))) : "-";
  const box = el("div", { class: "graph" }, el("div", { class: "label" }, el("span", { text: name }), el("span", { text: cur })), c);
  requestAnimationFrame(() => draw(c, points, key, color));
  return box;
}

async function act(backend, server, what, value) {
  const r = await fetch(url("action"), {
    method: "POST", headers: { "Content-Type": "application/json", "X-LB-Action": "1" },
    body: JSON.stringify({ backend, server, what, value: String(value) }),
  });
  const t = await r.text();
  document.getElementById("status").textContent = t.trim();
  refresh();
}

function serverRow(s, doc) {
  const v = s.values, st = s.state || {};
  let badge = st.status || (v.up ? "up" : "down");
  const label = badge + (st.checks ? " " + st.checks : "");
  const check = st.reason ? st.reason : st.checked ? "passed" : "no check";
  const since = st.changed ? " · since " + ago(st.changed, doc.time) : "";
  const errs = (v.connect_errors_total || 0) + (v.response_errors_total || 0);
  const tr = el("tr", { class: badge, "data-server": s.server },
    el("td", { text: s.server, title: st.address || "" }),
    el("td", { class: "state" }, el("span", { class: "badge " + badge, text: label })),
    el("td", { text: v.weight + (v.effective_weight !== v.weight ? " (" + v.effective_weight + ")" : "") }),
    el("td", { text: num(v.connections_current) }),
    el("td", { text: num(v.connections_max) }),
    el("td", { text: num(v.connections_total) }),
    el("td", { text: num(code(v.http_responses_total, "2xx")) }),
    el("td", { text: num(code(v.http_responses_total, "5xx")) }),
    el("td", { text: num(errs) }),
    el("td", { class: "hide-narrow", text: bytes(v.bytes_in_total) }),
    el("td", { class: "hide-narrow", text: bytes(v.bytes_out_total) }),
    el("td", { class: "check", text: check + since, title: st.last_check ? "last check " + ago(st.last_check, doc.time) + " ago, took " + secs(v.check_duration_seconds) : "" }));
  if (doc.admin) {
    const w = el("input", { type: "number", min: "0", max: "256", value: String(v.weight), "aria-label": "weight" });
    const td = el("td", { class: "actions" });
    for (const a of ["ready", "drain", "maint"]) {
      const b = el("button", { type: "button", text: a });
      b.onclick = () => act(s.backend, s.server, "state", a);
      td.append(b);
    }
    const b = el("button", { type: "button", text: "set weight" });
    b.onclick = () => act(s.backend, s.server, "weight", w.value);
    td.append(w, b);
    tr.append(td);
  }
  return tr;
}

function render(doc) {
  const p = doc.process;
  const proc = document.getElementById("process");
  proc.replaceChildren(
    el("span", { text: "generation " + p.lb_process_generation }),
    el("span", { text: "pid " + doc.pid }),
    el("span", { text: "up " + ago(doc.start, doc.time) }),
    el("span", { text: "reloads " + num(p.lb_reloads_total) }),
    el("span", { text: "draining " + p.lb_draining_generations + " (" + num(p.lb_draining_connections) + " conns)" }));

  const tb = document.querySelector("#frontends tbody");
  tb.replaceChildren(...(doc.frontends || []).map((f) => {
    const v = f.values;
    return el("tr", { "data-frontend": f.frontend },
      el("td", { text: f.frontend }), el("td", { text: num(v.connections_current) }), el("td", { text: num(v.max_connections) }),
      el("td", { text: num(v.connections_total) }), el("td", { text: num(v.http_requests_total) }),
      el("td", { text: num(code(v.http_responses_total, "2xx")) }), el("td", { text: num(code(v.http_responses_total, "3xx")) }),
      el("td", { text: num(code(v.http_responses_total, "4xx")) }), el("td", { text: num(code(v.http_responses_total, "5xx")) }),
      el("td", { text: bytes(v.bytes_in_total) }), el("td", { text: bytes(v.bytes_out_total) }),
      el("td", { text: secs(quantile(v.http_request_duration_seconds, 0.99)) }));
  }));

  const box = document.getElementById("backends");
  const cards = (doc.backends || []).map((b) => {
    const v = b.values, pts = (history.backends || {})[b.backend] || [];
    const servers = (doc.servers || []).filter((s) => s.backend === b.backend);
    const head = el("tr", {}, ...["server", "state", "weight", "current", "max", "total", "2xx", "5xx", "errors"].map((t) => el("th", { text: t })),
      el("th", { class: "hide-narrow", text: "bytes in" }), el("th", { class: "hide-narrow", text: "bytes out" }), el("th", { text: "last check" }),
      doc.admin ? el("th", { text: "actions" }) : null);
    return el("div", { class: "backend", "data-backend": b.backend },
      el("div", { class: "backend-head" }, el("h3", { text: "backend " + b.backend }),
        el("span", { text: v.servers_up + " of " + servers.length + " servers up" }),
        el("span", { text: num(v.http_requests_total) + " requests" }),
        el("span", { text: num(code(v.http_responses_total, "5xx")) + " 5xx" }),
        el("span", { text: "queue " + num(v.queue_current) })),
      el("div", { class: "graphs" },
        graph(v.http_requests_total || !v.bytes_in_total ? "requests/s" : "connections/s", pts, "rps", "#2f81f7", (x) => x.toFixed(1)),
        graph("errors/s", pts, "eps", "#cf222e", (x) => x.toFixed(2)),
        graph("p99 latency", pts, "p99", "#8250df", secs)),
      el("div", { class: "scroll" }, el("table", { class: "servers" }, el("thead", {}, head), el("tbody", {}, ...servers.map((s) => serverRow(s, doc))))));
  });
  box.replaceChildren(el("h2", { text: "Backends" }), ...cards);
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const r = await fetch(url("stats.json"), { cache: "no-store" });
    if (!r.ok) throw new Error("stats.json: HTTP " + r.status);
    last = await r.json();
    // Not while the user types a weight: the redraw would take the field away.
    const a = document.activeElement;
    if (!(a && a.tagName === "INPUT" && a.closest("#backends"))) render(last);
    status.className = "status";
    status.textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    status.className = "status stale";
    status.textContent = "not updated: " + e.message;
  }
}

// refreshHistory fetches the graphs' points as often as lb takes them
// (stats.history_step), every 2 s at most.
async function refreshHistory() {
  try {
    const r = await fetch(url("history.json"), { cache: "no-store" });
    if (r.ok) { history = await r.json(); if (last) render(last); }
  } catch (e) { /* the next round tries again */ }
  setTimeout(refreshHistory, Math.max(2, history.step_seconds || 10) * 1000);
}

refresh().then(refreshHistory);
setInterval(refresh, 2000);
