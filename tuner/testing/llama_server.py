"""llama.cpp's ``llama-server`` on the packaged SmolLM2-135M GGUF, for tests and checks.

``python -m tuner.testing.llama_server`` answers one chat completion and names a broken build
as such (with the flags to rebuild it) before any test relies on the server.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tuner._errors import MissingExtra
from tuner._process import ServerError, ServerProcess, free_port
from tuner.evaluators.serving._llama_cpp import (
    PORTABLE_CMAKE_ARGS,
    REBUILD_HINT,
    server_binary,
    smollm2_gguf,
)


class LlamaServer(ServerProcess):
    """The server on a free loopback port; ``url`` is its OpenAI-compatible ``/v1`` base."""

    def __init__(self, log_path: str | Path, *, model: str | Path | None = None,
                 ctx: int = 2048, threads: int = 1, parallel: int = 1,
                 extra: list[str] | None = None) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/v1"
        argv = [server_binary(), "--model", model or smollm2_gguf(), "--host", "127.0.0.1",
                "--port", port, "--ctx-size", ctx, "--threads", threads,
                "--parallel", parallel, *(extra or [])]
        super().__init__([str(a) for a in argv], f"http://127.0.0.1:{port}/health", log_path,
                         name="llama-server")


def chat_once(url: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """One schema-constrained chat completion (the kind the LLM proposer sends)."""
    body = {"messages": [{"role": "user", "content": "Pick a tile size as JSON."}],
            "max_tokens": 32, "temperature": 0,
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "tile", "strict": True, "schema": {
                    "type": "object", "required": ["block"],
                    "properties": {"block": {"type": "integer", "enum": [16, 32, 64]}}}}}}
    req = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as r:
        reply = json.loads(r.read())
    json.loads(reply["choices"][0]["message"]["content"])  # constrained output parses
    return reply


def check(log_dir: str | Path | None = None) -> str:
    """Start the server, answer one chat completion, stop; a one-line verdict or ServerError."""
    log = Path(log_dir or tempfile.mkdtemp(prefix="tuner-llama-")) / "llama-server.log"
    srv = LlamaServer(log)
    t0 = time.monotonic()
    with srv:
        try:
            reply = chat_once(srv.url)
        except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
            if not srv.died_within(2.0):
                raise ServerError(f"llama-server did not answer a chat completion "
                                  f"({type(exc).__name__}: {exc}){srv.log_note()}") from None
            raise ServerError(f"llama-server {srv.death()}\nThe build is broken on this CPU; "
                              f"{REBUILD_HINT}") from None
    tokens = reply.get("usage", {}).get("completion_tokens", "?")
    return (f"llama-server OK: {server_binary()} answered a JSON-constrained chat completion "
            f"({tokens} tokens) in {time.monotonic() - t0:.1f} s")


def main() -> int:
    try:
        print(check(), flush=True)
    except (ServerError, MissingExtra) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["PORTABLE_CMAKE_ARGS", "REBUILD_HINT", "LlamaServer", "chat_once", "check",
           "server_binary", "smollm2_gguf"]
