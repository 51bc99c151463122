"""Drive Debian's headless Chromium over a dashboard: render check, marks, brush, screenshot.

Used by the browser test and by ``benchmarks/bench_dashboard.py`` (render time). The page is
served from 127.0.0.1 by a throwaway ``http.server`` thread, as a user would open it from a
web server; ``file://`` would work too, but serving also proves nothing else is fetched
(every request is logged in :attr:`Served.requests`).
"""

from __future__ import annotations

import http.server
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Flags known to work as root in a container without network.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1800",
)

# Walk the Vega scenegraph for every mark named ``<chart>_marks`` (a line chart has one per
# series) and return the drawn items' data: what is actually on screen, not what the spec
# asked for.
MARKS_JS = """
const view = window.ztrace.views[arguments[0]];
if (!view) return null;
// A named unit view's marks are "<name>_marks"; inside a layer Vega-Lite adds an index.
const want = new RegExp('^' + arguments[1] + '(_[0-9]+)?_marks$');
const found = [];
function walk(node) {
  if (!node) return;
  if (node.marktype && want.test(node.name || '')) { found.push(node); return; }
  for (const it of (node.items || [])) walk(it);
}
walk(view.scenegraph().root);
if (!found.length) return null;
return found.flatMap(m => m.items.map(i => i.datum ? Object.assign({}, i.datum) : {}));
"""

# Viewport rectangle of a chart's plot area: its group's x/y summed up the group chain, plus
# the view's padding and origin and the canvas position on the page.
PLOT_RECT_JS = """
const view = window.ztrace.views[arguments[0]];
const want = arguments[1] + '_group';
function find(node) {
  if (!node) return null;
  if (node.marktype && node.name === want) return node;
  for (const it of (node.items || [])) { const r = find(it); if (r) return r; }
  return null;
}
const g = find(view.scenegraph().root);
if (!g) return null;
const item = g.items[0];
let x = 0, y = 0;
for (let it = item; it; it = it.mark && it.mark.group) { x += it.x || 0; y += it.y || 0; }
const r = view.container().querySelector('canvas').getBoundingClientRect();
const o = view.origin(), pad = view.padding();
return [r.left + pad.left + o[0] + x, r.top + pad.top + o[1] + y, item.width, item.height];
"""


@dataclass
class Served:
    url: str
    requests: list[str] = field(default_factory=list)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    log_sink: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        self.log_sink.append(format % args)


@contextmanager
def serve(directory: Path) -> Iterator[Served]:
    """Serve ``directory`` on 127.0.0.1 (ephemeral port) in a daemon thread."""
    log: list[str] = []
    handler = partial(type("H", (_QuietHandler,), {"log_sink": log}), directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield Served(url=f"http://127.0.0.1:{httpd.server_address[1]}/", requests=log)
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def chromium() -> Iterator[Any]:
    """A selenium WebDriver on headless Debian Chromium with browser logs enabled."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ztrace-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_ready(driver: Any, timeout: float = 60.0) -> float:
    """Wait until every Vega view has rendered; return seconds from navigation start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = driver.execute_script(
            "return window.ztrace ? [window.ztrace.ready, window.ztrace.errors] : [false, []]"
        )
        if state[1]:
            raise RuntimeError(f"dashboard errors: {state[1]}")
        if state[0]:
            # ready = embeds resolved; runAsync makes sure the last dataflow pass finished.
            driver.execute_async_script(
                "const done = arguments[0];"
                "Promise.all(Object.values(window.ztrace.views).map(v => v.runAsync()))"
                ".then(() => done(true));"
            )
            return float(driver.execute_script("return performance.now()")) / 1000.0
        time.sleep(0.05)
    raise TimeoutError("dashboard did not render in time")


def marks(driver: Any, section: str, chart: str) -> list[dict[str, Any]] | None:
    """Data of the items drawn for ``chart`` in ``section`` (None if the mark is missing)."""
    out: list[dict[str, Any]] | None = driver.execute_script(MARKS_JS, section, chart)
    return out


# Viewport position of one drawn item (e.g. a point to click): its x/y plus every enclosing
# group's offset, the view origin and the canvas position.
ITEM_XY_JS = """
const view = window.ztrace.views[arguments[0]];
const want = new RegExp('^' + arguments[1] + '(_[0-9]+)?_marks$');
const match = arguments[2];
let hit = null;
function walk(node) {
  if (!node || hit) return;
  if (node.marktype && want.test(node.name || '')) {
    for (const it of node.items) {
      if (Object.entries(match).every(([k, v]) => it.datum && it.datum[k] === v)) {
        hit = it; return;
      }
    }
    return;
  }
  for (const it of (node.items || [])) walk(it);
}
walk(view.scenegraph().root);
if (!hit) return null;
let x = 0, y = 0;
for (let it = hit; it; it = it.mark && it.mark.group) { x += it.x || 0; y += it.y || 0; }
const r = view.container().querySelector('canvas').getBoundingClientRect();
const o = view.origin(), pad = view.padding();
return [r.left + pad.left + o[0] + x, r.top + pad.top + o[1] + y];
"""


def click_item(driver: Any, section: str, chart: str, match: dict[str, Any]) -> None:
    """Click the first drawn item of ``chart`` whose datum has the ``match`` fields."""
    from selenium.webdriver.common.action_chains import ActionChains

    xy = driver.execute_script(ITEM_XY_JS, section, chart, match)
    if xy is None:
        raise LookupError(f"no item {match} in {section}/{chart}")
    chain = ActionChains(driver)
    chain.w3c_actions.pointer_action.move_to_location(int(xy[0]), int(xy[1]))
    chain.w3c_actions.pointer_action.click()
    chain.perform()


def plot_rect(driver: Any, section: str, chart: str) -> tuple[float, float, float, float]:
    """Viewport ``(left, top, width, height)`` of ``chart``'s plot area."""
    r = driver.execute_script(PLOT_RECT_JS, section, chart)
    if r is None:
        raise LookupError(f"no chart {chart!r} in section {section!r}")
    return (float(r[0]), float(r[1]), float(r[2]), float(r[3]))


def drag(driver: Any, x0: float, y: float, x1: float) -> None:
    """A real pointer drag (down, move, up) at viewport coordinates."""
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver, duration=50)
    pa = chain.w3c_actions.pointer_action
    pa.move_to_location(int(x0), int(y))
    pa.pointer_down()
    for frac in (0.25, 0.5, 0.75, 1.0):
        pa.move_to_location(int(x0 + (x1 - x0) * frac), int(y))
    pa.pointer_up()
    chain.perform()


def severe_logs(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
