"""Local executor: one OS process per run here, forked by a pre-warmed zygote (CPU runs) or started warm or cold.

CPU runs: a zygote (``backend.runner.zygote``, setting ``TRUSTLAB_ZYGOTE``, default on) has imported torch and
the trainer and decoded the configured datasets once; each run's worker process is an ``os.fork()`` of it
(about a tenth of a second instead of seconds of imports). The zygote reports each child's exit status; a
dead zygote is restarted (at most ``_MAX_ZYGOTE_DEATHS`` times, then it stays off); a CPU run arriving
while it (re)starts gets a cold process. While the zygote serves, no idle CPU warm workers are kept (each
would cost another few seconds of CPU); GPU runs, and CPU runs once the zygote is off, use the warm pool:

A warm worker (``python -m backend.runner.worker --warm``) has imported torch and the trainer and decoded
the configured datasets before any run exists; starting a run writes its id to the worker's stdin, and
the process trains that one run and exits, so a crash or a memory blow-up ends one run only. The pool
refills at the next tick. Without an idle warm worker (pool empty, or ``TRUSTLAB_WARM_WORKERS=0``) a run
gets a fresh (cold) process. GPU runs are pinned with CUDA_VISIBLE_DEVICES (warm workers are kept per
GPU); CPU runs share the cores (OMP_NUM_THREADS / torch.set_num_threads). Stop: SIGTERM, then SIGKILL.

A job whose process ended stays (holding its slot) until the scheduler has stored its outcome and calls
``acknowledge``: a store outage at that moment never strands the run as "running".
"""
from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from backend.runner import lifecycle
from backend.runner.devices import SlotPlan, plan_slots
from backend.runner.executor import Exit
from backend.runner.worker import STORE_UNREACHABLE_EXIT, log_path
from backend.runner.zygote import ForkedProcess, Zygote, ZygoteError
from backend.settings import Settings

__all__ = ["LocalExecutor", "describe_exit", "REPO_ROOT"]

log = logging.getLogger("trustlab.runner.local")

REPO_ROOT = Path(__file__).resolve().parents[2]
_TAIL_BYTES = 4000
_MAX_IDLE_DEATHS = 3  # warm workers that died before getting a run; then the pool is switched off
_MAX_ZYGOTE_DEATHS = 3  # zygotes that died (or broke); then CPU runs use the warm pool / cold start
# After a hand-over the pool waits this long before starting a replacement, so the replacement's imports
# and warm-up do not compete for the cores with the run that has just started (its first point is due).
REFILL_DELAY_S = 3.0


def describe_exit(returncode: int, what: str = "worker process") -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        return f"{what} was killed by signal {-returncode} ({name})"
    if returncode == STORE_UNREACHABLE_EXIT:
        return f"{what} exited with code {returncode}: the store stayed unreachable (its log says for how long)"
    return f"{what} exited with code {returncode}"


def _ended(proc: subprocess.Popen | ForkedProcess) -> str | None:
    """None while ``proc`` runs; then how it ended (``describe_exit`` or the zygote child's reason)."""
    if isinstance(proc, ForkedProcess):
        return proc.poll()
    rc = proc.poll()
    return None if rc is None else describe_exit(rc)


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
    proc: subprocess.Popen | ForkedProcess
    slot: int
    log: Path
    warm_log: Path | None = None
    term_sent: float | None = None
    kill_sent: float | None = None


@dataclass
class _Warm:
    proc: subprocess.Popen
    gpu: str | None
    log: Path
    started: float = field(default_factory=time.monotonic)


class LocalExecutor:
    """Runs on this machine, up to ``plan.limit`` at once (see ``backend.runner.devices.plan_slots``).

    Args:
        settings: the API's settings (warm_workers, warm_datasets, var_dir for logs, ...).
        engine: the store (only to note the worker pid through the lifecycle module).
        plan: slots and threads. Default: from the settings and the visible GPUs.
        python: interpreter for the workers. Default: this one.
    """

    name = "local"

    def __init__(self, settings: Settings, engine: Engine, *, plan: SlotPlan | None = None,
                 python: str = sys.executable) -> None:
        self.settings, self.engine, self.python = settings, engine, python
        self.plan = plan or plan_slots(settings)
        self.jobs: dict[int, _Job] = {}  # until acknowledged, also those whose process ended
        self._exits: dict[int, Exit] = {}  # ended jobs whose outcome is not stored yet
        self.warm: list[_Warm] = []
        self.warm_starts = 0  # runs handed to a warm worker (for tests and the bench)
        self.cold_starts = 0
        self.zygote_starts = 0  # runs forked by the zygote
        self.zygote: Zygote | None = None
        self._zygote_deaths = 0
        self._dead_zygotes: list[Zygote] = []  # kept until their children ended (their exit messages)
        self._idle_deaths = 0
        self._seq = itertools.count()
        self._refill_after = 0.0

    # -- Executor ----------------------------------------------------------------------------------
    def has_gpus(self) -> bool:
        return bool(self.plan.gpus)

    def describe(self) -> str:
        return (f"local executor: {self.plan.limit} run slot(s) (GPUs: {','.join(self.plan.gpus) or 'none'}), "
                f"{self.plan.torch_threads} torch thread(s) per run, "
                f"{'a zygote (fork server) for CPU runs, ' if self._zygote_wanted() else ''}"
                f"{self._warm_target()} warm worker(s)")

    def has_capacity(self) -> bool:
        return bool(self._free_slots())

    def fits(self, config: dict[str, Any]) -> bool:
        return self._pick_slot(self._free_slots(), str(config.get("device", "auto"))) is not None

    def start(self, run_id: int, config: dict[str, Any]) -> None:
        slot = self._pick_slot(self._free_slots(), str(config.get("device", "auto")))
        if slot is None:
            raise RuntimeError(f"no free run slot for device {config.get('device')!r}")
        gpu = self.plan.slots[slot]
        path = log_path(self.settings, run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        job = self._fork(run_id, slot, path) if gpu is None else None
        if job is None:
            job = self._hand_to_warm(run_id, gpu, slot, path)
        if job is None:
            with path.open("ab") as out:
                proc = subprocess.Popen([self.python, "-m", "backend.runner.worker", str(run_id)],
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        env=self._environment(gpu), cwd=str(REPO_ROOT), start_new_session=True,
                                        close_fds=True)
            job = _Job(run_id=run_id, proc=proc, slot=slot, log=path)
            self.cold_starts += 1
        self.jobs[run_id] = job
        lifecycle.record_worker(self.engine, run_id, pid=job.proc.pid)
        how = "forked" if isinstance(job.proc, ForkedProcess) else "warm" if job.warm_log else "cold"
        log.info("run %d: %s worker pid %d on %s", run_id, how, job.proc.pid, gpu and f"GPU {gpu}" or "CPU")
        self._refill_after = time.monotonic() + REFILL_DELAY_S

    def running(self) -> set[int]:
        return set(self.jobs)

    def stop_run(self, run_id: int, *, force: bool) -> None:
        job = self.jobs.get(run_id)
        if job is None or run_id in self._exits:
            return
        now = time.monotonic()
        if force:
            self._signal(job.proc, signal.SIGKILL)
            job.kill_sent = job.kill_sent or now
        else:
            self._signal(job.proc, signal.SIGTERM)
            job.term_sent = job.term_sent or now

    def poll(self) -> list[Exit]:
        """Every ended job not yet acknowledged (reported again at each call until ``acknowledge``)."""
        for run_id, job in self.jobs.items():
            if run_id in self._exits:
                continue
            reason = _ended(job.proc)
            if reason is None:
                continue
            tail = _tail(job.log) or (_tail(job.warm_log) if job.warm_log else "")
            self._exits[run_id] = Exit(run_id=run_id, reason=reason, stop_sent=job.term_sent is not None,
                                       forced=job.kill_sent is not None, log_tail=tail, log_name=str(job.log))
        return list(self._exits.values())

    def acknowledge(self, run_id: int) -> None:
        """The run's outcome is stored: forget its ended job (freeing the slot)."""
        self._exits.pop(run_id, None)
        job = self.jobs.pop(run_id, None)
        if job is not None and job.warm_log is not None:
            job.warm_log.unlink(missing_ok=True)

    def alive_elsewhere(self, run_id: int, pid: int | None) -> bool:
        """A run stored as running with no job here: its stored pid is a live trustlab worker on this host
        (started by hand with ``python -m backend.runner.worker RUN_ID``)."""
        if pid is None or pid <= 0:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z" and b"backend.runner" in cmdline

    def reattach(self, run_ids: list[int]) -> set[int]:
        return set()  # worker processes of an earlier API process cannot be watched again

    def maintain(self) -> None:
        """Keep the zygote up (restart a dead one); drop warm workers that died idle (saying why), then start
        new ones up to the target."""
        self._maintain_zygote()
        for warm in list(self.warm):
            rc = warm.proc.poll()
            if rc is None:
                continue
            self.warm.remove(warm)
            self._idle_deaths += 1
            log.error("warm worker pid %d died before getting a run (%s): %s", warm.proc.pid, describe_exit(rc),
                      _tail(warm.log, 1000) or "no output")
            warm.log.unlink(missing_ok=True)
            if self._idle_deaths >= _MAX_IDLE_DEATHS:
                log.error("%d warm workers died idle: warm pool off, runs start cold (see the messages above)",
                          self._idle_deaths)
        if time.monotonic() < self._refill_after:
            return
        for gpu, wanted in self._warm_targets().items():
            have = sum(1 for w in self.warm if w.gpu == gpu)
            for _ in range(wanted - have):
                self._spawn_warm(gpu)

    def shutdown(self, grace: float) -> list[Exit]:
        for warm in self.warm:
            self._signal(warm.proc, signal.SIGTERM)
        for job in self.jobs.values():
            self.stop_run(job.run_id, force=False)
        deadline = time.monotonic() + grace
        while any(_ended(j.proc) is None for j in self.jobs.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for job in self.jobs.values():
            if _ended(job.proc) is None:
                self.stop_run(job.run_id, force=True)
                job.proc.wait(timeout=10)
        for warm in self.warm:
            try:
                warm.proc.wait(timeout=max(0.5, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(warm.proc, signal.SIGKILL)
                warm.proc.wait(timeout=10)
            warm.log.unlink(missing_ok=True)
        self.warm.clear()
        exits = self.poll()
        for zygote in [self.zygote, *self._dead_zygotes]:
            if zygote is not None:
                zygote.stop()
                zygote.log.unlink(missing_ok=True)
        self.zygote, self._dead_zygotes = None, []
        return exits

    # -- zygote ------------------------------------------------------------------------------------
    def _zygote_wanted(self) -> bool:
        """CPU runs are forked by a zygote: the setting is on, there are CPU slots, and it has not died too often."""
        return (self.settings.zygote and None in self.plan.slots and self._zygote_deaths < _MAX_ZYGOTE_DEATHS
                and hasattr(os, "pidfd_open"))

    def _maintain_zygote(self) -> None:
        """Start the zygote; notice a dead one (log its tail, count it, start another while under the bound)."""
        for old in list(self._dead_zygotes):
            old.pump()
            if not any(isinstance(j.proc, ForkedProcess) and j.proc.zygote is old for j in self.jobs.values()):
                old.stop()
                old.log.unlink(missing_ok=True)
                self._dead_zygotes.remove(old)
        zygote = self.zygote
        if zygote is not None:
            zygote.pump()
            if zygote.alive():
                return
            self._zygote_died(zygote, "exited")
        if not self._zygote_wanted():
            return
        zygote = Zygote(python=self.python, env=self._zygote_environment(), cwd=str(REPO_ROOT),
                        log=self.settings.log_dir / f"zygote-{os.getpid()}-{next(self._seq)}.log")
        try:
            zygote.start()
        except OSError as exc:
            self._zygote_deaths += 1
            log.error("could not start the zygote: %s", exc)
            return
        self.zygote = zygote

    def _zygote_died(self, zygote: Zygote, how: str) -> None:
        self.zygote = None
        self._zygote_deaths += 1
        zygote.kill()
        rc = zygote.proc.poll() if zygote.proc is not None else None
        log.error("the zygote %s (%s): %s", how, describe_exit(rc, "it") if rc is not None else "no exit status",
                  _tail(zygote.log, 1000) or "no output")
        self._dead_zygotes.append(zygote)
        if self._zygote_deaths >= _MAX_ZYGOTE_DEATHS:
            log.error("the zygote died %d times: CPU runs now use the warm pool or start cold (see the messages "
                      "above)", self._zygote_deaths)

    def _fork(self, run_id: int, slot: int, path: Path) -> _Job | None:
        """The run's worker process forked by the zygote; None when no zygote is ready (or it failed now)."""
        zygote = self.zygote
        if zygote is None:
            return None
        zygote.pump()
        if not zygote.ready:
            return None
        try:
            child = zygote.fork(run_id, self.plan.torch_threads)
        except ZygoteError as exc:
            self._zygote_died(zygote, f"could not fork run {run_id} ({exc})")
            return None
        self.zygote_starts += 1
        return _Job(run_id=run_id, proc=child, slot=slot, log=path)

    def _zygote_environment(self) -> dict[str, str]:
        """A CPU worker's environment with one thread and no GPU: the zygote never starts a thread or CUDA."""
        env = self._environment(None)
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TRUSTLAB_TORCH_THREADS="1", CUDA_VISIBLE_DEVICES="",
                   TRUSTLAB_GPUS="")
        return env

    # -- warm pool ---------------------------------------------------------------------------------
    def _warm_target(self) -> int:
        return sum(self._warm_targets().values())

    def _warm_targets(self) -> dict[str | None, int]:
        """Idle warm workers wanted per GPU id (None: CPU)."""
        if self.settings.warm_workers == 0 or self._idle_deaths >= _MAX_IDLE_DEATHS:
            return {}
        gpus = list(dict.fromkeys(self.plan.slots))
        per = max(1, self.settings.warm_workers // len(gpus))
        zygote = self._zygote_wanted()  # CPU runs are forked; no idle CPU interpreters are kept
        return {gpu: per for gpu in gpus if not (zygote and gpu is None)}

    def _take_warm(self, gpu: str | None) -> _Warm | None:
        for warm in self.warm:
            if warm.gpu == gpu and warm.proc.poll() is None:
                self.warm.remove(warm)
                return warm
        return None

    def _hand_to_warm(self, run_id: int, gpu: str | None, slot: int, path: Path) -> _Job | None:
        """Give the run to an idle warm worker of ``gpu``; None if there is none (or it died just now)."""
        warm = self._take_warm(gpu)
        if warm is None or warm.proc.stdin is None:
            return None
        try:
            warm.proc.stdin.write(f"{run_id}\n".encode())
            warm.proc.stdin.close()
        except OSError as exc:  # it died between the check and the hand-over: start the run cold
            log.warning("warm worker pid %d could not take run %d (%s); starting it cold", warm.proc.pid, run_id, exc)
            self._signal(warm.proc, signal.SIGKILL)
            warm.log.unlink(missing_ok=True)
            return None
        self.warm_starts += 1
        return _Job(run_id=run_id, proc=warm.proc, slot=slot, log=path, warm_log=warm.log)

    def _spawn_warm(self, gpu: str | None) -> None:
        path = self.settings.log_dir / f"warm-{os.getpid()}-{next(self._seq)}.log"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as out:
                proc = subprocess.Popen([self.python, "-m", "backend.runner.worker", "--warm"], stdin=subprocess.PIPE,
                                        stdout=out, stderr=subprocess.STDOUT, env=self._environment(gpu),
                                        cwd=str(REPO_ROOT), start_new_session=True, close_fds=True)
        except OSError as exc:
            self._idle_deaths += 1
            log.error("could not start a warm worker: %s", exc)
            return
        self.warm.append(_Warm(proc=proc, gpu=gpu, log=path))

    # -- slots and processes -----------------------------------------------------------------------
    def _environment(self, gpu: str | None) -> dict[str, str]:
        threads = str(self.plan.torch_threads)
        env = self.settings.child_environment(
            OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, TRUSTLAB_TORCH_THREADS=threads,
            TRUSTLAB_PINNED_GPU=gpu, **({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {}))
        return env  # no PYTHONPATH: `-m` from cwd=REPO_ROOT finds the packages (or they are installed)

    def _free_slots(self) -> list[int]:
        used = {job.slot for job in self.jobs.values()}
        return [i for i in range(self.plan.limit) if i not in used]

    def _pick_slot(self, free: list[int], device: str) -> int | None:
        """A free slot; a run that names "cuda:N" waits for a slot on the N-th visible GPU."""
        if not free:
            return None
        if device.startswith("cuda:") and self.plan.gpus:
            index = int(device[5:])
            if index < len(self.plan.gpus):
                wanted = self.plan.gpus[index]
                return next((s for s in free if self.plan.slots[s] == wanted), None)
        return free[0]

    @staticmethod
    def _signal(proc: subprocess.Popen | ForkedProcess, sig: signal.Signals) -> None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            return  # already exited; the next poll reaps it
