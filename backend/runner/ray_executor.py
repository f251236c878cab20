"""Ray executor (``TRUSTLAB_EXECUTOR=ray``): each run is a named, detached Ray actor on a cluster.

The actor (``trustlab-run-<id>`` in ``TRUSTLAB_RAY_NAMESPACE``) asks for one GPU when the run's device is
cuda, else one CPU (plus ``TRUSTLAB_RAY_RUN_RESOURCES``, e.g. a custom resource that only some nodes
have), and trains the run with the same worker code as the local executor, writing its records straight
to the store. So the store must be a server database (PostgreSQL): SQLite is refused at start-up.

Cancel: the actor's ``request_stop`` (the trainer stops at its next step, as on SIGTERM), then after the
grace period ``ray.kill`` (as SIGKILL). A dead actor or node ends the run "failed" with Ray's reason.
The API shutting down leaves the actors training; the next API process re-attaches to them by name.
An ended actor's exit is reported at every ``poll`` until the scheduler has stored its outcome
(``acknowledge``), so a store outage at that moment never strands the run as "running".

Ray is an optional extra (``pip install -r requirements-ray.txt``). Ray reads its own connection
settings from the environment: with token authentication (the default for clusters started by Ray
2.59+), the API and every node need the same ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN``.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from backend.errors import is_store_outage
from backend.runner import lifecycle
from backend.runner.executor import Exit
from backend.runner.local import REPO_ROOT
from backend.settings import Settings

__all__ = ["RayExecutor", "actor_name", "check_store"]

log = logging.getLogger("trustlab.runner.ray")

_DEFAULT_LIMIT = 64  # runs submitted at once when TRUSTLAB_MAX_CONCURRENT_RUNS is unset (Ray queues the rest)


def actor_name(run_id: int) -> str:
    return f"trustlab-run-{run_id}"


def check_store(url: str) -> None:
    """Refuse a store that workers on other machines cannot write to."""
    if url.startswith("sqlite"):
        raise ValueError(
            "Invalid store for the Ray executor: SQLite is a file on the API's machine, and Ray runs workers on "
            "other machines that must write their records to the same store. Set TRUSTLAB_DATABASE_URL to a "
            "PostgreSQL server (e.g. postgresql+psycopg://user:password@host/trustlab), or use "
            "TRUSTLAB_EXECUTOR=local.")


class RunActor:
    """Trains one run inside a Ray worker process (threaded actor: stop and wait calls arrive while it trains)."""

    def __init__(self, run_id: int, env: dict[str, str]) -> None:
        os.environ.update(env)  # the API's resolved worker settings (WORKER_SETTINGS), read by Settings() below
        self.run_id = run_id
        self.stop = threading.Event()
        self.done = threading.Event()
        self.code: int | None = None
        self.error: str | None = None

    def train(self) -> int:
        from backend.runner.worker import train_run

        try:
            self.code = train_run(self.run_id, Settings(), self.stop, parent_pid=None)
        except BaseException as exc:  # noqa: BLE001 - reported through wait(); train_run already records failures
            self.error = f"{type(exc).__name__}: {exc}"
            self.code = 1
        finally:
            self.done.set()
        return self.code

    def wait(self) -> tuple[int | None, str | None]:
        self.done.wait()
        return self.code, self.error

    def request_stop(self) -> None:
        self.stop.set()

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        """The address of the Ray node this actor runs on."""
        import ray

        return ray.util.get_node_ip_address()


@dataclass
class _RayJob:
    run_id: int
    actor: Any
    ref: Any  # ObjectRef of actor.wait()
    stop_sent: bool = False
    forced: bool = False


class RayExecutor:
    """Submits runs to the Ray cluster at ``settings.ray_address`` (see the module docstring)."""

    name = "ray"

    def __init__(self, settings: Settings, engine: Engine) -> None:
        check_store(settings.resolved_database_url)
        try:
            import ray
        except ImportError:
            raise RuntimeError("TRUSTLAB_EXECUTOR=ray needs Ray: pip install -r requirements-ray.txt") from None
        self.ray, self.settings, self.engine = ray, settings, engine
        self.limit = settings.max_concurrent_runs or _DEFAULT_LIMIT
        self.jobs: dict[int, _RayJob] = {}  # until acknowledged, also those whose actor ended
        self._exits: dict[int, Exit] = {}  # ended jobs whose outcome is not stored yet
        self.placements: dict[int, str] = {}  # run id → node address, learnt when the run ends
        self.extra_resources = _resources(settings.ray_run_resources)
        env = settings.worker_environment()  # an allowlist: never the API token or other API-only settings
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        self.env = env
        if not ray.is_initialized():
            init: dict[str, Any] = {"address": settings.ray_address or "auto", "namespace": settings.ray_namespace,
                                    "log_to_driver": False, "configure_logging": False,
                                    "runtime_env": {"env_vars": {"PYTHONPATH": env["PYTHONPATH"]}}}
            if settings.ray_node_ip:
                init["_node_ip_address"] = settings.ray_node_ip
            ray.init(**init)
        self._actor_cls = ray.remote(RunActor)

    # -- Executor ----------------------------------------------------------------------------------
    def describe(self) -> str:
        total = self.ray.cluster_resources()
        return (f"ray executor: cluster {self.settings.ray_address or 'auto'} with {total.get('CPU', 0):g} CPU(s), "
                f"{total.get('GPU', 0):g} GPU(s) on {len([n for n in self.ray.nodes() if n['Alive']])} node(s); "
                f"up to {self.limit} runs submitted at once")

    def has_capacity(self) -> bool:
        return len(self.jobs) < self.limit

    def has_gpus(self) -> bool:
        return self.ray.cluster_resources().get("GPU", 0) > 0

    def fits(self, config: dict[str, Any]) -> bool:
        return True  # Ray places (or queues) the actor by its resource request

    def start(self, run_id: int, config: dict[str, Any]) -> None:
        device = str(config.get("device", "auto"))
        request: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1} if device.startswith("cuda") else {"num_cpus": 1}
        if self.extra_resources:
            request["resources"] = dict(self.extra_resources)
        try:
            actor = self._actor_cls.options(name=actor_name(run_id), lifetime="detached", max_concurrency=4,
                                            max_restarts=0, **request).remote(run_id, self.env)
            actor.train.remote()
            ref = actor.wait.remote()
        except Exception as exc:  # noqa: BLE001 - Ray raises many types; the run fails with the message
            raise RuntimeError(f"Ray did not accept the run: {type(exc).__name__}: {exc}") from exc
        self.jobs[run_id] = _RayJob(run_id=run_id, actor=actor, ref=ref)
        log.info("run %d: submitted to Ray as actor %s (%s)", run_id, actor_name(run_id), request)

    def running(self) -> set[int]:
        return set(self.jobs)

    def stop_run(self, run_id: int, *, force: bool) -> None:
        job = self.jobs.get(run_id)
        if job is None or run_id in self._exits:
            return
        if force:
            job.forced = True
            self.ray.kill(job.actor, no_restart=True)
        else:
            job.stop_sent = True
            job.actor.request_stop.remote()

    def poll(self) -> list[Exit]:
        """Every ended job not yet acknowledged (reported again at each call until ``acknowledge``)."""
        refs = {job.ref: job for job in self.jobs.values() if job.run_id not in self._exits}
        ready = self.ray.wait(list(refs), num_returns=len(refs), timeout=0)[0] if refs else []
        for ref in ready:
            job = refs[ref]
            try:
                code, error = self.ray.get(ref)
                reason = f"Ray worker ended with code {code}" + (f" ({error})" if error else "")
            except Exception as exc:  # noqa: BLE001 - actor or node died: the run fails with Ray's reason
                reason = _death_reason(exc)
            if not job.forced:
                self._note_placement(job)
                self._release(job)
            self._exits[job.run_id] = Exit(run_id=job.run_id, reason=reason, stop_sent=job.stop_sent or job.forced,
                                           forced=job.forced, log_name=f"Ray actor {actor_name(job.run_id)}")
        return list(self._exits.values())

    def acknowledge(self, run_id: int) -> None:
        """The run's outcome is stored: forget its ended job."""
        self._exits.pop(run_id, None)
        self.jobs.pop(run_id, None)

    def alive_elsewhere(self, run_id: int, pid: int | None) -> bool:
        """A run stored as running with no job here: its actor still exists (it is watched again from now on)."""
        try:
            actor = self.ray.get_actor(actor_name(run_id), namespace=self.settings.ray_namespace)
        except ValueError:
            return False
        self.jobs[run_id] = _RayJob(run_id=run_id, actor=actor, ref=actor.wait.remote())
        return True

    def reattach(self, run_ids: list[int]) -> set[int]:
        self._release_finished(set(run_ids))
        found = set()
        for run_id in run_ids:
            try:
                actor = self.ray.get_actor(actor_name(run_id), namespace=self.settings.ray_namespace)
            except ValueError:
                continue  # no such actor: the run died with the earlier API or cluster
            self.jobs[run_id] = _RayJob(run_id=run_id, actor=actor, ref=actor.wait.remote())
            found.add(run_id)
        return found

    def maintain(self) -> None:
        return None  # Ray keeps its own workers; lost nodes surface as actor errors in poll()

    def shutdown(self, grace: float) -> list[Exit]:
        """Leave the runs training on the cluster (the next API process re-attaches); disconnect."""
        try:
            still = set(lifecycle.running_ids(self.engine))
        except Exception as exc:  # noqa: BLE001 - store down: keep every actor (the next API re-attaches)
            if not is_store_outage(exc):
                raise
            log.warning("store unreachable at shutdown (%s): leaving every run actor", exc)
            still = set(self.jobs)
        for job in list(self.jobs.values()):
            if job.run_id not in still and job.run_id not in self._exits:  # ended (the worker set its
                self._release(job)  # state) before a poll released it
                del self.jobs[job.run_id]
        if self.jobs:
            log.info("leaving %d run(s) training on the Ray cluster: %s", len(self.jobs), sorted(self.jobs))
        exits = list(self._exits.values())  # ended, outcome not stored yet: the scheduler tries once more
        self.jobs.clear()
        self._exits.clear()
        self.ray.shutdown()
        return exits

    def _note_placement(self, job: _RayJob) -> None:
        try:
            self.placements[job.run_id] = self.ray.get(job.actor.node.remote(), timeout=10)
        except Exception as exc:  # noqa: BLE001 - a dead actor has no node to report
            log.info("run %d: node unknown (%s)", job.run_id, type(exc).__name__)
            return
        log.info("run %d ran on Ray node %s", job.run_id, self.placements[job.run_id])

    def _release_finished(self, running: set[int]) -> None:
        """Kill this namespace's run actors whose runs are no longer running (left by an API that stopped)."""
        prefix = actor_name(0)[:-1]
        for name in self.ray.util.list_named_actors():
            tail = name[len(prefix):] if name.startswith(prefix) else ""
            if tail.isdigit() and int(tail) not in running:
                try:
                    self.ray.kill(self.ray.get_actor(name, namespace=self.settings.ray_namespace), no_restart=True)
                except ValueError:
                    continue  # gone meanwhile
                log.info("released the actor %s of a run that has ended", name)

    def _release(self, job: _RayJob) -> None:
        try:
            self.ray.kill(job.actor, no_restart=True)  # detached actors outlive their run otherwise
        except Exception as exc:  # noqa: BLE001 - already gone
            log.debug("actor of run %d already gone: %s", job.run_id, exc)


def _death_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    detail = next((line.strip() for line in text if "died" in line or "node" in line.lower()), text[0] if text else "")
    return f"Ray actor died ({type(exc).__name__}): {detail[:500]}"


def _resources(spec: str | None) -> dict[str, float]:
    if not spec:
        return {}
    try:
        value = json.loads(spec)
    except json.JSONDecodeError as exc:
        raise ValueError(f"Invalid TRUSTLAB_RAY_RUN_RESOURCES {spec!r}: {exc}; give JSON like "
                         '{"gpu_node": 1}') from None
    if not isinstance(value, dict) or not all(isinstance(v, (int, float)) and v > 0 for v in value.values()):
        raise ValueError(f"Invalid TRUSTLAB_RAY_RUN_RESOURCES {spec!r}: give a JSON object of positive numbers")
    return {str(k): float(v) for k, v in value.items()}
