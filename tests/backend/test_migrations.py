"""The Alembic migrations build exactly the ORM schema, and re-running them keeps stored runs."""
from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from backend.db import make_engine, make_session_factory, migrate
from backend.tables import Base, Run
from backend import store
from trainer.config import RunConfig


def test_migrated_schema_matches_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    assert {"runs", "comparisons", "step_metrics", "metric_blocks", "evaluations", "reconstructions",
            "alembic_version"} <= set(inspect(engine).get_table_names())


def test_upgrade_keeps_stored_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    engine = make_engine(url)
    migrate(engine)
    with make_session_factory(engine)() as session:
        store.create_run(session, RunConfig(dataset="fashion-mnist", model="mlp", optimizer={"name": "adam"},
                                            budget={"epochs": 1}))
        session.commit()
    engine.dispose()
    again = make_engine(url)
    migrate(again)
    with again.connect() as conn:
        assert conn.execute(select(Run.optimizer)).scalars().all() == ["adam"]
