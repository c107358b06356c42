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
    timeout_s: float = 60.0,
    width: int = 1400,
    height: int = 900,
) -> Visit:
    """Open ``page`` (a local file), wait until every figure is drawn, collect what it did."""
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
        if screenshot is not None:
            drv.save_screenshot(str(screenshot))
        errors = [
            str(e.get("message", ""))
            for e in drv.get_log("browser")
            if e.get("level") in ("SEVERE", "ERROR")
        ]
        return Visit(probe["ready_ms"] / 1e3, probe["figures"], errors, probe["resources"])
    finally:
        drv.quit()
