"""End to end: ``tuner dashboard``'s server in a real headless Chromium (Debian's package).

Starts the server exactly as ``tuner dashboard`` does (``tuner.dashboard_launch``), loads
the overview and a study page, checks that the Pareto plot has drawn its points, saves
screenshots, stops the server, and checks that the storage file was not modified.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from dashboard_studies import dash_storage as _build

from tuner.testing.browser import chromium_available, dashboard_server, headless_chromium, wait_for

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    return _build(tmp_path_factory)


@pytest.fixture(scope="module")
def server(storage):
    with dashboard_server(storage.url, {"TUNER_BENCH_DIR": str(storage.bench_dir)}) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    if not chromium_available():
        pytest.skip("needs Debian's chromium and chromium-driver")
    pytest.importorskip("selenium.webdriver")
    with headless_chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Screenshots go to $TUNER_REPORTS_DIR/dashboard when set, else a temporary reports/."""
    root = os.environ.get("TUNER_REPORTS_DIR")
    out = Path(root) / "dashboard" if root else tmp_path_factory.mktemp("reports")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _exceptions(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')]


def test_overview_page_lists_the_studies(server, browser, shots):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]'),
          what="the studies table")
    wait_for(lambda: "toy-run" in browser.find_element(By.TAG_NAME, "body").text
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
    plot = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"),
                 what="the Pareto plot")[0]
    # plotly draws each marker of an SVG scatter as a path.point inside the plot
    points = wait_for(lambda: plot.find_elements(By.CSS_SELECTOR, "g.trace path.point"),
                   what="plotted points")
    elapsed = time.monotonic() - t0
    legend = plot.find_element(By.CSS_SELECTOR, "g.legend").text
    assert "Pareto front" in legend and "dominated" in legend
    title = plot.find_element(By.CSS_SELECTOR, "g.infolayer .gtitle").text
    assert title.startswith("Pareto front")
    assert len(points) > 20
    assert not _exceptions(browser)
    wait_for(lambda: "tuner evaluate" in browser.find_element(By.TAG_NAME, "body").text,
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
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"),
              what=f"a plot on {path}")
        time.sleep(1.0)
        assert not _exceptions(browser), path
        browser.save_screenshot(str(shots / f"{name}.png"))
