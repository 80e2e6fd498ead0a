// The scaler dashboard's page: live summary over server-sent events (/api/live); each view
// fetches its JSON when shown and again whenever the model's version moves. Plain JS, SVG and
// canvas: nothing is loaded from the internet.
"use strict";

const state = {
  view: "overview",
  version: -1,
  loading: false,
  again: false,
  tasks: { sort: "submitted", order: "desc", page: 1, pageSize: 50, q: "", state: "" },
  streamRuns: [],
  streamNow: 0,
};

// -- formatting -------------------------------------------------------------------------------

function fmtBytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n.toFixed(0)) + " " + units[i];
}
function fmtSeconds(s) {
  if (!s) return "0 s";
  if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
  if (s < 1) return (s * 1000).toFixed(1) + " ms";
  if (s < 120) return s.toFixed(2) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function fmtTime(epoch) {
  if (!epoch) return "";
  return new Date(epoch * 1000).toLocaleTimeString([], { hour12: false });
}
function fmtNumber(x, digits) {
  return Number(x || 0).toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 1 : digits });
}
function shortId(id) {
  // A client's task ids share a prefix and end with a counter: show a bit of both.
  return id.length > 14 ? id.slice(0, 6) + "…" + id.slice(-6) : id;
}
function colorOf(name) {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return "hsl(" + (h % 360) + ", 62%, 52%)";
}
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

// -- fetching ---------------------------------------------------------------------------------

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) { location.reload(); throw new Error("the token is needed"); }
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

async function refresh() {
  if (state.loading) { state.again = true; return; }
  state.loading = true;
  try {
    await RENDER[state.view]();
  } catch (error) {
    console.warn("refresh failed:", error);
  } finally {
    state.loading = false;
    if (state.again) { state.again = false; setTimeout(refresh, 0); }
  }
}

// -- the header, kept live by /api/live -------------------------------------------------------

function showSummary(s) {
  const totals = s.tasks_total || {};
  document.getElementById("s-workers").textContent = s.workers;
  document.getElementById("s-clients").textContent = s.clients;
  document.getElementById("s-rate").textContent = fmtNumber(s.tasks_per_second);
  document.getElementById("s-queued").textContent = fmtNumber(s.queued, 0);
  document.getElementById("s-running").textContent = fmtNumber(s.running, 0);
  document.getElementById("s-finished").textContent = fmtNumber(totals.finished, 0);
  document.getElementById("s-failed").textContent = fmtNumber(totals.failed, 0);
  const feed = document.getElementById("feed-status");
  if (!s.connected) {
    feed.className = "feed waiting";
    feed.textContent = "waiting for the status feed…";
  } else if (s.feed_silent_seconds > 5) {
    feed.className = "feed silent";
    feed.textContent = "scheduler silent for " + Math.round(s.feed_silent_seconds) + " s";
  } else {
    feed.className = "feed live";
    feed.textContent = "live · scheduler " + s.scheduler_version;
  }
}

function startLive() {
  const source = new EventSource("/api/live");
  source.addEventListener("summary", (event) => {
    const summary = JSON.parse(event.data);
    showSummary(summary);
    if (summary.version !== state.version || state.view === "stream") {
      state.version = summary.version;
      refresh();
    }
  });
  source.onerror = () => {
    const feed = document.getElementById("feed-status");
    feed.className = "feed silent";
    feed.textContent = "dashboard unreachable; retrying…";
  };
}

// -- overview: line charts in SVG -------------------------------------------------------------

function lineChart(container, title, times, series, format) {
  const width = 600, height = 150, left = 56, right = 8, top = 8, bottom = 20;
  container.replaceChildren();
  const last = series.length && series[0].values.length ? series.map((s) => format(s.values[s.values.length - 1])) : [];
  container.append(el("h3", {}, title, el("span", { class: "now" }, last.join(" / "))));
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
  container.append(root);
  let max = 0;
  for (const s of series) for (const v of s.values) max = Math.max(max, v);
  max = max > 0 ? max * 1.1 : 1;
  const t0 = times.length ? times[0] : 0, t1 = times.length ? times[times.length - 1] : 1;
  const span = t1 - t0 || 1;
  const x = (t) => left + ((t - t0) / span) * (width - left - right);
  const y = (v) => top + (1 - v / max) * (height - top - bottom);
  for (const fraction of [0, 0.5, 1]) {
    const value = max * fraction;
    root.append(svg("line", { class: "grid-line", x1: left, x2: width - right, y1: y(value), y2: y(value) }));
    const label = svg("text", { class: "axis", x: left - 4, y: y(value) + 3, "text-anchor": "end" });
    label.textContent = format(value);
    root.append(label);
  }
  if (times.length) {
    for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
      const label = svg("text", { class: "axis", x: x(t), y: height - 5, "text-anchor": anchor });
      label.textContent = fmtTime(t);
      root.append(label);
    }
  }
  for (const s of series) {
    const points = s.values.map((v, i) => x(times[i]).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
    root.append(svg("polyline", { points, fill: "none", stroke: s.color, "stroke-width": 2, "vector-effect": "non-scaling-stroke" }));
  }
}

async function renderOverview() {
  const data = await getJSON("/api/overview");
  const series = data.series, sched = data.scheduler;
  const figures = document.getElementById("scheduler-figures");
  figures.replaceChildren();
  if (sched.tasks_by_state) {
    const add = (label, value) => figures.append(el("div", {}, el("span", {}, label), value));
    add("scheduler CPU", fmtNumber(sched.cpu_percent) + " %");
    add("scheduler memory", fmtBytes(sched.rss_bytes));
    add("messages in / out per s", fmtNumber(sched.messages_in_per_second, 0) + " / " + fmtNumber(sched.messages_out_per_second, 0));
    add("objects", fmtNumber(sched.objects, 0) + " (" + fmtBytes(sched.object_bytes) + ")");
    add("uptime", fmtSeconds(data.summary.uptime_seconds));
    add("tasks seen", fmtNumber(data.summary.tasks_seen, 0));
  }
  const t = series.time;
  lineChart(document.getElementById("chart-rate"), "tasks per second", t,
    [{ values: series.tasks_per_second, color: "#2f6fde" }], (v) => fmtNumber(v));
  lineChart(document.getElementById("chart-queue"), "queued / running", t,
    [{ values: series.queued, color: "#d98b1a" }, { values: series.running, color: "#1f9d55" }], (v) => fmtNumber(v, 0));
  lineChart(document.getElementById("chart-workers"), "workers", t,
    [{ values: series.workers, color: "#7b4bd6" }], (v) => fmtNumber(v, 0));
  lineChart(document.getElementById("chart-cpu"), "cluster CPU (100 % = one core)", t,
    [{ values: series.cpu_percent, color: "#d64545" }], (v) => fmtNumber(v, 0) + " %");
  lineChart(document.getElementById("chart-memory"), "cluster memory", t,
    [{ values: series.rss_bytes, color: "#0e9aa7" }], fmtBytes);
}

// -- workers ----------------------------------------------------------------------------------

function sparkline(values, color) {
  const width = 90, height = 22;
  const root = svg("svg", { class: "spark", width, height, viewBox: `0 0 ${width} ${height}` });
  if (values.length > 1) {
    const max = Math.max(...values) || 1;
    const points = values.map((v, i) => ((i / (values.length - 1)) * width).toFixed(1) + "," + (height - 1 - (v / max) * (height - 2)).toFixed(1)).join(" ");
    root.append(svg("polyline", { points, fill: "none", stroke: color, "stroke-width": 1.5 }));
  }
  return root;
}

async function renderWorkers() {
  const workers = await getJSON("/api/workers");
  const body = document.querySelector("#workers-table tbody");
  body.replaceChildren();
  document.getElementById("workers-empty").style.display = workers.length ? "none" : "block";
  for (const w of workers) {
    const running = w.running.length
      ? w.running.map((task) => el("div", {}, el("b", {}, task.function || "?"), " ",
        el("span", { class: "mono muted" }, shortId(task.task_id)), " ", fmtSeconds(task.running_seconds)))
      : [el("span", { class: "muted" }, "idle")];
    body.append(el("tr", { "data-worker": w.worker },
      el("td", { class: "mono" }, w.worker),
      el("td", {}, el("span", { class: "state " + w.state }, w.state)),
      el("td", {}, ...running),
      el("td", { class: "num" }, w.queued),
      el("td", { class: "num" }, fmtNumber(w.done, 0)),
      el("td", { class: "num" }, `${w.processors_running}/${w.processors_parked}/${w.processors_idle}`),
      el("td", {}, sparkline(w.cpu_history, "#d64545"), fmtNumber(w.cpu_percent, 0) + " %"),
      el("td", {}, sparkline(w.rss_history, "#0e9aa7"), fmtBytes(w.rss_bytes)),
      el("td", { class: "num" }, fmtSeconds(w.heartbeat_age_seconds))));
  }
}

// -- task stream: one lane per worker, on a canvas --------------------------------------------

async function renderStream() {
  const windowSeconds = Number(document.getElementById("stream-window").value);
  const data = await getJSON("/api/stream?window=" + windowSeconds);
  state.streamRuns = data.runs;
  const canvas = document.getElementById("stream-canvas");
  const lane = 26, left = 230, top = 6, axis = 20;
  const workers = data.workers;
  const ratio = window.devicePixelRatio || 1;
  const cssWidth = canvas.clientWidth || 900;
  const cssHeight = top + Math.max(1, workers.length) * lane + axis;
  canvas.style.height = cssHeight + "px";
  canvas.width = cssWidth * ratio;
  canvas.height = cssHeight * ratio;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, cssWidth, cssHeight);
  const now = data.now || Date.now() / 1000;
  const t0 = now - windowSeconds;
  const x = (t) => left + ((t - t0) / windowSeconds) * (cssWidth - left - 10);
  const laneOf = new Map(workers.map((w, i) => [w, i]));
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  workers.forEach((w, i) => {
    ctx.fillStyle = i % 2 ? "#fafbfc" : "#f1f3f7";
    ctx.fillRect(0, top + i * lane, cssWidth, lane);
    ctx.fillStyle = "#1d2330";
    ctx.fillText(w.length > 34 ? "…" + w.slice(-33) : w, 6, top + i * lane + lane / 2);
  });
  const functions = new Map();
  const hits = [];
  for (const run of data.runs) {
    const i = laneOf.get(run.worker);
    if (i === undefined || run.end < t0) continue;
    functions.set(run.function, (functions.get(run.function) || 0) + 1);
    const x0 = Math.max(left, x(run.start)), x1 = Math.max(x0 + 1.5, x(run.end));
    const y0 = top + i * lane + 3, h = lane - 6;
    ctx.fillStyle = colorOf(run.function);
    ctx.globalAlpha = run.state === "running" ? 0.55 : 1;
    ctx.fillRect(x0, y0, x1 - x0, h);
    ctx.globalAlpha = 1;
    if (run.state === "failed" || run.state === "cancelled") {
      ctx.strokeStyle = run.state === "failed" ? "#d64545" : "#d98b1a";
      ctx.lineWidth = 2;
      ctx.strokeRect(x0, y0, x1 - x0, h);
    }
    hits.push({ x0, x1, y0, y1: y0 + h, run });
  }
  ctx.fillStyle = "#6b7280";
  const axisY = top + workers.length * lane + axis / 2;
  for (let k = 0; k <= 4; k++) {
    const t = t0 + (k / 4) * windowSeconds;
    ctx.textAlign = k === 0 ? "left" : k === 4 ? "right" : "center";
    ctx.fillText(fmtTime(t), x(t), axisY);
  }
  ctx.textAlign = "left";
  canvas._hits = hits;
  const legend = document.getElementById("stream-legend");
  legend.replaceChildren(...[...functions.entries()].sort().map(([name, count]) =>
    el("span", { "data-function": name }, el("i", { style: "background:" + colorOf(name) }), name + " (" + count + ")")));
  document.getElementById("stream-count").textContent =
    hits.length + " task runs on " + workers.length + " workers in the last " + windowSeconds + " s";
}

function streamTooltip(event) {
  const canvas = document.getElementById("stream-canvas");
  const tip = document.getElementById("stream-tip");
  const box = canvas.getBoundingClientRect();
  const px = event.clientX - box.left, py = event.clientY - box.top;
  const hit = (canvas._hits || []).find((h) => px >= h.x0 && px <= h.x1 && py >= h.y0 && py <= h.y1);
  if (!hit) { tip.style.display = "none"; return; }
  const r = hit.run;
  tip.textContent = `${r.function} · ${r.state} · ${fmtSeconds(r.end - r.start)} · ${shortId(r.task_id)}`;
  tip.style.left = (px + 12) + "px";
  tip.style.top = (py + 12) + "px";
  tip.style.display = "block";
}

// -- tasks: server-side filter, sort and pages --------------------------------------------

async function renderTasks() {
  const t = state.tasks;
  const query = new URLSearchParams({ q: t.q, state: t.state, sort: t.sort, order: t.order, page: t.page, page_size: t.pageSize });
  const data = await getJSON("/api/tasks?" + query);
  const select = document.getElementById("tasks-state");
  if (select.options.length === 1) {
    for (const s of data.states) select.append(el("option", { value: s }, s));
  }
  for (const option of select.options) {
    if (option.value) option.textContent = option.value + " (" + (data.counts[option.value] || 0) + ")";
  }
  const pages = Math.max(1, Math.ceil(data.total / data.page_size));
  if (t.page > pages) { t.page = pages; }
  document.getElementById("tasks-page").textContent = `page ${data.page} of ${pages} · ${fmtNumber(data.total, 0)} tasks`;
  document.getElementById("tasks-held").textContent =
    `holding ${fmtNumber(data.held, 0)} of at most ${fmtNumber(data.ring_size, 0)}` +
    (data.forgotten ? ` · ${fmtNumber(data.forgotten, 0)} older ones forgotten` : "");
  for (const th of document.querySelectorAll("#tasks-table th[data-sort]")) {
    th.classList.toggle("sorted-asc", th.dataset.sort === t.sort && t.order === "asc");
    th.classList.toggle("sorted-desc", th.dataset.sort === t.sort && t.order === "desc");
  }
  const body = document.querySelector("#tasks-table tbody");
  body.replaceChildren(...data.rows.map((r) => el("tr", { "data-task": r.task_id },
    el("td", { class: "mono", title: r.task_id }, shortId(r.task_id)),
    el("td", { class: "mono", title: r.client }, r.client.length > 30 ? "…" + r.client.slice(-29) : r.client),
    el("td", {}, el("i", { class: "dot", style: "color:" + colorOf(r.function) }, "■ "), r.function),
    el("td", { title: r.detail }, el("span", { class: "state " + r.state }, r.state)),
    el("td", { class: "mono", title: r.worker }, r.worker.length > 30 ? "…" + r.worker.slice(-29) : r.worker),
    el("td", { class: "num" }, r.attempt),
    el("td", {}, fmtTime(r.submitted)),
    el("td", { class: "num" }, r.started || r.queue_wait_seconds ? fmtSeconds(r.queue_wait_seconds) : ""),
    el("td", { class: "num" }, r.ended || r.run_seconds ? fmtSeconds(r.run_seconds) : ""),
    el("td", { class: "num" }, r.peak_memory_bytes ? fmtBytes(r.peak_memory_bytes) : ""))));
}

function setupTasks() {
  let timer = null;
  document.getElementById("tasks-filter").addEventListener("input", (event) => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.tasks.q = event.target.value; state.tasks.page = 1; refresh(); }, 250);
  });
  document.getElementById("tasks-state").addEventListener("change", (event) => {
    state.tasks.state = event.target.value; state.tasks.page = 1; refresh();
  });
  document.getElementById("tasks-page-size").addEventListener("change", (event) => {
    state.tasks.pageSize = Number(event.target.value); state.tasks.page = 1; refresh();
  });
  document.getElementById("tasks-prev").addEventListener("click", () => {
    if (state.tasks.page > 1) { state.tasks.page--; refresh(); }
  });
  document.getElementById("tasks-next").addEventListener("click", () => { state.tasks.page++; refresh(); });
  for (const th of document.querySelectorAll("#tasks-table th[data-sort]")) {
    th.addEventListener("click", () => {
      const t = state.tasks;
      if (t.sort === th.dataset.sort) t.order = t.order === "asc" ? "desc" : "asc";
      else { t.sort = th.dataset.sort; t.order = "asc"; }
      t.page = 1;
      refresh();
    });
  }
}

// -- clients ----------------------------------------------------------------------------------

async function renderClients() {
  const data = await getJSON("/api/clients");
  document.getElementById("clients-empty").style.display = data.clients.length ? "none" : "block";
  document.querySelector("#clients-table tbody").replaceChildren(...data.clients.map((c) => el("tr", { "data-client": c.client },
    el("td", { class: "mono" }, c.client),
    el("td", { class: "num" }, fmtNumber(c.queued, 0)),
    el("td", { class: "num" }, fmtNumber(c.running, 0)),
    el("td", { class: "num" }, fmtNumber(c.done, 0)),
    el("td", { class: "num" }, fmtNumber(c.failed, 0)),
    el("td", { class: "num" }, fmtNumber(c.cancelled, 0)),
    el("td", { class: "num" }, fmtNumber(c.credits_in_use, 0)),
    el("td", { class: "num" }, fmtSeconds(c.connected_seconds)))));
  document.querySelector("#peers-table tbody").replaceChildren(...data.peer_events.map((p) => el("tr", {},
    el("td", {}, fmtTime(p.time)),
    el("td", {}, p.kind.replace("_", " ")),
    el("td", { class: "mono" }, p.peer),
    el("td", {}, p.detail))));
}

// -- tabs -------------------------------------------------------------------------------------

const RENDER = { overview: renderOverview, workers: renderWorkers, stream: renderStream, tasks: renderTasks, clients: renderClients };

function show(view) {
  if (!RENDER[view]) view = "overview";
  state.view = view;
  for (const section of document.querySelectorAll(".view")) section.classList.toggle("active", section.id === "view-" + view);
  for (const tab of document.querySelectorAll("#tabs a")) tab.classList.toggle("active", tab.dataset.view === view);
  refresh();
}

window.addEventListener("hashchange", () => show(location.hash.slice(1)));
document.getElementById("stream-window").addEventListener("change", refresh);
window.addEventListener("resize", () => { if (state.view === "stream") refresh(); });  // the canvas follows the page's width
document.getElementById("stream-canvas").addEventListener("mousemove", streamTooltip);
setupTasks();
show(location.hash.slice(1) || "overview");
startLive();
