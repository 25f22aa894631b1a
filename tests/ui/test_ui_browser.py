"""The UI in a real browser (Debian's chromium driven by Playwright), against a real UI server: the
demo's live system while it runs, then the session it recorded.  Every view is saved as a
screenshot in ``out/ui-screenshots/`` (git-ignored)."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from mantra.ui.recording import open_recording
from mantra.ui.server import Source, UiServer
from waits import wait_for

SHOTS = Path(__file__).resolve().parents[2] / "out" / "ui-screenshots"
CHROMIUM = os.environ.get("MANTRA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
PANELS = ("price", "balances", "pnl", "latency", "traffic")


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), f"chromium not found at {CHROMIUM}: `make test` installs Debian's chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`mantra demo` as a user runs it, its UI's URL read from its first line."""
    out = tmp_path_factory.mktemp("demo") / "session"
    p = subprocess.Popen([sys.executable, "-m", "mantra.cli", "demo", "--duration", "25", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = re.match(r"UI: (\S+)", p.stdout.readline()).group(1)
    yield p, url, out
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        p.wait(60)


def _answers(host, port) -> bool:
    try:
        socket.create_connection((host, port), 0.5).close()
        return True
    except OSError:
        return False


class Page:
    """A page of the UI with its console errors collected."""

    def __init__(self, browser, url):
        self.errors = []
        self.page = browser.new_page(viewport={"width": 1600, "height": 1000})
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # the demo prints its URL before its UI actor has started: wait until the port answers
        host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
        assert wait_for(lambda: _answers(host, int(port)), 30), url
        self.page.goto(url)
        self.page.wait_for_function("window.__ui && window.__ui.ready === true", timeout=30_000)

    def js(self, expr, arg=None):
        return self.page.evaluate(expr, arg)

    def shot(self, name):
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def drawn(self, panel) -> int:
        """Pixels drawn inside the plot area of a panel's chart (the canvas starts transparent)."""
        return self.js("""(name) => {
            const u = window.__ui.charts[name], b = u.bbox;
            const d = u.ctx.getImageData(b.left, b.top, b.width, b.height).data;
            let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
            return n;
        }""", panel)

    def check_panels(self):
        for name in PANELS:
            assert self.drawn(name) > 200, f"panel {name} drew nothing in its plot area"
        assert self.page.locator("[data-panel=ladder]").inner_text().strip()

    def zoom_in(self):
        """Zoom the price panel to a tenth of its range: the page re-queries and draws finer data."""
        before = self.js("({...window.__ui.lastRange, q: window.__ui.queries})")
        lo, hi = self.js("[window.__ui.charts.price.scales.x.min, window.__ui.charts.price.scales.x.max]")
        mid = (lo + hi) / 2
        self.js("([a, b]) => window.__ui.zoom(a, b)", [mid - (hi - lo) / 20, mid + (hi - lo) / 20])
        assert wait_for(lambda: self.js("window.__ui.queries") > before["q"]
                        and self.js("window.__ui.lastRange.t0_ns_s") != before["t0_ns_s"], 10)
        after = self.js("window.__ui.lastRange")
        assert self.js("window.__ui.follow") is False
        span = lambda r: int(r["t1_ns_s"]) - int(r["t0_ns_s"])  # noqa: E731
        assert span(after) < span(before) / 5
        # finer: more rows per second of the range than the whole view had (or every raw row)
        assert not after["decimated"] or after["n"] / span(after) > before["n"] / span(before)
        return before, after


    def wheel_burst(self, ticks=15):
        """Wheel ticks faster than answers come: the page shows each at once from what it has,
        keeps one query in flight (the newest range next), and ends with the last range drawn."""
        q0 = self.js("window.__ui.panelQueries('price')")
        self.js("""(ticks) => {  // within one task: as a trackpad's burst lands between two frames
            const over = document.querySelector("#price-chart .u-over"), r = over.getBoundingClientRect();
            for (let i = 0; i < ticks; i++) over.dispatchEvent(new WheelEvent("wheel", {
                deltaY: -40, clientX: r.left + r.width / 2, clientY: r.top + r.height / 2, bubbles: true, cancelable: true}));
        }""", ticks)

        def settled():
            r, (lo, hi) = self.js("[window.__ui.lastRange, [window.__ui.charts.price.scales.x.min, "
                                  "window.__ui.charts.price.scales.x.max]]")
            return abs(int(r["t0_ns_s"]) / 1e9 - lo) < 1e-3 * (hi - lo) and abs(int(r["t1_ns_s"]) / 1e9 - hi) < 1e-3 * (hi - lo)
        assert wait_for(settled, 10)
        assert self.js("window.__ui.panelQueries('price')") - q0 <= 2  # the first tick's range, then the last's


def test_live_demo_in_the_browser(browser, demo):
    proc, url, _ = demo
    page = Page(browser, url)
    try:
        # the instrument tree lists the venues' books as the feeds sync them
        assert wait_for(lambda: page.page.locator("[data-inst][data-status=synced]").count() >= 10, 20), \
            page.page.locator("[data-inst]").evaluate_all("els => els.map(e => e.dataset.status)")
        page.js("(id) => window.__ui.select(id)", 1)  # binance BTCUSDT: the market maker trades there
        # an order placed by a model appears in the table and as a marker on the price panel
        assert wait_for(lambda: page.page.locator("#orders tbody tr").count() > 0, 20)
        assert wait_for(lambda: page.js("window.__ui.markers ? window.__ui.markers('orders') : 0") > 0, 10)
        # live appends arrive and the view follows the edge
        a0, x0 = page.js("[window.__m.appends, window.__ui.charts.price.scales.x.max]")
        assert wait_for(lambda: page.js("window.__m.appends") > a0 + 2, 5)
        assert page.js("window.__ui.charts.price.scales.x.max") > x0 and page.js("window.__ui.follow")
        page.check_panels()
        page.shot("live")
        page.zoom_in()
        page.js("window.__ui.live()")
        assert wait_for(lambda: page.js("window.__ui.follow"), 5)
        page.page.click("#theme")
        page.shot("live-other-theme")
        assert proc.poll() is None, "the demo ended before the checks did"
        assert page.errors == []
    finally:
        page.page.close()


def test_recorded_session_in_the_browser(browser, demo):
    proc, _, out = demo
    assert proc.wait(180) == 0
    view, info = open_recording(out)
    server = UiServer(Source(view, info["system"])).start()
    page = Page(browser, server.url)
    try:
        meta = page.js("fetch('api/meta').then(r => r.json())")
        assert meta["mode"] == "recording"
        assert page.page.locator("[data-inst]").count() == len(view.books) >= 10
        page.js("(id) => window.__ui.select(id)", 1)
        assert wait_for(lambda: page.page.locator("#orders tbody tr").count() > 0, 10)
        page.check_panels()
        page.shot("recording")
        page.zoom_in()
        page.shot("recording-zoomed")
        page.wheel_burst()
        # order ids travel as int64 and the page reads them as exact BigInts
        oid = page.js("""() => import('./api.js').then((api) => api.getSeriesMany(['orders/1'], null, null, 500))
            .then(([a]) => a.cols.order_id.data instanceof BigInt64Array ? String(a.cols.order_id.data[0]) : null)""")
        assert oid is not None and int(oid) in {int(r["order_id"]) for r in view.orders.values()}
        assert page.errors == []
    finally:
        page.page.close()
        server.close()
