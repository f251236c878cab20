"""Job runner: a thread in the API process that starts queued runs as worker processes, reaps and cancels them."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select, update

from backend.runner.devices import SlotPlan, plan_slots
from backend.settings import Settings
from backend.tables import Run, utcnow
from backend.runner.worker import finish_run

__all__ = ["Scheduler", "log_path", "describe_exit", "REPO_ROOT"]

log = logging.getLogger("trustlab.scheduler")

REPO_ROOT = Path(__file__).resolve().parents[2]
_TAIL_BYTES = 4000


def log_path(settings: Settings, run_id: int) -> Path:
    """Where a worker's stdout and stderr go."""
    return settings.log_dir / f"run-{run_id}.log"


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        return f"worker process was killed by signal {-returncode} ({name})"
    return f"worker process exited with code {returncode}"


def _tail(path: Path, limit: int = _TAIL_BYTES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - limit))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


@dataclass
class _Job:
    run_id: int
    proc: subprocess.Popen
    slot: int
    log: Path
    term_sent: float | None = None
    kill_sent: float | None = None


class Scheduler:
    """Starts queued runs (FIFO) up to the slot limit, one OS process each, and watches them.

    Every ``poll_interval`` seconds (or at once after ``wake()``) a tick: reaps exited workers (a worker
    that died without setting a final status → "failed" with the exit reason and its log tail), sends
    SIGTERM to runs whose cancel was requested and SIGKILL after ``cancel_grace_seconds``, and claims and
    starts queued runs on free slots. GPU runs are pinned with CUDA_VISIBLE_DEVICES; CPU runs share the
    cores (OMP_NUM_THREADS / torch.set_num_threads).
    """

    def __init__(self, settings: Settings, engine: Engine, *, plan: SlotPlan | None = None,
                 python: str = sys.executable) -> None:
        self.settings, self.engine, self.python = settings, engine, python
        self.plan = plan or plan_slots(settings)
        self.jobs: dict[int, _Job] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Mark runs left "running" by an earlier API process as interrupted, then start ticking."""
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="trustlab-scheduler", daemon=True)
        self._thread.start()

    def recover(self) -> int:
        with self.engine.begin() as conn:
            count = conn.execute(
                update(Run).where(Run.status == "running").values(
                    status="interrupted", finished_at=utcnow(),
                    error="interrupted: the API process running it stopped; the data logged so far is kept"),
            ).rowcount
        if count:
            log.warning("marked %d run(s) left running by an earlier API process as interrupted", count)
        return count

    def wake(self) -> None:
        self._wake.set()

    def stop(self, grace: float | None = None) -> None:
        """Stop ticking; ask every worker to stop, kill those still there after ``grace`` s; mark "interrupted"."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        grace = min(self.settings.cancel_grace_seconds, 10.0) if grace is None else grace
        with self._lock:
            for job in self.jobs.values():
                self._signal(job, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while any(j.proc.poll() is None for j in self.jobs.values()) and time.monotonic() < deadline:
                time.sleep(0.05)
            for job in self.jobs.values():
                if job.proc.poll() is None:
                    self._signal(job, signal.SIGKILL)
                    job.proc.wait(timeout=10)
            self._reap(shutting_down=True)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep scheduling; the store may be busy for a moment
                log.exception("scheduler tick failed")
            self._wake.wait(self.settings.poll_interval)
            self._wake.clear()

    # -- one tick ----------------------------------------------------------------------------------
    def tick(self) -> None:
        with self._lock:
            self._reap()
            self._enforce_cancels()
            if not self._stopping.is_set():
                self._start_queued()

    def _reap(self, *, shutting_down: bool = False) -> None:
        for run_id, job in list(self.jobs.items()):
            rc = job.proc.poll()
            if rc is None:
                continue
            del self.jobs[run_id]
            with self.engine.connect() as conn:
                row = conn.execute(select(Run.status, Run.cancel_requested).where(Run.id == run_id)).first()
            if row is None or row.status != "running":
                continue  # the worker set the final status (or the run was deleted)
            reason = describe_exit(rc)
            if row.cancel_requested or job.term_sent is not None and not shutting_down:
                waited = " after the grace period" if job.kill_sent is not None else ""
                status, error = "cancelled", f"cancelled on request; {reason}{waited}"
            elif shutting_down:
                status, error = "interrupted", f"interrupted: the API shut down; {reason}"
            else:
                tail = _tail(job.log)
                status = "failed"
                error = reason + (f"\n--- last lines of the worker log ({job.log}) ---\n{tail}" if tail else "")
            finish_run(self.engine, run_id, status, error, None)
            log.info("run %d: %s", run_id, error.splitlines()[0])

    def _enforce_cancels(self) -> None:
        if not self.jobs:
            return
        with self.engine.connect() as conn:
            wanted = set(conn.scalars(select(Run.id).where(Run.status == "running", Run.cancel_requested.is_(True),
                                                             Run.id.in_(list(self.jobs)))))
        now = time.monotonic()
        for run_id in wanted:
            job = self.jobs[run_id]
            if job.term_sent is None:
                self._signal(job, signal.SIGTERM)
                job.term_sent = now
            elif job.kill_sent is None and now - job.term_sent >= self.settings.cancel_grace_seconds:
                self._signal(job, signal.SIGKILL)
                job.kill_sent = now

    @staticmethod
    def _signal(job: _Job, sig: signal.Signals) -> None:
        try:
            job.proc.send_signal(sig)
        except ProcessLookupError:
            return  # already exited; the next tick reaps it

    def _free_slots(self) -> list[int]:
        used = {job.slot for job in self.jobs.values()}
        return [i for i in range(self.plan.limit) if i not in used]

    def _start_queued(self) -> None:
        free = self._free_slots()
        if not free:
            return
        with self.engine.connect() as conn:
            queued = conn.execute(select(Run.id, Run.config).where(Run.status == "queued").order_by(Run.id)
                                  .limit(self.plan.limit * 4 + 16)).all()
        for run_id, config in queued:
            if not free:
                return
            slot = self._pick_slot(free, str((config or {}).get("device", "auto")))
            if slot is None:
                continue  # its GPU is busy; later runs may still fit
            with self.engine.begin() as conn:
                claimed = conn.execute(update(Run).where(Run.id == run_id, Run.status == "queued").values(
                    status="running", started_at=utcnow(), cancel_requested=False)).rowcount
            if not claimed:
                continue  # cancelled (or deleted) meanwhile
            free.remove(slot)
            self._spawn(run_id, slot)

    def _pick_slot(self, free: list[int], device: str) -> int | None:
        """A free slot; a run that names "cuda:N" waits for a slot on the N-th visible GPU."""
        if device.startswith("cuda:") and self.plan.gpus:
            index = int(device[5:])
            if index < len(self.plan.gpus):
                wanted = self.plan.gpus[index]
                return next((s for s in free if self.plan.slots[s] == wanted), None)
        return free[0]

    def _spawn(self, run_id: int, slot: int) -> None:
        gpu = self.plan.slots[slot]
        threads = str(self.plan.torch_threads)
        env = self.settings.child_environment(
            OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, TRUSTLAB_TORCH_THREADS=threads,
            TRUSTLAB_PINNED_GPU=gpu, **({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {}))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        path = log_path(self.settings, run_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as out:
                proc = subprocess.Popen([self.python, "-m", "backend.runner.worker", str(run_id)], stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(Path.cwd()),
                                        start_new_session=True, close_fds=True)
        except OSError as exc:
            finish_run(self.engine, run_id, "failed", f"could not start the worker process: {exc}", None)
            return
        self.jobs[run_id] = _Job(run_id=run_id, proc=proc, slot=slot, log=path)
        with self.engine.begin() as conn:
            conn.execute(update(Run).where(Run.id == run_id).values(pid=proc.pid))
        log.info("run %d: started worker pid %d on %s", run_id, proc.pid, gpu and f"GPU {gpu}" or "CPU")
