"""Engine and sessions for the run store; SQLite pragmas; schema migrations (Alembic) on start."""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["make_engine", "make_session_factory", "migrate", "MIGRATIONS_DIR", "private_dir", "private_file"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str, *, busy_timeout_ms: int = 30_000, pool_size: int | None = None,
                pool_timeout: float | None = None) -> Engine:
    """An engine for ``url``. SQLite gets WAL, a busy timeout and foreign keys on every connection.

    API process and workers write the same file concurrently: WAL lets readers run beside the single
    writer, and the busy timeout makes writers queue instead of failing with "database is locked".
    A new SQLite file is created owner-only (0600, folder 0700); SQLite gives its -wal and -shm files the
    same mode. ``pool_size`` / ``pool_timeout``: connections kept (as many again may overflow) and the
    seconds a request waits for one before ``sqlalchemy.exc.TimeoutError`` (the API answers 503).
    """
    parsed = make_url(url)
    pool: dict[str, float | int] = {}
    if pool_size is not None:
        pool.update(pool_size=pool_size, max_overflow=pool_size)
    if pool_timeout is not None:
        pool["pool_timeout"] = pool_timeout
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **pool)
    if parsed.database and parsed.database != ":memory:":
        private_file(Path(parsed.database))
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
                           **pool)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI connection
        cur = dbapi_connection.cursor()
        try:
            if parsed.database and parsed.database != ":memory:":
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    return engine


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing; the folder itself is made owner-only (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_uid == os.getuid():
        path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty if missing, owner-only (0600), in an owner-only folder.

    An existing file is never opened: closing any descriptor of a SQLite file drops the process's POSIX locks
    on it, which would break the locking of connections already open in this process.
    """
    private_dir(path.parent)
    if not path.exists():
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:  # created meanwhile by another process
            pass
    if path.stat().st_uid == os.getuid():
        path.chmod(0o600)
    return path


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def migrate(engine: Engine, *, default_owner: str = "admin", revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default the newest; creates it in an empty store; keeps stored runs).

    ``default_owner``: the owner given to rows stored before owners existed (migration 0007).
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        cfg.attributes["default_owner"] = default_owner
        command.upgrade(cfg, revision)
