import pytest
import sqlalchemy as sa

from tuner.storage import EvalCache, create_tables


def test_create_tables_tolerates_another_process_creating_them_meanwhile(tmp_path, monkeypatch):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'race.db'}")
    real = sa.MetaData.create_all
    raced = []

    def racing(self, bind, tables=None, checkfirst=True):
        if not raced:  # the other worker wins between our check and our CREATE TABLE
            raced.append(True)
            real(self, bind, checkfirst=True)
            return real(self, bind, checkfirst=False)  # "table ... already exists"
        return real(self, bind, tables=tables, checkfirst=checkfirst)

    monkeypatch.setattr(sa.MetaData, "create_all", racing)
    create_tables(EvalCache._meta, engine)
    assert raced and sa.inspect(engine).has_table("tuner_eval_cache")
    engine.dispose()


def _won_the_creation(url, rdb_storage):
    """The other process created the schema and its version row first."""
    rdb_storage(url).engine.dispose()
    raise sa.exc.IntegrityError("INSERT INTO alembic_version", {}, Exception(
        "UNIQUE constraint failed: alembic_version.version_num"))


def _locked_out(url, rdb_storage):
    """Both connections waited to write: SQLite gives one of them up at once."""
    raise sa.exc.OperationalError("CREATE TABLE studies", {}, Exception("database is locked"))


@pytest.mark.parametrize("first_attempt", [_won_the_creation, _locked_out])
def test_open_rdb_retries_when_processes_create_the_schema_together(tmp_path, monkeypatch,
                                                                     first_attempt):
    import optuna

    from tuner import storage

    url = f"sqlite:///{tmp_path / 'new.db'}"
    real = optuna.storages.RDBStorage
    calls = []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            first_attempt(url, real)
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    rdb = storage.open_rdb(url)
    assert len(calls) == 2 and rdb.get_all_studies() == []
    rdb.engine.dispose()


def test_processes_opening_one_new_database_together_all_succeed(tmp_path):
    # each waits for the same instant, then opens (and so creates) the same new database
    start = __import__("time").time() + 3
    code = ("import sys, time; from tuner.storage import open_rdb; "
            f"time.sleep(max(0, {start} - time.time())); "
            "open_rdb(sys.argv[1]).engine.dispose(); print('ok')")
    url = f"sqlite:///{tmp_path / 'together.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs if err]


def test_create_tables_still_reports_a_real_problem(tmp_path):
    db = tmp_path / "ro.db"
    sa.create_engine(f"sqlite:///{db}").connect().close()
    engine = sa.create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    with pytest.raises(sa.exc.OperationalError):
        create_tables(EvalCache._meta, engine)
    engine.dispose()


# -- faults: one line each, no SQL -------------------------------------------------------------
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from conftest import toy_study, write_toml  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _tuner(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def _one_line(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == code and len(lines) == 1, proc.stderr
    assert "SELECT" not in proc.stderr and "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def stored(tmp_path) -> Path:
    db = tmp_path / "s.db"
    study = write_toml(tmp_path / "s.toml", toy_study(trials=6))
    assert _tuner("run", study, "--storage", f"sqlite:///{db}", "--quiet").returncode == 0
    return db


@pytest.mark.parametrize("command", ["run", "show", "export"])
def test_a_file_that_is_not_a_database_is_one_line(tmp_path, command):
    notdb = tmp_path / "notes.db"
    shutil.copy(REPO / "README.md", notdb)
    study = write_toml(tmp_path / "s.toml", toy_study(trials=3))
    args = ([command, study] if command == "run" else [command, "toy"])
    _one_line(_tuner(*args, "--storage", f"sqlite:///{notdb}"), 2, "storage",
              "is not a database")
    assert notdb.read_bytes() == (REPO / "README.md").read_bytes()


@pytest.mark.parametrize("command", ["run", "show"])
def test_a_corrupt_database_is_one_line(tmp_path, stored, command):
    raw = bytearray(stored.read_bytes())
    raw[4096:12288] = b"\xa5" * 8192  # pages after the first overwritten
    stored.write_bytes(bytes(raw))
    study = write_toml(tmp_path / "s2.toml", toy_study(trials=9))
    args = ([command, study] if command == "run" else [command, "toy"])
    _one_line(_tuner(*args, "--storage", f"sqlite:///{stored}"), 2, "storage",
              "is corrupt")


def test_a_database_without_optunas_tables_is_one_line(tmp_path):
    other = tmp_path / "other.db"
    engine = sa.create_engine(f"sqlite:///{other}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE notes (x INTEGER)"))
    engine.dispose()
    _one_line(_tuner("show", "toy", "--storage", f"sqlite:///{other}"), 2,
              "is not an Optuna storage")


def _listing(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_read_only_commands_create_no_file_or_folder(tmp_path, stored):
    url = f"sqlite:///{stored}"
    before = _listing(tmp_path)
    for args in (("show", "toy"), ("pareto", "toy"), ("pareto", "toy", "--format", "json"),
                 ("export", "toy", "--format", "json")):
        proc = _tuner(*args, "--storage", url, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert _listing(tmp_path) == before  # no -wal/-shm files, nothing touched
    # the default storage (~/.tuner/tuner.db) is not created by a reader either
    home = tmp_path / "home"
    env_proc = subprocess.run([sys.executable, "-m", "tuner.cli", "show", "toy"],
                              capture_output=True, text=True, timeout=120,
                              env={**__import__("os").environ, "HOME": str(home),
                                   "TUNER_STORAGE": ""})
    _one_line(env_proc, 2, "no database file")
    assert not home.exists()


def _can_mount_read_only(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {tmp_path} {tmp_path} "
                            f"&& mount -o remount,ro,bind {tmp_path}"], capture_output=True)
    return probe.returncode == 0


def test_read_only_commands_work_on_a_read_only_mount(tmp_path, stored):
    if not _can_mount_read_only(tmp_path):
        pytest.skip("cannot make a read-only mount here (needs unshare and mount rights)")
    folder = stored.parent
    py = sys.executable
    script = (f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} && "
              f"touch {folder}/probe 2>/dev/null && exit 9; "
              f"{py} -m tuner.cli show toy --storage sqlite:///{stored} && "
              f"{py} -m tuner.cli export toy --format csv --storage sqlite:///{stored} && "
              f"{py} -m tuner.cli pareto toy --storage sqlite:///{stored}")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-2000:]
    assert "(6 total)" in proc.stdout and "trial,state" in proc.stdout
