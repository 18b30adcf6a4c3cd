"""``tuner validate quantization``: quant-sim against published sizes and quant-real.

1. Weight memory of Llama 3.1 8B / 70B / 405B at 16, 8 and 4 bits against the table
   "Inference Memory Requirements" of Hugging Face's Llama 3.1 release post (2024), which
   counts parameters x bytes (decimal GB). Compared with per-channel scales (fp8, int4-ch),
   whose overhead is below 0.1%.
2. KV-cache size (fp16) of Llama 3.1 8B and 70B at 1k / 16k / 128k tokens against the same
   post's "KV cache size" table (GiB; 1k = 1024, 16k = 16000, 128k = 128000 tokens). The
   405B row of that table used 16 KV heads instead of the model's 8 and is left out.
3. quant-sim's quality proxy against quant-real's measured quality on MiniLM mixes (the two
   uniform int8 and int4-g128 mixes plus random ones frozen in ``data/validation_mixes.toml``;
   the proxy sums single-unit drops, this checks the additivity it assumes): Spearman rank
   correlation, and per-mix relative error.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from tuner import ValidationReport, ValidationRow
from tuner.evaluators.quant._plan import MINILM, resolve_target, uniform_config

MIXES = Path(__file__).parent / "data" / "validation_mixes.toml"

HF_POST = ("Hugging Face blog, 'Llama 3.1 - 405B, 70B & 8B with multilinguality and long "
           "context' (July 2024), inference memory tables")
WEIGHTS_GB = {"llama3.1-8b": (16, 8, 4), "llama3.1-70b": (140, 70, 35),
              "llama3.1-405b": (810, 405, 203)}
KV_GIB = {"llama3.1-8b": {1024: 0.125, 16000: 1.95, 128000: 15.62},
          "llama3.1-70b": {1024: 0.313, 16000: 4.88, 128000: 39.06}}


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def minilm_mixes() -> list[dict[str, Any]]:
    """The frozen random MiniLM mixes, each a complete config (context + parameters)."""
    data = tomllib.loads(MIXES.read_text())
    return [{**data["context"], **mix} for mix in data["mix"]]


def run(quality_mixes: int = 24) -> ValidationReport:
    """Build the report; ``quality_mixes`` caps the MiniLM mixes measured (for quick checks)."""
    from tuner.evaluators.quant.sim import QuantSimEvaluator

    sim = QuantSimEvaluator()
    rows: list[ValidationRow] = []
    notes: list[str] = []
    for model, refs in WEIGHTS_GB.items():
        t = resolve_target(model)
        for fmt, ref in zip(("bf16", "fp8", "int4-ch"), refs):
            cfg = {**uniform_config(t, fmt, kv_bits=16), "model": model, "gpus": 8,
                   "gpu": "h200_sxm", "prompt_len": 1, "output_len": 1}
            m = sim.evaluate(cfg).metrics
            rows.append(ValidationRow(f"{model} weights {fmt}", "weights_gb",
                                      m["model_size_gib"] * 2**30 / 1e9, float(ref), HF_POST))
    for model, refs in KV_GIB.items():
        t = resolve_target(model)
        for tokens, ref in refs.items():
            cfg = {**uniform_config(t, "int4-g128", kv_bits=16), "model": model, "gpus": 8,
                   "gpu": "h200_sxm", "prompt_len": tokens - 1, "output_len": 1}
            m = sim.evaluate(cfg).metrics
            rows.append(ValidationRow(f"{model} KV fp16 {tokens} tokens", "kv_cache_gib",
                                      m["kv_cache_gib"], ref, HF_POST))
    try:
        import torch  # noqa: F401

        from tuner.evaluators.quant.real import QuantRealEvaluator
    except ImportError:
        notes.append("quality proxy check skipped: torch / the quant extra is not installed")
    else:
        real = QuantRealEvaluator(measure_latency=False)
        target = resolve_target(MINILM)
        cfgs = [uniform_config(target, w) for w in ("int8", "int4-g128")]
        cfgs += minilm_mixes()[:max(0, quality_mixes - len(cfgs))]
        pred, meas = [], []
        for i, cfg in enumerate(cfgs):
            p = sim.evaluate(cfg).metrics["quality_drop"]
            q = real.evaluate(cfg).metrics["quality_drop"]
            pred.append(p)
            meas.append(q)
            rows.append(ValidationRow(f"MiniLM mix {i}", "quality_drop_proxy", p, q,
                                      "quant-real, measured (128 corpus sentences)"))
        rho = _spearman(pred, meas)
        notes.append(f"quality proxy vs measured on {len(cfgs)} MiniLM mixes: Spearman "
                     f"rho = {rho:.3f} (1 = same ranking)")
        rows.append(ValidationRow("MiniLM proxy ranking", "spearman_rho", rho, 1.0,
                                  f"rank correlation over {len(cfgs)} measured mixes"))
    return ValidationReport(
        "quantization", rows,
        targets={"weights_gb": (2.0, 5.0), "kv_cache_gib": (0.5, 1.0),
                 "spearman_rho": (10.0, 10.0)},
        notes=notes + [("decode / prefill latency comes from the shared _perf roofline (its "
                        "GEMM model is fitted to measured H100 bf16 GEMMs, see _perf); no "
                        "published quantized-decode latency is compared here")])


__all__ = ["MIXES", "minilm_mixes", "run"]
