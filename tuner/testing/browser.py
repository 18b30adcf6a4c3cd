"""The dashboard's server and a real headless Chromium, for end-to-end tests and load timing.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package; everything
runs on 127.0.0.1 and stops with the context managers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1500,1400"]


def chromium_available() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard_server(storage_url: str, extra_env: dict[str, str] | None = None,
                     start_timeout: float = 90.0) -> Iterator[str]:
    """Start the dashboard exactly as ``tuner dashboard`` does; yields its base URL."""
    from tuner.dashboard_launch import command, environment

    port = free_port()
    env = environment(storage_url)
    env.update(extra_env or {})
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command(port), env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield _wait_healthy(proc, log, base, start_timeout)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_healthy(proc: subprocess.Popen, log: Any, base: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return base
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            raise RuntimeError("dashboard server did not start:\n"
                               + log.read().decode()[-3000:])
        time.sleep(0.3)


@contextlib.contextmanager
def headless_chromium() -> Iterator[Any]:
    """A Selenium driver for Debian's Chromium (never lets Selenium download a browser)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    profile = tempfile.mkdtemp(prefix="tuner-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(f)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition",
             poll: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


# True once the first plotly figure on the page has drawn its data: SVG markers for a small 2D
# scatter, a sized WebGL canvas for a large 2D (scattergl) or a 3D one.
PLOT_DRAWN_JS = """
const gd = document.querySelector('.js-plotly-plot');
if (!gd || !gd._fullLayout) return false;
if (gd.querySelector('g.trace path.point')) return true;
const c = gd.querySelector('canvas');
return !!(c && c.width > 0);
"""


def time_to_plot(driver: Any, url: str, timeout: float = 120.0) -> float:
    """Seconds from navigating to ``url`` until its first plot has drawn its points."""
    t0 = time.monotonic()
    driver.get(url)
    wait_for(lambda: driver.execute_script(PLOT_DRAWN_JS), timeout, "the plot", poll=0.05)
    return time.monotonic() - t0
