"""The example studies (``studies/*.toml``) and ``tuner init``, which copies one to start from.

In a source checkout the examples are the repository's ``studies/`` folder; an installed wheel
carries them as data files (``share/mlsys-tuner/studies/``, listed in the distribution's
RECORD), so ``tuner init`` works without the repository.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from tuner._errors import BadInput, UnknownName

DIST = "mlsys-tuner"
#: where the wheel puts the example studies, relative to the installation's data folder
DATA_SUBDIR = f"share/{DIST}/studies"


def _from_checkout() -> Path | None:
    folder = Path(__file__).resolve().parent.parent / "studies"
    return folder if (folder / "quickstart.toml").is_file() else None


def _from_distribution() -> dict[str, Path]:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(DIST)
    except PackageNotFoundError:
        return {}
    out = {}
    for f in dist.files or ():
        p = f.as_posix()
        if p.endswith(".toml") and f"/{DATA_SUBDIR}/" in f"/{p}":
            path = Path(str(dist.locate_file(f))).resolve()
            if path.is_file():
                out[path.stem] = path
    return out


def examples() -> dict[str, Path]:
    """Example study name -> file, from the checkout or else from the installed wheel."""
    folder = _from_checkout()
    if folder is not None:
        return {p.stem: p for p in sorted(folder.glob("*.toml"))}
    return dict(sorted(_from_distribution().items()))


def describe(path: Path) -> str:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return ""
    return str(data.get("description", ""))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``tuner init [EXAMPLE] [-o FILE] [--force]``; without EXAMPLE: the list."""
    p.add_argument("example", nargs="?", help="example study to copy (default: list them)")
    p.add_argument("--output", "-o", metavar="FILE",
                   help="where to write it (default: EXAMPLE.toml here)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")


def run(args: argparse.Namespace) -> int:
    found = examples()
    if not found:
        raise BadInput("example", f"no example studies found: neither a source checkout nor "
                       f"the {DIST} distribution's data files")
    if args.example is None:
        width = max(len(n) for n in found)
        for name, path in found.items():
            print(f"{name:<{width}}  {describe(path)}")
        print("\ntuner init NAME writes NAME.toml here; then: tuner run NAME.toml",
              file=sys.stderr)
        return 0
    name = args.example.removesuffix(".toml")
    if name not in found:
        raise UnknownName("example", name, list(found))
    out = Path(args.output or f"{name}.toml")
    if out.exists() and not args.force:
        raise BadInput("--output", f"{out} exists; give --force to overwrite it or -o FILE")
    try:
        out.write_text(found[name].read_text(encoding="utf-8"), encoding="utf-8")
    except OSError as exc:
        raise BadInput("--output", f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {out}; run it with: tuner run {out}", file=sys.stderr)
    return 0


__all__ = ["DATA_SUBDIR", "DIST", "add_arguments", "describe", "examples", "run"]
