"""Read-only SQL access to an Optuna RDB storage, for the dashboard and analysis.

Why not ``optuna.load_study``: Optuna's ``RDBStorage`` creates tables and writes its version row
when it opens a database, and ``study.trials`` loads every trial with every attribute (optuna
#763: minutes for a few thousand trials). A dashboard beside a running study must never write
(SQLite has one writer; optuna-dashboard #545 shows a dashboard locking a study) and must refresh
cheaply. So this module:

* opens SQLite read-only without creating anything beside it and other databases with
  read-only sessions that are never committed (``tuner._readonly_engine``);
* reads Optuna's tables with plain SQL: aggregates for the overview, and for a study only the
  columns the views need (the large ``config``/``artifacts`` attributes are read per trial);
* reads trials incrementally (``TrialCache``): finished trials are immutable in Optuna, so
  once read they are kept and each refresh fetches only trials that are new or were unfinished.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tuner._errors import BadInput

# ``readonly_url`` stays importable from here, where it lived before the split
from tuner._readonly_engine import open_readonly, readonly_url  # noqa: F401
from tuner._record import (
    CACHED,
    CONSTRAINT_PREFIX,
    CONSTRAINTS_KEY,
    EVAL_S,
    FEASIBLE,
    FINISHED_STATES,
    METRICS,
    REASON,
    STATUS,
    constraint_values,
    feasible_of,
    status_of,
)
from tuner._secrets import redact
from tuner._storage_errors import storage_error

#: trial user attributes every study view needs (``config`` and ``artifacts`` are read on demand)
LIGHT_ATTRS = (STATUS, FEASIBLE, REASON, METRICS, CACHED, EVAL_S)
_CHUNK = 500  # ids per IN (...) list: far below SQLite's 32766 host-parameter limit


_LITERALS = {"true": True, "false": False, "null": None}


def _loads(raw: str | None) -> Any:
    if raw is None:
        return None
    lit = _LITERALS.get(raw, raw)
    if lit is not raw:
        return lit
    if raw[:1] == '"' and raw[-1:] == '"' and "\\" not in raw and raw.count('"') == 2:
        return raw[1:-1]  # a plain JSON string (most status values): no decoder needed
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _to_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield list(ids[i:i + _CHUNK])


@dataclass(frozen=True)
class StudyInfo:
    """One study's identity, directions and ``tuner.*`` attributes."""

    study_id: int
    name: str
    directions: tuple[str, ...]  # "minimize" | "maximize"
    user_attrs: Mapping[str, Any]

    def attr(self, key: str, default: Any = None) -> Any:
        return self.user_attrs.get(f"tuner.{key}", default)


@dataclass(frozen=True)
class StudySummary:
    """Overview row: identity plus aggregates computed in SQL."""

    info: StudyInfo
    states: Mapping[str, int]  # Optuna state -> count
    statuses: Mapping[str, int]  # ok | infeasible | failed -> count
    feasible: int
    best: Mapping[int, tuple[float | None, float | None]]  # objective -> (min, max) of feasible
    first_start: datetime | None
    last_complete: datetime | None
    #: whether a live ``tuner run`` holds the study's writer lock (None: no lock recorded)
    runner_alive: bool | None = None

    @property
    def n_trials(self) -> int:
        return sum(self.states.values())


@dataclass(frozen=True, slots=True)
class TrialRow:
    """The light view of one stored trial (no ``config``/``artifacts``)."""

    trial_id: int
    number: int
    state: str  # Optuna state: COMPLETE | FAIL | RUNNING | WAITING | PRUNED
    status: str  # ok | infeasible | failed | running
    feasible: bool
    values: tuple[float | None, ...]
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    reason: str | None = None
    cached: bool = False
    eval_s: float | None = None
    constraints: tuple[float, ...] | None = None
    datetime_start: datetime | None = None
    datetime_complete: datetime | None = None


class _Distributions:
    """Optuna stores parameters in internal form; convert with the (cached) distribution."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def external(self, raw_dist: str, value: float) -> Any:
        dist = self._cache.get(raw_dist)
        if dist is None:
            from optuna.distributions import json_to_distribution

            dist = self._cache[raw_dist] = json_to_distribution(raw_dist)
        try:
            return dist.to_external_repr(value)
        except (IndexError, ValueError):
            return value

    def parsed(self) -> list[Any]:
        return list(self._cache.values())


class ReadOnlyStorage:
    """SQL reads on Optuna's tables; never writes.

    Args:
        url: any SQLAlchemy URL of an Optuna RDB storage.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.label = redact(url)
        self.engine = open_readonly(url)
        self._dists = _Distributions()
        self._check_schema()

    def _check_schema(self) -> None:
        try:
            names = set(sa.inspect(self.engine).get_table_names())
        except Exception as exc:
            err = storage_error(exc, self.url)
            if err is None:
                raise
            raise err from None
        missing = {"studies", "trials", "trial_values", "trial_params",
                   "trial_user_attributes"} - names
        if missing:
            raise BadInput("storage", f"{self.label!r} is not an Optuna storage (missing tables "
                           f"{sorted(missing)})")

    def _rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            try:
                return list(conn.execute(sa.text(sql), params).all())  # fetchall: one C call
            finally:
                conn.rollback()  # never commit: read-only by construction

    # -- studies ---------------------------------------------------------------------------
    def study_infos(self) -> list[StudyInfo]:
        studies = self._rows("SELECT study_id, study_name FROM studies ORDER BY study_id")
        dirs: dict[int, dict[int, str]] = {}
        for sid, obj, d in self._rows(
                "SELECT study_id, objective, direction FROM study_directions"):
            dirs.setdefault(sid, {})[obj] = str(d).lower()
        attrs: dict[int, dict[str, Any]] = {}
        for sid, key, raw in self._rows(
                "SELECT study_id, key, value_json FROM study_user_attributes"):
            attrs.setdefault(sid, {})[key] = _loads(raw)
        return [StudyInfo(sid, name, tuple(v for _, v in sorted(dirs.get(sid, {}).items())),
                          attrs.get(sid, {})) for sid, name in studies]

    def study(self, name: str) -> StudyInfo:
        """The study called ``name``; ``BadInput`` lists the stored names when it is absent."""
        for info in self.study_infos():
            if info.name == name:
                return info
        names = [i.name for i in self.study_infos()]
        raise BadInput("study", f"{name!r} is not in {self.label}; stored: "
                       + (", ".join(names) or "none"))

    def summaries(self) -> list[StudySummary]:
        """Every study with trial counts and best feasible values, from SQL aggregates."""
        infos = self.study_infos()
        runners = self._runners()
        states: dict[int, dict[str, int]] = {}
        times: dict[int, tuple[Any, Any]] = {}
        for sid, state, n, t0, t1 in self._rows(
                "SELECT study_id, state, COUNT(*), MIN(datetime_start), MAX(datetime_complete) "
                "FROM trials GROUP BY study_id, state"):
            states.setdefault(sid, {})[str(state)] = int(n)
            a, b = times.get(sid, (None, None))
            t0, t1 = _to_datetime(t0), _to_datetime(t1)
            times[sid] = (min(x for x in (a, t0) if x) if (a or t0) else None,
                          max(x for x in (b, t1) if x) if (b or t1) else None)
        statuses: dict[int, dict[str, int]] = {}
        for sid, raw, n in self._rows(
                "SELECT t.study_id, a.value_json, COUNT(*) FROM trial_user_attributes a "
                "JOIN trials t ON t.trial_id = a.trial_id WHERE a.key = 'status' "
                "GROUP BY t.study_id, a.value_json"):
            statuses.setdefault(sid, {})[str(_loads(raw))] = int(n)
        # feasible: tuner's flag when present, else a COMPLETE trial with no constraint value
        # > 0 in either of Optuna's forms (plain Optuna studies)
        feasible_join = ("LEFT JOIN trial_user_attributes f ON f.trial_id = t.trial_id "
                         "AND f.key = 'feasible' WHERE t.state = 'COMPLETE' "
                         "AND (f.value_json = 'true' OR (f.value_json IS NULL AND NOT "
                         f"{self._violated_sql()}))")
        feasible = {sid: int(n) for sid, n in self._rows(
            f"SELECT t.study_id, COUNT(*) FROM trials t {feasible_join} GROUP BY t.study_id")}
        best: dict[int, dict[int, tuple[float | None, float | None]]] = {}
        for sid, obj, lo, hi in self._rows(
                "SELECT t.study_id, v.objective, MIN(v.value), MAX(v.value) FROM trial_values v "
                f"JOIN trials t ON t.trial_id = v.trial_id {feasible_join} "
                "AND v.value_type = 'FINITE' GROUP BY t.study_id, v.objective"):
            best.setdefault(sid, {})[int(obj)] = (lo, hi)
        out = []
        for info in infos:
            sid = info.study_id
            st = states.get(sid, {})
            stat = dict(statuses.get(sid, {}))
            if not stat:  # not a tuner study: derive from Optuna states and constraints
                ok = feasible.get(sid, 0)
                stat = {"ok": ok, "infeasible": st.get("COMPLETE", 0) - ok,
                        "failed": st.get("FAIL", 0)}
                stat = {k: v for k, v in stat.items() if v}
            t0, t1 = times.get(sid, (None, None))
            out.append(StudySummary(info, st, stat, feasible.get(sid, 0), best.get(sid, {}),
                                    t0, t1, runners.get(info.name, False if runners else None)))
        return out

    def _runners(self) -> dict[str, bool]:
        """Study name -> whether its ``tuner run`` lock holder is alive ({}: no lock table)."""
        from tuner._study_lock import Holder

        try:
            rows = self._rows("SELECT study_name, holder, host, pid, acquired, heartbeat "
                              "FROM tuner_study_locks")
        except sa.exc.SQLAlchemyError:  # written before the lock existed: nothing known
            return {}
        # an empty table still says something: no study has a live run
        return {name: Holder(*rest).alive() for name, *rest in rows} or {"": False}

    def _violated_sql(self) -> str:
        """SQL true when trial ``t`` has a constraint value > 0, in the named form, or (on
        SQLite and PostgreSQL, which read JSON) the list form."""
        named = ("EXISTS (SELECT 1 FROM trial_system_attributes c WHERE c.trial_id = "
                 f"t.trial_id AND c.key LIKE '{CONSTRAINT_PREFIX}%' "
                 "AND CAST(c.value_json AS REAL) > 0)")
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            listed = ("EXISTS (SELECT 1 FROM trial_system_attributes c, json_each(c.value_json)"
                      f" j WHERE c.trial_id = t.trial_id AND c.key = '{CONSTRAINTS_KEY}' "
                      "AND json_valid(c.value_json) AND j.value > 0)")
        elif dialect == "postgresql":
            listed = ("EXISTS (SELECT 1 FROM trial_system_attributes c, "
                      "json_array_elements_text(c.value_json::json) j WHERE c.trial_id = "
                      f"t.trial_id AND c.key = '{CONSTRAINTS_KEY}' AND j::float > 0)")
        else:
            return named
        return f"({named} OR {listed})"

    def change_token(self, study_id: int) -> tuple[int, int, int]:
        """(trials, finished trials, max trial id): changes whenever the study does."""
        row = self._rows(
            "SELECT COUNT(*), SUM(CASE WHEN state IN ('COMPLETE','FAIL','PRUNED') THEN 1 ELSE 0 "
            "END), MAX(trial_id) FROM trials WHERE study_id = :sid", sid=study_id)[0]
        return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)

    # -- trials ----------------------------------------------------------------------------
    def _trial_filter(self, after_id: int, extra_ids: Sequence[int]) -> tuple[str, dict]:
        params: dict[str, Any] = {"after": after_id}
        cond = "t.trial_id > :after"
        if extra_ids:
            names = []
            for i, tid in enumerate(extra_ids):
                params[f"x{i}"] = tid
                names.append(f":x{i}")
            cond = f"({cond} OR t.trial_id IN ({', '.join(names)}))"
        return cond, params

    def fetch_trials(self, study_id: int, n_objectives: int, after_id: int = 0,
                     extra_ids: Sequence[int] = ()) -> list[TrialRow]:
        """Light rows of the trials with id > ``after_id`` or in ``extra_ids``, by number."""
        cond, params = self._trial_filter(after_id, extra_ids)
        params["sid"] = study_id
        where = f"t.study_id = :sid AND {cond}"
        base = self._rows(
            "SELECT t.trial_id, t.number, t.state, t.datetime_start, t.datetime_complete "
            f"FROM trials t WHERE {where}", **params)
        if not base:
            return []
        values: dict[int, list[float | None]] = {}
        for tid, obj, val, vtype in self._rows(
                "SELECT v.trial_id, v.objective, v.value, v.value_type FROM trial_values v "
                f"JOIN trials t ON t.trial_id = v.trial_id WHERE {where}", **params):
            vs = values.setdefault(tid, [None] * n_objectives)
            if obj < len(vs):
                vt = str(vtype)
                vs[obj] = (math.inf if vt.endswith("INF_POS") else -math.inf
                           if vt.endswith("INF_NEG") else val)
        trial_params: dict[int, dict[str, Any]] = {}
        for tid, pname, pval, pdist in self._rows(
                "SELECT p.trial_id, p.param_name, p.param_value, p.distribution_json "
                f"FROM trial_params p JOIN trials t ON t.trial_id = p.trial_id WHERE {where}",
                **params):
            trial_params.setdefault(tid, {})[pname] = self._dists.external(pdist, pval)
        keys = ", ".join(f"'{k}'" for k in LIGHT_ATTRS)
        attrs: dict[int, dict[str, Any]] = {}
        for tid, key, raw in self._rows(
                "SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a "
                f"JOIN trials t ON t.trial_id = a.trial_id WHERE {where} AND a.key IN ({keys})",
                **params):
            attrs.setdefault(tid, {})[key] = _loads(raw)
        # both of Optuna's forms: the list (Optuna 3/4) and one row per name (Optuna 5)
        cattrs: dict[int, dict[str, Any]] = {}
        for tid, key, raw in self._rows(
                "SELECT a.trial_id, a.key, a.value_json FROM trial_system_attributes a "
                f"JOIN trials t ON t.trial_id = a.trial_id WHERE {where} "
                f"AND (a.key = '{CONSTRAINTS_KEY}' OR a.key LIKE '{CONSTRAINT_PREFIX}%')",
                **params):
            cattrs.setdefault(tid, {})[key] = _loads(raw)
        cons: dict[int, tuple[float, ...]] = {
            tid: tuple(constraint_values(a).values()) for tid, a in cattrs.items()}
        rows = []
        for tid, number, state, t0, t1 in base:
            state = str(state).rsplit(".", 1)[-1]
            a = attrs.get(tid, {})
            c = cons.get(tid)
            status = status_of(state, a, c)
            metrics: dict[str, Any] = a["metrics"] if isinstance(a.get("metrics"), dict) else {}
            eval_s = a.get("eval_s")
            rows.append(TrialRow(
                trial_id=tid, number=int(number), state=state, status=status,
                feasible=feasible_of(state, status, a, c),
                values=tuple(values.get(tid, [None] * n_objectives)),
                params=trial_params.get(tid, {}), metrics=metrics,
                reason=a.get("reason") if isinstance(a.get("reason"), str) else None,
                cached=bool(a.get("cached", False)),
                eval_s=float(eval_s) if isinstance(eval_s, (int, float)) else None,
                constraints=c, datetime_start=_to_datetime(t0),
                datetime_complete=_to_datetime(t1)))
        rows.sort(key=lambda r: r.number)
        return rows

    def trial_attrs(self, trial_ids: Sequence[int],
                    keys: Iterable[str] = ("config", "artifacts")) -> dict[int, dict[str, Any]]:
        """Named user attributes of a few trials (the heavy ones the light rows leave out)."""
        keys = list(keys)
        out: dict[int, dict[str, Any]] = {tid: {} for tid in trial_ids}
        key_params = {f"k{i}": k for i, k in enumerate(keys)}
        key_list = ", ".join(f":k{i}" for i in range(len(keys)))
        for chunk in _chunks(list(trial_ids)):
            id_params = {f"i{j}": tid for j, tid in enumerate(chunk)}
            id_list = ", ".join(f":i{j}" for j in range(len(chunk)))
            for tid, key, raw in self._rows(
                    "SELECT trial_id, key, value_json FROM trial_user_attributes "
                    f"WHERE trial_id IN ({id_list}) AND key IN ({key_list})",
                    **id_params, **key_params):
                out[tid][key] = _loads(raw)
        return out

    def study_configs(self, study_id: int) -> dict[int, Any]:
        """trial_id -> ``config`` for every trial of a study (for joining two studies)."""
        return {tid: _loads(raw) for tid, raw in self._rows(
            "SELECT a.trial_id, a.value_json FROM trial_user_attributes a JOIN trials t "
            "ON t.trial_id = a.trial_id WHERE t.study_id = :sid AND a.key = 'config'",
            sid=study_id)}

    def param_distributions(self, study_id: int) -> dict[str, Any]:
        """Parameter name -> the Optuna distribution of its latest trial."""
        from optuna.distributions import json_to_distribution

        rows = self._rows(
            "SELECT p.param_name, p.distribution_json, MAX(p.trial_id) FROM trial_params p "
            "JOIN trials t ON t.trial_id = p.trial_id WHERE t.study_id = :sid "
            "GROUP BY p.param_name, p.distribution_json", sid=study_id)
        latest: dict[str, tuple[int, str]] = {}
        for name, raw, tid in rows:
            if name not in latest or tid > latest[name][0]:
                latest[name] = (tid, raw)
        return {name: json_to_distribution(raw) for name, (_, raw) in sorted(latest.items())}


@dataclass
class TrialCache:
    """A study's light trial rows, kept up to date incrementally.

    Finished trials never change in Optuna, so a refresh re-reads only trials created since
    the last one plus those that were still running then.
    """

    storage: ReadOnlyStorage
    study_id: int
    n_objectives: int
    version: int = 0
    _rows: dict[int, TrialRow] = field(default_factory=dict)
    _max_id: int = 0
    _open_ids: list[int] = field(default_factory=list)
    _token: tuple[int, int, int] | None = None
    _sorted: list[TrialRow] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def token(self) -> tuple[int, int, int] | None:
        """The change token seen at the last refresh."""
        return self._token

    def refresh(self) -> list[TrialRow]:
        """All rows sorted by trial number; one cheap aggregate query when nothing changed."""
        with self._lock:
            token = self.storage.change_token(self.study_id)
            if token == self._token and not self._open_ids:
                return self._sorted
            fresh = self.storage.fetch_trials(self.study_id, self.n_objectives, self._max_id,
                                              self._open_ids)
            changed = token != self._token or any(self._rows.get(r.trial_id) != r for r in fresh)
            for row in fresh:
                self._rows[row.trial_id] = row
                self._max_id = max(self._max_id, row.trial_id)
            self._open_ids = [r.trial_id for r in self._rows.values()
                              if r.state not in FINISHED_STATES]
            self._token = token
            if changed:
                self._sorted = sorted(self._rows.values(), key=lambda r: r.number)
                self.version += 1
            return self._sorted
