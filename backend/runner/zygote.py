"""Fork server ("zygote") of the local executor: one pre-warmed process that forks a run's worker process on request.

The zygote (``python -m backend.runner.zygote``, started by ``LocalExecutor``) imports torch, the trainer and
the worker code and decodes the configured datasets once (``backend.runner.worker.preload``), with one torch
thread, no CUDA (``CUDA_VISIBLE_DEVICES`` empty) and no store connection. It never starts a thread: before
each fork it checks that ``/proc/self/task`` holds one task, and refuses to fork otherwise. Each run then
costs one ``os.fork()`` instead of a new interpreter.

Protocol (pipes only, nothing listens on a port). The executor writes ``run <run_id> <torch_threads>`` lines
to the zygote's stdin; the zygote answers on its stdout with ``ready <seconds> <datasets>`` once,
``forked <run_id> <pid>`` or ``refused <run_id> <reason>`` per request, and ``exit <pid> <wait status>
<cpu seconds>`` when a child ends (it reaps its children with ``wait4``). Its own messages go to stderr
(a log file). End of stdin (the executor closed it, or the API died) ends the zygote.

A forked child is the run's worker process: its own session (process group), stdout and stderr in the run's
log, stdin from /dev/null, the zygote's pipes closed, default signal handling, ``torch_threads`` threads
(set after the fork), a fresh store engine, ``RLIMIT_AS`` (``backend.limits``), then the worker's
``train_run``, and ``os._exit`` with its code. Children do not die with the zygote (a zygote crash must not
take runs with it: the executor keeps watching them through pidfds); they watch the API process instead
(a pidfd the zygote opened on its parent) and stop at the next step as "interrupted" when it goes away, as
cold workers do.
"""
from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from backend.settings import Settings

__all__ = ["Zygote", "ZygoteError", "ForkedProcess", "serve", "task_count"]

log = logging.getLogger("trustlab.runner.zygote")

_READ_CHUNK = 65536


class ZygoteError(RuntimeError):
    """The zygote could not fork a run (dead, refused, no answer); the caller starts the run another way."""


def task_count() -> int:
    """Threads of this process (``/proc/self/task``)."""
    return len(os.listdir("/proc/self/task"))


# -- the zygote process ------------------------------------------------------------------------------------
def _child(run_id: int, threads: int, settings: "Settings", close: list[int], api_pidfd: int) -> None:
    """In a freshly forked child: become run ``run_id``'s worker process; never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        for fd in close:
            os.close(fd)
        os.setsid()  # own session and process group, as a cold worker started with start_new_session
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        from backend.runner.worker import log_path, redirect_output, train_run

        redirect_output(log_path(settings, run_id))
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))  # as a cold worker sees
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(threads)
        settings = settings.model_copy(update={"torch_threads": threads})
        code = train_run(run_id, settings, stop, parent_pid=None, api_pidfd=api_pidfd)
    except BaseException:  # noqa: BLE001 - the child must end here whatever happened; the log gets the traceback
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001 - stderr itself is gone; the exit code still says it failed
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - as above
                pass
        os._exit(code)


def serve() -> int:
    """The zygote's main: warm up, say ``ready``, then fork a child per ``run`` request until stdin ends."""
    reply_fd = os.dup(1)  # the protocol pipe; from now on fd 1 is the log (stray prints must not corrupt it)
    os.dup2(2, 1)
    from backend.settings import Settings

    settings = Settings()
    t0 = time.perf_counter()
    api_pidfd = os.pidfd_open(os.getppid())
    from backend.runner.worker import preload

    loaded = preload(settings)
    torch = sys.modules.get("torch")  # imported by the trainer (a torch-free test trainer leaves it out)
    if torch is not None:
        torch.set_num_threads(1)
    if task_count() != 1:
        print(f"zygote {os.getpid()}: {task_count()} threads after the warm-up (OMP_NUM_THREADS="
              f"{os.environ.get('OMP_NUM_THREADS')}); forking a threaded process is unsafe, so it refuses to serve",
              file=sys.stderr, flush=True)
        return 3
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select below through wake_w

    def say(line: str) -> None:
        os.write(reply_fd, (line + "\n").encode())

    say(f"ready {time.perf_counter() - t0:.3f} {','.join(loaded) or '-'}")
    print(f"zygote {os.getpid()}: ready in {time.perf_counter() - t0:.2f} s (datasets: {loaded or 'none'})",
          file=sys.stderr, flush=True)
    buffer = b""
    while True:
        readable, _, _ = select.select([0, wake_r], [], [])
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):  # drain the SIGCHLD wake-up pipe (non-blocking)
                    pass
            except BlockingIOError:  # drained: nothing more to read
                pass
        _reap(say)
        if 0 not in readable:
            continue
        chunk = os.read(0, _READ_CHUNK)
        if not chunk:
            print(f"zygote {os.getpid()}: its executor closed the pipe; exiting", file=sys.stderr, flush=True)
            return 0
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            _command(line.decode("ascii", "replace").split(), settings, say,
                     [reply_fd, wake_r, wake_w], api_pidfd)


def _reap(say: Callable[[str], None]) -> None:
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        say(f"exit {pid} {status} {usage.ru_utime + usage.ru_stime:.3f}")


def _command(words: list[str], settings: "Settings", say: Callable[[str], None], close: list[int],
             api_pidfd: int) -> None:
    """``run <run_id> <threads>``: fork the run's worker process (or say why not)."""
    if len(words) != 3 or words[0] != "run" or not words[1].isdigit() or not words[2].isdigit():
        print(f"zygote: ignored a malformed request {' '.join(words)[:200]!r}", file=sys.stderr, flush=True)
        return
    run_id, threads = int(words[1]), max(1, min(1024, int(words[2])))
    tasks = task_count()
    if tasks != 1:
        say(f"refused {run_id} the zygote has {tasks} threads; forking it is unsafe")
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError as exc:
        say(f"refused {run_id} fork failed: {exc}")
        return
    if pid == 0:
        _child(run_id, threads, settings, close, api_pidfd)
    say(f"forked {run_id} {pid}")


# -- the executor's side ------------------------------------------------------------------------------------
@dataclass
class ForkedProcess:
    """A run's worker process forked by a zygote: the parts of ``subprocess.Popen`` the executor uses.

    Its exit status comes from the zygote (``exit`` message). When the zygote died first, the process is
    watched through a pidfd and its status is unknown (``returncode`` stays None, ``reason`` says so).
    """

    pid: int
    zygote: "Zygote"
    pidfd: int | None = None
    returncode: int | None = None
    reason: str | None = None  # set once it ended
    cpu_seconds: float | None = None

    def poll(self) -> str | None:
        """None while it runs; afterwards a sentence saying how it ended."""
        if self.reason is not None:
            return self.reason
        self.zygote.pump()
        ended = self.zygote.exits.pop(self.pid, None)
        if ended is not None:
            status, self.cpu_seconds = ended
            self.returncode = os.waitstatus_to_exitcode(status)
            from backend.runner.local import describe_exit

            self._ended(describe_exit(self.returncode))
        elif not self.zygote.alive() and self._pidfd_says_ended():
            self._ended("worker process ended; its exit status is unknown because the zygote that forked it "
                        "had died")
        return self.reason

    def send_signal(self, sig: int) -> None:
        if self.poll() is not None:
            return
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, sig)  # race-free: never a recycled pid
            elif self.zygote.alive():
                os.kill(self.pid, sig)  # unreaped until the zygote reports its exit, so still this process
        except ProcessLookupError:
            return

    def wait(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (reason := self.poll()) is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"forked worker {self.pid}", timeout)
            time.sleep(0.02)
        return reason

    def _pidfd_says_ended(self) -> bool:
        if self.pidfd is None:  # no pidfd (refused here) and no zygote: the best left is /proc
            try:
                state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return True
            return state in ("Z", "X")
        return bool(select.select([self.pidfd], [], [], 0)[0])

    def _ended(self, reason: str) -> None:
        self.reason = reason
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


@dataclass
class Zygote:
    """The executor's handle on one zygote process (start it, ask for forks, read its messages, stop it)."""

    python: str
    env: dict[str, str]
    log: Path
    cwd: str
    proc: subprocess.Popen | None = None
    ready: bool = False
    ready_info: str = ""
    exits: dict[int, tuple[int, float]] = field(default_factory=dict)  # pid → (wait status, cpu seconds)
    _forked: dict[int, str] = field(default_factory=dict)  # run id → "pid" or "refused: why"
    _buffer: bytes = b""
    started: float = 0.0

    def start(self) -> None:
        """Start the process (it says ``ready`` after its warm-up; ``pump`` notices). Raises OSError."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen([self.python, "-m", "backend.runner.zygote"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, env=self.env, cwd=self.cwd,
                                         start_new_session=True, close_fds=True)
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.started = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pump(self, timeout: float = 0.0) -> None:
        """Read what the zygote said (waiting up to ``timeout`` s for something) and note it."""
        if self.proc is None or self.proc.stdout is None or self.proc.stdout.closed:
            return
        fd = self.proc.stdout.fileno()
        if timeout > 0 and not select.select([fd], [], [], timeout)[0]:
            return
        while True:
            try:
                chunk = os.read(fd, _READ_CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            self._note(raw.decode("ascii", "replace").split())

    def _note(self, words: list[str]) -> None:
        if not words:
            return
        kind = words[0]
        if kind == "ready":
            self.ready, self.ready_info = True, " ".join(words[1:])
        elif kind == "forked" and len(words) == 3:
            self._forked[int(words[1])] = words[2]
        elif kind == "refused" and len(words) >= 2:
            self._forked[int(words[1])] = "refused: " + " ".join(words[2:])
        elif kind == "exit" and len(words) == 4:
            self.exits[int(words[1])] = (int(words[2]), float(words[3]))
        else:
            log.warning("zygote said something unexpected: %r", " ".join(words)[:200])

    def fork(self, run_id: int, threads: int, timeout: float = 10.0) -> ForkedProcess:
        """A worker process for ``run_id`` forked by the zygote. Raises ZygoteError when none was started (a
        zygote that did not answer in time is killed first, so none can be started later)."""
        if not (self.ready and self.alive()) or self.proc is None or self.proc.stdin is None:
            raise ZygoteError("the zygote is not ready")
        self._forked.pop(run_id, None)
        try:
            os.write(self.proc.stdin.fileno(), f"run {run_id} {threads}\n".encode())
        except OSError as exc:
            raise ZygoteError(f"could not write to the zygote: {exc}") from exc
        deadline = time.monotonic() + timeout
        while run_id not in self._forked:
            left = deadline - time.monotonic()
            if left <= 0 or not self.alive():
                why = "died" if not self.alive() else f"did not answer within {timeout:g} s"
                self.kill()  # dead for sure now: it cannot fork this run later behind our back ...
                self.pump()  # ... and everything it said is in the pipe: a fork it made is adopted below
                if run_id in self._forked:
                    break
                raise ZygoteError(f"the zygote {why}")
            self.pump(min(left, 0.1))
        answer = self._forked.pop(run_id)
        if answer.startswith("refused"):
            raise ZygoteError(f"the zygote {answer}")
        pid = int(answer)
        child = ForkedProcess(pid=pid, zygote=self)
        try:
            child.pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            child.pidfd = None  # ended (and reaped) already: the zygote's exit message says how
        except OSError as exc:  # pidfds refused here (seccomp): fall back to the pid, which the zygote holds
            log.warning("no pidfd for forked worker %d (%s); signalling it by pid", pid, exc)
            child.pidfd = None
        return child

    def stop(self, timeout: float = 5.0) -> None:
        """Close its stdin (it exits); kill it if it does not within ``timeout`` s. Its children live on."""
        if self.proc is None:
            return
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError as exc:  # the zygote is already gone (broken pipe): the wait below reaps it
                log.debug("zygote stdin close: %s", exc)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.pump()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(serve())
