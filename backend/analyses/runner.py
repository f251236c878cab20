"""Analysis job runner: a thread in the API process that starts queued analyses as worker processes and reaps them.

Like the run scheduler, but separate from it (analyses are short CPU jobs on finished runs, not runs):
at most ``MAX_RUNNING`` analyses compute at once, each in ``python -m backend.analyses.worker ID``; an
analysis whose worker died without a final status becomes "failed" with the exit reason and its log tail.
The runner is created on the first analyses request (``runner_for``) and stops its workers when the API
process exits; a worker also stops by itself when the API process is gone.
"""
from __future__ import annotations

import atexit
import logging
import signal
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from backend.analyses import store
from backend.settings import Settings, cpu_count

__all__ = ["AnalysisRunner", "runner_for", "analysis_log_path", "MAX_RUNNING"]

log = logging.getLogger("trustlab.analyses")

MAX_RUNNING = 1  # a dense Hessian uses every core it gets; more at once only share them
REPO_ROOT = Path(__file__).resolve().parents[2]
_TAIL_BYTES = 3000
_create_lock = threading.Lock()


def analysis_log_path(settings: Settings, analysis_id: int) -> Path:
    return settings.log_dir / f"analysis-{analysis_id}.log"


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()[-_TAIL_BYTES:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace").strip()


class AnalysisRunner:
    """Starts queued analyses (FIFO) as worker processes, at most ``MAX_RUNNING`` at once, and watches them.

    Args:
        settings: the API's settings (store URL, data and log folders, torch threads).
        engine: the store.
        poll_interval: seconds between ticks when nothing wakes it. Default: the settings' poll interval.
    """

    def __init__(self, settings: Settings, engine: Engine, *, poll_interval: float | None = None,
                 python: str = sys.executable) -> None:
        self.settings, self.engine, self.python = settings, engine, python
        self.poll_interval = poll_interval or settings.poll_interval
        self.jobs: dict[int, tuple[subprocess.Popen, Path]] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        count = store.recover(self.engine)
        if count:
            log.warning("marked %d analysis job(s) left running by an earlier API process as failed", count)
        self._thread = threading.Thread(target=self._loop, name="trustlab-analyses", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, grace: float = 5.0) -> None:
        """Stop ticking, SIGTERM the workers (SIGKILL after ``grace`` s) and mark their analyses failed."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        with self._lock:
            for proc, _ in self.jobs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for analysis_id, (proc, _) in list(self.jobs.items()):
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
                store.finish(self.engine, analysis_id, "failed", "interrupted: the API shut down; launch it again")
            self.jobs.clear()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep going; the store may be busy for a moment
                log.exception("analysis runner tick failed")
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def tick(self) -> None:
        with self._lock:
            self._reap()
            while not self._stopping.is_set() and len(self.jobs) < MAX_RUNNING:
                analysis_id = store.start_next(self.engine)
                if analysis_id is None:
                    break
                self._spawn(analysis_id)

    def _reap(self) -> None:
        for analysis_id, (proc, path) in list(self.jobs.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del self.jobs[analysis_id]
            reason = (f"worker process was killed by signal {-rc}" if rc < 0 else f"worker process exited with code {rc}")
            tail = _tail(path)
            if store.finish(self.engine, analysis_id, "failed",
                            reason + (f"\n--- last lines of the worker log ({path}) ---\n{tail}" if tail else "")):
                log.info("analysis %d: %s", analysis_id, reason)

    def _spawn(self, analysis_id: int) -> None:
        threads = str(self.settings.torch_threads or max(1, cpu_count() // 2))
        env = self.settings.child_environment(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
                                              TRUSTLAB_TORCH_THREADS=threads, CUDA_VISIBLE_DEVICES="")
        path = analysis_log_path(self.settings, analysis_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as out:
                proc = subprocess.Popen([self.python, "-m", "backend.analyses.worker", str(analysis_id)],
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                        cwd=str(REPO_ROOT), start_new_session=True, close_fds=True)  # -m finds the packages
        except OSError as exc:
            store.finish(self.engine, analysis_id, "failed", f"could not start the analysis worker: {exc}")
            return
        self.jobs[analysis_id] = (proc, path)
        log.info("analysis %d: started worker pid %d", analysis_id, proc.pid)


def runner_for(app_state: Any) -> AnalysisRunner | None:
    """The app's analysis runner, created and started on first use; stopped when the process exits. None when
    the API runs without job runners (``TRUSTLAB_SCHEDULER=false``): analyses then stay queued."""
    runner = getattr(app_state, "analysis_runner", None)
    if runner is not None or not app_state.settings.scheduler:
        return runner
    with _create_lock:
        runner = getattr(app_state, "analysis_runner", None)
        if runner is None:
            runner = AnalysisRunner(app_state.settings, app_state.engine)
            runner.start()
            app_state.analysis_runner = runner
            ref = weakref.ref(runner)
            atexit.register(lambda: (r := ref()) is not None and r.stop())
    return runner
