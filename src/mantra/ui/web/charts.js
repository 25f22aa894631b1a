// uPlot panels: one generic time panel (several series keys merged on one x), the price panel's
// overlays (trades, our orders, fills, book states), a UTC time axis down to the µs, and the
// wheel / drag / pan interactions, all routed through one view controller.
import uPlot from "./vendor/uPlot.esm.js";
import {
  getSeriesMany, stats, baseSec, fmtNs, fmtFixed, fmtDur, fmtNum, sideName, esc,
  ORDER_STATUS, ORDER_ACTION, BOOK_STATUS,
} from "./api.js";

// ------------------------------------------------------------------------------------- theme
export const theme = { palette: [] };
const THEME_VARS = ["fg", "muted", "axis", "grid", "panel", "bid", "ask", "buy", "sell", "grey", "warn", "gap", "resync", "stale"];
export function readTheme() {
  const cs = getComputedStyle(document.documentElement);
  for (const k of THEME_VARS) theme[k] = cs.getPropertyValue("--" + k).trim();
  theme.palette = [1, 2, 3, 4, 5, 6, 7, 8].map((i) => cs.getPropertyValue("--c" + i).trim());
}
const color = (c) => (typeof c === "number" ? () => theme.palette[c % theme.palette.length] : () => theme[c]);
const FONT = "11px system-ui, -apple-system, 'Segoe UI', sans-serif";
const PX = () => uPlot.pxRatio;

// -------------------------------------------------------------------------------- time axis
// Our own UTC ticks: uPlot's time axis stops at the millisecond, a latency engineer zooms to µs.
const INCRS = [1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05,
  0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
  86400, 172800, 604800, 2592000, 31536000];
const decimals = (incr) => (incr >= 1 ? 0 : Math.round(-Math.log10(incr) + 0.49));
const labelPx = (incr) => (incr >= 60 ? 5 : incr >= 1 ? 8 : 9 + decimals(incr)) * 6.6 + 26;

function timeSplits(u, ai, min, max) {
  const w = u.bbox.width / PX();
  const span = max - min;
  if (!(span > 0) || !(w > 0)) return [];
  let incr = INCRS[INCRS.length - 1];
  for (const c of INCRS) if ((span / c) * labelPx(c) <= w) { incr = c; break; }
  u._tIncr = incr;
  const b = baseSec(); // a whole second: sub-second ticks fall on round fractions of it
  const start = incr >= 1 ? Math.ceil(min / incr) * incr : b + Math.ceil((min - b) / incr) * incr;
  const out = [];
  for (let k = 0; k < 400; k++) {
    const v = start + k * incr;
    if (v > max) break;
    out.push(v);
  }
  return out;
}

function timeValues(u, splits) {
  const incr = u._tIncr || 1;
  const d = decimals(incr);
  let lastDay = null;
  return splits.map((v, i) => {
    let s = Math.floor(v);
    let f = Math.round((v - s) * 10 ** d);
    if (f >= 10 ** d) { s += 1; f = 0; }
    const iso = new Date(s * 1000).toISOString();
    const day = iso.slice(0, 10);
    let lab = incr >= 86400 ? iso.slice(5, 10) : incr >= 60 ? iso.slice(11, 16) : iso.slice(11, 19);
    if (d) lab += "." + String(f).padStart(d, "0");
    if (incr < 86400 && (i === 0 || day !== lastDay)) lab += "\n" + day;
    lastDay = day;
    return lab;
  });
}

const ySize = (u, values) => (values && values.length ? Math.max(...values.map((v) => String(v).length)) * 6.3 + 14 : 40);

function axisBase(extra) {
  return {
    stroke: () => theme.axis, font: FONT, labelFont: FONT, gap: 4,
    grid: { stroke: () => theme.grid, width: 1 },
    ticks: { stroke: () => theme.grid, width: 1, size: 3 },
    border: { show: false },
    ...extra,
  };
}
const xAxis = () => axisBase({ splits: timeSplits, values: timeValues, size: 36 });
const yAxis = (scale, side = 3, extra = {}) =>
  axisBase({ scale, side, size: ySize, grid: { show: side === 3, stroke: () => theme.grid, width: 1 }, ...extra });

// A y range that always exists (axes and grid draw even before data) and never collapses.
function padRange(mn, mx, log = false) {
  if (!Number.isFinite(mn) || !Number.isFinite(mx)) return log ? [1, 1000] : [0, 1];
  if (log) { // whole decades: ticks at 1, 10, 100…
    if (!(mx > 0)) return [1, 1000];
    const lo = Math.floor(Math.log10(Math.max(mn, mx * 1e-7))), hi = Math.ceil(Math.log10(mx));
    return [10 ** lo, 10 ** Math.max(hi, lo + 1)];
  }
  const p = mx > mn ? (mx - mn) * 0.08 : Math.abs(mx) * 0.01 || 1;
  return [mn - p, mx + p];
}

// ------------------------------------------------------------------------------- data helpers
// first index with x[i] >= v
function lowerBound(x, n, v) {
  let lo = 0, hi = n;
  while (lo < hi) { const m = (lo + hi) >> 1; if (x[m] < v) lo = m + 1; else hi = m; }
  return lo;
}

function concatSeg(a, b) {
  const n = a.n + b.n;
  const t = new BigInt64Array(n); t.set(a.t.subarray(0, a.n)); t.set(b.t, a.n);
  const x = new Float64Array(n); x.set(a.x.subarray(0, a.n)); x.set(b.x, a.n);
  const cols = {};
  for (const [k, c] of Object.entries(a.cols)) {
    const d = new c.data.constructor(n); d.set(c.data.subarray(0, a.n));
    if (b.cols[k]) d.set(b.cols[k].data, a.n);
    cols[k] = { data: d, scale: c.scale };
  }
  return { ...a, n, t, x, cols };
}

function sliceSeg(s, i) {
  if (i <= 0) return s;
  const cols = {};
  for (const [k, c] of Object.entries(s.cols)) cols[k] = { data: c.data.subarray(i), scale: c.scale };
  return { ...s, n: s.n - i, t: s.t.subarray(i), x: s.x.subarray(i), cols };
}

// k-way merge of the keys' x on one axis; src[k][row] = the key's row there, or -1.
function merge(segs) {
  if (segs.length === 1) return { x: segs[0].x.subarray(0, segs[0].n), src: null };
  let total = 0;
  for (const s of segs) total += s.n;
  const x = new Float64Array(total);
  const src = segs.map(() => new Int32Array(total).fill(-1));
  const pos = new Int32Array(segs.length);
  let r = -1;
  for (;;) {
    let best = -1, bx = Infinity;
    for (let j = 0; j < segs.length; j++) {
      if (pos[j] < segs[j].n && segs[j].x[pos[j]] < bx) { bx = segs[j].x[pos[j]]; best = j; }
    }
    if (best < 0) break;
    if (!(r >= 0 && x[r] === bx && src[best][r] === -1)) x[++r] = bx;
    src[best][r] = pos[best]++;
  }
  return { x: x.subarray(0, r + 1), src: src.map((a) => a.subarray(0, r + 1)) };
}

// A step line holds its last value until the next change: one more row at the view's end (or the
// data's end, if sooner), mapped to each step key's last row, so a quiet book or balance still
// draws across the view (and the legend shows the row that set it).
function extendSteps(m, segs, spec, xEnd) {
  const R = m.x.length;
  if (!R || !(xEnd > m.x[R - 1]) || !Number.isFinite(xEnd)) return m;
  const stepKeys = new Set(spec.series.filter((s) => s.kind === "step").map((s) => spec.keys.indexOf(s.key)));
  if (!stepKeys.size) return m;
  const x = new Float64Array(R + 1);
  x.set(m.x);
  x[R] = xEnd;
  const src = segs.map((seg, k) => {
    const a = new Int32Array(R + 1);
    if (m.src) a.set(m.src[k]); else for (let i = 0; i < R; i++) a[i] = i;
    a[R] = stepKeys.has(k) && seg.n ? seg.n - 1 : -1;
    return a;
  });
  return { x, src };
}

const EMPTY = { n: 0, t: new BigInt64Array(0), x: new Float64Array(0), cols: {} };

// ------------------------------------------------------------------------------------ panel
// spec: {keys, overlays, series: [{key, col, label, color, scale, kind, mult, fmt, keep}],
//        scales, axes, hooks, legendEl}
export class Panel {
  constructor(name, el, ctl, spec) {
    this.name = name;
    this.el = el;
    this.ctl = ctl;
    this.segs = new Map();
    this.gen = 0;
    this.specVersion = 0;
    this.loaded = false;
    this.drawnOnce = false;
    this.busy = false;
    this.tailBusy = false;
    this.pending = null;
    this.measureFrom = null;
    this.afterDraw = null;
    this.x0 = null;
    this.x1 = null;
    this.setSpec(spec);
  }

  get keys() { return [...this.spec.keys, ...(this.spec.overlays || [])]; }

  // Same series as before keeps the chart (and its data); anything else rebuilds it.
  setSpec(spec) {
    const sig = JSON.stringify([spec.keys, spec.overlays, spec.series.map((s) => [s.key, s.col, s.label, s.scale]), spec.sig]);
    if (this.u && sig === this.sig) { this.spec = { ...this.spec, ...spec, series: this.spec.series }; return false; }
    this.sig = sig;
    this.spec = spec;
    this.specVersion++;
    this.segs = new Map();
    this.loaded = false;
    this.m = { x: new Float64Array(0), src: null };
    if (spec.bind) spec.bind(this);
    if (this.u) { this.u.destroy(); this.u = null; }
    this.create();
    return true;
  }

  create() {
    const spec = this.spec;
    const self = this;
    const series = [{
      label: "UTC",
      // without a cursor the legend shows the newest row
      value: (u, v, si, idx) => {
        const i = idx ?? u.data[0].length - 1;
        return i < 0 ? "—" : fmtNs(self.tAt(i));
      },
    }];
    for (const s of spec.series) {
      const k = spec.keys.indexOf(s.key);
      const base = {
        label: s.label, scale: s.scale || "y", stroke: color(s.color), width: s.width ?? 1.25, dash: s.dash,
        value: (u, v, si, idx) => {
          if (idx == null) { // no cursor: the series' newest value
            const y = u.data[si];
            for (idx = y.length - 1; idx >= 0 && y[idx] == null; idx--);
            if (idx < 0) return "—";
          } else if (v == null) return "—";
          const seg = self.segs.get(s.key) || EMPTY;
          const r = self.m.src ? self.m.src[k][idx] : idx;
          const c = seg.cols[s.col];
          return r < 0 || !c ? "—" : s.fmt(c.data[r], c.scale, seg, r);
        },
      };
      if (s.kind === "custom") { // drawn by a hook; the series is there for the legend and the cursor
        Object.assign(base, { paths: () => null, points: { show: false } });
      } else if (s.kind === "points") {
        Object.assign(base, { paths: () => null, points: { show: true, size: 4, width: 0, fill: color(s.color), space: 0 } });
      } else {
        Object.assign(base, { paths: s.kind === "step" ? uPlot.paths.stepped({ align: 1 }) : undefined, points: { show: false } });
      }
      series.push(base);
    }
    const hooks = {
      draw: [],
      setSelect: [(u) => {
        const s = u.select;
        if (s.width > 4) {
          const a = u.posToVal(s.left, "x"), b = u.posToVal(s.left + s.width, "x");
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          this.ctl.userRange(a, b);
        }
      }],
    };
    for (const [k, fns] of Object.entries(spec.hooks || {})) hooks[k] = [...(hooks[k] || []), ...fns];
    hooks.draw.push((u) => this.onDraw(u)); // last: the markers are on the canvas when it runs
    const size = this.size();
    this.u = new uPlot({
      width: size.width, height: size.height, series, hooks,
      scales: { x: { time: false, auto: false }, ...spec.scales },
      axes: [xAxis(), ...spec.axes],
      legend: { show: true, live: true, mount: (u, el) => spec.legendEl && spec.legendEl.replaceChildren(el) },
      cursor: {
        sync: { key: "mantra", setSeries: false },
        drag: { x: true, y: false, setScale: false },
        points: { size: 6 },
        bind: {
          mousedown: (u, targ, handler) => (e) => {
            if (e.button !== 0) return null;
            if (e.shiftKey) { startPan(this, e); return null; }
            handler(e);
            return null;
          },
          dblclick: () => (e) => { if (e.button === 0) this.ctl.live(); return null; },
        },
      },
      padding: [8, 8, 0, 0],
    }, [new Float64Array(0), ...spec.series.map(() => [])], this.el);
    attachInteractions(this);
    if (this.x0 != null) this.u.setScale("x", { min: this.x0, max: this.x1 });
  }

  size() {
    const r = this.el.getBoundingClientRect();
    return { width: Math.max(100, Math.floor(r.width)), height: Math.max(60, Math.floor(r.height)) };
  }
  resize() {
    const s = this.size();
    if (s.width !== this.u.width || s.height !== this.u.height) { this.u.setSize(s); return true; }
    return false;
  }
  plotWidth() { return Math.max(50, Math.round(this.u.bbox.width / PX()) || this.size().width - 60); }

  // exact ns of a merged row: from the first key that has a row there
  tAt(idx) {
    const keys = this.spec.keys;
    for (let k = 0; k < keys.length; k++) {
      const r = this.m.src ? this.m.src[k][idx] : idx;
      const seg = this.segs.get(keys[k]);
      if (r >= 0 && seg && r < seg.n) return seg.t[r];
    }
    return null;
  }

  build() {
    const spec = this.spec;
    const segs = spec.keys.map((k) => this.segs.get(k) || EMPTY);
    this.m = extendSteps(merge(segs), segs, spec, Math.min(this.x1 ?? Infinity, this.ctl.edgeX() ?? Infinity));
    const R = this.m.x.length;
    const cols = spec.series.map((s) => {
      const k = spec.keys.indexOf(s.key);
      const seg = segs[k];
      const c = seg.cols[s.col];
      const mult = 10 ** -(c ? c.scale : 0) * (s.mult || 1);
      const src = this.m.src && this.m.src[k];
      const keep = s.keep;
      if (!src && !keep && c) {
        const y = new Float64Array(R);
        let nan = false;
        for (let i = 0; i < R; i++) { y[i] = c.data[i] * mult; nan ||= y[i] !== y[i]; }
        if (!nan) return y;
      }
      // holes (undefined) are alignment gaps that uPlot spans; NaN (an empty side of a book) is a
      // real gap: null
      const y = new Array(R);
      if (!c) return y;
      for (let i = 0; i < R; i++) {
        const r = src ? src[i] : i;
        if (r >= 0 && (!keep || keep(seg, r))) { const v = c.data[r] * mult; y[i] = v === v ? v : null; }
      }
      return y;
    });
    return [this.m.x, ...cols];
  }

  redraw() {
    const data = this.build();
    this.u.batch(() => {
      this.u.setData(data);
      if (this.x0 != null) this.u.setScale("x", { min: this.x0, max: this.x1 });
    });
  }

  setX(x0, x1) {
    this.x0 = x0;
    this.x1 = x1;
    const sc = this.u.scales.x;
    if (sc.min !== x0 || sc.max !== x1) this.u.setScale("x", { min: x0, max: x1 });
  }

  onDraw(u) {
    if (!this.loaded) return;
    if (!this.rows()) { // say so, rather than leave an empty grid to be puzzled over
      const { left, top, width, height } = u.bbox;
      u.ctx.save();
      u.ctx.font = `${12 * PX()}px system-ui, sans-serif`;
      u.ctx.fillStyle = theme.muted;
      u.ctx.textAlign = "center";
      u.ctx.fillText(this.keys.length ? "no data in this range" : "no data", left + width / 2, top + height / 2);
      u.ctx.restore();
    }
    if (this.measureFrom != null) {
      const t = this.measureFrom, pf = this.pf;
      this.measureFrom = this.pf = null;
      this.afterDraw && this.afterDraw("redraw", t, pf);
    }
    if (!this.drawnOnce) { this.drawnOnce = true; this.afterDraw && this.afterDraw("first"); }
    if (this.rows() > 0 && !this.drawnWithData) { this.drawnWithData = true; this.afterDraw && this.afterDraw("data"); }
  }

  rows() { let n = 0; for (const s of this.segs.values()) n += s.n; return n; }

  // Full answer for [t0, t1]; one request in flight per panel, the newest waiting one next.
  want(req) {
    this.pending = { ...req, specVersion: this.specVersion };
    if (!this.busy) this.pump();
  }

  async pump() {
    this.busy = true;
    try {
      await this.drain();
    } finally { // (a bug while drawing still shows in the console, and the next request runs)
      this.busy = false;
    }
    if (this.onIdle) this.onIdle();
  }

  async drain() {
    while (this.pending) {
      const req = this.pending;
      this.pending = null;
      const keys = this.keys;
      if (!keys.length) { this.loaded = true; this.redraw(); continue; }
      const gen = ++this.gen;
      this.queries = (this.queries || 0) + 1;
      let answers;
      const ctl = (this.abort = new AbortController());
      const pf = { sent: performance.now() }; // a measured zoom's phases (the benchmark reports them)
      try {
        const w = this.plotWidth();
        answers = await getSeriesMany(keys, req.t0, req.t1, w, ctl.signal);
        pf.fetched = performance.now();
        pf.parse = stats.lastParse;
      } catch {
        if (!ctl.signal.aborted) this.failed = true; // the controller asks again once the server answers
        continue;
      } finally {
        this.abort = null;
      }
      if (req.specVersion !== this.specVersion || gen !== this.gen) continue;
      this.failed = false;
      this.segs = new Map(answers.map((a) => [a.key, a]));
      this.loaded = true;
      if (this.onAnswer) this.onAnswer(answers, req);
      this.measureFrom = req.measure ? req.at : null;
      this.pf = req.measure ? pf : null;
      this.redraw();
    }
  }

  // A newer need elsewhere (a zoom of the price panel) frees the connections this load holds.
  cancel() {
    this.pending = null;
    if (this.abort) this.abort.abort();
  }

  // Live edge: each key from just after its last row, at the view's density; rows older than
  // the view are dropped (one kept for step lines, so they start at the left edge).
  async tail(keys, spanS) {
    if (this.busy || this.tailBusy || !this.loaded || !keys.length) return 0;
    this.tailBusy = true;
    const gen = this.gen;
    let added = 0, answers;
    try {
      const w = this.plotWidth();
      const from = [], px = [];
      for (const k of keys) {
        const s = this.segs.get(k);
        from.push(s && s.n ? s.t[s.n - 1] + 1n : this.ctl.view().t0);
        const last = s && s.n ? s.x[s.n - 1] : this.x0;
        px.push(Math.max(1, Math.ceil((w * Math.max(0, this.x1 - last)) / spanS)));
      }
      answers = await getSeriesMany(keys, from, null, px);
    } catch {
      return 0; // the next tick asks again
    } finally {
      this.tailBusy = false;
    }
    if (gen !== this.gen || this.busy) return 0; // a full answer replaced the data meanwhile
    for (let a of answers) {
      const s = this.segs.get(a.key);
      if (s && s.n) { // the answer starts with a row before the range (for lines): we have it
        const last = s.t[s.n - 1];
        let i = 0;
        while (i < a.n && a.t[i] <= last) i++;
        a = sliceSeg(a, i);
      }
      if (!a.n) continue;
      this.segs.set(a.key, s && s.n ? concatSeg(s, a) : a);
      added += a.n;
    }
    this.trim();
    this.redraw();
    return added;
  }

  trim() {
    if (this.x0 == null) return;
    const stepKeys = new Set(this.spec.keys.concat(this.spec.keepOne || []));
    for (const [k, s] of this.segs) {
      const i = lowerBound(s.x, s.n, this.x0);
      this.segs.set(k, sliceSeg(s, stepKeys.has(k) ? i - 1 : i));
    }
  }
}

// ------------------------------------------------------------------------------ interactions
function startPan(panel, e, own = false) {
  const u = panel.u;
  const x0 = u.scales.x.min, x1 = u.scales.x.max, w = u.bbox.width / PX();
  const sx = e.clientX;
  if (own) e.preventDefault(); // uPlot's own listeners are passive
  document.body.classList.add("panning");
  const move = (ev) => {
    const d = ((ev.clientX - sx) / w) * (x1 - x0);
    panel.ctl.userRange(x0 - d, x1 - d);
  };
  const up = () => {
    document.body.classList.remove("panning");
    window.removeEventListener("mousemove", move);
    window.removeEventListener("mouseup", up);
  };
  window.addEventListener("mousemove", move);
  window.addEventListener("mouseup", up);
}

function attachInteractions(panel) {
  const u = panel.u;
  const wheel = (e) => {
    e.preventDefault();
    // the view asked for last (a burst of events lands before the frame that rescales the chart)
    const x0 = panel.x0 ?? u.scales.x.min, x1 = panel.x1 ?? u.scales.x.max;
    if (x0 == null) return;
    const k = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
    const rect = u.over.getBoundingClientRect();
    if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) { // trackpad sideways: pan
      const d = ((e.deltaX * k) / rect.width) * (x1 - x0);
      panel.ctl.userRange(x0 + d, x1 + d);
      return;
    }
    const f = Math.min(2, Math.max(0.5, Math.exp(e.deltaY * k * 0.002)));
    const fx = Math.min(1, Math.max(0, (e.clientX - rect.left) / rect.width));
    const at = x0 + fx * (x1 - x0);
    const span = (x1 - x0) * f;
    panel.ctl.userRange(at - fx * span, at + (1 - fx) * span);
  };
  u.over.addEventListener("wheel", wheel, { passive: false });
  // the time axis is a grab handle: drag it to pan
  const grab = document.createElement("div");
  grab.className = "x-grab";
  grab.title = "drag to pan";
  u.root.querySelector(".u-wrap").appendChild(grab);
  const place = () => {
    const b = u.bbox, r = PX();
    Object.assign(grab.style, { left: b.left / r + "px", top: (b.top + b.height) / r + "px", width: b.width / r + "px", height: "34px" });
  };
  place();
  u.hooks.setSize = [...(u.hooks.setSize || []), place];
  grab.addEventListener("mousedown", (e) => { if (e.button === 0) startPan(panel, e, true); });
  grab.addEventListener("wheel", wheel, { passive: false });
}

// --------------------------------------------------------------------------------- specs
const fixedFmt = (v, scale) => fmtFixed(v, scale);
const trimFmt = (v, scale) => fmtFixed(v, scale, true);

// Price panel: bid/ask step lines from top/<id>; trades, orders, fills, book states drawn by hooks.
export function priceSpec(inst, have, legendEl) {
  const id = inst.id;
  const k = (p) => `${p}/${id}`;
  const keys = have(k("top")) ? [k("top")] : [];
  const overlays = ["trades", "orders", "fills", "books"].map(k).filter(have);
  const series = keys.length ? [
    { key: keys[0], col: "bid", label: "bid", color: "bid", kind: "step", fmt: fixedFmt },
    { key: keys[0], col: "ask", label: "ask", color: "ask", kind: "step", fmt: fixedFmt },
  ] : [];
  let panel = null;
  const seg = (p) => panel && panel.segs.get(k(p));
  const spec = {
    keys, overlays, series, legendEl, keepOne: [k("books")], sig: id,
    scales: {
      y: {
        auto: true,
        range: (u, mn, mx) => {
          // the markers in view widen the range: an order far from the touch stays visible
          const x0 = u.scales.x.min, x1 = u.scales.x.max;
          let lo = Number.isFinite(mn) ? mn : Infinity, hi = Number.isFinite(mx) ? mx : -Infinity;
          for (const p of ["trades", "orders", "fills"]) {
            const s = seg(p);
            const c = s && s.cols.price;
            if (!c) continue;
            const m = 10 ** -c.scale;
            for (let i = lowerBound(s.x, s.n, x0); i < s.n && s.x[i] <= x1; i++) {
              const v = c.data[i] * m;
              if (v < lo) lo = v;
              if (v > hi) hi = v;
            }
          }
          return padRange(lo, hi);
        },
      },
    },
    axes: [yAxis("y", 3)],
    hooks: {
      drawClear: [(u) => panel && drawBooks(u, seg("books"), panel.ctl.edgeX())],
      draw: [(u) => panel && drawMarkers(u, seg("trades"), seg("orders"), seg("fills"))],
      setCursor: [(u) => panel && hover(panel, u, inst)],
    },
    bind: (p) => { panel = p; },
  };
  return spec;
}

function visible(u, s) {
  if (!s || !s.n) return [0, 0];
  return [lowerBound(s.x, s.n, u.scales.x.min), lowerBound(s.x, s.n, u.scales.x.max + 1e-9)];
}

export function countVisible(panel, key) {
  const s = panel.segs.get(key);
  if (!s) return 0;
  const [a, b] = visible(panel.u, s);
  return b - a;
}

function clipPlot(u) {
  const { left, top, width, height } = u.bbox;
  u.ctx.save();
  u.ctx.beginPath();
  u.ctx.rect(left, top, width, height);
  u.ctx.clip();
}

const BAND = { 0: "grey", 2: "gap", 3: "resync", 4: "stale", 5: "warn" };
function drawBooks(u, s, edge) { // the last state lasts until the data's end
  if (!s || !s.n || !s.cols.status) return;
  const ctx = u.ctx, { top, height, left, width } = u.bbox, st = s.cols.status.data;
  clipPlot(u);
  let [a, b] = visible(u, s);
  a = Math.max(0, a - 1);
  for (let i = a; i < b; i++) {
    const c = BAND[st[i]];
    if (!c) continue;
    const xa = Math.max(left, u.valToPos(s.x[i], "x", true));
    const xb = i + 1 < s.n ? u.valToPos(s.x[i + 1], "x", true) : Math.min(left + width, edge != null ? u.valToPos(edge, "x", true) : Infinity);
    ctx.globalAlpha = 0.13;
    ctx.fillStyle = theme[c];
    ctx.fillRect(xa, top, Math.max(1, xb - xa), height);
    ctx.globalAlpha = 0.8;
    ctx.fillRect(xa, top, Math.max(1, PX()), height);
  }
  ctx.restore();
}

function tri(p, x, y, r, up) {
  const h = up ? -r : r;
  p.moveTo(x, y + h); p.lineTo(x - r, y - h * 0.8); p.lineTo(x + r, y - h * 0.8); p.closePath();
}
function halfTri(p, x, y, r, up) {
  const h = up ? -r : r;
  p.moveTo(x, y + h); p.lineTo(x - r, y - h * 0.8); p.lineTo(x, y - h * 0.8); p.closePath();
}
function cross(p, x, y, r) { p.moveTo(x - r, y - r); p.lineTo(x + r, y + r); p.moveTo(x + r, y - r); p.lineTo(x - r, y + r); }

// Past this many markers in view they overlap anyway: squares (pixel-aligned fillRect) instead of
// anti-aliased circles, which the canvas rasterises several times slower (it dominated a redraw).
const DENSE = 400;

function circles(u, s, a, b, keep, yOf, r) {
  const p = new Path2D();
  for (let i = a; i < b; i++) {
    if (!keep(i)) continue;
    const x = u.valToPos(s.x[i], "x", true), y = yOf(s, i);
    p.moveTo(x + r, y); p.arc(x, y, r, 0, 2 * Math.PI);
  }
  return p;
}

function squares(ctx, u, s, a, b, keep, yOf, r) {
  const d = Math.max(1, Math.round(2 * r));
  for (let i = a; i < b; i++) {
    if (!keep(i)) continue;
    ctx.fillRect(Math.round(u.valToPos(s.x[i], "x", true) - r), Math.round(yOf(s, i) - r), d, d);
  }
}

function drawMarkers(u, trades, orders, fills) {
  const ctx = u.ctx, r1 = PX();
  clipPlot(u);
  const yOf = (s, i) => u.valToPos(s.cols.price.data[i] * 10 ** -s.cols.price.scale, "y", true);
  if (trades && trades.cols.price) {
    const [a, b] = visible(u, trades);
    const side = trades.cols.side ? trades.cols.side.data : null;
    const dense = b - a > DENSE;
    const r = (b - a > 2000 ? 1.4 : 2) * r1;
    const which = (i) => (side ? (side[i] > 0 ? 0 : side[i] < 0 ? 1 : 2) : 2);
    ctx.globalAlpha = 0.55;
    [["buy", 0], ["sell", 1], ["grey", 2]].forEach(([c, j]) => {
      ctx.fillStyle = theme[c];
      if (dense) squares(ctx, u, trades, a, b, (i) => which(i) === j, yOf, r);
      else ctx.fill(circles(u, trades, a, b, (i) => which(i) === j, yOf, r));
    });
    ctx.globalAlpha = 1;
  }
  if (fills && fills.cols.price) {
    const [a, b] = visible(u, fills);
    const side = fills.cols.side ? fills.cols.side.data : null;
    const dense = b - a > DENSE;
    const r = 3.5 * r1;
    ctx.lineWidth = 1.5 * r1;
    ctx.strokeStyle = theme.panel;
    for (const [c, want] of [["buy", 1], ["sell", -1]]) {
      const mine = (i) => (side ? Math.sign(side[i]) || 1 : 1) === want;
      ctx.fillStyle = theme[c];
      if (dense) { squares(ctx, u, fills, a, b, mine, yOf, r * 0.8); continue; }
      const p = circles(u, fills, a, b, mine, yOf, r);
      ctx.stroke(p);
      ctx.fill(p);
    }
  }
  if (orders && orders.cols.price) {
    // one path per look (a few canvas calls however many orders are in view)
    const [a, b] = visible(u, orders);
    const side = orders.cols.side ? orders.cols.side.data : null;
    const st = orders.cols.status ? orders.cols.status.data : null;
    const r = 5 * r1;
    const P = () => ({ open: new Path2D(), half: new Path2D(), solid: new Path2D(), x: new Path2D() });
    const bySide = { buy: P(), sell: P() };
    const grey = new Path2D(), xWarn = new Path2D();
    for (let i = a; i < b; i++) {
      const up = !side || side[i] >= 0;
      const x = u.valToPos(orders.x[i], "x", true), y = yOf(orders, i);
      const s = st ? st[i] : 3;
      const g = bySide[up ? "buy" : "sell"];
      if (s === 2) cross(g.x, x, y, r * 0.8); // rejected
      else if (s === 7) cross(xWarn, x, y, r * 0.8); // cancel rejected
      else if (s === 6 || s === 8) tri(grey, x, y, r, up); // cancelled, expired
      else if (s === 5) tri(g.solid, x, y, r, up); // filled
      else {
        tri(g.open, x, y, r, up); // ack, open
        if (s === 4) halfTri(g.half, x, y, r, up); // partially filled
      }
    }
    ctx.lineWidth = 1.4 * r1;
    ctx.lineJoin = "round";
    ctx.strokeStyle = theme.grey;
    ctx.stroke(grey);
    ctx.strokeStyle = theme.warn;
    ctx.stroke(xWarn);
    for (const [c, g] of Object.entries(bySide)) {
      ctx.fillStyle = theme.panel;
      ctx.fill(g.open);
      ctx.fillStyle = theme[c];
      ctx.fill(g.half);
      ctx.fill(g.solid);
      ctx.strokeStyle = theme[c];
      ctx.stroke(g.open);
      ctx.stroke(g.x);
    }
  }
  ctx.restore();
}

// Nearest marker within a few pixels of the cursor: its exact values in a tooltip.
function hover(panel, u, inst) {
  let tip = panel.tip;
  if (!tip) { tip = panel.tip = document.createElement("div"); tip.className = "tip"; u.over.appendChild(tip); }
  const cl = u.cursor.left, ct = u.cursor.top;
  if (cl == null || cl < 0) { tip.style.display = "none"; return; }
  const R = 8;
  let best = null, bd = R * R;
  for (const kind of ["orders", "fills", "trades", "books"]) {
    const s = panel.segs.get(`${kind}/${inst.id}`);
    if (!s || !s.n) continue;
    const xa = u.posToVal(cl - R, "x"), xb = u.posToVal(cl + R, "x");
    for (let i = lowerBound(s.x, s.n, xa); i < s.n && s.x[i] <= xb; i++) {
      const dx = u.valToPos(s.x[i], "x") - cl;
      const dy = kind === "books" ? 0 : u.valToPos(s.cols.price.data[i] * 10 ** -s.cols.price.scale, "y") - ct;
      const d = dx * dx + dy * dy;
      if (d < bd) { bd = d; best = { kind, s, i }; }
    }
    if (best && kind !== "trades") break; // our own orders and fills win over the market's trades
  }
  if (!best) { tip.style.display = "none"; return; }
  const { kind, s, i } = best;
  const v = (c) => (s.cols[c] ? s.cols[c].data[i] : null);
  const px = (c) => (s.cols[c] ? fmtFixed(s.cols[c].data[i], s.cols[c].scale, c === "size") : "—");
  let head, body = "";
  if (kind === "books") head = `Book ${BOOK_STATUS[v("status")] ?? v("status")}`;
  else {
    const sd = sideName(v("side"));
    const oid = v("order_id");
    const oids = oid == null ? "" : String(oid); // an int64 column: a BigInt, exact
    head = kind === "orders" ? `Order ${oids} · ${sd} · ${ORDER_STATUS[v("status")] ?? v("status")}`
      : kind === "fills" ? `Fill · ${sd}` : `Trade · ${sd} aggressor`;
    body = `<div><b>${px("price")}</b> ${esc(inst.quote || "")} × ${px("size")} ${esc(inst.base || "")}</div>`;
  }
  if (s.decimated) body += `<div class="muted">zoom in for every ${kind === "books" ? "change" : kind.slice(0, -1)}: this one is a pixel's extreme</div>`;
  tip.innerHTML = `<div class="tip-h ${kind}">${esc(head)}</div>${body}<div class="mono">${fmtNs(s.t[i])} UTC</div>`;
  tip.style.display = "block";
  const ow = u.over.clientWidth, tw = tip.offsetWidth, th = tip.offsetHeight;
  tip.style.left = (cl + 14 + tw > ow ? cl - 14 - tw : cl + 14) + "px";
  tip.style.top = Math.max(0, ct - th - 10) + "px";
}

// Balances of the selected venue's assets and positions of its instruments, one scale per asset.
export function balancesSpec(venue, instruments, have, keysOf, legendEl, quote, base) {
  const series = [];
  const keys = [];
  let ci = 0;
  const scales = {};
  for (const key of keysOf(`balance/${venue}/`)) {
    const asset = key.split("/")[2];
    keys.push(key);
    scales[asset] = { auto: true, range: (u, mn, mx) => padRange(mn, mx) };
    series.push({ key, col: "total", label: asset, color: ci++, scale: asset, kind: "step", fmt: trimFmt });
  }
  for (const inst of instruments.filter((i) => i.venue === venue)) {
    const key = `position/${inst.id}`;
    if (!have(key)) continue;
    keys.push(key);
    scales[inst.base] = scales[inst.base] || { auto: true, range: (u, mn, mx) => padRange(mn, mx) };
    series.push({ key, col: "qty", label: `pos ${inst.symbol}`, color: ci++, scale: inst.base, kind: "step", dash: [4, 3], fmt: trimFmt });
  }
  const names = Object.keys(scales);
  if (!names.length) scales.y = { auto: true, range: (u, mn, mx) => padRange(mn, mx) };
  const left = names.includes(quote) ? quote : names[0] || "y";
  const right = names.includes(base) && base !== left ? base : names.find((n) => n !== left);
  const axes = [yAxis(left, 3, { label: names.length ? left : undefined, labelSize: 14 })];
  if (right) axes.push(yAxis(right, 1, { label: right, labelSize: 14 }));
  for (const n of names) if (n !== left && n !== right) axes.push({ scale: n, show: false });
  return { keys, overlays: [], series, scales, axes, legendEl };
}

export function pnlSpec(instruments, keysOf, legendEl) {
  const byId = new Map(instruments.map((i) => [String(i.id), i]));
  const keys = keysOf("pnl/");
  const series = keys.map((key, i) => {
    const id = key.slice(4);
    const inst = byId.get(id);
    return { key, col: "value", label: inst ? `${inst.symbol}@${inst.venue}` : id, color: id === "total" ? "fg" : i, width: id === "total" ? 2 : 1.25, kind: "step", fmt: fixedFmt };
  });
  return { keys, overlays: [], series, scales: { y: { auto: true, range: (u, mn, mx) => padRange(mn, mx) } }, axes: [yAxis("y", 3)], legendEl };
}

// Internal latency of each order request (ns, plotted in µs): one series, each point coloured by
// its action (a decimated answer of points keeps real rows: a pixel's fastest and slowest).
export function latencySpec(have, legendEl, log) {
  const key = "latency/requests";
  const keys = have(key) ? [key] : [];
  let panel = null;
  const series = keys.length ? [{
    key, col: "latency_ns", label: "request", color: "muted", kind: "custom", mult: 1e-3,
    keep: log ? (seg, r) => seg.cols.latency_ns.data[r] > 0 : null,
    fmt: (v, sc, seg, r) => fmtDur(v) + (seg.cols.action ? " " + (ORDER_ACTION[seg.cols.action.data[r]] ?? "") : ""),
  }] : [];
  return {
    keys, overlays: [], series, legendEl, sig: log, bind: (p) => { panel = p; },
    scales: { y: log ? { distr: 3, log: 10, auto: true, range: (u, mn, mx) => padRange(mn, mx, true) } : { auto: true, range: (u, mn, mx) => padRange(Math.min(0, mn), mx) } },
    axes: [yAxis("y", 3, {
      values: (u, splits) => splits.map((v) => (v == null ? "" : fmtDurShort(v * 1e3))),
      ...(log ? { splits: logSplits, filter: (u, splits) => splits } : {}), // our ticks, all labelled
    })],
    hooks: { draw: [(u) => panel && drawLatency(u, panel.segs.get(key))] },
  };
}

function logSplits(u, ai, min, max) {
  const out = [];
  const lo = Math.floor(Math.log10(min)), hi = Math.ceil(Math.log10(max));
  const mult = hi - lo <= 2 ? [1, 2, 5] : [1];
  for (let e = lo; e <= hi; e++) for (const m of mult) { const v = m * 10 ** e; if (v >= min * 0.999 && v <= max * 1.001) out.push(v); }
  return out;
}

// axis ticks: "100 µs", "1.5 ms", "2 s"
function fmtDurShort(ns) {
  const a = Math.abs(ns);
  const [d, unit] = a >= 1e9 ? [1e9, "s"] : a >= 1e6 ? [1e6, "ms"] : a >= 1e3 ? [1e3, "µs"] : [1, "ns"];
  return `${+(ns / d).toPrecision(3)} ${unit}`;
}

function drawLatency(u, s) {
  if (!s || !s.n || !s.cols.latency_ns) return;
  const ctx = u.ctx, r = 1.8 * PX(), lat = s.cols.latency_ns.data;
  const act = s.cols.action ? s.cols.action.data : null;
  const paths = new Map();
  const [a, b] = visible(u, s);
  for (let i = a; i < b; i++) {
    if (!(lat[i] > 0) && u.scales.y.distr === 3) continue;
    const k = act ? act[i] : 0;
    if (!paths.has(k)) paths.set(k, new Path2D());
    const x = u.valToPos(s.x[i], "x", true), y = u.valToPos(lat[i] / 1e3, "y", true);
    const p = paths.get(k);
    p.moveTo(x + r, y); p.arc(x, y, r, 0, 2 * Math.PI);
  }
  clipPlot(u);
  ctx.globalAlpha = 0.8;
  for (const [k, p] of paths) { ctx.fillStyle = k ? theme.palette[(k - 1) % theme.palette.length] : theme.muted; ctx.fill(p); }
  ctx.restore();
}

export function trafficSpec(keysOf, legendEl) {
  const keys = keysOf("rate/");
  const series = keys.map((key, i) => ({ key, col: "rate", label: key.slice(5), color: i, kind: "line", fmt: (v) => fmtNum(v, 1) + "/s" }));
  return { keys, overlays: [], series, legendEl, scales: { y: { auto: true, range: (u, mn, mx) => padRange(Math.min(0, mn), mx) } }, axes: [yAxis("y", 3, { label: "msg/s", labelSize: 14 })] };
}
