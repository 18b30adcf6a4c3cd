"""The sweep across processes: this process enumerates, forked ones score and tally.

Batches of valid configs (with their enumeration index) go out on a queue to ``workers``
processes; each scores them with its own evaluator into its own ``Tally`` and reports counts
per batch, and at the end sends its tally, which merges into the caller's
(``Tally.merge``: the same front, best configs and sample as one process would keep). Ctrl-C
or the wall time stop handing out batches; the processes finish the batch in hand and send
what they have.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
import time
from collections.abc import Sequence
from typing import Any

from tuner._errors import TunerError
from tuner._evaluator import EvalResult
from tuner._interrupt import Interrupt
from tuner._sweep_tally import Tally

#: a batch is sized to take about this long (Ctrl-C and progress are checked between batches)
BATCH_SECONDS = 0.2
MAX_BATCH = 4096


def evaluate_many(evaluator: Any, configs: list[dict[str, Any]]) -> list[EvalResult]:
    """Results for ``configs``: the evaluator's ``evaluate_batch`` where it has one, else one
    by one; an exception is a failed result (for the config that raised), as in the runner."""
    batch = getattr(evaluator, "evaluate_batch", None)
    if batch is not None:
        try:
            out = list(batch(configs))
            if len(out) == len(configs) and all(isinstance(r, EvalResult) for r in out):
                return out
        except Exception:
            pass  # scored one by one below, so the failing config is the one marked failed
    results = []
    for cfg in configs:
        try:
            r = evaluator.evaluate(cfg)
            if not isinstance(r, EvalResult):
                r = EvalResult.failed(f"evaluator returned {type(r).__name__}, not EvalResult")
        except Exception as exc:
            r = EvalResult.failed(f"{type(exc).__name__}: {exc}"[:500])
        results.append(r)
    return results


def next_batch_size(seconds_per_config: float) -> int:
    """Configs per batch for about ``BATCH_SECONDS`` of scoring."""
    if seconds_per_config <= 0:
        return MAX_BATCH
    return max(1, min(MAX_BATCH, int(BATCH_SECONDS / seconds_per_config)))


def scan_pool(sweep: Any, tally: Tally, sigint: Interrupt) -> str:
    """Score ``sweep``'s valid configs in ``sweep.workers`` forked processes into ``tally``;
    the stop reason ("" when every config was scored)."""
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    tasks: Any = ctx.Queue()
    results: Any = ctx.Queue()
    stop = ctx.Event()
    args = (sweep.setup.evaluator_name, dict(sweep.spec.evaluator.options), sweep.objectives,
            list(sweep.spec.constraints), sweep.options["best"], sweep.options["sample"],
            sweep.seed, tasks, results, stop)
    procs = [ctx.Process(  # type: ignore[attr-defined]
        target=_shard_worker, args=args, daemon=True) for _ in range(sweep.workers)]
    for p in procs:  # before the progress display starts its thread
        p.start()
    sweep._size = sweep.options["batch"] or 8
    t0 = time.monotonic()
    index, inflight, done = 0, 0, 0
    best: list[float | None] = [None] * len(sweep.objectives)
    feasible = 0
    batches = sweep.batches()
    exhausted, reason = False, ""
    try:
        with sweep.progress() as progress:
            while True:
                sigint.check()
                if sweep.out_of_time(t0):
                    reason = "wall time reached: what was scored so far is stored"
                    break
                while not exhausted and inflight < 2 * sweep.workers:
                    configs = next(batches, None)
                    if configs is None:
                        exhausted = True
                        break
                    tasks.put((index, configs, [sweep.space.param_values(c)
                                                for c in configs]))
                    index += len(configs)
                    inflight += 1
                if exhausted and not inflight:
                    break
                try:
                    msg = results.get(timeout=0.1)
                except queue.Empty:
                    dead = [p for p in procs if not p.is_alive()]
                    if dead:
                        raise TunerError(f"a sweep process died (exit code "
                                         f"{dead[0].exitcode}); nothing was stored") from None
                    continue
                kind, n, secs, wbest, wfeasible = msg
                if kind == "error":
                    raise TunerError(f"a sweep process failed: {n}")
                inflight -= 1
                done += n
                feasible += wfeasible
                best = _better(best, wbest, sweep.objectives)
                progress.update(done, best, feasible)
                if not sweep.options["batch"] and n:
                    sweep._size = next_batch_size(secs / n)
    finally:
        stop.set()  # workers skip the batches still queued
        for _ in procs:
            tasks.put(None)
        _collect(procs, results, tally)
    return reason

def _collect(procs: list[Any], results: Any, tally: Tally) -> None:
    """Merge every worker's tally (each sends one after its last batch)."""
    got = 0
    deadline = time.monotonic() + 600
    while got < len(procs) and time.monotonic() < deadline:
        try:
            msg = results.get(timeout=0.2)
        except queue.Empty:
            if not any(p.is_alive() for p in procs) and results.empty():
                break
            continue
        if msg[0] == "tally":
            tally.merge(tally.load(msg[1]))
            got += 1
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()


def _better(best: list[float | None], other: Sequence[float | None],
            objectives: Sequence[tuple[str, str]]) -> list[float | None]:
    out = []
    for b, o, (_, d) in zip(best, other, objectives):
        if o is None or (b is not None and (o <= b if d == "maximize" else o >= b)):
            out.append(b)
        else:
            out.append(o)
    return out


def _shard_worker(evaluator_name: str, options: dict[str, Any],
                  objectives: list[tuple[str, str]], constraints: list[Any], n_best: int,
                  sample: int, seed: int, tasks: Any, results: Any, stop: Any) -> None:
    """One sweep process: score the batches it is sent, keep a tally, send it at the end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    from tuner.registry import make_evaluator

    tally = Tally(objectives, constraints, n_best, sample, seed)
    try:
        evaluator = make_evaluator(evaluator_name, options)
        evaluator.setup()
    except Exception as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}", 0.0, [], 0))
        results.put(("tally", tally.export()))
        return
    try:
        while True:
            msg = tasks.get()
            if msg is None:
                break
            if stop.is_set():
                continue
            start, configs, values = msg
            t0 = time.perf_counter()
            res = evaluate_many(evaluator, configs)
            secs = time.perf_counter() - t0
            per = secs / len(configs)
            before = tally.counts.feasible
            for i, r in enumerate(res):
                tally.add(start + i, values[i], r, per)
            results.put(("batch", len(configs), secs, tally.best_values(),
                         tally.counts.feasible - before))
    finally:
        try:
            evaluator.teardown()
        except Exception:
            pass
        results.put(("tally", tally.export()))


__all__ = ["BATCH_SECONDS", "MAX_BATCH", "evaluate_many", "next_batch_size", "scan_pool"]
