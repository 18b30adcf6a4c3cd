"""Record a kernel replay table: sweep the tile spaces of a shape suite with kernel-gpu.

On a GPU machine (the README figures come from this)::

    python -m tuner.benchmarks.kernel_sweep --out evaluators/kernels/data/replay/h100_sxm.json

On a CPU, Triton's interpreter records the small labelled table the replay tests use::

    python -m tuner.benchmarks.kernel_sweep --suite cpu-tiny --interpret \\
        --out evaluators/kernels/data/replay/cpu_interpreter.json

Every config of a shape's space (after the space's constraints) is compiled, checked against
torch and timed by ``KernelGpuEvaluator`` (``triton.testing.do_bench``: median of many runs, L2
flushed); failures are recorded with their reason. Configs run in a seeded random order so that
a sweep cut short by ``--budget-s`` or ``--max-configs`` is a uniform sample of the space, not a
biased prefix. The table is saved atomically every ``--save-every`` records and at the end; a
rerun with the same ``--out`` resumes, never measuring a recorded config twice, and refuses a
table recorded on another device or software stack.

Suites: ``gpu`` (the issue's suite: square 1k-16k, LLM shapes, skinny decode shapes, attention),
``llama70b-mlp`` (the Llama-70B MLP GEMMs: prefill and decode), ``attention-8k``, ``cpu-tiny``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

#: (domain, context without gpu, parameter overrides)
Case = tuple[str, dict[str, Any], dict[str, dict[str, Any]]]


def _gemm(m: int, n: int, k: int, dtype: str = "bf16", **ov: Any) -> Case:
    return ("kernel-gemm", {"m": m, "n": n, "k": k, "dtype": dtype}, ov)


def _attn(batch: int, heads: int, seq: int, d: int, causal: bool, dtype: str = "bf16",
          **ov: Any) -> Case:
    return ("kernel-attention", {"batch": batch, "heads": heads, "seq_len": seq, "head_dim": d,
                                 "dtype": dtype, "causal": causal}, ov)


def llama70b_mlp() -> list[Case]:
    """Llama-3.1-70B MLP (hidden 8192, FFN 28672): gate/up and down projections, 8192-token
    prefill and decode batches of 1, 16, 64."""
    out = [_gemm(8192, 28672, 8192), _gemm(8192, 8192, 28672)]
    for m in (1, 16, 64):
        out += [_gemm(m, 28672, 8192), _gemm(m, 8192, 28672)]
    return out


def attention_8k() -> list[Case]:
    """Llama-3.1-70B prefill attention at 8k context (64 query heads, d = 128), causal."""
    return [_attn(1, 64, 8192, 128, True)]


def gpu_suite() -> list[Case]:
    cases = [_gemm(s, s, s) for s in (1024, 2048, 4096, 8192, 16384)]
    cases += [_gemm(4096, 14336, 4096)] + llama70b_mlp()
    cases += [_gemm(4096, 4096, 4096, "fp16"), _gemm(8192, 8192, 8192, "fp8")]
    cases += attention_8k()
    # the shapes of the published Triton FlashAttention-2 numbers (pytorch/benchmark ff65cb6)
    cases += [_attn(16384 // s, 16, s, 128, False) for s in (1024, 2048, 4096, 8192, 16384)]
    return cases


def cpu_tiny() -> list[Case]:
    """Interpreter-sized shapes. num_warps and num_stages do nothing in the interpreter, so they
    are pinned: varying them would only record noise."""
    pin = {"num_warps": {"fixed": 4}, "num_stages": {"fixed": 2}}
    return [
        _gemm(64, 64, 64, "fp16", group_m={"choices": [1, 4]}, split_k={"choices": [1, 2]},
              **pin),
        _gemm(32, 96, 128, "fp32", group_m={"fixed": 1}, split_k={"choices": [1, 4]}, **pin),
        _attn(1, 2, 64, 16, True, "fp16", **pin),
    ]


SUITES = {"gpu": gpu_suite, "llama70b-mlp": llama70b_mlp, "attention-8k": attention_8k,
          "cpu-tiny": cpu_tiny}

#: device-name fragments -> hardware catalog names
_DEVICE_TO_GPU = (("H200", "h200_sxm"), ("H100 80GB HBM3", "h100_sxm"), ("H100 SXM", "h100_sxm"),
                  ("B200", "b200"), ("A100-SXM4-80GB", "a100_sxm_80gb"),
                  ("A100-SXM4-40GB", "a100_sxm_40gb"))


def detect_gpu(device_name: str) -> str | None:
    for fragment, gpu in _DEVICE_TO_GPU:
        if fragment in device_name:
            return gpu
    return None


def case_label(domain: str, ctx: dict[str, Any]) -> str:
    if domain == "kernel-gemm":
        return f"gemm {ctx['m']}x{ctx['n']}x{ctx['k']} {ctx['dtype']}"
    return (f"attention b{ctx['batch']} h{ctx['heads']} s{ctx['seq_len']} d{ctx['head_dim']} "
            f"{ctx['dtype']}{' causal' if ctx['causal'] else ''}")


def _software(env: dict[str, str]) -> dict[str, str]:
    return {k: env[k] for k in ("python", "torch", "triton", "cuda", "kernels") if k in env}


def open_table(path: Path, device: str, gpu: str | None, software: dict[str, str],
               timer: str, overwrite: bool) -> Any:
    from tuner._errors import BadInput
    from tuner.evaluators.kernels import ReplayTable

    if path.exists() and not overwrite:
        table = ReplayTable.load(path)
        for field, have, want in (("device", table.device, device), ("gpu", table.gpu, gpu),
                                  ("software", table.software, software)):
            if have != want:
                raise BadInput(field, f"{path} was recorded with {field} {have!r}, this run has "
                               f"{want!r}; use another --out or --overwrite")
        return table
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ReplayTable(device=device, gpu=gpu, software=software, recorded_at=now, timer=timer)


def sweep(args: argparse.Namespace) -> int:
    from tuner import registry
    from tuner.evaluators.kernels import KernelGpuEvaluator

    ev = KernelGpuEvaluator(warmup_ms=args.warmup_ms, rep_ms=args.rep_ms, seed=args.seed,
                            interpret=args.interpret, cpu_reps=args.cpu_reps)
    env = ev.environment()
    device = env.get("device", "none")
    if device == "none":
        print("no CUDA GPU present (and no interpreter: pass --interpret to record on CPU)",
              file=sys.stderr)
        return 2
    if args.interpret and not device.startswith("cpu"):
        print("--interpret is for machines without a GPU", file=sys.stderr)
        return 2
    gpu = args.gpu or (None if device.startswith("cpu") else detect_gpu(device))
    if not device.startswith("cpu") and gpu is None:
        print(f"cannot map device {device!r} to a hardware catalog entry: pass --gpu",
              file=sys.stderr)
        return 2
    timer = ("triton.testing.do_bench median (L2 flushed before each run)"
             if not device.startswith("cpu") else
             f"time.perf_counter median of {args.cpu_reps} runs in Triton's interpreter on CPU: "
             "measures Python interpretation, NOT GPU performance")
    out = Path(args.out)
    table = open_table(out, device, gpu, _software(env), timer, args.overwrite)
    notes = [f"suite={args.suite}", f"seed={args.seed}",
             f"max_configs={args.max_configs or 'all'}"]
    table.note = "; ".join(notes + ([args.note] if args.note else []))

    rng = random.Random(args.seed)
    t_start = time.monotonic()
    since_save = 0
    cases = SUITES[args.suite]()
    if args.only:
        cases = [c for c in cases if args.only in case_label(c[0], c[1])]
    try:
        for domain, ctx, overrides in cases:
            kernel = "gemm" if domain == "kernel-gemm" else "attention"
            space = registry.space_class(domain)({**ctx, "gpu": gpu or "h100_sxm"}, overrides)
            configs = list(space.enumerate())
            rng.shuffle(configs)
            if args.max_configs:
                configs = configs[:args.max_configs]
            label = case_label(domain, ctx)
            todo = [c for c in configs if table.lookup(kernel, ctx, c) is None]
            print(f"{label}: {len(configs)} configs, {len(configs) - len(todo)} recorded",
                  flush=True)
            for i, cfg in enumerate(todo):
                if args.budget_s and time.monotonic() - t_start > args.budget_s:
                    print("time budget reached", flush=True)
                    return 0
                res = ev.evaluate(cfg)
                table.add(kernel, ctx, cfg, res)
                if "torch_time_us" in res.metrics:
                    table.set_baseline(kernel, ctx, res.metrics["torch_time_us"])
                since_save += 1
                if since_save >= args.save_every:
                    table.save(out)
                    since_save = 0
                if args.verbose:
                    tile = {k: cfg[k] for k in space.params}
                    print(f"  [{i + 1}/{len(todo)}] {tile} {res.status.value} "
                          f"{res.metrics.get('time_us', res.reason)}", flush=True)
            _summary(table, kernel, ctx, label)
    finally:
        table.save(out)
        print(f"wrote {out} ({len(table.records)} records)", flush=True)
    return 0


def _summary(table: Any, kernel: str, ctx: dict[str, Any], label: str) -> None:
    recs = table.shape_records(kernel, ctx)
    ok = [r for r in recs if r["status"] == "ok"]
    if not ok:
        print(f"  {label}: no successful config", flush=True)
        return
    best = min(ok, key=lambda r: r["time_us"])
    base = table.baseline(kernel, ctx)
    vs = f", torch {base:.1f} us ({100 * base / best['time_us']:.0f}%)" if base else ""
    print(f"  {label}: {len(ok)}/{len(recs)} ok, best {best['time_us']:.1f} us "
          f"{best['config']}{vs}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="replay table JSON to write (resumed if present)")
    ap.add_argument("--suite", choices=sorted(SUITES), default="gpu")
    ap.add_argument("--only", default="", help="only cases whose label contains this text")
    ap.add_argument("--gpu", default=None, help="hardware catalog name (default: from device)")
    ap.add_argument("--max-configs", type=int, default=0, help="per shape; 0 = every config")
    ap.add_argument("--budget-s", type=float, default=0.0, help="stop after this many seconds")
    ap.add_argument("--warmup-ms", type=float, default=25.0)
    ap.add_argument("--rep-ms", type=float, default=100.0)
    ap.add_argument("--cpu-reps", type=int, default=3, help="timed runs per config (interpreter)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-every", type=int, default=25)
    ap.add_argument("--interpret", action="store_true",
                    help="record on CPU with Triton's interpreter (sets TRITON_INTERPRET=1)")
    ap.add_argument("--overwrite", action="store_true", help="start a new table at --out")
    ap.add_argument("--note", default="", help="free text stored in the table")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.interpret:
        if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
            print("triton was imported before --interpret could take effect", file=sys.stderr)
            return 2
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is first imported
    from tuner._errors import BadInput

    try:
        return sweep(args)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
