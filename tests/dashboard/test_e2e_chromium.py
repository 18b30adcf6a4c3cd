"""End to end: ``tuner dashboard``'s server in a real headless Chromium (Debian's package).

Starts the server exactly as ``tuner dashboard`` does (``tuner.dashboard_launch``), loads
the overview and a study page, checks that the Pareto plot has drawn its points, saves
screenshots, stops the server, and checks that the storage file was not modified.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from dashboard_studies import dash_storage as _build
from tuner.dashboard_launch import command, environment

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1500,1400"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    return _build(tmp_path_factory)


@pytest.fixture(scope="module")
def server(storage):
    port = _free_port()
    env = environment(storage.url)
    env["TUNER_BENCH_DIR"] = str(storage.bench_dir)
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(command(port), env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail("dashboard server did not start:\n" + log.read().decode()[-3000:])
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("needs Debian's chromium and chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download
    profile = tempfile.mkdtemp(prefix="tuner-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(f)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Screenshots go to $TUNER_REPORTS_DIR/dashboard when set, else a temporary reports/."""
    root = os.environ.get("TUNER_REPORTS_DIR")
    out = Path(root) / "dashboard" if root else tmp_path_factory.mktemp("reports")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _wait(driver, predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _exceptions(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')]


def test_overview_page_lists_the_studies(server, browser, shots):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]'),
          what="the studies table")
    _wait(browser, lambda: "toy-run" in browser.find_element(By.TAG_NAME, "body").text
          or browser.find_elements(By.CSS_SELECTOR, "canvas"), what="table contents")
    assert "Studies" in browser.find_element(By.TAG_NAME, "h1").text
    assert not _exceptions(browser)
    browser.save_screenshot(str(shots / "overview.png"))
    assert (shots / "overview.png").stat().st_size > 10_000


def test_study_page_draws_the_pareto_front(server, browser, shots, storage):
    from selenium.webdriver.common.by import By

    before = storage.digest()
    t0 = time.monotonic()
    browser.get(server + "/study?study=toy-run")
    plot = _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"),
                 what="the Pareto plot")[0]
    # plotly draws each marker of an SVG scatter as a path.point inside the plot
    points = _wait(browser, lambda: plot.find_elements(By.CSS_SELECTOR, "g.trace path.point"),
                   what="plotted points")
    elapsed = time.monotonic() - t0
    legend = plot.find_element(By.CSS_SELECTOR, "g.legend").text
    assert "Pareto front" in legend and "dominated" in legend
    title = plot.find_element(By.CSS_SELECTOR, "g.infolayer .gtitle").text
    assert title.startswith("Pareto front")
    assert len(points) > 20
    assert not _exceptions(browser)
    _wait(browser, lambda: "tuner evaluate" in browser.find_element(By.TAG_NAME, "body").text,
          what="the trial detail")
    time.sleep(1.0)  # let the last elements settle before the picture
    browser.save_screenshot(str(shots / "study-pareto.png"))
    assert (shots / "study-pareto.png").stat().st_size > 20_000
    print(f"study page with Pareto plot drawn in {elapsed:.1f} s")
    assert storage.digest() == before


@pytest.mark.slow
def test_other_pages_render_without_errors(server, browser, shots):
    from selenium.webdriver.common.by import By

    for path, name in (("/compare", "compare"), ("/fidelity", "fidelity"), ("/bench", "bench"),
                       ("/study?study=serving-3obj", "study-3d"),
                       ("/study?study=toy-run&tab=Feasibility", "feasibility")):
        browser.get(server + path)
        _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"),
              what=f"a plot on {path}")
        time.sleep(1.0)
        assert not _exceptions(browser), path
        browser.save_screenshot(str(shots / f"{name}.png"))
