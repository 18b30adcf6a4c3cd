"""How fast the dashboard opens a large study (target: a 10,000-trial study in <= 3 s).

Builds a study with the runner's storage conventions (``synthetic_study``), then times, cold
(new process state, new connection):

* ``queries``: what the study page reads: the overview aggregates, the light trial rows
  (all 10k, once) and the change token;
* ``analyses``: what the default tab computes: Pareto front, convergence with hypervolume,
  outcome counts and reasons, the trial table;
* ``refresh_unchanged`` / ``refresh_after_new``: a live-refresh tick with no new trial, and
  one after new trials arrive (only those are read);
* ``page``: the whole study page script run by Streamlit's ``AppTest`` (server side: every
  query, analysis and figure; no browser), cold and warm (a rerun, caches filled);
* ``browser`` (``--browser``): ``tuner dashboard``'s real server and a headless Chromium,
  from navigating to the study page (once the overview has rendered) until its Pareto plot
  has drawn its points: the first open (cold server caches) and reloads (what a user sees
  when coming back to the page).

Usage::

    python -m tuner.benchmarks.dashboard_load [--trials 10000] [--db PATH] [--json OUT]
                                              [--browser]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def build(db: Path, trials: int, name: str = "big") -> str:
    from tuner.benchmarks.synthetic_study import OBJECTIVES_3, write_study

    url = f"sqlite:///{db}"
    if not db.exists():
        write_study(url, name, trials, seed=7, objectives=OBJECTIVES_3, sampler="tpe")
    return url


def time_queries_and_analyses(url: str, name: str) -> dict[str, float]:
    import tuner.analysis as A
    from tuner._readonly_storage import ReadOnlyStorage, TrialCache

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    store = ReadOnlyStorage(url)
    summaries, out["overview_aggregates_s"] = _timed(store.summaries)
    info = next(s.info for s in summaries if s.info.name == name)
    objs = A.study_objectives(info)
    cache = TrialCache(store, info.study_id, len(objs))
    rows, out["trial_rows_s"] = _timed(cache.refresh)
    out["queries_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    view, out["pareto_s"] = _timed(lambda: A.pareto_view(rows, objs, objs))
    _, out["convergence_hv_s"] = _timed(lambda: A.convergence(rows, objs))
    _, out["feasibility_s"] = _timed(lambda: A.feasibility_map(rows))
    _, out["trial_table_s"] = _timed(lambda: A.trial_records(rows, objs, view.front_numbers))
    out["analyses_s"] = time.perf_counter() - t1
    out["queries_plus_analyses_s"] = time.perf_counter() - t0
    _, out["refresh_unchanged_s"] = _timed(cache.refresh)
    out["trials"] = len(rows)
    store.engine.dispose()
    return out


def time_refresh_after_new(url: str, name: str, new: int = 20) -> float:
    """A live tick after ``new`` trials were appended by a writer."""
    import tuner.analysis as A
    from tuner._readonly_storage import ReadOnlyStorage, TrialCache
    from tuner.benchmarks.synthetic_study import OBJECTIVES_3, write_study

    store = ReadOnlyStorage(url)
    info = store.study(name)
    cache = TrialCache(store, info.study_id, len(A.study_objectives(info)))
    before = len(cache.refresh())
    write_study(url, name, new, seed=8, objectives=OBJECTIVES_3, sampler="tpe")
    rows, secs = _timed(cache.refresh)
    assert len(rows) == before + new, (len(rows), before, new)
    store.engine.dispose()
    return secs


def time_page(url: str, name: str) -> dict[str, float]:
    from streamlit.testing.v1 import AppTest

    from tuner.dashboard_launch import ENV_STORAGE, app_path

    os.environ[ENV_STORAGE] = url
    at = AppTest.from_file(str(app_path()), default_timeout=120)
    at.query_params["study"] = name
    at.run()
    at.switch_page("views/study.py")
    _, cold = _timed(at.run)
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    _, warm = _timed(at.run)
    return {"page_cold_s": cold, "page_warm_s": warm,
            "page_charts": float(len(at.get("plotly_chart")))}


def time_browser(url: str, name: str, reloads: int = 3) -> dict[str, float]:
    from tuner.testing.browser import dashboard_server, headless_chromium, time_to_plot, wait_for

    page = f"/study?study={name}"
    with dashboard_server(url) as base, headless_chromium() as driver:
        # a user lands on the overview first, then opens the study from its table
        driver.get(base + "/")
        wait_for(lambda: driver.find_elements("css selector", '[data-testid="stDataFrame"]'),
                 60, "the overview's table")
        cold = time_to_plot(driver, base + page)
        warm = sorted(time_to_plot(driver, base + page) for _ in range(reloads))
    return {"browser_cold_s": cold, "browser_reload_median_s": warm[len(warm) // 2],
            "browser_reload_max_s": warm[-1]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--db", help="SQLite file to (re)use; default: a temporary one")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--no-page", action="store_true", help="skip the AppTest page timing")
    ap.add_argument("--browser", action="store_true",
                    help="also time the page in headless Chromium (needs chromium, selenium)")
    args = ap.parse_args(argv)
    tmp = None
    if args.db:
        db = Path(args.db)
    else:
        tmp = tempfile.TemporaryDirectory()
        db = Path(tmp.name) / "dashboard_load.db"
    t0 = time.perf_counter()
    url = build(db, args.trials)
    result: dict[str, Any] = {"build_s": time.perf_counter() - t0, "cpu_count": os.cpu_count(),
                              "load_avg_1min": os.getloadavg()[0]}
    result.update(time_queries_and_analyses(url, "big"))
    if not args.no_page:
        result.update(time_page(url, "big"))
    if args.browser:
        result.update(time_browser(url, "big"))
    result["refresh_after_20_new_s"] = time_refresh_after_new(url, "big")
    for k, v in result.items():
        print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
