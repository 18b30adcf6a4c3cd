"""``tuner validate kernels``: kernel-sim's best tile against published and recorded measurements.

What is compared (kernel-sim is not fitted to any of these rows):

1. **GEMM, H100 SXM, bf16** - the 55 unbatched entries (b = 1) of OpenXLA's measured matmul
   table (``evaluators/data/gemm/h100_sxm_bf16_openxla.csv``, its header cites the source) and
   one large GEMM tuned by PyTorch Inductor's max-autotune with CUTLASS. The reference is the
   best kernel those tools found (cuBLAS, CUTLASS or Triton); the prediction is kernel-sim's
   fastest tile in the kernel-gemm space. Metric: TFLOP/s.
2. **FlashAttention forward, H100, bf16, d = 128, non-causal** - the Triton tutorial's
   FlashAttention-2 kernel (its own autotuned tiles) as measured by pytorch/benchmark; the
   prediction is kernel-sim's fastest tile in the kernel-attention space. Metric: TFLOP/s.
3. **Recorded sweeps** - for every replay table recorded on a GPU (``gpu`` set) in
   ``evaluators/kernels/data/replay``: per shape, kernel-sim's time for the measured-best config
   against the measured time, plus the rank correlation over all configs in the notes. Tables
   recorded in Triton's CPU interpreter are not GPU measurements and are skipped.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tuner import ValidationReport, ValidationRow

#: shared with the GEMM curve of ``evaluators/_perf.py``, which was fitted to the same table
OPENXLA_CSV = Path(__file__).parents[1] / "data" / "gemm" / "h100_sxm_bf16_openxla.csv"
OPENXLA_SOURCE = ("OpenXLA matmul_interpolator_data.h, key sm_90, bf16xbf16->bf16 "
                  "(evaluators/data/gemm/h100_sxm_bf16_openxla.csv)")
#: (M, N, K, TFLOP/s): torch.mm bf16, A (4224x8192) @ B (8192x2048 transposed view), Inductor
#: max-autotune with the CUTLASS backend, vboost set, do_bench(rep=10000)
CUTLASS_H100 = (4224, 2048, 8192, 780.17)
CUTLASS_SOURCE = ("H. He (Chillee), gist 2ec89696db8b7ed1c24461159e325405 'H100 peak matmul "
                  "FLOPS' (2024)")
#: (batch, heads, seq_len, TFLOP/s) of triton_tutorial_flash_v2, H100, bf16, d = 128
TRITON_FA2_H100 = ((32, 16, 512, 328.882), (16, 16, 1024, 389.723), (8, 16, 2048, 433.721),
                   (4, 16, 4096, 458.359), (2, 16, 8192, 470.732), (1, 16, 16384, 476.753))
TRITON_FA2_SOURCE = ("pytorch/benchmark commit ff65cb6 (PR #2391) test plan: --op "
                     "flash_attention --d-head 128, triton_tutorial_flash_v2 TFLOP/s")

TARGETS = {"gemm_tflops": (15.0, 35.0), "attention_tflops": (15.0, 25.0),
           "replay_time_us": (20.0, 50.0)}


def openxla_rows() -> list[tuple[int, int, int, float]]:
    lines = [ln for ln in OPENXLA_CSV.read_text().splitlines() if not ln.startswith("#")]
    return [(int(r["m"]), int(r["n"]), int(r["k"]), float(r["tflops"]))
            for r in csv.DictReader(lines) if r["b"] == "1"]


def _gemm_row(m: int, n: int, k: int, ref: float, source: str) -> ValidationRow:
    from tuner.evaluators.kernels.sim import best_config

    cfg, res = best_config({"kernel": "gemm", "m": m, "n": n, "k": k, "dtype": "bf16",
                            "gpu": "h100_sxm"})
    tile = "/".join(str(cfg[p]) for p in ("block_m", "block_n", "block_k", "num_warps",
                                           "num_stages", "split_k"))
    return ValidationRow(f"h100 gemm {m}x{n}x{k} bf16 (best tile {tile})", "gemm_tflops",
                         res.metrics["tflops"], ref, source)


def _replay_rows(notes: list[str]) -> list[ValidationRow]:
    from tuner.evaluators.kernels._replay_analysis import analyse, summary
    from tuner.evaluators.kernels.replay import DATA_DIR, ReplayTable, iter_shapes
    from tuner.evaluators.kernels.sim import KernelSimEvaluator

    rows: list[ValidationRow] = []
    gpu_tables = []
    for path in sorted(DATA_DIR.glob("*.json")):
        table = ReplayTable.load(path)
        if table.gpu is None:
            notes.append(f"{path.name}: recorded in Triton's CPU interpreter ({table.device}); "
                         "not GPU data, not used for validation")
            continue
        gpu_tables.append(path)
        sim = KernelSimEvaluator()
        for kernel, shape in iter_shapes(table):
            ok = [r for r in table.shape_records(kernel, shape) if r["status"] == "ok"]
            if not ok:
                continue
            best = min(ok, key=lambda r: r["time_us"])
            res = sim.evaluate({"kernel": kernel, **shape, "gpu": table.gpu, **best["config"]})
            if res.status.value == "ok":
                rows.append(ValidationRow(
                    f"{path.stem} {kernel} {shape} best measured config", "replay_time_us",
                    res.metrics["time_us"], best["time_us"], f"{path.name} ({table.device})"))
        s = summary(analyse(str(path), random_trials=50)[1])
        notes.append(f"{path.name}: Spearman(kernel-sim, measured) mean {s['spearman_mean']}, "
                     f"top-10 hit rate {s['top10_hit_rate']}, median fraction of the space to "
                     f"within 3%: kernel-sim order {s['median_frac_to_3pct_model']}, random "
                     f"{s['median_frac_to_3pct_random']}")
    if not gpu_tables:
        notes.append("No GPU measurements are recorded in evaluators/kernels/data/replay yet: "
                     "record one with python -m tuner.benchmarks.kernel_sweep on a GPU machine")
    return rows


def run(max_gemm_rows: int | None = None) -> ValidationReport:
    """Build the report; ``max_gemm_rows`` limits the OpenXLA rows (for quick checks)."""
    from tuner.evaluators.kernels.sim import best_config

    rows: list[ValidationRow] = []
    notes = [
        "Predictions are kernel-sim's fastest tile in the tuner's space; references are the "
        "fastest kernel the cited tool found (OpenXLA/Inductor may pick cuBLAS or CUTLASS, "
        "which the Triton tile space does not contain).",
        "kernel-sim constants: evaluators/kernels/sim.py DEFAULTS plus gemm_max, hbm and "
        "kernel_launch_us of evaluators/_perf.py; none is fitted to these rows.",
        "The FlashAttention rows are assumed to be an H100 SXM (the run also measured "
        "FlashAttention-3, which needs Hopper; the source does not name the variant).",
    ]
    xla = openxla_rows()
    for m, n, k, ref in xla[:max_gemm_rows] if max_gemm_rows else xla:
        rows.append(_gemm_row(m, n, k, ref, OPENXLA_SOURCE))
    rows.append(_gemm_row(*CUTLASS_H100, CUTLASS_SOURCE))
    for batch, heads, seq, ref in TRITON_FA2_H100:
        cfg, res = best_config({"kernel": "attention", "batch": batch, "heads": heads,
                                "seq_len": seq, "head_dim": 128, "dtype": "bf16",
                                "causal": False, "gpu": "h100_sxm"})
        rows.append(ValidationRow(
            f"h100 attention fwd b{batch} h{heads} s{seq} d128 bf16 (best tile "
            f"{cfg['block_m']}/{cfg['block_n']}/{cfg['num_warps']}/{cfg['num_stages']})",
            "attention_tflops", res.metrics["tflops"], ref, TRITON_FA2_SOURCE))
    rows += _replay_rows(notes)
    return ValidationReport(domain="kernels", rows=rows, targets=dict(TARGETS), notes=notes)


__all__ = ["run"]
