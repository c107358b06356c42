"""Open a page in headless Chromium and report what happened (for tests and measurements).

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (the ``test``
extra); nothing here is imported by the simulator itself. Flags: ``--headless --no-sandbox
--disable-gpu``. Network requests are blocked, so a page that needs the network fails.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")

_PROBE = """
const ids = window.ipusimFigures || [];
const figs = ids.map(id => document.getElementById(id));
const ready = figs.length > 0 && figs.every(
  gd => gd && gd._fullLayout && gd.querySelector('.main-svg'));
if (!ready) { return null; }
return {
  ready_ms: performance.now(),
  figures: figs.map(gd => ({
    id: gd.id,
    traces: gd._fullData.map(t => ({type: t.type, name: t.name || '', visible: t.visible,
                                    points: (t.x || t.z || t.values || []).length || 0})),
    svg_paths: gd.querySelectorAll('path').length,
  })),
  resources: performance.getEntriesByType('resource').map(e => e.name),
};
"""


def find_chromium() -> tuple[str, str] | None:
    """(browser, driver) paths, or None when either is missing."""
    browser = next((p for p in CHROMIUM if Path(p).exists()), shutil.which("chromium"))
    driver = next((p for p in DRIVER if Path(p).exists()), shutil.which("chromedriver"))
    return (browser, driver) if browser and driver else None


@dataclass
class Visit:
    """What opening a page showed."""

    render_s: float  # navigation start to every figure drawn
    figures: list[dict[str, Any]]
    console_errors: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    action_result: Any = None  # what ``action`` returned


def _driver(width: int, height: int) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if found is None:
        raise RuntimeError("chromium and chromedriver are not installed")
    browser, driver = found
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def visit(
    page: str | Path,
    *,
    screenshot: str | Path | None = None,
    action: str | None = None,
    timeout_s: float = 60.0,
    width: int = 1400,
    height: int = 900,
) -> Visit:
    """Open ``page`` (a local file), wait until every figure is drawn, collect what it did.

    ``action``: JavaScript run once the figures are drawn (before the screenshot); its return
    value is ``Visit.action_result``."""
    drv = _driver(width, height)
    try:
        drv.set_page_load_timeout(timeout_s)
        drv.execute_cdp_cmd("Network.enable", {})
        drv.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["http://*", "https://*"]})
        drv.get(Path(page).resolve().as_uri())
        deadline = time.monotonic() + timeout_s
        probe = None
        while probe is None:
            probe = drv.execute_script(_PROBE)
            if probe is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"figures of {Path(page).name} not drawn in {timeout_s} s")
                time.sleep(0.05)
        result = None
        if action is not None:
            result = drv.execute_script(action)
            time.sleep(0.5)
        if screenshot is not None:
            drv.save_screenshot(str(screenshot))
        errors = [
            str(e.get("message", ""))
            for e in drv.get_log("browser")
            if e.get("level") in ("SEVERE", "ERROR")
        ]
        return Visit(probe["ready_ms"] / 1e3, probe["figures"], errors, probe["resources"], result)
    finally:
        drv.quit()


def main(argv: list[str] | None = None) -> int:
    """``python -m simulator.viz.browser PAGE [--screenshot PNG] [--xrange A,B]``: open a page,
    print its size and render time, optionally zoom the timeline and save a screenshot."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("page")
    ap.add_argument("--screenshot", metavar="PNG")
    ap.add_argument("--xrange", metavar="A,B", help="zoom the timeline's time axis first")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=900)
    args = ap.parse_args(argv)
    action = None
    if args.xrange:
        lo, hi = (float(x) for x in args.xrange.split(","))
        action = (
            "return Plotly.relayout(document.getElementById('timeline'), "
            f"{{'xaxis.range': [{lo}, {hi}]}}).then(() => new Promise(r => setTimeout(r, 300)));"
        )
    v = visit(
        args.page, screenshot=args.screenshot, action=action, width=args.width, height=args.height
    )
    size = Path(args.page).stat().st_size
    print(f"{Path(args.page).name}: {size / 1e6:.2f} MB, drawn in {v.render_s:.2f} s")
    for f in v.figures:
        print(f"  {f['id']}: {len(f['traces'])} traces, {f['svg_paths']} SVG paths")
    for e in v.console_errors:
        print(f"  console error: {e}")
    return 1 if v.console_errors else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
