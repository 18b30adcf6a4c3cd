"""Stack profiles: the few named constants that make a simulator match one software stack.

A training framework (Megatron, torchtitan, FSDP, DeepSpeed) or a serving engine (vLLM,
SGLang, TensorRT-LLM, llama.cpp) is described by a TOML file of physically meaningful
constants (achieved fractions, overheads, overlap shares, policies), each with its source, in
``evaluators/<domain>/profiles/<name>.toml``::

    description = "vLLM V1 (0.10-0.11)"
    [constants]
    step_overhead_ms = 1.2        # per engine step: scheduler + sampling (source ...)
    admission = "preempt"         # a policy is a string constant
    [fit]                         # what `tuner calibrate` may move, within these bounds
    step_overhead_ms = [0.0, 50.0]

A user's profile, written by ``tuner calibrate`` or by hand, names the shipped profile it
refines and overrides some constants (and, in ``[fit]``, the bounds of what calibration may
move); it may carry the residual spread of its fit, which gives every prediction an
uncertainty band::

    base = "vllm"
    [constants]
    step_overhead_ms = 2.9
    [uncertainty]                 # log-space residual standard deviation per metric
    tpot_ms_p50 = 0.06

A file without ``base`` and unknown constants are refused with their names (a typo never
passes silently); constants keep the type of the base's value.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tuner import BadInput, UnknownName, as_written, did_you_mean

_DOMAINS = ("training", "serving")
#: z of a two-sided 90% band
BAND_Z = 1.645
#: the widest log-space spread a profile may state (a 90% band of a factor 140 either way)
MAX_SPREAD = 3.0
_FILE_KEYS = {"base", "description", "source", "constants", "uncertainty", "fit", "calibration"}


@dataclass(frozen=True)
class Profile:
    name: str
    domain: str
    constants: Mapping[str, Any]
    uncertainty: Mapping[str, float] = field(default_factory=dict)
    description: str = ""
    path: str = ""
    #: constant -> (low, high): what calibration may fit, within what bounds
    fit_bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.constants[key]

    def band(self, metric: str, value: float) -> tuple[float, float] | None:
        """(lo, hi) of a 90% band around ``value`` from the fit's residuals, if known."""
        sd = self.uncertainty.get(metric)
        if sd is None or not math.isfinite(value):
            return None
        return value * math.exp(-BAND_Z * sd), value * math.exp(BAND_Z * sd)

    def bands(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """``<metric>_lo`` / ``_hi`` for every metric the profile has a spread for."""
        out: dict[str, float] = {}
        for m, v in metrics.items():
            b = self.band(m, v)
            if b:
                out[f"{m}_lo"], out[f"{m}_hi"] = b
        return out


def profile_dir(domain: str) -> Path:
    return Path(__file__).parent / domain / "profiles"


def profile_names(domain: str) -> list[str]:
    return sorted(p.stem for p in profile_dir(domain).glob("*.toml"))


def _read(path: Path, where: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise BadInput(where, f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(where, f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise BadInput(where, f"{path}: not valid TOML (not UTF-8 text)") from None
    unknown = sorted(set(data) - _FILE_KEYS)
    if unknown:
        raise BadInput(where, f"{path}: unknown key {unknown[0]!r}; allowed: "
                       + ", ".join(sorted(_FILE_KEYS)))
    return data


@functools.lru_cache(maxsize=64)
def _shipped(domain: str, name: str) -> Profile:
    path = profile_dir(domain) / f"{name}.toml"
    where = f"{domain} profile {name}"
    data = _read(path, where)
    constants = dict(data.get("constants", {}))
    return Profile(name, domain, MappingProxyType(constants),
                   description=data.get("description", ""), path=str(path),
                   fit_bounds=MappingProxyType(_fit_bounds(data, constants, where)))


def _fit_bounds(data: Mapping[str, Any], constants: Mapping[str, Any], where: str
                ) -> dict[str, tuple[float, float]]:
    """A profile's ``[fit]`` table: constant -> (low, high) around its value."""
    fit = data.get("fit", {})
    if not isinstance(fit, dict):
        raise BadInput(f"{where}.fit", f"{fit!r} must be a table ([fit])")
    bounds = {}
    for key, b in fit.items():
        ok = (isinstance(b, list) and len(b) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in b) and b[0] < b[1])
        if key not in constants or not ok or not b[0] <= constants[key] <= b[1]:
            raise BadInput(f"{where}.fit.{key}", f"{b!r} must be [low, high] around a numeric "
                           "constant of the profile")
        bounds[key] = (float(b[0]), float(b[1]))
    return bounds


def _check_overrides(base: Profile, overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = dict(base.constants)
    for key, value in overrides.items():
        if key not in base.constants:
            raise BadInput(f"{where}.constants.{key}", f"unknown constant of the {base.name!r} "
                           f"profile{did_you_mean(key, base.constants)}; allowed: "
                           + ", ".join(sorted(base.constants)))
        ref = base.constants[key]
        if isinstance(ref, str) != isinstance(value, str) or isinstance(value, bool) \
                != isinstance(ref, bool):
            raise BadInput(f"{where}.constants.{key}", f"{as_written(value)} must be of the "
                           f"type of the base value {as_written(ref)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and not math.isfinite(value):
            raise BadInput(f"{where}.constants.{key}", f"{value!r} must be finite")
        out[key] = value
    return out


def load_profile(domain: str, name_or_path: str, field_: str) -> Profile:
    """A shipped profile by name, or a profile file (``*.toml``) refining one."""
    if domain not in _DOMAINS:
        raise ValueError(domain)
    if not isinstance(name_or_path, str):
        raise BadInput(field_, f"{name_or_path!r} must be a profile name ("
                       + ", ".join(profile_names(domain)) + ") or a .toml path")
    if not name_or_path.endswith(".toml"):
        if name_or_path not in profile_names(domain):
            raise UnknownName(field_, name_or_path, profile_names(domain))
        return _shipped(domain, name_or_path)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise BadInput(field_, f"{name_or_path}: no such profile file")
    data = _read(path, field_)
    base_name = data.get("base")
    if base_name is None:
        raise BadInput(f"{field_}: base", "missing: a profile file names the shipped profile it "
                       "refines (base = \"<name>\") and overrides some of its constants; "
                       "allowed: " + ", ".join(profile_names(domain)))
    if base_name not in profile_names(domain):
        raise UnknownName(f"{field_}: base", base_name, profile_names(domain))
    base = _shipped(domain, base_name)
    for key in ("constants", "uncertainty"):
        if not isinstance(data.get(key, {}), dict):
            raise BadInput(f"{field_}.{key}", f"{data[key]!r} must be a table ([{key}])")
    for key in ("description", "source"):
        if not isinstance(data.get(key, ""), str):
            raise BadInput(f"{field_}.{key}", f"{as_written(data[key])} must be a string")
    constants = _check_overrides(base, data.get("constants", {}), field_)
    unc = data.get("uncertainty", {})
    for key, v in unc.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= MAX_SPREAD:
            raise BadInput(f"{field_}.uncertainty.{key}", f"{as_written(v)} must be a log-space "
                           f"standard deviation in [0, {MAX_SPREAD:g}]")
    # the file's [fit] refines what `tuner calibrate` may move, as its constants refine values
    bounds = {**base.fit_bounds, **_fit_bounds(data, constants, field_)}
    return Profile(base.name, domain, MappingProxyType(constants),
                   MappingProxyType({k: float(v) for k, v in unc.items()}),
                   data.get("description", base.description), str(path),
                   MappingProxyType(bounds))


def check_bands(profile: Profile, metrics: tuple[str, ...], field_: str) -> None:
    """``BadInput`` for an ``[uncertainty]`` entry that names no metric of the evaluator (a
    typo would otherwise drop the band without a word)."""
    unknown = sorted(set(profile.uncertainty) - set(metrics))
    if unknown:
        raise UnknownName(f"{field_}.uncertainty", unknown[0], list(metrics))


def with_constants(profile: Profile, values: Mapping[str, Any]) -> Profile:
    """The same profile with some constants replaced (calibration trials)."""
    return Profile(profile.name, profile.domain,
                   MappingProxyType(_check_overrides(profile, values, "profile")),
                   profile.uncertainty, profile.description, profile.path, profile.fit_bounds)


__all__ = ["BAND_Z", "Profile", "check_bands", "load_profile", "profile_dir", "profile_names",
           "with_constants"]
