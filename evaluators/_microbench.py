"""Op microbenchmarks of the local device with torch: the measurements a hardware profile is
fitted to (``tuner profile-hardware``; the GPU recording script runs the same functions).

Each measurement keeps its median and spread (p20/p80 of the repeats): GEMMs over a grid of
the shapes the simulators produce, fused attention (prefill and decode), streaming memory
bandwidth, a tiny op's fixed cost, and all-reduce across local processes (gloo on the CPU,
NCCL on GPUs). Inputs are fresh random tensors, outputs are not reused across shapes, and a
GPU's clocks are read, never set.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        from tuner import MissingExtra

        raise MissingExtra("torch", "quant") from None
    return torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        _torch().cuda.synchronize()


def time_op(fn: Callable[[], Any], device: str, *, min_time_s: float = 0.2,
            reps: int = 7, inner: int | None = None) -> dict[str, float]:
    """Median and p20/p80 seconds of ``fn`` over ``reps`` repeats, each repeat long enough
    (``min_time_s`` / reps) to swamp the timer, or ``inner`` calls when given (collectives:
    every rank must call the same number of times); warm-up first."""
    fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    once = max(time.perf_counter() - t0, 1e-7)
    if inner is None:
        inner = max(1, int(min_time_s / reps / once))
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        _sync(device)
        samples.append((time.perf_counter() - t0) / inner)
    samples.sort()
    q = statistics.quantiles(samples, n=5) if len(samples) >= 2 else [samples[0]] * 4
    return {"min_s": samples[0], "median_s": statistics.median(samples), "p20_s": q[0],
            "p80_s": q[3], "repeats": float(reps)}


def time_interleaved(fns: list[Callable[[], Any]], device: str, *, min_time_s: float = 0.2,
                     passes: int = 7) -> list[dict[str, float]]:
    """``time_op`` for several ops, their repeats taken in turn (pass after pass over all of
    them), so a burst of load from elsewhere spoils one repeat of many ops rather than every
    repeat of one; the fastest repeat is then a fair figure for each."""
    inner = []
    for fn in fns:  # warm up each and size its repeats
        fn()
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        inner.append(max(1, int(min_time_s / passes / max(time.perf_counter() - t0, 1e-7))))
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(passes):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(inner[i]):
                fn()
            _sync(device)
            samples[i].append((time.perf_counter() - t0) / inner[i])
    out = []
    for s in samples:
        s.sort()
        q = statistics.quantiles(s, n=5) if len(s) >= 2 else [s[0]] * 4
        out.append({"min_s": s[0], "median_s": statistics.median(s), "p20_s": q[0],
                    "p80_s": q[3], "repeats": float(passes)})
    return out


def device_info(device: str) -> dict[str, Any]:
    torch = _torch()
    info: dict[str, Any] = {"device": device, "torch": torch.__version__,
                            "python": platform.python_version(), "host": platform.node()}
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(device)
        info.update(name=p.name, memory_gib=p.total_memory / 2**30,
                    multiprocessors=p.multi_processor_count, cuda=torch.version.cuda)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        info.update(name=name, threads=torch.get_num_threads(),
                    cores=len(os.sched_getaffinity(0)),
                    memory_gib=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    return info


def gemm(device: str, dtype: str, shapes: list[tuple[int, int, int]],
         min_time_s: float = 0.2) -> list[dict[str, float]]:
    torch = _torch()
    dt = getattr(torch, {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[dtype])
    ops = []
    for m, n, k in shapes:
        a = torch.randn(m, k, device=device, dtype=dt)
        b = torch.randn(k, n, device=device, dtype=dt)
        ops.append(lambda a=a, b=b: a @ b)
    times = time_interleaved(ops, device, min_time_s=min_time_s)
    return [{"m": m, "n": n, "k": k, **t, "tflops": 2.0 * m * n * k / t["min_s"] / 1e12}
            for (m, n, k), t in zip(shapes, times)]


def attention(device: str, dtype: str, cases: list[dict[str, int]],
              min_time_s: float = 0.2) -> list[dict[str, float]]:
    """``scaled_dot_product_attention``; a case with ``q_len`` < ``kv_len`` is decode-like."""
    torch = _torch()
    dt = getattr(torch, {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[dtype])
    sdpa = torch.nn.functional.scaled_dot_product_attention
    ops, work = [], []
    for c in cases:
        b, h, q_len, kv_len, d = c["batch"], c["heads"], c["q_len"], c["kv_len"], c["head_dim"]
        q = torch.randn(b, h, q_len, d, device=device, dtype=dt)
        k = torch.randn(b, h, kv_len, d, device=device, dtype=dt)
        v = torch.randn(b, h, kv_len, d, device=device, dtype=dt)
        causal = q_len == kv_len
        ops.append(lambda q=q, k=k, v=v, causal=causal: sdpa(q, k, v, is_causal=causal))
        pairs = q_len * kv_len / (2 if causal else 1)
        work.append((4.0 * b * h * pairs * d,
                     (2 * kv_len + 2 * q_len) * b * h * d * q.element_size()))
    times = time_interleaved(ops, device, min_time_s=min_time_s)
    return [{**c, **t, "tflops": flops / t["min_s"] / 1e12, "gb_s": nbytes / t["min_s"] / 1e9}
            for c, t, (flops, nbytes) in zip(cases, times, work)]


def memory_bandwidth(device: str, mib: int = 256, min_time_s: float = 0.3) -> dict[str, float]:
    """Streaming copy of ``mib`` MiB (read + write counted)."""
    torch = _torch()
    src = torch.randn(mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    t = time_op(lambda: dst.copy_(src), device, min_time_s=min_time_s)
    return {**t, "bytes": 2.0 * src.numel() * 4, "gb_s": 2.0 * src.numel() * 4
            / t["min_s"] / 1e9}


def launch_cost(device: str) -> dict[str, float]:
    """The fixed cost of one tiny op (dispatch + launch + tail)."""
    torch = _torch()
    x = torch.ones(8, device=device)
    return time_op(lambda: x.add_(0), device, min_time_s=0.1)


def _allreduce_rank(rank: int, world: int, port: int, backend: str, sizes: list[int]
                    ) -> list[dict[str, float]]:
    torch = _torch()
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=world)
    device = f"cuda:{rank}" if backend == "nccl" else "cpu"
    if backend == "nccl":
        torch.cuda.set_device(rank)
    rows = []
    for nbytes in sizes:
        x = torch.ones(max(1, nbytes // 4), device=device)
        dist.barrier()
        t = time_op(lambda x=x: dist.all_reduce(x), device, reps=5,
                    inner=max(1, min(50, 2**24 // max(nbytes, 1))))
        rows.append({"bytes": float(nbytes), **t})
    dist.destroy_process_group()
    return rows


def allreduce(world: int, backend: str, sizes: list[int], timeout_s: float = 300.0
              ) -> list[dict[str, float]]:
    """All-reduce time per buffer size across ``world`` local processes (fresh
    interpreters, so no caller state is forked into them); rank 0's timings."""
    import subprocess
    import sys

    from tuner import free_port, kill_group

    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "tuner.evaluators._microbench", str(r),
                               str(world), str(port), backend, json.dumps(sizes)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for r in range(world)]
    try:
        outs = [p.communicate(timeout=timeout_s) for p in procs]
    finally:
        for p in procs:
            kill_group(p.pid)
    if procs[0].returncode != 0:
        raise RuntimeError(f"all-reduce benchmark failed: {outs[0][1].strip()[-300:]}")
    return json.loads(outs[0][0])


__all__ = ["allreduce", "attention", "device_info", "gemm", "launch_cost", "memory_bandwidth",
           "time_op"]


if __name__ == "__main__":  # one all-reduce rank: RANK WORLD PORT BACKEND SIZES_JSON
    import sys

    _r, _w, _p, _b, _s = sys.argv[1:6]
    print(json.dumps(_allreduce_rank(int(_r), int(_w), int(_p), _b, json.loads(_s))))
