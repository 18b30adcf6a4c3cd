"""One storage for the dashboard tests: a real ``tuner run`` study plus written ones.

Built once per test process (both dashboard test modules share it). Not a conftest.py: the
suite's root conftest is imported by name (``from conftest import ...``) and must stay the
only module of that name.
"""

from __future__ import annotations

import gc
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import toy_study, write_toml

from tuner.benchmarks.synthetic_study import OBJECTIVES_3, bench_json, study_params, write_study


@dataclass(frozen=True)
class Storage:
    db: Path
    url: str
    bench_dir: Path

    def digest(self) -> tuple[str, int]:
        return hashlib.sha256(self.db.read_bytes()).hexdigest(), self.db.stat().st_mtime_ns


_BUILT: dict[str, Storage] = {}


#: a fidelity ladder on the toy stack (screen ToyStackSim, measure ToyStackReal)
LADDER = {"name": "toy-ladder", "seed": 0,
          "space": {"domain": "tuner.testing.toys:ToySpace", "context": {"max_sum": 30}},
          "evaluator": {"name": "tuner.testing.toys:ToyStackReal"},
          "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                         {"metric": "value", "direction": "maximize"}],
          "fidelity": {"screen": "tuner.testing.toys:ToyStackSim", "top_k": 3, "rounds": 3}}


def dash_storage(tmp_path_factory) -> Storage:
    """Studies: ``toy-run`` (tuner run: infeasible, failed and constraint-violating trials),
    ``toy-ladder`` (a fidelity ladder: predicted and measured metrics, three rounds),
    ``serving-tpe``/``serving-random`` (same objectives, for Compare), ``serving-3obj``
    (three objectives) and ``serving-gpu`` (the first configs of serving-tpe re-measured)."""
    if "storage" in _BUILT:
        return _BUILT["storage"]
    d = tmp_path_factory.mktemp("dashboard")
    db = d / "studies.db"
    url = f"sqlite:///{db}"
    spec = toy_study("toy-run", trials=60, seed=3,
                     evaluator={"name": "tuner.testing.toys:FaultyEvaluator",
                                "options": {"mode": "raise", "trigger_x": 3}},
                     constraints=[{"metric": "score", "op": ">=", "value": 0}],
                     sampler={"name": "tpe"})
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "run",
                           write_toml(d / "toy.toml", spec), "--storage", url, "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "run",
                           write_toml(d / "ladder.toml", LADDER), "--storage", url, "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    write_study(url, "serving-tpe", 240, seed=1, sampler="tpe")
    write_study(url, "serving-random", 240, seed=2, sampler="random", exploit_share=0.0)
    write_study(url, "serving-3obj", 150, seed=3, objectives=OBJECTIVES_3, sampler="nsga2")
    write_study(url, "serving-gpu", seed=4, evaluator="serving-gpu", measured=True,
                fail_share=0.0, params_list=study_params(url, "serving-tpe", 30))
    bench = d / "bench"
    bench.mkdir()
    (bench / "toy-bench.json").write_text(json.dumps(bench_json()))
    # connections left by the builders close (and SQLite checkpoints its WAL into the file)
    # now, not whenever the garbage collector happens to run during a test
    gc.collect()
    _BUILT["storage"] = Storage(db, url, bench)
    return _BUILT["storage"]
