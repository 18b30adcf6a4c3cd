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


def test_create_tables_still_reports_a_real_problem(tmp_path):
    db = tmp_path / "ro.db"
    sa.create_engine(f"sqlite:///{db}").connect().close()
    engine = sa.create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    with pytest.raises(sa.exc.OperationalError):
        create_tables(EvalCache._meta, engine)
    engine.dispose()
