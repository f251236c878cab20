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


def test_0008_backfills_group_key_from_stored_configs(tmp_path: Path) -> None:
    """Rows written before runs.group_key existed get the key their stored config gives (seeds share it)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from backend.db import MIGRATIONS_DIR
    from backend.domain import stored_config
    from trainer.identity import group_key

    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0006")
    configs = [RunConfig(dataset="fashion-mnist", model="mlp", optimizer={"name": "adam"}, budget={"epochs": 1},
                         seed=s, input_scaling=scaling) for s, scaling in ((0, None), (1, None), (0, "unit"))]
    with engine.begin() as conn:
        for c in configs:
            conn.execute(text("INSERT INTO runs (status, config, optimizer, label, seed, cancel_requested, "
                              "created_at) VALUES ('completed', :config, 'adam', 'Adam', :seed, 0, "
                              "'2026-01-01 00:00:00')"),
                         {"config": __import__("json").dumps(stored_config(c)), "seed": c.seed})
    migrate(engine)
    with engine.connect() as conn:
        keys = conn.execute(select(Run.group_key).order_by(Run.id)).scalars().all()
    assert keys == [group_key(c) for c in configs]
    assert keys[0] == keys[1] != keys[2]  # seeds share a key; input_scaling makes another group
