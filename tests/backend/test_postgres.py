"""The same store on PostgreSQL: migrations, the API, the batch writer and the job runner (skipped without initdb)."""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from backend.db import make_engine, migrate
from backend.main import create_app
from backend.tables import Base
from bench.postgres import PostgresUnavailable, throwaway_postgres
from tests.backend.conftest import MLP_RUN, make_settings, record_run, wait_status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free port; yields a server URL without database name."""
    try:
        with throwaway_postgres() as url:
            yield url
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))


_names = itertools.count()


@pytest.fixture
def pg_url(postgres: str) -> str:
    """A fresh, empty database for one test."""
    name = f"t{os.getpid()}_{next(_names)}"
    admin = create_engine(f"{postgres}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return f"{postgres}/{name}"


def test_migrations_match_the_models(pg_url: str) -> None:
    engine = make_engine(pg_url)
    migrate(engine)
    migrate(engine)  # idempotent
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
    engine.dispose()


def test_api_on_postgres(pg_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, database_url=pg_url))) as client:
        run_id = client.post("/api/runs", json=MLP_RUN).json()["id"]
        record_run(client, run_id, steps=4000, evals=(100, 4000), images=(100,), tr=True, spike={1234: 77.0})
        page = client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 100}).json()
        steps = [p["step"] for p in page["points"]]
        assert page["total"] == 4000 and len(steps) <= 100 and {1, 1234, 4000} <= set(steps)
        assert [p["step"] for p in client.get(f"/api/runs/{run_id}/metrics?since_step=3995").json()["points"]] == \
            [3996, 3997, 3998, 3999, 4000]
        assert client.get(f"/api/runs/{run_id}/reconstructions/100.png").content == b"\x89PNG step 100"
        assert client.post("/api/runs", json={**MLP_RUN, "budget": {}}).status_code == 422
        comp = client.post("/api/comparisons", json={"name": "pg", "dataset": "fashion-mnist", "model": "mlp",
                                                     "budget": {"backprops": 5}, "seeds": [0, 1],
                                                     "optimizers": [{"name": "sgd"}, {"name": "adam"}]})
        assert comp.status_code == 201 and len(comp.json()["run_ids"]) == 4
        assert client.get("/api/runs?status=queued").json()["total"] == 4
        assert client.delete(f"/api/runs/{run_id}").status_code == 204
        assert client.get("/api/runs").json()["total"] == 4


def test_job_runner_on_postgres(pg_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, database_url=pg_url, scheduler=True))) as client:
        done = client.post("/api/runs", json=MLP_RUN).json()["id"]
        long = client.post("/api/runs", json={**MLP_RUN, "budget": {"seconds": 60}}).json()["id"]
        assert wait_status(client, done, ("completed",))["last_step"] == 50
        wait_status(client, long, ("running",))
        client.post(f"/api/runs/{long}/cancel")
        assert wait_status(client, long, ("cancelled",), timeout=10)["status"] == "cancelled"


def test_metrics_sql_internals_on_postgres(pg_url: str, tmp_path: Path) -> None:
    """Rejected steps spread by the window function, kept rows by the unnest join, column-wise and batched."""
    with TestClient(create_app(make_settings(tmp_path, database_url=pg_url))) as client:
        run_id = client.post("/api/runs", json=MLP_RUN).json()["id"]
        rejected = frozenset(range(37, 6000, 211))
        record_run(client, run_id, steps=6000, tr=True, rejected=rejected, spike={4321: 50.0})
        page = client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 200, "format": "columns",
                                                                  "fields": "accepted,train_loss"}).json()
        steps = page["columns"]["step"]
        assert page["downsampled"] and len(steps) <= 200 and rejected <= set(steps) and 4321 in steps
        assert steps == sorted(steps) and page["fields"] == ["step", "train_loss", "accepted"]
        capped = client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 40}).json()["points"]
        kept = [p["step"] for p in capped if not p["accepted"]]
        assert len(kept) == 10 and kept[0] == 37 and kept[-1] == max(rejected)
        batch = client.post("/api/metrics/batch", json={"runs": [{"id": run_id, "since_step": 5990}],
                                                        "fields": ["rho"]}).json()["runs"][0]
        assert batch["columns"]["step"] == list(range(5991, 6001)) and batch["columns"]["rho"][0] == 0.9


def test_owners_migration_on_postgres(pg_url: str) -> None:
    from tests.backend.test_migrations import check_owners_migration

    check_owners_migration(pg_url, "lab-head")
    with create_engine(pg_url).connect() as conn:  # PostgreSQL keeps no server default: the ORM always names one
        assert conn.execute(text("SELECT column_default FROM information_schema.columns WHERE table_name = 'runs' "
                                 "AND column_name = 'owner'")).scalar() is None
