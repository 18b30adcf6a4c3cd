"""Secret redaction: the one place that decides what a message, log line or stored spec may show.

Three kinds of secret reach ``tuner``'s output: a database password inside a storage URL
(``postgresql+psycopg://user:PASSWORD@host/db``), a credential in an option table
(``api_key``, ``hf_token``, ``db_password``...), and an API endpoint with credentials in it
(``https://user:TOKEN@host/v1``). Every function here returns a copy with the secret masked;
none raises on odd input, since they run on the way to an error message.

No optuna import: the read-only dashboard path uses this too and stays light.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

#: keys whose values are credentials (``api_key``, ``hf_token``, ``db_password``...): their
#: string values are masked wherever a spec is stored or reported
SECRET_KEY_PATTERN = re.compile(r"(^|[_-])(password|passwd|secret|token|api[_-]?key|apikey|"
                                r"credentials?|private[_-]?key|access[_-]?key)$", re.IGNORECASE)
#: ``scheme://user:password@`` anywhere in a text
URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^:/@\s]+):[^@\s]+@")


def redact(url: str) -> str:
    """A storage (SQLAlchemy) URL with any password hidden, for messages and logs."""
    import sqlalchemy as sa  # lazy: the regex helpers below need no database library

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: nothing secret to hide in a path
        return url


def redact_text(text: str) -> str:
    """Hide ``user:password@`` in any URL inside ``text`` (error messages, log lines)."""
    return URL_PASSWORD.sub(r"\1:***@", text)


def redact_secrets(obj: Any) -> Any:
    """A copy of ``obj`` with credential-like string values masked and URL passwords hidden."""
    if isinstance(obj, dict):
        return {k: ("***" if isinstance(k, str) and isinstance(v, str) and v
                    and SECRET_KEY_PATTERN.search(k) else redact_secrets(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_secrets(v) for v in obj]
    if isinstance(obj, str) and "://" in obj and "@" in obj:
        return redact_text(obj)
    return obj


def redact_url(url: str) -> str:
    """An endpoint URL without ``user:password@``, query or fragment (an HTTP API's address as
    it may be shown: tokens travel in queries too)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<url>"
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


__all__ = ["SECRET_KEY_PATTERN", "URL_PASSWORD", "redact", "redact_secrets", "redact_text",
           "redact_url"]
