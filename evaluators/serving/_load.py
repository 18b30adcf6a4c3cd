"""Drive a serving workload against a live OpenAI-compatible endpoint, streaming.

The same :class:`Workload` ``serving-sim`` simulates is sent for real: closed loop (``concurrency``
requests in flight, the next sent when one finishes) or open loop (each request at its arrival
time: Poisson, Gamma, burst or a replayed trace). Each request asks ``/v1/completions`` for
exactly its output length (``max_tokens`` with ``ignore_eos``) on a prompt of exactly its input
length, given as token ids (random ids, seeded, so no two prompts share a cached prefix); the
reply is streamed, and the time of every token chunk is recorded, so TTFT and every
inter-token gap are measured per request. The result has the simulator's request arrays
(``arrival``, ``first``, ``finish``, ``out``), so both are scored by the same metric code.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

#: prompt token ids are drawn from this range: inside any modern vocabulary, above the
#: special and byte tokens
TOKEN_ID_RANGE = (1000, 30000)


@dataclass
class Timeline:
    """Per-request times in seconds from the start of the run (index = workload order)."""

    arrival: list[float]
    first: list[float]
    finish: list[float]
    out: list[int]
    gaps: list[list[float]] = field(default_factory=list)  # inter-token gaps per request
    errors: list[str | None] = field(default_factory=list)
    preemptions: int = 0  # not observable from outside an engine

    @property
    def failed(self) -> list[int]:
        return [i for i, e in enumerate(self.errors) if e]


def _prompt(rng: random.Random, n: int) -> list[int]:
    lo, hi = TOKEN_ID_RANGE
    return [rng.randrange(lo, hi) for _ in range(n)]


def _error_text(raw: bytes) -> str:
    """The message of an engine's error object (or the raw text, shortened)."""
    try:
        err = json.loads(raw).get("error", {})
    except (ValueError, AttributeError):
        err = {}
    msg = err.get("message") if isinstance(err, dict) else err
    return f"the engine reported: {msg or raw[:300].decode('utf-8', 'replace').strip()}"


def _stream_one(base: urllib.parse.SplitResult, model: str, prompt: list[int], max_tokens: int,
                timeout_s: float, extra: dict[str, Any]) -> tuple[list[float], int]:
    """POST one streaming completion; the arrival time of each token chunk and the token
    count (the server's usage when it reports one, else the number of chunks)."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}, **extra}
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=timeout_s)
    try:
        conn.request("POST", f"{base.path.rstrip('/')}/completions", json.dumps(body),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: "
                               f"{resp.read(300).decode('utf-8', 'replace').strip()}")
        stamps: list[float] = []
        usage = None
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            # an error after the stream began: llama-server sends "error: {...}", others a
            # data chunk with an "error" object
            if line.startswith(b"error:"):
                raise RuntimeError(_error_text(line[6:]))
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            chunk = json.loads(payload)
            if chunk.get("error"):
                raise RuntimeError(_error_text(payload))
            now = time.monotonic()
            if chunk.get("usage"):
                usage = chunk["usage"].get("completion_tokens")
            choices = chunk.get("choices") or []
            if choices and (choices[0].get("text") or choices[0].get("finish_reason") is None):
                stamps.append(now)
        return stamps, int(usage) if usage else len(stamps)
    finally:
        conn.close()


def drive(base_url: str, workload: Any, *, model: str = "default", seed: int = 0,
          request_timeout_s: float = 600.0, extra: dict[str, Any] | None = None,
          stop: threading.Event | None = None) -> Timeline:
    """Send ``workload`` to ``base_url`` (``http://host:port/v1``) and time every token."""
    base = urllib.parse.urlsplit(base_url)
    n = len(workload)
    rng = random.Random(seed)
    prompts = [_prompt(rng, k) for k in workload.input_len]
    tl = Timeline([0.0] * n, [0.0] * n, [0.0] * n, [0] * n, [[] for _ in range(n)],
                  [None] * n)
    t0 = time.monotonic()
    stop = stop or threading.Event()

    def run(i: int) -> None:
        sent = time.monotonic()
        tl.arrival[i] = sent - t0
        try:
            stamps, count = _stream_one(base, model, prompts[i], workload.output_len[i],
                                        request_timeout_s, extra or {})
            if not stamps:
                raise RuntimeError("the stream held no token")
            tl.first[i], tl.finish[i] = stamps[0] - t0, stamps[-1] - t0
            tl.out[i] = count
            tl.gaps[i] = [b - a for a, b in zip(stamps, stamps[1:])]
        except Exception as exc:  # recorded per request; the caller decides what it means
            tl.errors[i] = f"{type(exc).__name__}: {exc}"[:300]
            tl.finish[i] = time.monotonic() - t0
            stop.set()  # one broken request ends the run: the engine is not serving

    if workload.is_closed:
        next_i = iter(range(n))
        lock = threading.Lock()

        def loop() -> None:
            while not stop.is_set():
                with lock:
                    i = next(next_i, None)
                if i is None:
                    return
                run(i)

        threads = [threading.Thread(target=loop, daemon=True)
                   for _ in range(min(workload.concurrency, n))]
        for th in threads:
            th.start()
    else:
        threads = []
        for i, at in enumerate(workload.arrival_s):
            delay = t0 + at - time.monotonic()
            if stop.wait(delay) if delay > 0 else stop.is_set():
                break
            th = threading.Thread(target=run, args=(i,), daemon=True)
            th.start()
            threads.append(th)
    for th in threads:
        th.join()
    for i in range(n):  # requests never sent (the run was stopped)
        if not tl.errors[i] and not tl.out[i]:
            tl.errors[i] = tl.errors[i] or "not sent: the run stopped early"
    return tl


__all__ = ["TOKEN_ID_RANGE", "Timeline", "drive"]
