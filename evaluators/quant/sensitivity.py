"""Measure the single-unit sensitivity table that quant-sim's quality proxy reads.

    python -m tuner.evaluators.quant.sensitivity [--out PATH]

Quantizes one unit of all-MiniLM-L6-v2 at a time (everything else bf16) with quant-real and
records its quality drop minus the all-bf16 model's, for every weight format (with 16- and
8-bit activations where they differ), the KV cache at 8 and 4 bits and the embedding table.
The default output is ``data/minilm_sensitivity.csv``, whose header says how and when it was
measured. It takes minutes on a CPU and needs the ``quant`` extra.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from tuner.evaluators.quant._plan import DATA_DIR, MINILM, ROLES, WEIGHT_FORMATS
from tuner.evaluators.quant.real import QuantRealEvaluator

SENSITIVITY_VARIANTS = ("int8", "fp8", "int4-g32", "int4-g64", "int4-g128", "int4-ch",
                        "int8+a8", "fp8+a8", "int4-g128+a8")


def measure_sensitivity(out: Path) -> None:
    """Quantize one unit at a time (everything else bf16) and record the quality drop."""
    ev = QuantRealEvaluator(measure_latency=False, sentences=256)
    ev.setup()
    base_cfg: dict[str, Any] = {"model": MINILM}
    base = ev.evaluate(base_cfg).metrics["quality_drop"]
    rows = [(-2, "base", "bf16", base)]
    units = [(i, r) for i in range(6) for r in ROLES]
    for i, r in units:
        for var in SENSITIVITY_VARIANTS:
            fmt, _, a = var.partition("+")
            cfg = {**base_cfg, "act_bits": 8 if a else 16, "pin": {f"layer{i}.{r}": fmt}}
            rows.append((i, r, var, ev.evaluate(cfg).metrics["quality_drop"] - base))
        for b in (8, 4):
            cfg = {**base_cfg, "pin": {f"layer{i}.kv": f"kv{b}"}}
            if r == "qkv":
                rows.append((i, "kv", f"kv{b}", ev.evaluate(cfg).metrics["quality_drop"] - base))
    for fmt in ("int8", "int4-g128"):
        cfg = {**base_cfg, "pin": {"embed": fmt}}
        rows.append((-1, "embed", fmt, ev.evaluate(cfg).metrics["quality_drop"] - base))
    assert all(v in WEIGHT_FORMATS for v in ("int8", "int4-g128"))
    with out.open("w") as fh:
        fh.write("# Single-unit quality drops of all-MiniLM-L6-v2 (1 - mean cosine vs float32, "
                 "256 corpus sentences),\n# minus the all-bf16 model's drop (row 'base'). "
                 f"Measured {time.strftime('%Y-%m-%d')} with torch on CPU by\n"
                 "# python -m tuner.evaluators.quant.sensitivity\n")
        fh.write("layer,role,variant,quality_drop\n")
        for layer, role, var, v in rows:
            fh.write(f"{layer},{role},{var},{v:.6g}\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DATA_DIR / "minilm_sensitivity.csv",
                    help="where to write the table (default: data/minilm_sensitivity.csv)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    measure_sensitivity(args.out)
    print(f"wrote {args.out}")


__all__ = ["SENSITIVITY_VARIANTS", "main", "measure_sensitivity"]


if __name__ == "__main__":
    main()
