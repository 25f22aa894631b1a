// Mantra realtime UI: polls the server's state, keeps one time view shared by every chart (the
// live edge, or where the user zoomed), and feeds the panels.  Read-only: only GETs.
import { getJSON, getText, parseBigJSON, setBase, toSec, toNs, fmtNs, fmtCount, stats } from "./api.js";
import { Panel, readTheme, priceSpec, balancesSpec, pnlSpec, latencySpec, trafficSpec, countVisible } from "./charts.js";
import { Tree, VTable, renderLadder, renderOrders, setInstOptions, renderTelemetry, renderTraffic, renderBalances, renderPnl } from "./tables.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 120;
const MIN_SPAN_S = 2e-5;

// --------------------------------------------------------------------------- test hooks
// redraws: ms from a zoom to its finer data drawn (the draw hook); painted: to the end of the
// frame showing it (rasterised); phases: where a redraw's time went
const M = (window.__m = { first_draw_ms: null, redraws: [], painted: [], phases: [], appends: 0 });
const UI = (window.__ui = {
  ready: false, charts: {}, lastRange: null,
  zoom: (a, b) => userRange(Number(a), Number(b)),
  live: () => goLive(),
  select: (id) => select(id),
  markers: (kind) => (P.price && S.sel ? countVisible(P.price, `${kind}/${S.sel}`) : 0),
  panelQueries: (name) => (P[name] ? P[name].queries : 0),
});
Object.defineProperty(UI, "queries", { get: () => stats.queries, enumerable: true });
Object.defineProperty(UI, "follow", { get: () => S.follow, enumerable: true });

// --------------------------------------------------------------------------------- state
const S = {
  meta: null, keys: new Set(), insts: [], byId: new Map(), sel: null, state: null,
  windowS: 60, follow: true, x0: null, x1: null, connected: null, tick: 0,
  ordersVersion: null, ordersBusy: false, ordersAgain: false, ordersAt: 0, ordersText: null, ordersShown: false,
  ladderShown: false, seriesN: {}, latLog: true, lastMeta: 0,
};
const P = {}; // the chart panels by name
const tree = new Tree($("tree"), (id) => select(id));
const ordersT = new VTable($("orders"), `<tr class="empty"><td colspan="11">no orders</td></tr>`);
const requestsT = new VTable($("requests"), `<tr class="empty"><td colspan="10">no requests</td></tr>`);
const have = (k) => S.keys.has(k);
const keysOf = (prefix) => [...S.keys].filter((k) => k.startsWith(prefix)).sort();
const selInst = () => S.byId.get(S.sel);

// ----------------------------------------------------------------------------------- theme
function setTheme(t) {
  document.documentElement.dataset.theme = t;
  readTheme();
  for (const p of Object.values(P)) p.u.redraw(false, false);
}
$("theme").addEventListener("click", () => {
  const t = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  try { localStorage.setItem("mantra.theme", t); } catch { /* private mode: not kept */ }
  setTheme(t);
});
{
  let saved = null;
  try { saved = localStorage.getItem("mantra.theme"); } catch { /* ignore */ }
  document.documentElement.dataset.theme = saved || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  readTheme();
}

// --------------------------------------------------------------------------------- header
function setConn(ok) {
  if (S.connected === ok) return;
  const was = S.connected;
  S.connected = ok;
  const e = $("conn");
  e.textContent = ok ? "connected" : "disconnected";
  e.className = "conn " + (ok ? "ok" : "down");
  document.body.classList.toggle("stale", !ok); // what is shown is no longer current
  if (ok && was === false) reloadAll(); // what failed while the server was away
}

function header(st) {
  $("clock").textContent = st.now_ns_s ? fmtNs(st.now_ns_s).slice(0, 23) + " UTC" : "—";
  $("clock").title = st.now_ns_s ? `server time ${fmtNs(st.now_ns_s)} UTC` : "";
  const ui = st.ui || {};
  const e = $("uiloss");
  e.textContent = `UI lost ${fmtCount(ui.lost ?? 0)} · lag ${fmtCount(ui.lag ?? 0)}`;
  e.classList.toggle("bad", ui.lost > 0);
  const m = $("mode");
  const mode = S.meta.mode === "recording" ? "recording" : st.live ? "live" : S.meta.mode;
  m.textContent = mode;
  m.className = "mode " + mode;
}

// ----------------------------------------------------------------------------- time view
const bigOr = (s, d) => (s ? BigInt(s) : d);
function edgeNs() {
  const st = S.state;
  const now = bigOr(st.now_ns_s, 0n), tmax = bigOr(st.t_max_ns_s, 0n);
  if (st.live || S.meta.mode === "live") return tmax > now ? tmax : now;
  return tmax > 0n ? tmax : now;
}
function followRange() {
  const e = edgeNs();
  const tmin = bigOr(S.state.t_min_ns_s, 0n);
  let t0 = S.windowS ? e - BigInt(S.windowS) * 1_000_000_000n : tmin;
  if (!S.windowS && (tmin <= 0n || tmin >= e)) t0 = e - 60_000_000_000n;
  return [toSec(t0), toSec(e)];
}
function view() { return { t0: toNs(S.x0), t1: toNs(S.x1) }; }
const edgeX = () => (S.state ? toSec(edgeNs()) : null);

// The view changes at once (queries and answers use it); the charts are rescaled once per frame:
// a burst of wheel events redraws once, and an answer drawn before the frame makes the rescale of
// the older data unnecessary (setX redraws only a scale that differs).
let viewFrame = 0;
function setView(x0, x1) {
  S.x0 = x0;
  S.x1 = x1;
  for (const p of Object.values(P)) { p.x0 = x0; p.x1 = x1; }
  if (viewFrame) return;
  const apply = () => {
    if (!viewFrame) return;
    viewFrame = 0;
    for (const p of Object.values(P)) p.setX(S.x0, S.x1);
  };
  viewFrame = requestAnimationFrame(apply);
  setTimeout(apply, 100); // hidden tabs get no frames
}

function updateLiveUI() {
  $("live").classList.toggle("on", S.follow);
  $("live").textContent = S.follow ? "● Live" : "▶ Live";
  const w = S.windowS ? String(S.windowS) : "all";
  for (const b of $("win").children) b.classList.toggle("on", S.follow && b.dataset.win === w);
}

// Zoom / pan from any chart or from __ui.zoom: stop following, show at once, re-query.
function userRange(a, b) {
  if (!S.state || !(b > a) || !Number.isFinite(a) || !Number.isFinite(b)) return;
  if (b - a < MIN_SPAN_S) { const c = (a + b) / 2; a = c - MIN_SPAN_S / 2; b = c + MIN_SPAN_S / 2; }
  // no further out than the data (and a margin): past it there is nothing to look at
  const tmin = bigOr(S.state.t_min_ns_s, 0n);
  const hi = edgeX(), lo = tmin > 0n ? toSec(tmin) : hi - 60;
  const m = Math.max((hi - lo) * 0.05, 1);
  const [A, B] = [lo - m, hi + m];
  if (b - a >= B - A) { a = A; b = B; } else if (a < A) { b += A - a; a = A; } else if (b > B) { a -= b - B; b = B; }
  S.follow = false;
  updateLiveUI();
  setView(a, b);
  scheduleLoad(performance.now());
}

// At most one range query per animation frame: the first at once, the rest coalesced to the
// frame's end (with the earliest request time, so redraw timings are not flattered).
let frameBusy = false, trailing = null, secTimer = null;
function scheduleLoad(at) {
  if (frameBusy) { trailing = trailing ?? at; return; }
  frameBusy = true;
  let done = false;
  const end = () => {
    if (done) return;
    done = true;
    frameBusy = false;
    if (trailing != null) { const t = trailing; trailing = null; scheduleLoad(t); }
  };
  requestAnimationFrame(end);
  setTimeout(end, 100); // hidden tabs get no frames
  const { t0, t1 } = view();
  // the price panel first: the small charts give up their connections and follow once the
  // gesture pauses (see afterDraw)
  clearTimeout(secTimer);
  for (const n of SECONDARY) P[n].cancel();
  P.price.want({ t0, t1, at, measure: true });
}
function secondaryLater() {
  clearTimeout(secTimer);
  secTimer = setTimeout(() => {
    if (P.price.busy || frameBusy) return secondaryLater();
    const v = view();
    for (const n of SECONDARY) P[n].want(v);
  }, 250);
}

function goLive() {
  if (!S.state) return;
  S.follow = true;
  updateLiveUI();
  const [a, b] = followRange();
  setView(a, b);
  reloadAll();
}

// Every panel anew for the view: the price panel first, the small charts once it is drawn (their
// requests would otherwise queue before its own on the browser's few connections per server).
function reloadAll() {
  if (!S.state || S.x0 == null) return;
  P.price.onIdle = () => {
    P.price.onIdle = null;
    const v = view();
    for (const n of SECONDARY) P[n].want(v);
  };
  P.price.want(view());
  S.lastFull = performance.now();
}

// ----------------------------------------------------------------------------------- panels
const SECONDARY = ["balances", "pnl", "latency", "traffic"];

function specs() {
  const inst = selInst();
  return {
    price: inst ? priceSpec(inst, have, $("price-legend")) : { keys: [], overlays: [], series: [], scales: {}, axes: [], legendEl: $("price-legend") },
    balances: balancesSpec(inst ? inst.venue : "", S.insts, have, keysOf, $("bal-legend"), inst && inst.quote, inst && inst.base),
    pnl: pnlSpec(S.insts, keysOf, $("pnl-legend")),
    latency: latencySpec(have, $("lat-legend"), S.latLog),
    traffic: trafficSpec(keysOf, $("traffic-legend")),
  };
}
const CHART_EL = { price: "price-chart", balances: "bal-chart", pnl: "pnl-chart", latency: "lat-chart", traffic: "traffic-chart" };

function applySpecs(only = null) {
  const sp = specs();
  for (const [name, spec] of Object.entries(sp)) {
    if (only && !only.includes(name)) continue;
    if (!P[name]) {
      P[name] = new Panel(name, $(CHART_EL[name]), { userRange, live: goLive, view, edgeX }, spec);
      P[name].afterDraw = (what, t, pf) => afterDraw(name, what, t, pf);
      if (S.x0 != null) P[name].setX(S.x0, S.x1);
      new ResizeObserver(() => onResize(name)).observe($(CHART_EL[name]));
    } else if (P[name].setSpec(spec)) {
      if (S.x0 != null) { P[name].setX(S.x0, S.x1); P[name].want(view()); }
    }
    UI.charts[name] = P[name].u;
  }
  P.price.onAnswer = (answers) => {
    const a = answers.find((x) => x.key.startsWith("top/")) || answers[0];
    if (a) UI.lastRange = { key: a.key, t0_ns_s: a.t0_ns_s, t1_ns_s: a.t1_ns_s, n: a.n, decimated: a.decimated };
  };
}

const resizeTimers = {};
function onResize(name) {
  const p = P[name];
  if (!p || !p.resize()) return;
  clearTimeout(resizeTimers[name]); // a new width: a new density to ask for
  resizeTimers[name] = setTimeout(() => { if (p.loaded && S.x0 != null) p.want(view()); }, 200);
}

const ms = (v) => Math.round(v * 100) / 100;
function afterDraw(name, what, t, pf) {
  const now = performance.now();
  if (name === "price" && what === "redraw") {
    M.redraws.push(ms(now - t));
    if (pf) M.phases.push({ queued: ms(pf.sent - t), fetch: ms(pf.fetched - pf.sent), parse: ms(pf.parse), draw: ms(now - pf.fetched) });
    requestAnimationFrame(() => setTimeout(() => M.painted.push(ms(performance.now() - t)), 0));
    if (!S.follow) secondaryLater();
  }
  if (name === "price" && what === "data" && M.first_draw_ms == null) M.first_draw_ms = Math.round(now * 10) / 10;
  checkReady();
}

function checkReady() {
  if (UI.ready) return;
  UI.ready = Object.keys(CHART_EL).every((n) => P[n] && P[n].drawnOnce) && S.ordersShown && S.ladderShown;
}

// ------------------------------------------------------------------------------- selection
function select(id, build = true) {
  id = String(id);
  const inst = S.byId.get(id);
  if (!inst) return;
  const changed = S.sel !== id;
  S.sel = id;
  tree.select(id);
  $("price-title").textContent = `${inst.symbol} · ${inst.venue}`;
  $("ladder-inst").textContent = `${inst.symbol} · ${inst.venue}`;
  $("bal-venue").textContent = inst.venue;
  if (changed) {
    $("f-inst").value = id; // the orders filter follows the selection
    history.replaceState(null, "", "#inst=" + encodeURIComponent(id)); // a reload keeps it
    fetchOrders();
  }
  if (build) applySpecs();
  if (S.state) stateTables(S.state);
}

// ---------------------------------------------------------------------------------- orders
async function fetchOrders() {
  if (S.ordersBusy) { S.ordersAgain = true; return; }
  S.ordersBusy = true;
  const version = S.state ? S.state.orders_version : null;
  try {
    const txt = await getText("orders", { inst: $("f-inst").value, model: $("f-model").value, status: $("f-status").value, limit: 500 });
    S.ordersVersion = version;
    if (txt !== S.ordersText) {
      S.ordersText = txt;
      renderOrders(parseBigJSON(txt), { orders: ordersT, requests: requestsT, model: $("f-model"), status: $("f-status") }, S.byId);
    }
    S.ordersShown = true;
    checkReady();
  } catch {
    /* asked again on the next version change or reconnect */
  } finally {
    S.ordersBusy = false;
    S.ordersAt = performance.now();
    if (S.ordersAgain) { S.ordersAgain = false; fetchOrders(); }
  }
}
for (const id of ["f-inst", "f-model", "f-status"]) $(id).addEventListener("change", () => fetchOrders());

// ----------------------------------------------------------------------------------- polling
function stateTables(st) {
  const inst = selInst();
  renderTelemetry($("tele-t"), st.telemetry);
  renderTraffic($("traffic-t"), st.traffic);
  renderBalances($("bal-t"), st.balances, inst && inst.venue);
  renderPnl($("pnl-t"), st.positions, st.pnl, S.byId, S.sel);
  const b = (st.books || []).find((x) => String(x.inst) === S.sel);
  const e = $("price-status");
  e.textContent = b ? b.status : "";
  e.dataset.status = b ? b.status : "";
}

function pickDefault(st, build = true) {
  const fromUrl = S.byId.get(decodeURIComponent((location.hash.match(/inst=([^&]+)/) || [])[1] || ""));
  const withTop = S.insts.filter((i) => have(`top/${i.id}`));
  const pick = fromUrl || withTop[0] || treeInstruments(st)[0];
  if (pick) select(pick.id, build);
}

function treeInstruments(st) {
  const ids = new Set((st.books || []).map((b) => String(b.inst)));
  for (const k of S.keys) { const id = k.split("/")[1]; if (/^(top|trades|orders|fills|books)$/.test(k.split("/")[0])) ids.add(id); }
  return S.insts.filter((i) => ids.has(String(i.id)));
}

// Which keys to ask for their new rows: those whose row count changed, if the server sends
// series_n (rows per key); otherwise the fast keys every tick and the rest every few.
function changedKeys(keys, every, st) {
  const sn = st.series_n;
  if (sn) return keys.filter((k) => sn[k] !== undefined && sn[k] !== S.seriesN[k]);
  return keys.filter((k) => /^(top|trades)\//.test(k) || S.tick % every === 0);
}

function followTick(st) {
  if (!S.follow || S.x0 == null) return;
  const [a, b] = followRange();
  const moved = a !== S.x0 || b !== S.x1;
  S.x0 = a;
  S.x1 = b;
  const live = st.live || S.meta.mode === "live";
  const span = b - a;
  // every 30 s (or when tails piled up) a full answer re-densifies the view and brings late rows
  const stale = performance.now() - (S.lastFull || 0) > 30_000 ||
    Object.values(P).some((p) => p.rows() > 12 * p.plotWidth() + 64);
  if (live && stale) { for (const p of Object.values(P)) p.setX(a, b); reloadAll(); return; }
  for (const [name, p] of Object.entries(P)) {
    if (!p.loaded) continue;
    const keys = live ? changedKeys(p.keys, name === "price" ? 3 : 12, st) : [];
    p.x0 = a;
    p.x1 = b;
    if (keys.length && !p.busy && !p.tailBusy) {
      if (st.series_n) for (const k of keys) S.seriesN[k] = st.series_n[k];
      p.tail(keys, span).then((n) => { if (name === "price" && n > 0) M.appends++; });
    } else if (moved && (name === "price" || S.tick % 4 === 0)) p.setX(a, b); // the small charts slide at 2 Hz: CPU
  }
}

function onState(st) {
  const first = !S.state;
  S.state = st;
  setBase(bigOr(st.t_min_ns_s, 0n) > 0n ? BigInt(st.t_min_ns_s) : bigOr(st.now_ns_s, 0n));
  header(st);
  tree.setInstruments(treeInstruments(st));
  tree.update(st.books);
  setInstOptions($("f-inst"), S.insts);
  if (first) {
    S.windowS = S.meta.mode === "recording" ? null : 60;
    updateLiveUI();
    [S.x0, S.x1] = followRange();
    pickDefault(st, false);
    applySpecs(["price"]); // the price panel and its query first: the first draw a user waits for
    reloadAll();
    applySpecs();
  } else {
    if (!S.sel) pickDefault(st); // a live system that had no instrument yet
    followTick(st);
  }
  stateTables(st);
  if (st.orders_version !== S.ordersVersion && performance.now() - S.ordersAt > 300) fetchOrders();
  if (Object.values(P).some((p) => p.failed && !p.busy)) reloadAll();
}

async function pollBook() {
  const inst = S.sel;
  const hasBook = S.state && (S.state.books || []).some((b) => String(b.inst) === inst);
  let book = null;
  if (inst && hasBook) {
    try { book = await getJSON("book", { inst, depth: 20 }, 2000); } catch { return; }
  }
  if (inst !== S.sel) return;
  const b = (S.state.books || []).find((x) => String(x.inst) === inst);
  renderLadder($("ladder"), book, selInst(), b && b.status);
  S.ladderShown = true;
  checkReady();
}

async function refreshMeta() {
  try {
    const meta = await getJSON("meta");
    const keys = meta.series.map((s) => s.key).sort().join("\n");
    if (keys !== [...S.keys].sort().join("\n") || meta.instruments.length !== S.insts.length) { setMeta(meta); applySpecs(); }
  } catch { /* next time */ }
}

function setMeta(meta) {
  S.meta = meta;
  S.keys = new Set(meta.series.map((s) => s.key));
  S.insts = meta.instruments;
  S.byId = new Map(meta.instruments.map((i) => [String(i.id), i]));
  $("system").textContent = meta.system;
  document.title = `${meta.system} · Mantra`;
}

async function poll() {
  const t = performance.now();
  let st = null;
  try {
    if (S.meta) st = await getJSON("state", {}, 3000);
    else {
      const [meta, s] = await Promise.all([getJSON("meta", {}, 3000), getJSON("state", {}, 3000)]);
      setMeta(meta);
      st = s;
    }
  } catch {
    setConn(false); // shown, and asked again; nothing thrown
  }
  try {
    if (st) {
      setConn(true);
      onState(st);
      S.tick++;
      pollBook();
      // new series appear as a live system runs (a first order, a new balance); at once when
      // a book we do not know shows up
      const unknown = (st.books || []).some((b) => !S.byId.has(String(b.inst)));
      if ((st.live || S.meta.mode === "live") && t - S.lastMeta > (unknown ? 1000 : 5000)) { S.lastMeta = t; refreshMeta(); }
    }
  } finally { // a bug in a panel shows in the console but does not stop the polling
    setTimeout(poll, Math.max(10, (S.connected ? POLL_MS : 1000) - (performance.now() - t)));
  }
}

// ----------------------------------------------------------------------------------- controls
$("live").addEventListener("click", goLive);
$("win").addEventListener("click", (e) => {
  const b = e.target.closest("[data-win]");
  if (!b) return;
  S.windowS = b.dataset.win === "all" ? null : Number(b.dataset.win);
  goLive();
});
$("lat-log").addEventListener("click", () => {
  S.latLog = !S.latLog;
  $("lat-log").textContent = S.latLog ? "log" : "linear";
  applySpecs();
});

poll();
