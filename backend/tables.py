"""The run store's schema (SQLAlchemy 2 ORM): comparisons, runs, step metrics, evaluations, reconstructions."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary,
                        MetaData, String, Text, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from backend.runner.states import ACTIVE_STATES, ALL_STATES, RunState

__all__ = ["Base", "Comparison", "Run", "StepMetric", "MetricBlock", "BLOCK_SIZE", "Evaluation", "Reconstruction", "Analysis", "ANALYSIS_STATUSES", "utcnow",
           "ACTIVE_STATUSES", "ALL_STATUSES", "METRIC_COLUMNS", "EVAL_COLUMNS"]

# Run states are defined once, in backend.runner.states; these names stay for the store's callers.
ACTIVE_STATUSES = ACTIVE_STATES
ALL_STATUSES = ALL_STATES

# Stable constraint names, so Alembic migrations can refer to them on every backend.
_NAMING = {"ix": "ix_%(table_name)s_%(column_0_N_name)s", "uq": "uq_%(table_name)s_%(column_0_N_name)s",
           "ck": "ck_%(table_name)s_%(constraint_name)s", "fk": "fk_%(table_name)s_%(column_0_name)s",
           "pk": "pk_%(table_name)s"}


def utcnow() -> datetime:
    """Now, as a naive UTC datetime (what the store keeps; responses add the Z)."""
    return datetime.now(UTC).replace(tzinfo=None)


class StateColumn(TypeDecorator):
    """A run state stored as its plain string (String(16)), read back as a ``RunState``."""

    impl = String(16)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else RunState(value).value  # unknown names fail here, not in the store

    def process_result_value(self, value: str | None, dialect: Any) -> RunState | None:
        return None if value is None else RunState(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime()}


class Comparison(Base):
    """A named group of runs launched together (one per optimizer and seed)."""

    __tablename__ = "comparisons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    tags: Mapped[list[str] | None] = mapped_column(JSON)  # researcher's labels (PATCH; validated in schemas)
    note: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(64))  # the user who created it (backend.users)

    __table_args__ = (
        Index("ix_comparisons_owner_id", "owner", "id"),
        {"sqlite_autoincrement": True},  # ids are never reused (clients cache by id)
    )


class Run(Base):
    """One training run: its RunConfig as JSON, lifecycle and latest progress counters."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    comparison_id: Mapped[int | None] = mapped_column(ForeignKey("comparisons.id", ondelete="CASCADE"))
    status: Mapped[RunState] = mapped_column(StateColumn(), default=RunState.QUEUED)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    optimizer: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(300))
    seed: Mapped[int] = mapped_column(Integer)
    # trainer.identity.group_key of the config: runs of one setting (every field but the seed) share it
    group_key: Mapped[str | None] = mapped_column(String(32))
    device: Mapped[str | None] = mapped_column(String(64))
    info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    pid: Mapped[int | None] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    last_backprops: Mapped[int | None] = mapped_column(BigInteger)
    last_epoch: Mapped[float | None] = mapped_column(Float)
    last_wall_time: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    tags: Mapped[list[str] | None] = mapped_column(JSON)  # researcher's labels (PATCH; validated in schemas)
    note: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(64))  # the user who created it (backend.users)

    __table_args__ = (
        Index("ix_runs_status_id", "status", "id"),
        Index("ix_runs_owner_status", "owner", "status"),
        Index("ix_runs_comparison_id", "comparison_id"),
        Index("ix_runs_group_key", "group_key"),
        {"sqlite_autoincrement": True},  # ids are never reused (clients and log files are keyed by run id)
    )


class StepMetric(Base):
    """One optimizer step; TR trace values are real columns (null for first-order runs)."""

    __tablename__ = "step_metrics"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    backprops: Mapped[int] = mapped_column(BigInteger)
    gradients: Mapped[int | None] = mapped_column(BigInteger)
    hvps: Mapped[int | None] = mapped_column(BigInteger)
    forwards: Mapped[int | None] = mapped_column(BigInteger)
    epoch: Mapped[float] = mapped_column(Float)
    wall_time: Mapped[float] = mapped_column(Float)
    train_loss: Mapped[float | None] = mapped_column(Float)
    grad_norm: Mapped[float | None] = mapped_column(Float)
    step_norm: Mapped[float | None] = mapped_column(Float)
    radius: Mapped[float | None] = mapped_column(Float)
    new_radius: Mapped[float | None] = mapped_column(Float)
    rho: Mapped[float | None] = mapped_column(Float)
    cg_iterations: Mapped[int | None] = mapped_column(Integer)
    cg_exit: Mapped[str | None] = mapped_column(String(32))
    accepted: Mapped[bool | None] = mapped_column(Boolean)
    pred_decrease: Mapped[float | None] = mapped_column(Float)
    actual_decrease: Mapped[float | None] = mapped_column(Float)
    step_norm_m: Mapped[float | None] = mapped_column(Float)

    # Rows clustered by (run_id, step) on SQLite: per-run range scans read contiguous pages. The partial
    # index finds a run's rejected TR steps (few) without scanning the run, so downsampling can keep them.
    __table_args__ = (
        Index("ix_step_metrics_rejected", "run_id", "step", sqlite_where=text("NOT accepted"),
              postgresql_where=text("NOT accepted")),
        {"sqlite_with_rowid": False},
    )


BLOCK_SIZE = 32


class MetricBlock(Base):
    """Rollup of ``BLOCK_SIZE`` consecutive steps (block b holds steps 32b+1..32b+32): count, first/last step
    and the steps of the smallest and largest training loss. Downsampling reads these instead of every row."""

    __tablename__ = "metric_blocks"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    block: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_step: Mapped[int] = mapped_column(BigInteger)
    last_step: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)
    min_step: Mapped[int] = mapped_column(BigInteger)
    min_loss: Mapped[float | None] = mapped_column(Float)
    max_step: Mapped[int] = mapped_column(BigInteger)
    max_loss: Mapped[float | None] = mapped_column(Float)

    __table_args__ = {"sqlite_with_rowid": False}


class Evaluation(Base):
    """Loss (and accuracy) on the fixed train subset and the test set at one step."""

    __tablename__ = "evaluations"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    backprops: Mapped[int] = mapped_column(BigInteger)
    epoch: Mapped[float] = mapped_column(Float)
    wall_time: Mapped[float] = mapped_column(Float)
    train_loss: Mapped[float | None] = mapped_column(Float)
    test_loss: Mapped[float | None] = mapped_column(Float)
    train_accuracy: Mapped[float | None] = mapped_column(Float)
    test_accuracy: Mapped[float | None] = mapped_column(Float)

    __table_args__ = {"sqlite_with_rowid": False}


class Reconstruction(Base):
    """A PNG strip of autoencoder outputs (kind "reconstruction") or of the inputs (kind "original")."""

    __tablename__ = "reconstructions"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    backprops: Mapped[int | None] = mapped_column(BigInteger)
    png: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


ANALYSIS_STATUSES = ("queued", "running", "completed", "failed")


class Analysis(Base):
    """An analysis job on a finished run (kind "hessian": paper Fig. 2), its parameters and results as JSON."""

    __tablename__ = "analyses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    owner: Mapped[str] = mapped_column(String(64))  # the user who asked for it (backend.users)

    __table_args__ = (
        Index("ix_analyses_run_id", "run_id"),
        Index("ix_analyses_status_id", "status", "id"),
        {"sqlite_autoincrement": True},
    )

METRIC_COLUMNS: tuple[str, ...] = tuple(c.name for c in StepMetric.__table__.columns if c.name != "run_id")
EVAL_COLUMNS: tuple[str, ...] = tuple(c.name for c in Evaluation.__table__.columns if c.name != "run_id")


class Sweep(Base):
    """A hyperparameter sweep (issue 9): its spec, the comparison grouping its tuning runs, and the comparison its
    winners were promoted to."""

    __tablename__ = "sweeps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id", ondelete="CASCADE"))
    promoted_comparison_id: Mapped[int | None] = mapped_column(ForeignKey("comparisons.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    owner: Mapped[str] = mapped_column(String(64))  # the user who created it (backend.users)

    __table_args__ = {"sqlite_autoincrement": True}


class SweepRun(Base):
    """One tuning run of a sweep: which optimizer entry of the spec and which grid point it trains."""

    __tablename__ = "sweep_runs"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True,
                                        autoincrement=False)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    entry: Mapped[int] = mapped_column(Integer)
    point: Mapped[dict[str, Any]] = mapped_column(JSON)


AUDIT_ACTIONS = ("create", "cancel", "delete", "edit", "promote")
AUDIT_OBJECTS = ("run", "comparison", "sweep", "analysis")


class AuditEvent(Base):
    """Who did what to which object, when (written in the same transaction as the change; GET /api/audit)."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # one of AUDIT_ACTIONS
    object_type: Mapped[str] = mapped_column(String(16))  # one of AUDIT_OBJECTS
    object_id: Mapped[int] = mapped_column(BigInteger)
    owner: Mapped[str | None] = mapped_column(String(64))  # the object's owner at the time
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_audit_events_actor_id", "actor", "id"),
        Index("ix_audit_events_object", "object_type", "object_id"),
        {"sqlite_autoincrement": True},
    )


__all__ += ["Sweep", "SweepRun", "AuditEvent", "AUDIT_ACTIONS", "AUDIT_OBJECTS"]
