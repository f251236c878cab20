"""SQLite store file guard: a store file deleted (or replaced) under a running API is restored from the API's open copy.

A deleted SQLite file lives on while connections hold it open, but every new connection would create an
empty file at the path and the data would vanish with the last connection. The API keeps one extra connection
(the keeper) and checks the file's identity (device, inode) every ``interval`` seconds; when the path is gone
or is another file, it writes the keeper's view of the database (every committed row, WAL included) to a
temporary file beside it with SQLite's online backup, drops the stale ``-wal``/``-shm`` paths, renames the copy
into place and disposes the engines so that every connection reopens the restored file. Workers check the same
identity before each write (``file_identity``), so they never write into the deleted copy: a missing file is
a store outage for them (records buffered), a replaced one makes them reconnect.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Callable

from sqlalchemy import make_url

from backend.db import private_dir

__all__ = ["StoreFileGuard", "sqlite_path", "file_identity"]

log = logging.getLogger("trustlab.store_file")


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None: another database, or in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path``; None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class StoreFileGuard:
    """Watches the SQLite store file of ``url`` and restores it when deleted or replaced (see the module docstring).

    Args:
        url: the store URL (any other database: the guard does nothing).
        on_restored: called after a restore (dispose the engines).
        interval: seconds between checks. Default 0.5.
    """

    def __init__(self, url: str, on_restored: Callable[[], None], *, interval: float = 0.5) -> None:
        self.path, self.on_restored, self.interval = sqlite_path(url), on_restored, interval
        self.restores = 0
        self.error: str | None = None  # why the last restore failed (None: fine)
        self._keeper: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.path is None:
            return
        self._open_keeper()
        self._thread = threading.Thread(target=self._loop, name="trustlab-store-file", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None

    def _open_keeper(self) -> None:
        assert self.path is not None
        keeper = sqlite3.connect(self.path, check_same_thread=False)
        keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()  # opens the file and its WAL now
        self._keeper, self._identity = keeper, file_identity(self.path)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - keep watching; the error is logged and kept for the log
                self.error = f"{type(exc).__name__}: {exc}"
                log.exception("could not restore the store file %s", self.path)

    def check(self) -> bool:
        """Restore the file if it was deleted or replaced; True if it did."""
        if self.path is None or self._keeper is None or file_identity(self.path) == self._identity:
            return False
        self._restore()
        return True

    def _restore(self) -> None:
        assert self.path is not None and self._keeper is not None
        path = self.path
        gone = file_identity(path) is None
        private_dir(path.parent)  # the folder may be gone too
        tmp = path.with_name(path.name + ".restoring")
        tmp.unlink(missing_ok=True)
        target = sqlite3.connect(tmp)
        try:
            self._keeper.backup(target)
        finally:
            target.close()
        os.chmod(tmp, 0o600)
        for suffix in ("-wal", "-shm"):  # the deleted copy's journal files: never to be paired with the restored one
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, path)
        old = self._keeper
        self._open_keeper()
        old.close()
        self.restores += 1
        self.error = None
        self.on_restored()
        rows = self._keeper.execute("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM step_metrics)"
                                    ).fetchone()
        log.error("the store file %s was %s while the API was running: restored it from the API's open copy "
                  "(%d runs, %d points); nothing committed before was lost. Find out what %s it.", path,
                  "deleted" if gone else "replaced", rows[0], rows[1], "deleted" if gone else "replaced")
