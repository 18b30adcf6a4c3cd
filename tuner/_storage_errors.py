"""A storage failure as one line: what the database driver raised, said for a person.

``storage_error(exc, url)`` walks the exception chain (SQLAlchemy wraps the driver's error)
and names the fault: a file that is not a database, a corrupt one, a full disk, a read-only
file, a missing folder, a database without Optuna's tables, a schema older than the installed
Optuna (with the ``optuna storage upgrade`` command). No SQL text, no password. Light on
purpose (no optuna import at load): the read-only dashboard path uses it too.
"""

from __future__ import annotations

from tuner._errors import BadInput, TunerError
from tuner._secrets import redact, redact_text

#: driver messages -> (exit as bad input?, what to say); matched on the message's first line
_STORAGE_FAULTS = (
    ("file is not a database", True, "is not a database (not an SQLite file, or encrypted)"),
    ("malformed", True, "is corrupt (database disk image is malformed); restore it from a "
                        "copy, or start a new storage"),
    ("disk is full", False, "is full (database or disk is full): free space, then re-run to "
                            "resume; completed trials are stored"),
    ("readonly database", False, "is read-only: writing commands need write access"),
    ("read-only", False, "is read-only: writing commands need write access"),
    ("unable to open database file", True, "cannot be opened (missing folder or no access)"),
    ("no such table", True, "is not an Optuna storage (tables missing)"),
)


def storage_error(exc: BaseException, url: str | None = None) -> TunerError | None:
    """One line for a storage failure (``BadInput`` when the storage given is unusable, a
    ``TunerError`` when the environment is, e.g. a full disk); None if ``exc`` is not one."""
    if isinstance(exc, TunerError):
        return None
    label = f"storage {redact(url)!r}" if url else "the storage"
    e: BaseException | None = exc
    seen = set()
    while e is not None and id(e) not in seen:  # the driver's error under SQLAlchemy's
        seen.add(id(e))
        if isinstance(e, RuntimeError) and "optuna storage upgrade" in str(e):
            return BadInput("storage", f"{label} has a schema older than the installed Optuna "
                            f"({_optuna_version()}); upgrade it with: optuna storage upgrade "
                            "--storage URL (back the file up first)")
        if isinstance(e, RuntimeError) and "compatible with the table schema" in str(e):
            return BadInput("storage", f"{label} was written by a newer Optuna than the "
                            f"installed {_optuna_version()}; upgrade optuna")
        if type(e).__module__.split(".")[0] in ("sqlalchemy", "sqlite3", "psycopg",
                                                "psycopg2"):
            text = str(getattr(e, "orig", None) or e).strip().splitlines()
            first = text[0] if text else type(e).__name__
            for needle, bad_input, say in _STORAGE_FAULTS:
                if needle in first.lower():
                    return (BadInput("storage", f"{label} {say}") if bad_input
                            else TunerError(f"{label} {say}"))
            if type(e).__name__ == "OperationalError":
                return BadInput("storage", f"cannot use {label}: {redact_text(first)[:200]}")
            return TunerError(f"{label}: {type(e).__name__}: {redact_text(first)[:200]}")
        e = e.__cause__ or e.__context__
    return None


def _optuna_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("optuna")
    except PackageNotFoundError:
        return "?"


__all__ = ["storage_error"]
