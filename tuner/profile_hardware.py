"""``tuner profile-hardware``: microbenchmark the local device, write a hardware profile.

    tuner profile-hardware --out HW.toml [--device cpu|cuda|cuda:N] [--ranks 2]

The profile is a hardware catalog file measured here (GEMM efficiency over the shapes the
simulators produce, fused attention, memory bandwidth, all-reduce across local processes); its
path works wherever a catalog GPU name goes: ``"gpu": "HW.toml"`` in a training-sim,
serving-sim or kernel-sim config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuner._command import standalone
from tuner._errors import BadInput


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="profile file to write (TOML)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--ranks", type=int, default=2, help="local processes for the all-reduce "
                   "benchmark (1: skip it; GPUs: at most the visible GPUs)")
    p.add_argument("--name", help="profile name (default: derived from the device)")
    p.add_argument("--price-usd-per-hour", type=float, default=0.0,
                   help="device price, for the simulators' cost metrics")
    p.add_argument("--quick", action="store_true", help="a smaller grid (about 10 s on a CPU)")


def run(args: argparse.Namespace) -> int:
    from tuner.evaluators._hardware_profile import profile_hardware

    out = Path(args.out)
    if out.suffix != ".toml":
        raise BadInput("--out", f"{args.out!r} must be a .toml path")
    if not out.parent.is_dir():
        raise BadInput("--out", f"{out.parent} is not a directory")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise BadInput("--device", f"{args.device!r}; allowed: cpu, cuda, cuda:N")
    if not 1 <= args.ranks <= 64:
        raise BadInput("--ranks", f"{args.ranks}; allowed: 1-64")
    if args.price_usd_per_hour < 0:
        raise BadInput("--price-usd-per-hour", f"{args.price_usd_per_hour} must be >= 0")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BadInput("--device", "no CUDA device here; profile the CPU with --device cpu")
    data = profile_hardware(out, args.device, args.ranks, args.name, args.price_usd_per_hour,
                            quick=args.quick, log=lambda m: print(m, file=sys.stderr,
                                                                 flush=True))
    peaks = ", ".join(f"{d} {v:.3g} TFLOP/s" for d, v in data["peak_tflops"].items())
    print(f"wrote {out}: {data['name']} ({peaks}; memory {data['hbm_tb_s'] * 1e3:.3g} GB/s; "
          f"{data['source'].split('; ', 1)[-1]})", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return standalone("tuner profile-hardware", add_arguments, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
