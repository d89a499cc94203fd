"""A pool of spawned worker processes that survives crashed and hung workers.

TensorFlow is not fork-safe, so workers start with `spawn` and load their models once, in `init_fn`. Each task
runs as `task_fn(state, task)` where `state` is what `init_fn` returned. A worker that dies (segfault, OOM kill)
or runs a task longer than `task_timeout` is killed, reported with the task it was on, replaced, and its task
re-run; a task that kills `max_attempts` workers in a row stops the run with a `WorkerError`. An exception raised
by `task_fn` or `init_fn` is not retried (it would fail again): it stops the run with a one-line `WorkerError`
naming the task; the worker's traceback is kept in `WorkerError.trace` and appended to `error_log` when one is
given (an experiment's `worker_errors.log`), never printed. The parent never blocks without a timeout, so the
pool never hangs.

Workers run single-threaded and see no GPU unless asked (`common.threads.worker_environ`): K workers would
otherwise each start CUDA and take GPU memory. TensorFlow's start-up lines, printed while a worker loads its
models, are filtered out of its stderr (`common.startup`).

`Pool` is what every backend offers (`imap_unordered`, `map`, `close`, `restarts`); `WorkerPool` is the
`processes` backend, `common.ray_pool.RayPool` the `ray` one, and `common.backend.Backend.pool` picks one.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.startup import filtered_stderr, find_devices_quietly
from common.threads import worker_environ


class WorkerError(UserError):
    """A task failed in a worker, or kept killing workers; the message names the task, `trace` holds the
    worker's traceback when there is one."""

    def __init__(self, message: str, trace: str | None = None):
        super().__init__(message)
        self.trace = trace


def _send(conn, message) -> bool:
    """Sends to the parent; False when the parent is gone or gave up on this worker."""
    try:
        conn.send(message)
        return True
    except (BrokenPipeError, OSError):
        return False


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (read from Linux's /proc; empty elsewhere)."""
    children = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()  # the name may hold spaces and parentheses
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def kill_children(pid: int) -> None:
    """Kills the processes `pid` started (ViZDoom's game process outlives the worker that started it)."""
    for child in child_pids(pid):
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _worker_main(conn, payload: bytes) -> None:
    """A worker's life: start (functions unpickled here, not by multiprocessing, so that TensorFlow loads inside
    `filtered_stderr`), then run tasks until the parent sends None."""
    try:
        with filtered_stderr():
            init_fn, init_args, task_fn = pickle.loads(payload)
            state = init_fn(*init_args) if init_fn is not None else None
            find_devices_quietly()
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which stops the run
        _send(conn, ("init_error", None, f"{type(error).__name__}: {error}", traceback.format_exc()))
        return
    if not _send(conn, ("ready", None, None, None)):
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if message is None:
            return
        index, task = message
        try:
            reply = ("result", index, task_fn(state, task), None)
        except BaseException as error:  # noqa: BLE001
            reply = ("task_error", index, f"{type(error).__name__}: {error}", traceback.format_exc())
        if not _send(conn, reply):
            return


class Pool:
    """A pool of workers, whatever runs them: `init_fn(*init_args)` once per worker, then `task_fn(state, task)`
    per task; crashed and hung workers are replaced and their tasks re-run; a failing task stops the run with a
    one-line `WorkerError`. Subclasses implement `imap_unordered` and `close`."""

    num_workers: int
    restarts: int
    error_log: Path | None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def imap_unordered(self, tasks: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """Yields `(index, result)` for every task, in completion order."""
        raise NotImplementedError

    def close(self) -> None:
        """Stops every worker."""
        raise NotImplementedError

    def map(self, tasks: Iterable[Any]) -> list[Any]:
        """Runs all tasks and returns their results in task order."""
        tasks = list(tasks)
        results: list[Any] = [None] * len(tasks)
        for index, result in self.imap_unordered(tasks):
            results[index] = result
        return results

    def _error(self, message: str, trace: str) -> WorkerError:
        """The one-line error of a failed task or worker; its traceback goes to `error_log`, not the screen."""
        if self.error_log is not None:
            try:
                self.error_log.parent.mkdir(parents=True, exist_ok=True)
                with open(self.error_log, "a", encoding="utf-8") as f:
                    f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n{trace}\n")
                message += f" (worker traceback in {self.error_log})"
            except OSError:
                pass  # the one-line error matters more than its log
        return WorkerError(message, trace)


@dataclasses.dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    ready: bool = False
    started: float = 0.0
    task_index: int | None = None
    task_started: float = 0.0


class WorkerPool(Pool):
    """`num_workers` spawned processes; `imap_unordered(tasks)` yields `(index, result)` as tasks finish.

    Args:
      num_workers: processes to run; each is single-threaded for BLAS and TF when `single_thread` is set.
      task_fn: picklable top-level function `(state, task) -> result`.
      init_fn: picklable top-level function `(*init_args) -> state`, run once per worker (load models here).
      task_timeout: seconds a task may run before its worker is killed and the task re-run; None: no limit.
      init_timeout: seconds a worker may take to start and run `init_fn`.
      max_attempts: how many workers one task may kill before the run stops.
      describe: names a task in messages, e.g. `lambda t: f"episode {t.index}"`.
      gpu: let workers see the GPU (default: hidden, CUDA_VISIBLE_DEVICES=-1).
      error_log: file the tracebacks of failed tasks and workers are appended to (the error message names it).
      log: where restarts are reported.
    """

    def __init__(self, num_workers: int, task_fn: Callable[[Any, Any], Any],
                 init_fn: Callable[..., Any] | None = None, init_args: Sequence[Any] = (),
                 task_timeout: float | None = None, init_timeout: float = 600.0, max_attempts: int = 3,
                 describe: Callable[[Any], str] = lambda task: f"task {task!r}",
                 single_thread: bool = True, gpu: bool = False, error_log: str | os.PathLike | None = None,
                 log: Callable[[str], None] | None = None):
        if num_workers < 1:
            raise UserError(f"the pool needs at least 1 worker, got {num_workers}")
        self.num_workers = num_workers
        self._payload = pickle.dumps((init_fn, tuple(init_args), task_fn))
        self.task_timeout, self.init_timeout, self.max_attempts = task_timeout, init_timeout, max_attempts
        self._describe = describe
        self._single_thread, self._gpu = single_thread, gpu
        self.error_log = Path(error_log) if error_log is not None else None
        self._log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self.restarts = 0

    def _start_worker(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_worker_main, daemon=True, args=(child, self._payload))
        with worker_environ(single_thread=self._single_thread, gpu=self._gpu):
            process.start()
        child.close()
        return _Worker(process, parent, started=time.monotonic())

    def _ensure_workers(self) -> None:
        self._workers = [w for w in self._workers if w.process.is_alive() or w.task_index is not None]
        while len(self._workers) < self.num_workers:
            self._workers.append(self._start_worker())

    def _kill(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            kill_children(worker.process.pid)  # ViZDoom's game process would outlive its worker
            worker.process.kill()
        worker.process.join(timeout=10)
        worker.conn.close()
        if worker in self._workers:
            self._workers.remove(worker)

    def imap_unordered(self, tasks: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """Yields `(index, result)` for every task, in completion order."""
        tasks = list(tasks)
        pending = list(range(len(tasks)))[::-1]  # a stack: pop() gives the lowest index first
        attempts = [0] * len(tasks)
        remaining = len(tasks)
        try:
            while remaining:
                self._ensure_workers()
                for worker in self._workers:
                    if worker.ready and worker.task_index is None and pending:
                        index = pending.pop()
                        worker.conn.send((index, tasks[index]))
                        worker.task_index, worker.task_started = index, time.monotonic()
                waitables = [w.conn for w in self._workers] + [w.process.sentinel for w in self._workers]
                ready = set(multiprocessing.connection.wait(waitables, timeout=1.0))
                now = time.monotonic()
                for worker in list(self._workers):
                    if worker.conn in ready:
                        try:
                            kind, index, payload, trace = worker.conn.recv()
                        except (EOFError, OSError):
                            kind = "died"
                        if kind == "ready":
                            worker.ready = True
                            continue
                        if kind == "result":
                            worker.task_index = None
                            remaining -= 1
                            yield index, payload
                            continue
                        if kind == "task_error":
                            raise self._error(f"{self._describe(tasks[index])} failed in a worker: {payload}", trace)
                        if kind == "init_error":
                            raise self._error(f"a worker failed to start: {payload}", trace)
                    died = not worker.process.is_alive() or worker.process.sentinel in ready
                    hung = (worker.task_index is not None and self.task_timeout is not None
                            and now - worker.task_started > self.task_timeout)
                    stuck = not worker.ready and now - worker.started > self.init_timeout
                    if died or hung or stuck:
                        self._replace(worker, tasks, pending, attempts, died, hung)
        finally:
            self._drain_busy()

    def _replace(self, worker: _Worker, tasks, pending, attempts, died: bool, hung: bool) -> None:
        index = worker.task_index
        if died:
            worker.process.join(timeout=5)
        exitcode = worker.process.exitcode
        self._kill(worker)
        self.restarts += 1
        if index is None:
            if not worker.ready and not died:
                raise WorkerError(f"a worker did not start within {self.init_timeout:.0f}s")
            if not worker.ready:
                raise WorkerError(f"a worker died while starting (exit code {exitcode})")
            return
        what = (f"exceeded the {self.task_timeout:.0f}s task timeout" if hung and not died
                else f"died (exit code {exitcode})")
        attempts[index] += 1
        description = self._describe(tasks[index])
        if attempts[index] >= self.max_attempts:
            raise WorkerError(f"{description}: its worker {what}; gave up after {attempts[index]} attempts")
        self._log(f"warning: a worker {what} on {description}; restarted it and re-running the task")
        pending.append(index)

    def _drain_busy(self) -> None:
        """After an early exit, busy workers hold stale tasks: replace them so the next call starts clean."""
        for worker in list(self._workers):
            if worker.task_index is not None:
                self._kill(worker)

    def close(self) -> None:
        """Stops every worker (politely, then by force)."""
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        deadline = time.monotonic() + 5.0
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            self._kill(worker)
        self._workers = []


def check_worker_count(workers: int, per_core: int = 4) -> None:
    """Refuses worker counts far beyond the cores: they only add memory and contention."""
    cores = os.cpu_count() or 1
    if workers > per_core * cores:
        raise UserError(f"--workers={workers}: more than {per_core}x the {cores} cores of this machine")
