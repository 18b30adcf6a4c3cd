"""One error hierarchy. ``BadInput`` maps to exit code 2 with a one-line message."""

from __future__ import annotations

from collections.abc import Iterable


def as_written(value: object) -> str:
    """A value as a study file or JSON config spells it (true, false, null), for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def did_you_mean(name: object, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the closest of ``valid`` to ``name``, or ``""``."""
    import difflib

    close = difflib.get_close_matches(str(name), list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class TunerError(Exception):
    """Base of every error ``tuner`` raises on purpose."""


class BadInput(TunerError):
    """The user's input is wrong: a study file, a config, a CLI argument.

    The message is one line naming the field, the bad value and the allowed values.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class CatalogError(BadInput):
    """An unknown or malformed catalog entry (hardware, model, workload)."""


class UnknownName(BadInput):
    """A name not in a registry; the message lists the valid ones."""

    def __init__(self, field: str, name: object, valid: list[str]) -> None:
        hint = did_you_mean(name, valid) if isinstance(name, str) else ""
        what = "missing" if name is None else f"unknown {as_written(name)}{hint}"
        super().__init__(field, f"{what}; valid: {', '.join(sorted(valid))}")


class MissingExtra(TunerError):
    """An optional dependency is not installed; names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"{module} is not installed: pip install 'mlsys-tuner[{extra}]'")
