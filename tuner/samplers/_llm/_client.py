"""A minimal client for OpenAI-compatible ``/chat/completions`` endpoints (stdlib only).

Works with OpenAI, vLLM, llama.cpp's server and llama-cpp-python's server. The reply is asked
for as JSON constrained to a schema: OpenAI's ``{"type": "json_schema", ...}`` first, and
llama-cpp-python's ``{"type": "json_object", "schema": ...}`` when a server rejects that
(``response_format="auto"``).

Safety: the API key is read from the environment at call time and only ever placed in the
``Authorization`` header; it is never stored on the client, logged or put in an error. Every
call is bounded by ``timeout_s`` of wall time (the request runs in a daemon thread) and the
reply body by ``max_reply_bytes``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from tuner._errors import BadInput, TunerError
from tuner._secrets import redact_url

DEFAULT_KEY_ENV = "TUNER_LLM_API_KEY"
FORMATS = ("auto", "json_schema", "json_object", "none")


class LLMCallError(TunerError):
    """A chat call that produced no usable reply. ``kind`` is a short counter name."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        self.message = message
        super().__init__(f"{kind}: {message}")


@dataclass(frozen=True)
class ChatReply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str | None = None
    #: token counts reported by the server (False: estimated from characters)
    usage_reported: bool = True


def check_base_url(url: Any) -> str:
    if not isinstance(url, str) or not url:
        raise BadInput("sampler.options.base_url", f"{url!r} must be an http(s) URL, e.g. "
                       "http://127.0.0.1:8080/v1")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInput("sampler.options.base_url", f"{redact_url(url)!r} must be an http(s) "
                       "URL, e.g. http://127.0.0.1:8080/v1")
    return url.rstrip("/")


class ChatClient:
    """``chat(messages, schema) -> ChatReply`` against one endpoint and model."""

    def __init__(self, base_url: str, model: str = "default",
                 api_key_env: str = DEFAULT_KEY_ENV, timeout_s: float = 60.0,
                 max_reply_bytes: int = 1_000_000, response_format: str = "auto") -> None:
        self.base_url = check_base_url(base_url)
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.max_reply_bytes = int(max_reply_bytes)
        if response_format not in FORMATS:
            raise BadInput("sampler.options.response_format", f"{response_format!r}; "
                           f"allowed: {', '.join(FORMATS)}")
        self.response_format = response_format
        self._format_in_use = "json_schema" if response_format == "auto" else response_format

    def __repr__(self) -> str:
        return (f"ChatClient({redact_url(self.base_url)!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r})")

    def chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None,
             max_tokens: int = 512, temperature: float = 0.7,
             seed: int | None = None) -> ChatReply:
        try:
            return self._chat(messages, schema, max_tokens, temperature, seed,
                              self._format_in_use)
        except LLMCallError as exc:
            # a server that does not know OpenAI's json_schema format: llama-cpp-python's
            # (which answers its validation error with HTTP 500)
            rejected_format = exc.kind in ("http_4xx", "http_error") and (
                "response_format" in exc.message or "json_schema" in exc.message)
            if (rejected_format and self.response_format == "auto"
                    and self._format_in_use == "json_schema" and schema is not None):
                self._format_in_use = "json_object"
                return self._chat(messages, schema, max_tokens, temperature, seed,
                                  "json_object")
            raise

    def _chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None,
              max_tokens: int, temperature: float, seed: int | None, fmt: str) -> ChatReply:
        body: dict[str, Any] = {"model": self.model, "messages": messages,
                                "max_tokens": int(max_tokens), "temperature": temperature,
                                "stream": False}
        if seed is not None:
            body["seed"] = int(seed)
        if schema is not None and fmt == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "proposals", "strict": True, "schema": schema}}
        elif schema is not None and fmt == "json_object":
            body["response_format"] = {"type": "json_object", "schema": schema}
        t0 = time.monotonic()
        raw = self._post_with_deadline(json.dumps(body).encode())
        seconds = time.monotonic() - t0
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMCallError("bad_response", f"not a chat completion ({type(exc).__name__})"
                               ) from None
        if not isinstance(text, str):
            raise LLMCallError("bad_response", "message content is not text")
        usage: Any = data.get("usage") if isinstance(data, dict) else None
        reported = isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int)
        if reported:
            p_tok = int(usage["prompt_tokens"])
            c_tok = int(usage.get("completion_tokens") or 0)
        else:  # ~4 characters per token when the server reports nothing
            p_tok = sum(len(m.get("content", "")) for m in messages) // 4
            c_tok = len(text) // 4
        return ChatReply(text, p_tok, c_tok, seconds, choice.get("finish_reason"), reported)

    def _post_with_deadline(self, payload: bytes) -> bytes:
        """POST in a daemon thread; give up after ``timeout_s`` of wall time."""
        box: dict[str, Any] = {}

        def worker() -> None:
            try:
                box["body"] = self._post(payload)
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc

        th = threading.Thread(target=worker, name="tuner-llm-call", daemon=True)
        th.start()
        th.join(self.timeout_s)
        if th.is_alive():
            raise LLMCallError("timeout", f"no reply within {self.timeout_s:g} s")
        if "error" in box:
            err = box["error"]
            if isinstance(err, LLMCallError):
                raise err
            raise LLMCallError("connection", f"{type(err).__name__}: {str(err)[:200]}")
        return box["body"]

    def _post(self, payload: bytes) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=payload,
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                body = resp.read(self.max_reply_bytes + 1)
        except urllib.error.HTTPError as exc:
            kind = "http_4xx" if 400 <= exc.code < 500 else "http_error"
            detail = ""
            try:
                detail = exc.read(300).decode("utf-8", "replace").replace("\n", " ")
            except Exception:
                pass
            if key:  # a proxy or server may echo the request headers back
                detail = detail.replace(key, "***")
            raise LLMCallError(kind, f"HTTP {exc.code} from {redact_url(self.base_url)}"
                               + (f": {detail[:200]}" if detail else "")) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            kind = "timeout" if "timed out" in str(reason) else "connection"
            raise LLMCallError(kind, f"{redact_url(self.base_url)}: {str(reason)[:200]}"
                               ) from None
        if len(body) > self.max_reply_bytes:
            raise LLMCallError("too_large", f"reply over {self.max_reply_bytes} bytes")
        return body


__all__ = [
    "DEFAULT_KEY_ENV",
    "ChatClient",
    "ChatReply",
    "LLMCallError",
    "check_base_url",
    "redact_url",
]
