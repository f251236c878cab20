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


def check_owners_migration(url: str, default_owner: str | None) -> None:
    """A store at revision 0006 with a comparison, a run, a sweep and an analysis; 0007 gives them all the owner
    ``default_owner`` (TRUSTLAB_DEFAULT_OWNER; None: the default, "admin") and keeps everything else."""
    from sqlalchemy import text

    engine = make_engine(url)
    migrate(engine, revision="0006")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO comparisons (id, name, spec, created_at) VALUES "
                          "(1, 'old', '{}', '2026-01-01 00:00:00')"))
        conn.execute(text("INSERT INTO runs (id, comparison_id, status, config, optimizer, label, seed, "
                          "cancel_requested, created_at) VALUES (7, 1, 'completed', '{}', 'sgd', 'SGD', 0, false, "
                          "'2026-01-01 00:00:00')"))
        conn.execute(text("INSERT INTO sweeps (id, name, spec, comparison_id, created_at) VALUES "
                          "(3, 'sw', '{}', 1, '2026-01-01 00:00:00')"))
        conn.execute(text("INSERT INTO analyses (id, run_id, kind, status, params, created_at) VALUES "
                          "(5, 7, 'hessian', 'completed', '{}', '2026-01-01 00:00:00')"))
    migrate(engine, **({} if default_owner is None else {"default_owner": default_owner}))
    want = default_owner or "admin"
    with engine.connect() as conn:
        for table, key in (("comparisons", 1), ("runs", 7), ("sweeps", 3), ("analyses", 5)):
            assert conn.execute(text(f"SELECT owner FROM {table} WHERE id = :k"), {"k": key}).scalar() == want
        assert conn.execute(text("SELECT label FROM runs WHERE id = 7")).scalar() == "SGD"
        assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar() == 0
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
    engine.dispose()


def test_owners_migration_on_a_store_made_at_0006(tmp_path: Path) -> None:
    check_owners_migration(f"sqlite:///{tmp_path / 'a.db'}", None)
    check_owners_migration(f"sqlite:///{tmp_path / 'b.db'}", "lab-head")


def test_invalid_default_owner_is_refused(tmp_path: Path) -> None:
    import pytest

    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(ValueError, match="TRUSTLAB_DEFAULT_OWNER"):
        migrate(engine, default_owner="x'; DROP TABLE runs; --")


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
