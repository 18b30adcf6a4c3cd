"""llama-server's step costs on this CPU: what the llama.cpp profile's step model rests on.

1. one 256-token prompt at ``--ubatch-size`` 1 to 256 (ms per prompt token): if weight
   streaming overlapped compute, small passes would cost no more per token than large ones;
2. decode steps of 1, 2, 4 and 8 concurrent slots at 1 and 2 threads, and with
   ``--threads-batch 4`` on a 2-core machine (ms per step): oversubscription as a fixed wait
   per pass (the same extra at every slot count) or as a slower rate (an extra that grows).

Run (needs the ``llm-server`` extra; about 3 minutes)::

    python -m tuner.benchmarks.llama_cpp_steps
"""

from __future__ import annotations

import http.client
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuner import free_port
from tuner._process import ServerProcess
from tuner.evaluators.serving._engines import launch_argv
from tuner.evaluators.serving._llama_cpp import server_binary, smollm2_gguf


@contextmanager
def _server(knobs: Mapping[str, Any], logs: Path) -> Iterator[int]:
    port = free_port()
    config = {"engine": "llama.cpp", "kv_dtype": "f16", "flash_attn": True, **knobs}
    argv = launch_argv("llama.cpp", str(smollm2_gguf()), port, config, str(server_binary()),
                       None)
    server = ServerProcess(argv, f"http://127.0.0.1:{port}/health", logs / f"{port}.log",
                           name="llama.cpp")
    server.start(120)
    try:
        yield port
    finally:
        server.stop()


def _request(port: int, prompt_len: int, max_tokens: int) -> float:
    """Seconds for one non-streamed completion of a random prompt (no cached prefix)."""
    rng = random.Random()
    body = json.dumps({"prompt": [rng.randrange(1000, 30000) for _ in range(prompt_len)],
                       "max_tokens": max_tokens, "ignore_eos": True, "cache_prompt": False})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    t = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    conn.getresponse().read()
    return time.perf_counter() - t


def _together(port: int, slots: int, max_tokens: int) -> float:
    """Seconds for ``slots`` short requests sent at once."""
    threads = [threading.Thread(target=_request, args=(port, 16, max_tokens))
               for _ in range(slots)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t


def main() -> int:
    logs = Path(tempfile.mkdtemp(prefix="tuner-llama-steps-"))
    print("prompt processing, ms per token of a 256-token prompt (median of 3):")
    for threads in (1, 2):
        row = []
        for ubatch in (1, 8, 64, 256):
            with _server({"max_num_seqs": 1, "max_num_batched_tokens": 256,
                          "ubatch_size": ubatch, "threads": threads,
                          "threads_batch": threads, "kv_cache_tokens": 1024}, logs) as port:
                _request(port, 256, 1)  # warm-up
                t = sorted(_request(port, 256, 1) for _ in range(3))[1]
            row.append(f"ubatch {ubatch}: {1e3 * t / 256:.2f}")
        print(f"  {threads} thread(s): " + ", ".join(row))
    print("decode step, ms (96 tokens per slot, fastest of 2):")
    for threads, batch_threads in ((1, 1), (2, 2), (1, 4)):
        with _server({"max_num_seqs": 8, "max_num_batched_tokens": 512, "ubatch_size": 512,
                      "threads": threads, "threads_batch": batch_threads,
                      "kv_cache_tokens": 4096}, logs) as port:
            _together(port, 1, 2)
            row = []
            for slots in (1, 2, 4, 8):
                step = min(_together(port, slots, 97) - _together(port, slots, 1)
                           for _ in range(2)) / 96
                row.append(f"{slots} slots {1e3 * step:.1f}")
        print(f"  --threads {threads} --threads-batch {batch_threads}: " + ", ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
