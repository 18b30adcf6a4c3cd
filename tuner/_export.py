"""Trial rows to CSV, JSON or Parquet (flattened: params.*, metrics.*)."""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any

from tuner._errors import BadInput, MissingExtra


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("params", "metrics", "config", "values")}
    for k, v in row["params"].items():
        out[f"params.{k}"] = v
    for k, v in (row.get("metrics") or {}).items():
        out[f"metrics.{k}"] = v
    out["config"] = json.dumps(row.get("config"), sort_keys=True, default=str)
    return out


def export_rows(rows: list[dict[str, Any]], fmt: str, output: str | None) -> str:
    if fmt == "json":
        text = json.dumps(rows, default=str, indent=1)
        return _write(text, output)
    flat = [flatten(r) for r in rows]
    columns: list[str] = []
    for r in flat:
        columns += [k for k in r if k not in columns]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=columns)
        w.writeheader()
        w.writerows(flat)
        return _write(buf.getvalue(), output)
    if fmt == "parquet":
        if not output:
            raise BadInput("--output", "parquet is binary: give a file with --output")
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise MissingExtra("pyarrow", "export") from None
        table = pa.Table.from_pylist([{c: _scalar(r.get(c)) for c in columns} for r in flat])
        pq.write_table(table, output)
        return output
    raise BadInput("--format", f"{fmt!r}; allowed: csv, json, parquet")


def _scalar(v: Any) -> Any:
    return v if v is None or isinstance(v, (int, float, str, bool)) else json.dumps(v)


def _write(text: str, output: str | None) -> str:
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        return output
    sys.stdout.write(text)
    return "stdout"
