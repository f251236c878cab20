"""Alembic environment: migrates the store named by the settings (or the connection handed in by backend.db)."""
from __future__ import annotations

from alembic import context

from backend.tables import Base

config = context.config
if config.config_file_name is not None:  # the CLI (alembic.ini); backend.db passes no file
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata


def _run(connection) -> None:  # noqa: ANN001 - SQLAlchemy connection
    # render_as_batch: SQLite cannot ALTER most things, so migrations copy tables in batch mode.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    from backend.settings import Settings

    url = config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from backend.db import make_engine
    from backend.settings import Settings

    settings = Settings()
    url = config.get_main_option("sqlalchemy.url") or settings.resolved_database_url
    engine = make_engine(url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
