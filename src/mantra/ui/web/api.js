// Server access and exact formatting: every time is an int64 ns (BigInt) and every price an
// integer at a decimal scale, so nothing shown to the user goes through a float.

const TOKEN = new URLSearchParams(location.search).get("token");

export const stats = { queries: 0, lastParse: 0 };

// Relative URLs (the page may be served below a prefix), with the page's own token appended.
function apiUrl(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  if (TOKEN) q.set("token", TOKEN);
  const s = q.toString();
  return "api/" + path + (s ? "?" + s : "");
}

async function get(path, params, timeoutMs, signal) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  if (signal) signal.addEventListener("abort", () => ctl.abort(), { once: true });
  try {
    const r = await fetch(apiUrl(path, params), { signal: ctl.signal, cache: "no-store" });
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
    return r;
  } finally {
    clearTimeout(timer);
  }
}

// JSON.parse rounds the int64 ns numbers; the server sends an exact "<name>_s" twin of each.
export const getJSON = (path, params, timeoutMs = 4000) => get(path, params, timeoutMs).then((r) => r.json());
// Integers of 16+ digits (order ids) become strings before JSON.parse would round them.
export const parseBigJSON = (txt) => JSON.parse(txt.replace(/([:,[]\s*)(-?\d{16,})(?=\s*[,\]}])/g, '$1"$2"'));
export const getText = (path, params, timeoutMs = 4000) => get(path, params, timeoutMs).then((r) => r.text());

// ------------------------------------------------------------------------------------- time base
// Plot x is float seconds since the epoch, made from the exact ns through one BigInt base so that
// the float keeps µs precision; the exact ns stays in the answer's BigInt64Array for display.
let BASE = null; // BigInt ns, a whole second
let BASE_S = 0;

export function setBase(ns) {
  if (BASE !== null) return;
  BASE = (ns / 1_000_000_000n) * 1_000_000_000n;
  BASE_S = Number(BASE / 1_000_000_000n);
}
export const baseSec = () => BASE_S;
export const toSec = (ns) => Number(ns - BASE) / 1e9 + BASE_S;
export const toNs = (s) => BASE + BigInt(Math.round((s - BASE_S) * 1e9));

// ---------------------------------------------------------------------------------------- series
// Binary answer: u32 LE header length | JSON header (padded to 8) | n × 8-byte columns; several
// answers (keys=) are concatenated, each a multiple of 8 bytes long.
// Several keys in one request (one round trip per panel, not one per series); t0, t1 and width
// are one value for every key, or an array of one per key (a live tail, each from its last row).
export async function getSeriesMany(keys, t0, t1, width, signal = null, timeoutMs = 15000) {
  stats.queries++;
  const list = (v, f) => (Array.isArray(v) ? v.map((x) => (x == null ? "" : f(x))).join(",") : v == null ? null : f(v));
  const params = { width: list(width, (w) => Math.max(1, Math.round(w))) };
  if (keys.length === 1) params.key = keys[0]; else params.keys = keys.join(",");
  params.t0 = list(t0, String);
  params.t1 = list(t1, String);
  const buf = await (await get("series", params, timeoutMs, signal)).arrayBuffer();
  const t = performance.now();
  const out = [];
  for (let off = 0; off < buf.byteLength;) {
    const a = parseAnswer(buf, off);
    out.push(a);
    off = a.end;
  }
  stats.lastParse = performance.now() - t;
  return out;
}

const UTF8 = new TextDecoder();

function parseAnswer(buf, start) {
  const hlen = new DataView(buf, start, 4).getUint32(0, true);
  const head = JSON.parse(UTF8.decode(new Uint8Array(buf, start + 4, hlen)));
  const n = head.n;
  let off = start + 4 + hlen;
  const cols = {};
  let t = null;
  for (const c of head.cols) {
    if (c.dtype === "i8") { // times; exact int64 columns (order ids) read as BigInt
      const a = new BigInt64Array(buf, off, n);
      if (c.name === "t") t = a; else cols[c.name] = { data: a, scale: c.scale || 0 };
    } else {
      cols[c.name] = { data: new Float64Array(buf, off, n), scale: c.scale || 0 };
    }
    off += n * 8;
  }
  if (BASE === null && n) setBase(t[0]);
  // x from the two 32-bit halves of each time: exact ns offsets from the base without a BigInt
  // per row (the base split the same way once)
  const x = new Float64Array(n);
  if (n) {
    const w = new Uint32Array(t.buffer, t.byteOffset, 2 * n), hi = new Int32Array(t.buffer, t.byteOffset, 2 * n);
    const bLo = Number(BASE & 0xffffffffn), bHi = Number(BASE >> 32n);
    for (let i = 0; i < n; i++) x[i] = ((hi[2 * i + 1] - bHi) * 4294967296 + (w[2 * i] - bLo)) / 1e9 + BASE_S;
  }
  return { key: head.key, n, total: head.total, decimated: !!head.decimated, t0_ns_s: head.t0_ns_s, t1_ns_s: head.t1_ns_s, t, x, cols, end: off };
}

// -------------------------------------------------------------------------------------- format
const pad = (v, w) => String(v).padStart(w, "0");

function isoSec(sec) {
  // sec: BigInt seconds since the epoch, UTC
  return new Date(Number(sec) * 1000).toISOString().slice(0, 19).replace("T", " ");
}

// "2026-01-01 12:34:56.123456789" from an exact ns (BigInt or decimal string)
export function fmtNs(ns) {
  if (ns === null || ns === undefined || ns === "") return "—";
  const t = typeof ns === "bigint" ? ns : BigInt(ns);
  const s = t / 1_000_000_000n;
  let f = t % 1_000_000_000n;
  if (f < 0n) return isoSec(s - 1n) + "." + pad(f + 1_000_000_000n, 9);
  return isoSec(s) + "." + pad(f, 9);
}
export const fmtNsTime = (ns) => fmtNs(ns).slice(11); // time of day, full ns

// An integer (Number holding an exact integer, or BigInt) at a decimal scale, without float math.
export function fmtFixed(v, scale, trim = false) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (typeof v === "number" && !Number.isInteger(v)) { // not fixed-point (a float column): its shortest text
    return String(+(v / 10 ** scale).toPrecision(12));
  }
  let b = typeof v === "bigint" ? v : BigInt(Math.round(v));
  const neg = b < 0n;
  if (neg) b = -b;
  let s = b.toString();
  if (scale > 0) {
    s = s.padStart(scale + 1, "0");
    let frac = s.slice(-scale);
    if (trim) frac = frac.replace(/0+$/, "");
    s = s.slice(0, -scale) + (frac ? "." + frac : "");
  }
  return (neg ? "-" : "") + s;
}

// Exact decimal strings → BigInt at a common scale, for an exact spread.
export function decScale(str) {
  const i = str.indexOf(".");
  return i < 0 ? 0 : str.length - i - 1;
}
export function decToBig(str, scale) {
  const neg = str.startsWith("-");
  const [w, f = ""] = (neg ? str.slice(1) : str).split(".");
  const b = BigInt(w + f.padEnd(scale, "0").slice(0, scale));
  return neg ? -b : b;
}

// Durations in ns → "850 ns", "4.20 µs", "2.50 ms", "1.20 s"
export function fmtDur(ns) {
  if (ns === null || ns === undefined || !Number.isFinite(ns)) return "—";
  const a = Math.abs(ns);
  if (a < 1e3) return `${Math.round(ns)} ns`;
  if (a < 1e6) return `${(ns / 1e3).toPrecision(3)} µs`;
  if (a < 1e9) return `${(ns / 1e6).toPrecision(3)} ms`;
  return `${(ns / 1e9).toPrecision(3)} s`;
}

export function fmtCount(v) {
  if (v === null || v === undefined) return "—";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(2) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return String(Math.round(v));
}

export function fmtNum(v, digits = 1) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  return v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ESC[c]);

// OrderStatus / OrderAction / side as the series carry them (ints)
export const ORDER_STATUS = { 1: "ACK", 2: "REJECTED", 3: "OPEN", 4: "PARTIALLY_FILLED", 5: "FILLED", 6: "CANCELLED", 7: "CANCEL_REJECTED", 8: "EXPIRED" };
export const ORDER_ACTION = { 1: "NEW", 2: "CANCEL", 3: "AMEND", 4: "CANCEL_ALL" };
export const BOOK_STATUS = { 0: "unknown", 1: "synced", 2: "gap", 3: "resyncing", 4: "stale", 5: "unverified" };
export const sideName = (v) => (v > 0 ? "BUY" : v < 0 ? "SELL" : "—");
