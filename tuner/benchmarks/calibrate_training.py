"""``tuner calibrate`` on training-sim: a handful of rows of one published table fit the
Megatron profile, and the table's other rows are predicted better than by the shipped profile.

The table is NeMo's long-sequence Llama-2 7B FP8 table on H100 with context parallelism
(``evaluators/training/data/validation/nemo_longseq_h100_cp.csv``, a copy of
``../shared/reference/nemo_longseq_llama2_7b_h100_cp.csv``): a validation-only source for the
shipped profile, so none of its rows fitted a shipped constant. The first ``--fit-rows`` rows
(shortest sequences) go to ``tuner calibrate`` as measured runs; the rest are predicted with
the shipped and with the calibrated profile. Run::

    python -m tuner.benchmarks.calibrate_training [--fit-rows 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tuner.evaluators.training._reference import DATA, read, reference_tokens_per_s
from tuner.registry import make_evaluator

TABLE = DATA / "nemo_longseq_h100_cp.csv"


def _error(evaluator, cfg, measured):
    res = evaluator.evaluate(cfg)
    if res.status.value != "ok":
        return float("inf")
    return abs(res.metrics["tokens_per_s"] / measured - 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit-rows", type=int, default=4)
    args = ap.parse_args(argv)
    refs = [(r.id, dict(r.config), reference_tokens_per_s(r)) for r in read(TABLE)]
    fit, held = refs[:args.fit_rows], refs[args.fit_rows:]
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs.jsonl"
        runs.write_text("".join(json.dumps({"config": c, "metrics": {"tokens_per_s": t}}) + "\n"
                                for _, c, t in fit))
        out = Path(tmp) / "megatron-longseq.toml"
        proc = subprocess.run([sys.executable, "-m", "tuner.cli", "calibrate", "training-sim",
                               "--measurements", str(runs), "--out", str(out)],
                              capture_output=True, text=True)
        print(proc.stdout, end="")
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        shipped = make_evaluator("training-sim")
        calibrated = make_evaluator("training-sim", {"profile": str(out)})
        print(f"\n{len(held)} rows of {TABLE.name} not used for calibration "
              f"(tokens/s, |error|):")
        print(f"  {'row':<22}{'shipped':>10}{'calibrated':>12}")
        before, after = [], []
        for rid, cfg, tok in held:
            b, a = _error(shipped, cfg, tok), _error(calibrated, cfg, tok)
            before.append(b)
            after.append(a)
            print(f"  {rid:<22}{100 * b:9.1f}%{100 * a:11.1f}%")
        print(f"  {'median':<22}{100 * statistics.median(before):9.1f}%"
              f"{100 * statistics.median(after):11.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
