"""The fidelity ladder end to end on this CPU: llama-server's knobs for SmolLM2 at a fixed load.

1. ``tuner profile-hardware`` measures this CPU (or ``--profile`` reuses a file);
2. a study tunes llama.cpp's ``llama-server`` (slots, logical/physical batch, KV-cache type,
   threads, flash attention) serving the SmolLM2-135M GGUF to 8 users in a closed loop,
   256-token prompts, 64-token answers, warm-up excluded: ``serving-sim`` with the CPU profile
   screens every valid config, ``serving-real`` measures the best ``--top-k`` per round and
   ``--explore`` more spread over the knobs, and the llama.cpp profile is recalibrated after
   each round (``[fidelity]``);
3. configs the ladder did not measure (``--held-out`` seeded random ones, and llama-server's
   defaults) are measured and predicted with the shipped and with the calibrated profile: the
   simulator's median TTFT and TPOT error on configs not used for calibration, before and after;
4. the tuned config's measured goodput against llama-server's defaults at the same load.

Run (needs the ``llm-server`` extra; several minutes)::

    python -m tuner.benchmarks.cpu_ladder [--profile cpu.toml] [--rounds 3] [--top-k 2]
        [--explore 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOAD = {"mode": "closed", "concurrency": 8, "num_requests": 24, "warmup_requests": 8,
        "input_len": 256, "output_len": 64, "seed": 0}
CHOICES = {"max_num_seqs": [1, 2, 4, 8], "max_num_batched_tokens": [128, 512, 2048],
           "ubatch_size": [64, 512], "kv_dtype": ["f16", "q8_0"], "flash_attn": [True, False],
           "threads": [1, 2]}
SLO = {"slo_ttft_ms": 3000.0, "slo_tpot_ms": 150.0}
ERROR_METRICS = ("ttft_ms_p50", "tpot_ms_p50", "throughput_tok_s")


def _study(profile: str, rounds: int, top_k: int, explore: int, out: Path) -> str:
    ctx = {"engine": "llama.cpp", "model": "smollm2-135m", "gpu": profile,
           "kv_cache_tokens": 4096, **SLO}
    lines = ['name = "cpu-ladder"', "seed = 0", "", "[space]", 'domain = "serving"', "",
             "[space.context]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in ctx.items()]
    lines.append("workload = {" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in LOAD.items())
                 + "}")
    for k, v in CHOICES.items():
        lines += ["", f"[space.params.{k}]", f"choices = {json.dumps(v)}"]
    lines += ["", "[evaluator]", 'name = "serving-real"', "", "[[objectives]]",
              'metric = "goodput_req_s"', 'direction = "maximize"', "", "[[objectives]]",
              'metric = "tpot_ms_p50"', 'direction = "minimize"', "", "[budget]",
              "trial_timeout_s = 300", "", "[fidelity]", 'screen = "serving-sim"',
              f"top_k = {top_k}", f"explore = {explore}", f"rounds = {rounds}",
              "recalibrate = true",
              f"profile_out = {json.dumps(str(out))}"]
    return "\n".join(lines).replace("True", "true").replace("False", "false") + "\n"


def _errors(pred: dict[str, float], meas: dict[str, float]) -> dict[str, float]:
    return {m: abs(pred[m] / meas[m] - 1) for m in ERROR_METRICS
            if pred.get(m) and meas.get(m)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", help="a CPU hardware profile (default: measure one now)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--explore", type=int, default=2,
                    help="configs per round spread over the space (for calibration)")
    ap.add_argument("--held-out", type=int, default=4)
    ap.add_argument("--keep", help="folder to keep the study database and profiles in")
    args = ap.parse_args(argv)

    from tuner.registry import make_evaluator
    from tuner.search_spaces.serving import ServingSpace

    work = Path(args.keep or tempfile.mkdtemp(prefix="tuner-cpu-ladder-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    profile = args.profile or str(work / "cpu.toml")
    if not args.profile:
        subprocess.run([sys.executable, "-m", "tuner.cli", "profile-hardware", "--out", profile],
                       check=True)
    calibrated = work / "llama.cpp-calibrated.toml"
    study = work / "cpu-ladder.toml"
    study.write_text(_study(profile, args.rounds, args.top_k, args.explore, calibrated))
    db = f"sqlite:///{work / 'ladder.db'}"
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "run", str(study), "--storage", db],
                          text=True)
    if proc.returncode != 0:
        return proc.returncode
    ladder_s = time.monotonic() - t0

    import optuna

    trials = [t for t in optuna.load_study(study_name="cpu-ladder", storage=db).trials
              if t.user_attrs.get("status") == "ok"]
    measured = {json.dumps(t.params, sort_keys=True) for t in trials}
    best = max(trials, key=lambda t: t.user_attrs["metrics"]["goodput_req_s"])

    space = ServingSpace({"engine": "llama.cpp", "model": "smollm2-135m", "gpu": profile,
                          "kv_cache_tokens": 4096, "workload": LOAD, **SLO},
                         {k: {"choices": v} for k, v in CHOICES.items()})
    rng = random.Random(1)
    held = []
    while len(held) < args.held_out:
        cfg = space.sample(rng)
        if not space.constraints(cfg) and json.dumps(space.param_values(cfg),
                                                     sort_keys=True) not in measured:
            held.append(cfg)
    defaults = {"engine": "llama.cpp", "model": "smollm2-135m", "gpu": profile,
                "workload": LOAD, **SLO}
    real = make_evaluator("serving-real")
    shipped = make_evaluator("serving-sim")
    fitted = make_evaluator("serving-sim", {"profile": str(calibrated)})
    before: dict[str, list[float]] = {m: [] for m in ERROR_METRICS}
    after: dict[str, list[float]] = {m: [] for m in ERROR_METRICS}
    print("\nheld-out configs (not used for calibration), measured vs predicted:")
    default_goodput = None
    held_file = work / "held_out.jsonl"
    held_file.write_text("")
    for cfg in held + [defaults]:
        res = real.evaluate(cfg)
        label = "llama-server defaults" if cfg is defaults else json.dumps(
            space.param_values(cfg), separators=(",", ":"))
        if res.status.value != "ok":
            print(f"  {label}: {res.status.value}: {res.reason}")
            continue
        m = dict(res.metrics)
        with open(held_file, "a") as f:  # rows `tuner calibrate` reads
            f.write(json.dumps({"config": cfg, "metrics": m}) + "\n")
        if cfg is defaults:
            default_goodput = m["goodput_req_s"]
        e0 = _errors(dict(shipped.evaluate(cfg).metrics), m)
        e1 = _errors(dict(fitted.evaluate(cfg).metrics), m)
        for k in ERROR_METRICS:
            if k in e0 and k in e1:
                before[k].append(e0[k])
                after[k].append(e1[k])
        print(f"  {label}\n    measured TTFT p50 {m['ttft_ms_p50']:.0f} ms, TPOT p50 "
              f"{m['tpot_ms_p50']:.1f} ms; |error| shipped/calibrated: "
              + ", ".join(f"{k} {100 * e0.get(k, float('nan')):.0f}%/"
                          f"{100 * e1.get(k, float('nan')):.0f}%" for k in ERROR_METRICS))
    print("\nmedian |error| on held-out configs   shipped   calibrated")
    for k in ERROR_METRICS:
        if before[k]:
            print(f"  {k:<34}{100 * statistics.median(before[k]):7.1f}%"
                  f"{100 * statistics.median(after[k]):11.1f}%")
    bm = best.user_attrs["metrics"]
    print(f"\ngoodput (req/s meeting TTFT <= {SLO['slo_ttft_ms']:.0f} ms and TPOT <= "
          f"{SLO['slo_tpot_ms']:.0f} ms), measured at the same load:")
    print(f"  tuned  {bm['goodput_req_s']:.3f} req/s  ({json.dumps(best.params)})")
    if default_goodput is not None:
        print(f"  llama-server defaults {default_goodput:.3f} req/s")
    print(f"\nladder {ladder_s:.0f} s, total {time.monotonic() - t0:.0f} s; files in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
