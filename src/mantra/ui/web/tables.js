// The DOM panels: instrument tree, depth ladder, orders and requests, and the small state tables.
// Each render builds one HTML string and touches the DOM only when it changed.
import { esc, fmtNs, fmtNsTime, fmtDur, fmtNum, fmtCount, decScale, decToBig, fmtFixed, sideName } from "./api.js";

function setHTML(el, html) {
  if (el._html !== html) { el._html = html; el.innerHTML = html; }
}

// Orders and requests: up to 500 rows each, redrawn several times a second on a busy system; only
// the rows in view (and a margin) are in the DOM, the rest is two spacer rows.
export class VTable {
  constructor(table, empty) {
    this.scroller = table.parentElement;
    this.tbody = table.tBodies[0];
    this.empty = empty;
    this.rows = [];
    this.rowH = 17;
    this.scroller.addEventListener("scroll", () => {
      if (!this.raf) this.raf = requestAnimationFrame(() => { this.raf = 0; this.render(); });
    }, { passive: true });
  }

  set(rows) {
    this.rows = rows;
    this.render();
  }

  render() {
    const n = this.rows.length;
    if (!n) { setHTML(this.tbody, this.empty); return; }
    const h = this.scroller.clientHeight || 400;
    const first = Math.max(0, Math.floor(this.scroller.scrollTop / this.rowH) - 10);
    const last = Math.min(n, first + Math.ceil(h / this.rowH) + 20);
    setHTML(this.tbody, `<tr class="pad" style="height:${first * this.rowH}px"></tr>` + this.rows.slice(first, last).join("") +
      `<tr class="pad" style="height:${(n - last) * this.rowH}px"></tr>`);
    const r = this.tbody.rows[1];
    const rh = r && r.getBoundingClientRect().height;
    if (rh > 8 && Math.abs(rh - this.rowH) > 0.5) { this.rowH = rh; this.render(); } // measured once
  }
}

const instName = (inst) => (inst ? `${inst.symbol}` : "?");
// side, flags and reason arrive as the messages' ints (side +1 buy, -1 sell)
const side = (s) => (typeof s === "number" ? sideName(s) : String(s ?? ""));
const sideCls = (s) => (/^b/i.test(side(s)) ? "buy" : /^s/i.test(side(s)) ? "sell" : "");
const FLAGS = [[1, "post-only"], [2, "IOC"], [4, "reduce-only"]];
const flags = (f) => (typeof f === "number" ? FLAGS.filter(([b]) => f & b).map(([, n]) => n).join(" ") : String(f ?? ""));
const reason = (r) => (!r ? "" : String(r));
// ids of a session share a long prefix (a start time): the tail tells them apart, the title has all
const id = (v) => {
  const s = String(v ?? "");
  return `<td class="id" title="${esc(s)}">${s.length > 10 ? "…" + esc(s.slice(-7)) : s === "0" ? "" : esc(s)}</td>`;
};
const statusCls = (s) => "st st-" + String(s || "").toLowerCase().replace(/_/g, "-");

// ------------------------------------------------------------------------------------ tree
export class Tree {
  constructor(el, onSelect) {
    this.el = el;
    this.leaves = new Map();
    this.sig = "";
    el.addEventListener("click", (e) => {
      const leaf = e.target.closest("[data-inst]");
      if (leaf) onSelect(leaf.dataset.inst);
    });
  }

  // instruments: [{id, venue, symbol}], grouped by venue, sorted by symbol
  setInstruments(list) {
    const sig = list.map((i) => i.id).join(",");
    if (sig === this.sig) return;
    this.sig = sig;
    const byVenue = new Map();
    for (const i of list) {
      if (!byVenue.has(i.venue)) byVenue.set(i.venue, []);
      byVenue.get(i.venue).push(i);
    }
    let html = "";
    for (const v of [...byVenue.keys()].sort()) {
      html += `<div class="venue"><div class="venue-h">${esc(v)}</div>`;
      for (const i of byVenue.get(v).sort((a, b) => a.symbol.localeCompare(b.symbol))) {
        html += `<div class="leaf" data-inst="${esc(i.id)}" data-status="unknown" title="${esc(i.venue)} ${esc(i.symbol)} (id ${esc(i.id)})">` +
          `<span class="dot"></span><span class="sym">${esc(i.symbol)}</span><span class="upd"></span><span class="badge">unknown</span></div>`;
      }
      html += "</div>";
    }
    this.el.innerHTML = html;
    this.leaves = new Map([...this.el.querySelectorAll("[data-inst]")].map((e) => [e.dataset.inst, e]));
    if (this.selected) this.select(this.selected);
  }

  update(books) {
    for (const b of books || []) {
      const e = this.leaves.get(String(b.inst));
      if (!e) continue;
      const st = b.status || "unknown";
      if (e.dataset.status !== st) { e.dataset.status = st; e.querySelector(".badge").textContent = st; }
      const u = fmtCount(b.updates);
      const ue = e.querySelector(".upd");
      if (ue.textContent !== u) ue.textContent = u;
    }
  }

  select(id) {
    this.selected = String(id);
    for (const [k, e] of this.leaves) e.classList.toggle("sel", k === this.selected);
  }
}

// ---------------------------------------------------------------------------------- ladder
export function renderLadder(el, book, inst, status) {
  if (!book) { setHTML(el, `<div class="empty">no book for this instrument</div>`); return; }
  const asks = (book.asks || []).slice();
  const bids = book.bids || [];
  let max = 0;
  for (const [, s] of asks) max = Math.max(max, parseFloat(s)); // bar widths only: exactness is in the text
  for (const [, s] of bids) max = Math.max(max, parseFloat(s));
  const row = (cls, [p, s]) => `<tr class="${cls}"><td class="num px">${esc(p)}</td><td class="num">${esc(s)}</td>` +
    `<td class="bar"><i style="width:${max > 0 ? ((parseFloat(s) / max) * 100).toFixed(1) : 0}%"></i></td></tr>`;
  let spread = "—";
  if (asks.length && bids.length) {
    const sc = Math.max(decScale(asks[0][0]), decScale(bids[0][0]));
    spread = fmtFixed(decToBig(asks[0][0], sc) - decToBig(bids[0][0], sc), sc);
  }
  let html = `<table class="ladder"><thead><tr><th class="num">price ${esc(inst ? inst.quote : "")}</th><th class="num">size ${esc(inst ? inst.base : "")}</th><th></th></tr></thead><tbody>`;
  for (let i = asks.length - 1; i >= 0; i--) html += row("ask", asks[i]);
  html += `<tr class="spread"><td class="num" colspan="2">spread ${esc(spread)}</td><td class="muted">${esc(status || "")}</td></tr>`;
  for (const b of bids) html += row("bid", b);
  html += `</tbody></table><div class="ladder-t mono" title="book time (UTC)">${book.t_ns_s ? fmtNs(book.t_ns_s) : "—"}</div>`;
  setHTML(el, html);
}

// --------------------------------------------------------------------------------- orders
function fillSelect(sel, options, allLabel) {
  const cur = sel.value;
  const html = `<option value="">${allLabel}</option>` + options.map(([v, l]) => `<option value="${esc(v)}">${esc(l)}</option>`).join("");
  if (sel._html !== html) {
    sel._html = html;
    sel.innerHTML = html;
    sel.value = options.some(([v]) => String(v) === cur) ? cur : "";
  }
}

export function setInstOptions(sel, instruments) {
  fillSelect(sel, instruments.map((i) => [String(i.id), `${i.symbol} · ${i.venue}`]), "all instruments");
}

export function renderOrders(doc, els, instById) { // els.orders, els.requests: VTables
  fillSelect(els.model, (doc.models || []).map((m) => [String(m), `model ${m}`]), "all models");
  fillSelect(els.status, (doc.statuses || []).map((s) => [s, s.toLowerCase().replace(/_/g, " ")]), "all statuses");
  const inst = (id) => instById.get(String(id));
  els.orders.set((doc.orders || []).map((o) => {
    const i = inst(o.inst);
    return `<tr><td class="mono" title="${fmtNs(o.t_ns_s)} UTC">${fmtNsTime(o.t_ns_s)}</td>${id(o.order_id)}` +
      `<td class="num">${esc(o.model)}</td><td title="${esc(i ? i.venue : "")}">${esc(instName(i) || o.inst)}</td>` +
      `<td class="${sideCls(o.side)}">${esc(side(o.side))}</td><td class="num">${esc(o.price)}</td><td class="num">${esc(o.size)}</td>` +
      `<td class="num">${esc(o.filled)}</td><td><span class="${statusCls(o.status)}">${esc(String(o.status).replace(/_/g, " "))}</span></td>` +
      `<td class="reason" title="${esc(reason(o.reason))}">${esc(reason(o.reason))}</td><td class="muted">${esc(flags(o.flags))}</td></tr>`;
  }));
  els.requests.set((doc.requests || []).map((r) => {
    const i = inst(r.inst);
    return `<tr><td class="mono" title="${fmtNs(r.t_ns_s)} UTC">${fmtNsTime(r.t_ns_s)}</td>${id(r.order_id)}` +
      `${id(r.ref_id)}<td>${esc(r.action)}</td><td title="${esc(i ? i.venue : "")}">${esc(instName(i) || r.inst)}</td>` +
      `<td class="num">${esc(r.model)}</td><td class="${sideCls(r.side)}">${esc(side(r.side))}</td><td class="num">${esc(r.price)}</td>` +
      `<td class="num">${esc(r.size)}</td><td class="num" title="${r.latency_ns == null ? "" : esc(r.latency_ns) + " ns"}">${fmtDur(r.latency_ns)}</td></tr>`;
  }));
}

// ----------------------------------------------------------------------------- state tables
export function renderTelemetry(tbody, rows) {
  const sorted = (rows || []).slice().sort((a, b) => (a.actor + a.stream + a.kind).localeCompare(b.actor + b.stream + b.kind));
  const html = sorted.map((t) => `<tr><td>${esc(t.actor)}</td><td>${esc(t.stream)} <span class="kind" title="${esc(t.kind)}">${t.kind === "processing" ? "proc" : t.kind === "latency" ? "lat" : esc(t.kind)}</span></td>` +
    `<td class="num">${fmtCount(t.n)}</td><td class="num">${fmtDur(t.p50_ns)}</td><td class="num">${fmtDur(t.p99_ns)}</td>` +
    `<td class="num">${fmtDur(t.p999_ns)}</td><td class="num">${fmtDur(t.max_ns)}</td></tr>`).join("");
  setHTML(tbody, html || `<tr class="empty"><td colspan="7">no telemetry</td></tr>`);
}

export function renderTraffic(tbody, rows) {
  let html = "";
  for (const q of rows || []) {
    const cs = q.consumers && q.consumers.length ? q.consumers : [{ label: "—", lag: null, lost: 0 }];
    cs.forEach((c, i) => {
      html += `<tr${i === 0 ? ' class="first"' : ""}>` +
        (i === 0 ? `<td rowspan="${cs.length}" title="${esc(q.type)}">${esc(q.queue)}</td>` +
          `<td rowspan="${cs.length}" class="num">${fmtNum(q.rate, 1)}</td><td rowspan="${cs.length}" class="num">${fmtCount(q.head)}</td>` : "") +
        `<td>${esc(c.label)}</td><td class="num">${c.lag == null ? "—" : fmtCount(c.lag)}</td>` +
        `<td class="num${c.lost > 0 ? " lost" : ""}">${fmtCount(c.lost)}</td></tr>`;
    });
  }
  setHTML(tbody, html || `<tr class="empty"><td colspan="6">no queues</td></tr>`);
}

export function renderBalances(tbody, balances, venue) {
  const rows = (balances || []).slice().sort((a, b) => ((a.venue !== venue) - (b.venue !== venue)) || a.venue.localeCompare(b.venue) || a.asset.localeCompare(b.asset));
  const html = rows.map((b) => `<tr${b.venue === venue ? ' class="hl"' : ""}><td>${esc(b.venue)}</td><td>${esc(b.asset)}</td>` +
    `<td class="num">${esc(b.total)}</td><td class="num">${esc(b.available)}</td></tr>`).join("");
  setHTML(tbody, html || `<tr class="empty"><td colspan="4">no balances</td></tr>`);
}

export function renderPnl(tbody, positions, pnl, instById, selected) {
  const ids = new Set([...(positions || []).map((p) => String(p.inst)), ...(pnl || []).map((p) => String(p.inst))]);
  const pos = new Map((positions || []).map((p) => [String(p.inst), p.qty]));
  const pl = new Map((pnl || []).map((p) => [String(p.inst), p]));
  const html = [...ids].map((id) => {
    const i = instById.get(id);
    const p = pl.get(id);
    const neg = p && String(p.value).startsWith("-");
    return `<tr${id === selected ? ' class="hl"' : ""}><td title="${esc(i ? i.venue : "")}">${esc(i ? `${i.symbol}@${i.venue}` : id)}</td>` +
      `<td class="num">${esc(pos.get(id) ?? "—")}</td><td class="num ${p ? (neg ? "neg" : "pos") : ""}">${esc(p ? p.value : "—")}</td>` +
      `<td class="muted">${esc(p ? p.quote : "")}</td></tr>`;
  }).join("");
  setHTML(tbody, html || `<tr class="empty"><td colspan="4">no positions</td></tr>`);
}
