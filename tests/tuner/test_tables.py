"""Result tables a person can read: 80 columns, numbers never shortened, constraint metrics
shown, counts that add up, the progress and the final table agreeing on the front."""

from __future__ import annotations

import io
import re
import subprocess
import sys

from conftest import toy_study, write_toml
from rich.console import Console

from tuner._progress import StudyProgress
from tuner._results import StudyResults
from tuner._tables import fmt, print_front
from tuner.runner import Runner
from tuner.spec import parse_spec
from tuner.storage import load_study

TRAINING = {"name": "wide", "seed": 1, "space": {"domain": "training", "context": {
    "model": "llama3.1-70b", "gpu": "h100_sxm", "num_gpus": 64, "seq_len": 4096,
    "global_batch": 256}}, "evaluator": {"name": "training-sim"},
    "objectives": [{"metric": "tokens_per_s", "direction": "maximize"},
                   {"metric": "peak_memory_gib", "direction": "minimize"},
                   {"metric": "step_time_s", "direction": "minimize"}],
    "constraints": [{"metric": "mfu", "op": ">=", "value": 0.2}],
    "sampler": {"name": "random"}, "budget": {"trials": 300}}


def _render(res: StudyResults, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    print_front(res, console, limit=50)
    return console.export_text()


def test_a_wide_front_fits_80_columns_with_every_number_whole():
    summary = Runner(parse_spec(TRAINING), progress=False).run()
    res = StudyResults.from_study(load_study("wide"))
    front = res.pareto()
    assert len(front) >= 3
    text = _render(res, 80)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "…" not in text
    flat = text.replace("\n", " ")
    for t in front:
        for v in t.values:  # every objective value appears whole
            assert fmt(v) in flat, (fmt(v), text)
        # the constraint metric is shown too, with its limit in the header
        assert fmt(t.user_attrs["metrics"]["mfu"]) in flat
    assert "mfu (>=" in text
    # the count the run printed agrees with the table's
    assert f"Pareto front ({len(front)} configs)" in text
    assert summary.trials_this_run == 300


def test_a_narrow_console_gets_one_block_per_config():
    Runner(parse_spec(TRAINING), progress=False).run()
    res = StudyResults.from_study(load_study("wide"))
    text = _render(res, 40)
    assert max(len(line) for line in text.splitlines()) <= 40, text
    assert "…" not in text and "tokens_per_s ↑ = " in text


def test_counts_add_up_and_the_progress_agrees_with_the_final_front():
    spec = toy_study(trials=60, evaluator={"name": "tuner.testing.toys:FaultyEvaluator",
                                           "options": {"mode": "raise", "trigger_x": 3}},
                     sampler={"name": "random"})
    runner = Runner(parse_spec(spec), progress="lines", progress_interval_s=0.0)
    stream = io.StringIO()
    original = StudyProgress.__init__

    def capture(self, *a, **k):  # the run's progress, written to a string
        original(self, *a, **{**k, "stream": stream})

    StudyProgress.__init__ = capture
    try:
        s = runner.run()
    finally:
        StudyProgress.__init__ = original
    assert s.evaluated + s.cached + s.infeasible + s.failed == s.trials_this_run == 60
    assert s.failed > 0 and s.infeasible > 0
    res = StudyResults.from_study(load_study("toy"))
    counts = res.counts()
    assert counts["failed"] == s.failed and counts["infeasible"] == s.infeasible
    last = stream.getvalue().strip().splitlines()[-1]
    assert f"Pareto front: {len(res.pareto())} configs" in last, last
    assert len(stream.getvalue().splitlines()) >= 30  # a line per trial at interval 0


def test_without_a_tty_the_run_prints_progress_lines(tmp_path):
    study = write_toml(tmp_path / "s.toml", toy_study(trials=12))
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "run", study, "--storage",
                           f"sqlite:///{tmp_path / 'p.db'}"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "trials," in ln]
    assert lines and re.search(r"\d\d:\d\d:\d\d toy: 12/12 trials, \d+ s; ", lines[-1]), \
        proc.stderr
    assert "\x1b[" not in proc.stderr  # no terminal codes in a log
    table = [ln for ln in proc.stdout.splitlines() if set(ln) & set("┃│┏┗┡└")]
    assert table and max(len(line) for line in table) <= 80, proc.stdout
