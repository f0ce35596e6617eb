// SparkTrends dashboard: four pages over the read API (dashboard/server.py), routed by the URL's hash.
// Every number shown comes from /api/v1; nothing is computed here except presentation (annualising volatility
// with the factor the API gives for the symbol's asset class, and formatting).
"use strict";

const LC = window.LightweightCharts;
const TIMEFRAMES = ["1m", "5m", "15m", "1h", "1d"];
const VOLATILITY = ["vol_cc", "vol_ewma", "vol_parkinson", "vol_gk", "vol_rs", "vol_yz"];
const VOL_COLORS = ["#4aa3ff", "#f5a623", "#9b59b6", "#2ecc71", "#e67e22", "#e91e63"];
const REFRESH_MS = 5000;

// What the open page shows, for a person (the legend) and for the browser tests (tests/stack/test_dashboard.py).
window.sparktrends = { page: null, ready: false };
let cleanup = [];

const page = () => document.getElementById("page");
const fmt = (x, digits = 2) => (x === null || x === undefined ? "–" : Number(x).toLocaleString(undefined,
  { maximumFractionDigits: digits, minimumFractionDigits: digits }));
const pct = (x, digits = 2) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(digits)}%`);
const when = (iso) => (iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) : "–");
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

async function api(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function every(ms, fn) {
  fn();
  const id = setInterval(fn, ms);
  cleanup.push(() => clearInterval(id));
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

// ------------------------------------------------------------------------------------------------ watchlist

function watchlist() {
  page().innerHTML = `<h1>Watchlist</h1><table id="watchlist"><thead><tr>
    <th>symbol</th><th>last</th><th>1m return</th><th>volatility (annualised)</th><th>volume vs usual</th>
    <th class="text">recent alerts (24 h)</th><th class="text">last bar</th><th class="text">source</th>
    </tr></thead><tbody></tbody></table>`;
  every(REFRESH_MS, async () => {
    const { symbols } = await api("/api/v1/symbols");
    document.querySelector("#watchlist tbody").innerHTML = symbols.map((s) => `<tr>
      <td><a href="#/symbol/${encodeURIComponent(s.symbol)}/1m">${esc(s.symbol)}</a></td>
      <td>${fmt(s.close, 4)}</td>
      <td class="${s.ret > 0 ? "up" : s.ret < 0 ? "down" : ""}">${pct(s.ret, 3)}</td>
      <td>${pct(s.vol_annualised, 1)}</td>
      <td>${s.volume_vs_usual === null ? "–" : `×${fmt(s.volume_vs_usual, 2)}`}</td>
      <td class="text">${s.alerts_24h ? `<span class="${esc(s.last_alert_severity)}">${s.alerts_24h}: last
        ${esc(s.last_alert_kind)} at ${when(s.last_alert_ts)}</span>` : "–"}</td>
      <td class="text">${when(s.ts)}</td><td class="text">${esc(s.source)}</td></tr>`).join("");
    window.sparktrends = { page: "watchlist", ready: true, symbols };
    setStatus(`${symbols.length} symbols, updated ${new Date().toLocaleTimeString()}`);
  });
}

// ------------------------------------------------------------------------------------------------ symbol

function markerOf(a) {
  return {
    time: a.time, position: "aboveBar", shape: "arrowDown", text: a.kind,
    color: a.severity === "critical" ? "#ef5350" : "#f5a623", id: String(a.id),
  };
}

function anomalyDetails(a) {
  return `<b class="${esc(a.severity)}">${esc(a.severity)} ${esc(a.kind)}</b> on ${esc(a.symbol)} at ${when(a.ts)},
    score ${fmt(a.score, 2)}; status <b>${esc(a.status)}</b>${a.delivery_note ? ` (${esc(a.delivery_note)})` : ""}
    ${a.last_error ? `, last error: ${esc(a.last_error)}` : ""}${a.sent_at ? `, sent ${when(a.sent_at)} to ${esc(a.channel)}` : ""}
    <pre>${esc(JSON.stringify(a.details, null, 1))}</pre>`;
}

async function symbolPage(symbol, tf) {
  page().innerHTML = `<h1>${esc(symbol)} <span class="legend" id="legend"></span></h1>
    <div class="toolbar">${TIMEFRAMES.map((t) => `<button data-tf="${t}" class="${t === tf ? "active" : ""}">${t}</button>`).join("")}
    <span class="legend">candles, volume and VWAP; below: the six volatility estimators, annualised</span></div>
    <div id="chart"></div><div id="details">Click an anomaly marker for its details.</div>`;
  for (const button of document.querySelectorAll(".toolbar button")) {
    button.onclick = () => { location.hash = `#/symbol/${encodeURIComponent(symbol)}/${button.dataset.tf}`; };
  }
  const container = document.getElementById("chart");
  const chart = LC.createChart(container, {
    autoSize: true,
    layout: { background: { color: "#0f1419" }, textColor: "#d7dde4", panes: { separatorColor: "#222b35" } },
    grid: { vertLines: { color: "#1c232b" }, horzLines: { color: "#1c232b" } },
    timeScale: { timeVisible: true, secondsVisible: false },
  });
  cleanup.push(() => chart.remove());
  const candles = chart.addSeries(LC.CandlestickSeries, { upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
    wickUpColor: "#26a69a", wickDownColor: "#ef5350" });
  const volume = chart.addSeries(LC.HistogramSeries, { priceFormat: { type: "volume" }, priceScaleId: "volume",
    color: "#3a4b5c" });
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  const vwap = chart.addSeries(LC.LineSeries, { color: "#f5d76e", lineWidth: 1, priceLineVisible: false,
    lastValueVisible: false });
  const vols = VOLATILITY.map((name, i) => chart.addSeries(LC.LineSeries, { color: VOL_COLORS[i], lineWidth: 1,
    title: name, priceFormat: { type: "percent" }, priceLineVisible: false }, 1));
  const markers = LC.createSeriesMarkers(candles, []);
  const state = { anomalies: [], factor: 1 };

  const point = (b) => ({ time: b.time, open: b.open, high: b.high, low: b.low, close: b.close });
  // A new bar is appended; a bar that was already drawn (a late or repaired minute) is replaced where it is.
  const put = (series, p) => {
    const last = series.data().at(-1);
    series.update(p, last !== undefined && p.time < last.time);
  };
  const volumeBar = (b) => ({ time: b.time, value: b.volume, color: b.close >= b.open ? "#1f4d49" : "#5c2a2a" });
  const vwapPoint = (b) => {
    const value = tf === "1m" ? b.vwap_roll : b.vwap;
    return value === null || value === undefined ? { time: b.time } : { time: b.time, value };
  };
  const volPoint = (b, name) => (b[name] === null || b[name] === undefined ? { time: b.time }
    : { time: b.time, value: 100 * b[name] * state.factor });

  function bucketOf(time) {
    // The bar of this timeframe that holds `time` (anomalies are 1-minute events).
    const data = candles.data();
    let lo = 0, hi = data.length - 1, found = null;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (data[mid].time <= time) { found = data[mid].time; lo = mid + 1; } else hi = mid - 1;
    }
    return found;
  }
  function showMarkers() {
    const shown = new Map();
    for (const a of state.anomalies) {
      const time = bucketOf(a.time);
      if (time !== null && !shown.has(time)) shown.set(time, { ...markerOf(a), time });
    }
    const list = [...shown.values()].sort((x, y) => x.time - y.time);
    markers.setMarkers(list);
    window.sparktrends.markers = list;
  }

  const data = await api(`/api/v1/bars?symbol=${encodeURIComponent(symbol)}&tf=${tf}`);
  state.factor = data.annualise;
  state.anomalies = data.anomalies;
  candles.setData(data.bars.map(point));
  volume.setData(data.bars.map(volumeBar));
  vwap.setData(data.bars.map(vwapPoint));
  if (tf === "1m") VOLATILITY.forEach((name, i) => vols[i].setData(data.bars.map((b) => volPoint(b, name))));
  showMarkers();
  chart.timeScale().fitContent();
  document.getElementById("legend").textContent =
    `${data.bars.length} bars, profile ${data.profile}${tf === "1m" ? "" : "; volatility estimators are per 1-minute bar: switch to 1m"}`;

  chart.subscribeClick((param) => {
    if (param.time === undefined) return;
    const hit = state.anomalies.filter((a) => bucketOf(a.time) === param.time);
    if (hit.length) document.getElementById("details").innerHTML = hit.map(anomalyDetails).join("<hr>");
  });

  // Live: every bar whose metrics row commits is pushed by the server; a rollup re-reads its last buckets.
  const events = new EventSource(`/api/v1/stream?symbol=${encodeURIComponent(symbol)}`);
  cleanup.push(() => events.close());
  events.addEventListener("bars", async (event) => {
    const fresh = JSON.parse(event.data).bars;
    if (tf === "1m") {
      for (const b of fresh) {
        put(candles, point(b));
        put(volume, volumeBar(b));
        put(vwap, vwapPoint(b));
        VOLATILITY.forEach((name, i) => put(vols[i], volPoint(b, name)));
      }
    } else {
      const since = new Date(1000 * (candles.data().at(-1)?.time ?? 0)).toISOString();
      const tail = await api(`/api/v1/bars?symbol=${encodeURIComponent(symbol)}&tf=${tf}&from=${since}&metrics=0`);
      for (const b of tail.bars) { put(candles, point(b)); put(volume, volumeBar(b)); put(vwap, vwapPoint(b)); }
    }
    const latest = await api(`/api/v1/anomalies?symbol=${encodeURIComponent(symbol)}&from=${new Date(1000 * (fresh[0]?.time ?? 0) - 3600e3).toISOString()}`);
    const known = new Set(state.anomalies.map((a) => a.id));
    state.anomalies.push(...latest.anomalies.filter((a) => !known.has(a.id)));
    showMarkers();
    window.sparktrends.lastPush = { at: Date.now(), bars: fresh.map((b) => b.time) };
    setStatus(`live: last bar ${when(fresh.at(-1)?.ts)}`);
  });
  window.sparktrends = { page: "symbol", ready: true, symbol, tf, candles, markers: window.sparktrends.markers,
    bars: data.bars.length, renderedMs: performance.now() };
  setStatus(`${data.bars.length} bars loaded`);
}

// ------------------------------------------------------------------------------------------------ alerts

function alertsPage() {
  page().innerHTML = `<h1>Alerts</h1><div class="cards" id="counts"></div><h2>Newest 500</h2>
    <table id="alerts"><thead><tr><th class="text">bar</th><th class="text">symbol</th><th class="text">kind</th>
    <th class="text">severity</th><th>score</th><th class="text">status</th><th class="text">why</th>
    <th class="text">sent</th></tr></thead><tbody></tbody></table>`;
  every(REFRESH_MS, async () => {
    const { anomalies } = await api("/api/v1/anomalies?limit=500");
    const counts = {};
    for (const a of anomalies) counts[a.status] = (counts[a.status] || 0) + 1;
    document.getElementById("counts").innerHTML = ["pending", "delivered", "failed", "suppressed", "recorded"].map((s) =>
      `<div class="card"><div class="value">${counts[s] || 0}</div><div class="label">${s}</div></div>`).join("");
    document.querySelector("#alerts tbody").innerHTML = anomalies.map((a) => `<tr>
      <td class="text">${when(a.ts)}</td><td class="text"><a href="#/symbol/${encodeURIComponent(a.symbol)}/1m">${esc(a.symbol)}</a></td>
      <td class="text">${esc(a.kind)}</td><td class="text ${esc(a.severity)}">${esc(a.severity)}</td><td>${fmt(a.score)}</td>
      <td class="text">${esc(a.status)}</td><td class="text">${esc(a.delivery_note || a.last_error || "")}</td>
      <td class="text">${a.sent_at ? `${when(a.sent_at)} (${esc(a.channel)})` : "–"}</td></tr>`).join("");
    window.sparktrends = { page: "alerts", ready: true, anomalies: anomalies.length, counts };
  });
}

// ------------------------------------------------------------------------------------------------ pipeline

function pipelinePage() {
  page().innerHTML = `<h1>Pipeline</h1><div class="cards" id="cards"></div>
    <h2>Ingest by source (event time, last 10 minutes of bars)</h2><table id="sources"><thead><tr>
      <th class="text">source</th><th>trades/s</th><th>bars</th><th>symbols</th><th class="text">last bar</th></tr></thead><tbody></tbody></table>
    <h2>Streaming jobs (micro-batches of the last 10 minutes)</h2><table id="jobs"><thead><tr>
      <th class="text">job</th><th class="text">query</th><th>rows/s</th><th>batches</th><th>batch p50</th>
      <th>batch max</th><th>Kafka lag (offsets)</th><th>late dropped</th><th class="text">last batch</th></tr></thead>
      <tbody></tbody></table>
    <h2>Rejects by reason code</h2><table id="rejects"><thead><tr><th class="text">reason code</th><th>total</th>
      <th>last 10 min</th><th class="text">last</th></tr></thead><tbody></tbody></table>
    <h2>Feed gaps</h2><table id="gaps"><thead><tr><th class="text">source</th><th class="text">symbol</th><th>gaps</th>
      <th>missing</th><th>repaired</th><th>unrepairable</th><th>awaiting rebuild</th><th class="text">last</th></tr></thead><tbody></tbody></table>
    <h2>Late trades</h2><table id="late"><thead><tr><th class="text">source</th><th class="text">symbol</th><th>trades</th>
      <th class="text">latest trade</th></tr></thead><tbody></tbody></table>`;
  const rows = (id, list, cells) => {
    document.querySelector(`#${id} tbody`).innerHTML = list.length ? list.map((r) => `<tr>${cells(r)}</tr>`).join("")
      : `<tr><td class="text" colspan="8">none</td></tr>`;
  };
  every(REFRESH_MS, async () => {
    const h = await api("/api/v1/pipeline");
    const rate = h.sources.reduce((sum, s) => sum + s.trades_per_s, 0);
    const card = (value, label) => `<div class="card"><div class="value">${value}</div><div class="label">${label}</div></div>`;
    document.getElementById("cards").innerHTML = [
      card(fmt(rate, 2), "trades/s in bars"),
      card(h.alerts.pending, "alerts pending"),
      card(h.alerts.oldest_pending_age_s === null ? "–" : `${fmt(h.alerts.oldest_pending_age_s, 0)} s`, "oldest pending"),
      card(h.rejects.reduce((sum, r) => sum + r.count, 0), "rejects"),
      card(when(h.last_bar), "newest bar"),
      card(when(h.last_metrics_computed_at), "newest metrics row written"),
    ].join("");
    rows("sources", h.sources, (s) => `<td class="text">${esc(s.source)}</td><td>${fmt(s.trades_per_s, 2)}</td>
      <td>${s.bars_10m}</td><td>${s.symbols}</td><td class="text">${when(s.last_bar)}</td>`);
    rows("jobs", h.jobs, (j) => `<td class="text">${esc(j.job)}</td><td class="text">${esc(j.query)}</td>
      <td>${fmt(j.rows_per_s, 1)}</td><td>${j.batches_10m}</td><td>${fmt(j.p50_duration_ms / 1000, 2)} s</td>
      <td>${fmt(j.max_duration_ms / 1000, 2)} s</td><td>${j.offsets_behind ?? "–"}</td><td>${j.late_dropped_10m}</td>
      <td class="text">${when(j.last_batch_at)}</td>`);
    rows("rejects", h.rejects, (r) => `<td class="text">${esc(r.reason_code)}</td><td>${r.count}</td><td>${r.count_10m}</td>
      <td class="text">${when(r.last_at)}</td>`);
    rows("gaps", h.gaps, (g) => `<td class="text">${esc(g.source)}</td><td class="text">${esc(g.symbol)}</td><td>${g.gaps}</td>
      <td>${g.missing_trades}</td><td>${g.repaired_trades}</td><td>${g.unrepairable}</td><td>${g.awaiting_rebuild}</td>
      <td class="text">${when(g.last_gap_at)}</td>`);
    rows("late", h.late_trades, (l) => `<td class="text">${esc(l.source)}</td><td class="text">${esc(l.symbol)}</td>
      <td>${l.trades}</td><td class="text">${when(l.latest_trade_ts)}</td>`);
    window.sparktrends = { page: "pipeline", ready: true, tradesPerSecond: rate, sources: h.sources.length,
      jobs: h.jobs.map((j) => ({ job: j.job, query: j.query, batches: j.batches_10m, rowsIn: j.rows_in_10m })) };
  });
}

// ------------------------------------------------------------------------------------------------ router

function route() {
  for (const undo of cleanup) undo();
  cleanup = [];
  window.sparktrends = { page: null, ready: false };
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const show = {
    "": () => watchlist(),
    symbol: () => symbolPage(parts[1], TIMEFRAMES.includes(parts[2]) ? parts[2] : "1m"),
    alerts: () => alertsPage(),
    pipeline: () => pipelinePage(),
  }[parts[0]] || (() => watchlist());
  Promise.resolve(show()).catch((err) => { setStatus(String(err)); window.sparktrends.error = String(err); });
}

// A failure anywhere (a live update's handler included) shows in the status line, and to the browser tests.
window.addEventListener("unhandledrejection", (event) => {
  setStatus(String(event.reason));
  window.sparktrends.error = String(event.reason);
});
window.addEventListener("error", (event) => {
  setStatus(String(event.message));
  window.sparktrends.error = String(event.message);
});
window.addEventListener("hashchange", route);
route();
