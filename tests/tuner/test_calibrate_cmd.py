"""``tuner calibrate``: the documented command line on training-sim with published rows, the
written profile used through the evaluator's ``profile`` option, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

from tuner.evaluators.training._reference import DATA, read, reference_tokens_per_s
from tuner.registry import make_evaluator


def _tuner(*args):
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], capture_output=True,
                          text=True, timeout=600)


def test_calibrate_training_sim_on_published_rows(tmp_path):
    rows = read(DATA / "nemo_longseq_h100_cp.csv")[:4]
    runs = tmp_path / "runs.jsonl"
    runs.write_text("".join(json.dumps({"config": dict(r.config), "metrics": {
        "tokens_per_s": reference_tokens_per_s(r)}}) + "\n" for r in rows))
    out = tmp_path / "mine.toml"
    proc = _tuner("calibrate", "training-sim", "--measurements", str(runs), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith("tokens_per_s"))
    before, after = (float(x.rstrip("%")) for x in line.split()[1:3])
    assert after < before  # leave-one-out: the fit predicts rows it did not see better
    data = tomllib.loads(out.read_text())
    assert data["base"] == "megatron" and data["uncertainty"]["tokens_per_s"] > 0
    res = make_evaluator("training-sim", {"profile": str(out)}).evaluate(dict(rows[0].config))
    assert res.status.value == "ok"
    assert "tokens_per_s_lo" in res.artifacts or "tokens_per_s_lo" in res.metrics


def test_bad_input(tmp_path):
    runs = tmp_path / "runs.jsonl"
    runs.write_text('{"config": {}, "metrics": {"tokens_per_s": 1}}\nnot json\n')
    proc = _tuner("calibrate", "training-sim", "--measurements", str(runs), "--out",
                  str(tmp_path / "p.toml"))
    assert proc.returncode == 2 and "runs.jsonl line 2: not JSON" in proc.stderr
    proc = _tuner("calibrate", "kernel-sim", "--measurements", str(runs), "--out",
                  str(tmp_path / "p.toml"))
    assert proc.returncode == 2 and "no stack profile to calibrate" in proc.stderr
    proc = _tuner("calibrate", "training-sim", "--measurements", str(runs), "--out",
                  str(tmp_path / "p.json"))
    assert proc.returncode == 2 and "--out" in proc.stderr
