"""The `ray` backend: the worker pool's workers as Ray actors on the nodes of a Ray cluster.

It keeps `WorkerPool`'s contract (`common.pool`): each actor runs `init_fn` once (loads V, M and the environment)
and then one task at a time; an actor that dies (its process, or its whole node) or runs a task longer than
`task_timeout` is killed and replaced, and its task re-run on whichever actor is free; a task that kills
`max_attempts` actors stops the run; an exception in `task_fn` or `init_fn` stops it at once with a one-line
`WorkerError`. The driver waits with a timeout everywhere, so a lost node never hangs it: its tasks go elsewhere,
and if no actor can start at all within `init_timeout` the run stops with an error.

Nothing assumes a shared filesystem: tasks and results travel through Ray, the files workers need
(`WorkerFiles` in `init_args`) go through Ray's object store, once, and every actor reads its own copy.

Each actor asks for one CPU and no GPU and runs with one BLAS/TF thread (`common.threads`), as a process worker
does. Ray is imported here only, so nothing needs it unless `--backend=ray` is used.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import pickle
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.pool import Pool, WorkerError, kill_children
from common.startup import filtered_stderr, find_devices_quietly
from common.threads import NO_GPU_ENV, QUIET_ENV, SINGLE_THREAD_ENV
from common.worker_files import WorkerFiles

PROBE_TIMEOUT = 10.0  # seconds to reach a cluster's head before giving up (ray.init itself waits minutes)
STOP_TIMEOUT = 5.0  # seconds actors get to kill their game processes before they are killed


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _head_address(address: str) -> str:
    """host:port of the cluster `address` names; 'auto' is looked up as Ray does (RAY_ADDRESS, then the cluster
    `ray start` started on this node)."""
    if address != "auto":
        return address.removeprefix("ray://")
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # another Ray version: let ray.init find it
        return address
    try:
        found = canonicalize_bootstrap_address(address)
    except ConnectionError:
        found = None
    if not found:
        raise UserError("--ray_address=auto: no running Ray cluster found on this node "
                        "(start one with `ray start --head`, or give --ray_address=HOST:PORT)")
    return found


def _check_reachable(address: str) -> None:
    """A one-line error when the cluster's head cannot be reached (ray.init would retry for two minutes)."""
    target = _head_address(address)
    if target == "auto":
        return
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray_address={address}: expected auto or HOST:PORT (the head node's address)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT).close()
    except OSError as error:
        raise UserError(f"--ray_address={address}: cannot reach the Ray cluster's head at {target} "
                        f"({error.strerror or _one_line(error)})") from None


def join_cluster(address: str | None) -> None:
    """Connects this process to Ray once: the cluster at `address`, or a new local Ray when it is None. Later
    pools of the same process use the same connection."""
    import ray

    if ray.is_initialized():
        return
    options = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError, SystemExit) as error:
            raise UserError(f"--ray_address={address}: cannot join the Ray cluster ({_one_line(error)})") from None
    else:  # 'local': a new Ray on this machine, even if `ray start` runs one (that is --ray_address=auto)
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", **options)


def cluster_cpus(address: str | None) -> int:
    """The CPUs of the Ray cluster at `address` (None: a new local Ray), joined if not yet."""
    join_cluster(address)
    import ray

    return int(ray.cluster_resources().get("CPU", 0))


def _entry_module() -> str | None:
    """The importable name of this process's `python -m` module (`run.collect`), or None."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec is not None else None


class _EntryModuleUnpickler(pickle.Unpickler):
    """Finds what the driver pickled as `__main__.X` (the pool's functions and configs, when its entry point runs
    as `python -m run.collect`) in the module of that name: a Ray worker's own `__main__` is Ray's. (Spawned
    processes get the same from multiprocessing, which re-imports the entry module as their `__main__`.)"""

    def __init__(self, data: bytes, entry_module: str | None):
        super().__init__(io.BytesIO(data))
        self._entry_module = entry_module

    def find_class(self, module: str, name: str) -> Any:
        if module == "__main__" and self._entry_module:
            module = self._entry_module
        return super().find_class(module, name)


class _PoolActor:
    """One worker of a `RayPool`: loads its state once (`start`), then runs tasks one at a time (`run`)."""

    def __init__(self, payload: bytes, entry_module: str | None, shipped: dict[int, dict[str, tuple[str, Any]]],
                 environ: dict[str, str]):
        # The worker's thread and device settings, before anything loads NumPy or TensorFlow (a fresh Ray worker
        # has loaded neither; a runtime_env would do the same but costs seconds of start-up per actor).
        os.environ.update(environ)
        self._payload, self._entry_module, self._shipped = payload, entry_module, shipped
        self._state: Any = None
        self._task_fn: Callable[[Any, Any], Any] | None = None

    def start(self) -> tuple:
        """Runs `init_fn` with TensorFlow's start-up lines filtered, the shipped files in a private temporary
        folder (deleted once the models are loaded); returns ('ready', node id, pid) or ('init_error', ...)."""
        import ray

        try:
            with filtered_stderr():
                init_fn, init_args, task_fn = _EntryModuleUnpickler(self._payload, self._entry_module).load()
                with tempfile.TemporaryDirectory(prefix="worldmodels-worker-") as folder:
                    args = list(init_args)
                    for position, files in self._shipped.items():
                        paths = {}
                        for name, (file_name, ref) in files.items():
                            path = Path(folder, str(position), name, file_name)
                            path.parent.mkdir(parents=True)
                            path.write_bytes(ray.get(ref))
                            paths[name] = str(path)
                        args[position] = WorkerFiles(paths)
                    state = init_fn(*args) if init_fn is not None else None
                find_devices_quietly()
        except BaseException as error:  # noqa: BLE001 - reported to the driver, which stops the run
            return ("init_error", f"{type(error).__name__}: {error}", traceback.format_exc())
        self._state, self._task_fn = state, task_fn
        return ("ready", ray.get_runtime_context().get_node_id(), os.getpid())

    def run(self, index: int, task: Any) -> tuple:
        try:
            return ("result", index, self._task_fn(self._state, task), None)
        except BaseException as error:  # noqa: BLE001
            return ("task_error", index, f"{type(error).__name__}: {error}", traceback.format_exc())

    def stop(self) -> bool:
        """Kills this worker's game processes (ViZDoom's outlives its worker); runs beside a hung `run`."""
        kill_children(os.getpid())
        return True


@dataclasses.dataclass
class _Actor:
    handle: Any
    probe: Any  # the reference `start` answers on
    started: float
    ready: bool = False
    node: str = ""
    task_index: int | None = None
    task_ref: Any = None
    task_started: float = 0.0


class RayPool(Pool):
    """`num_workers` Ray actors (one CPU each; fewer if the cluster has fewer CPUs); the arguments are
    `WorkerPool`'s, plus `address`, the cluster to join (None: a local Ray)."""

    def __init__(self, num_workers: int, task_fn: Callable[[Any, Any], Any],
                 init_fn: Callable[..., Any] | None = None, init_args: Sequence[Any] = (),
                 task_timeout: float | None = None, init_timeout: float = 600.0, max_attempts: int = 3,
                 describe: Callable[[Any], str] = lambda task: f"task {task!r}",
                 single_thread: bool = True, gpu: bool = False, error_log: str | os.PathLike | None = None,
                 log: Callable[[str], None] | None = None, address: str | None = None):
        if num_workers < 1:
            raise UserError(f"the pool needs at least 1 worker, got {num_workers}")
        import ray

        self._log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        cpus = cluster_cpus(address)
        if cpus < 1:
            raise WorkerError("the Ray cluster has no CPUs for workers")
        if num_workers > cpus:
            self._log(f"warning: {num_workers} workers asked for, but the Ray cluster has {cpus} CPUs: "
                      f"running {cpus}")
        self.num_workers = min(num_workers, cpus)
        self.task_timeout, self.init_timeout, self.max_attempts = task_timeout, init_timeout, max_attempts
        self._describe = describe
        self.error_log = Path(error_log) if error_log is not None else None
        self.restarts = 0
        args = list(init_args)
        self._shipped: dict[int, dict[str, tuple[str, Any]]] = {}
        for position, value in enumerate(args):
            if isinstance(value, WorkerFiles):
                self._shipped[position] = {name: (Path(path).name, self._put(path))
                                           for name, path in value.paths.items()}
                args[position] = None
        payload = pickle.dumps((init_fn, tuple(args), task_fn))
        environ = {**QUIET_ENV, **(SINGLE_THREAD_ENV if single_thread else {}), **({} if gpu else NO_GPU_ENV),
                   "SDL_VIDEODRIVER": "dummy"}  # workers never open a window
        actor_class = ray.remote(concurrency_groups={"control": 1})(_PoolActor)  # `stop` beside a hung `run`
        self._new_actor = lambda: actor_class.options(
            num_cpus=1, num_gpus=1 if gpu else 0, max_restarts=0, max_task_retries=0).remote(
            payload, _entry_module(), self._shipped, environ)
        self._actors: list[_Actor] = []
        self._failed_starts = 0  # actors that died while starting since one last became ready

    @staticmethod
    def _put(path: str) -> Any:
        import ray

        try:
            return ray.put(Path(path).read_bytes())
        except OSError as error:
            raise WorkerError(f"{path}: cannot send it to the Ray workers ({error.strerror or error})") from None

    def _ensure_actors(self) -> None:
        while len(self._actors) < self.num_workers:
            handle = self._new_actor()
            self._actors.append(_Actor(handle, handle.start.remote(), time.monotonic()))

    def imap_unordered(self, tasks: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        import ray

        tasks = list(tasks)
        pending = list(range(len(tasks)))[::-1]  # a stack: pop() gives the lowest index first
        attempts = [0] * len(tasks)
        remaining = len(tasks)
        try:
            while remaining:
                self._ensure_actors()
                for actor in self._actors:
                    if actor.ready and actor.task_index is None and pending:
                        index = pending.pop()
                        actor.task_ref = actor.handle.run.remote(index, tasks[index])
                        actor.task_index, actor.task_started = index, time.monotonic()
                waiting = [a.probe for a in self._actors if not a.ready] + \
                          [a.task_ref for a in self._actors if a.task_index is not None]
                done, _ = ray.wait(waiting, num_returns=1, timeout=1.0)
                if done:
                    done, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
                done = set(done)
                now = time.monotonic()
                for actor in list(self._actors):
                    if not actor.ready and actor.probe in done:
                        self._started(actor)
                        continue
                    if actor.task_index is not None and actor.task_ref in done:
                        try:
                            kind, index, payload, trace = ray.get(actor.task_ref)
                        except ray.exceptions.RayError as error:
                            self._replace(actor, tasks, pending, attempts, f"died ({_one_line(error)})",
                                          polite=False)
                            continue
                        if kind == "task_error":
                            raise self._error(f"{self._describe(tasks[index])} failed in a worker: {payload}", trace)
                        actor.task_index = actor.task_ref = None
                        remaining -= 1
                        yield index, payload
                        continue
                    if (actor.task_index is not None and self.task_timeout is not None
                            and now - actor.task_started > self.task_timeout):
                        self._replace(actor, tasks, pending, attempts,
                                      f"exceeded the {self.task_timeout:.0f}s task timeout")
                    elif not actor.ready and now - actor.started > self.init_timeout \
                            and not any(other.ready for other in self._actors):
                        raise WorkerError(f"no Ray worker started within {self.init_timeout:.0f}s "
                                          f"(the cluster has {ray.cluster_resources().get('CPU', 0):.0f} CPUs)")
        finally:
            self._drain_busy()

    def _started(self, actor: _Actor) -> None:
        """Reads a starting actor's answer: ready, failed in `init_fn` (stops the run) or died (replaced)."""
        import ray

        try:
            reply = ray.get(actor.probe)
        except ray.exceptions.RayError as error:
            self._kill([actor], polite=False)
            self.restarts += 1
            self._failed_starts += 1
            if self._failed_starts >= self.max_attempts * self.num_workers:
                raise WorkerError(f"Ray workers keep dying while starting ({_one_line(error)})") from None
            self._log(f"warning: a Ray worker died while starting ({_one_line(error)}); starting another")
            return
        if reply[0] == "init_error":
            raise self._error(f"a worker failed to start: {reply[1]}", reply[2])
        actor.ready, actor.node = True, reply[1]
        self._failed_starts = 0

    def _replace(self, actor: _Actor, tasks, pending, attempts, what: str, polite: bool = True) -> None:
        """Kills `actor` (a new one starts on the next round) and puts its task back on the stack."""
        index = actor.task_index
        self._kill([actor], polite)
        self.restarts += 1
        attempts[index] += 1
        description = self._describe(tasks[index])
        if attempts[index] >= self.max_attempts:
            raise WorkerError(f"{description}: its Ray worker {what}; gave up after {attempts[index]} attempts")
        self._log(f"warning: a Ray worker {what} on {description}; re-running the task on another")
        pending.append(index)

    def _kill(self, actors: list[_Actor], polite: bool = True) -> None:
        """Asks the started actors to kill their game processes (a short wait; `polite=False`: the actors are
        known dead), then kills them."""
        import ray

        stops = [actor.handle.stop.options(concurrency_group="control").remote()
                 for actor in actors if polite and actor.ready]
        if stops:
            ray.wait(stops, num_returns=len(stops), timeout=STOP_TIMEOUT)
        for actor in actors:
            try:
                ray.kill(actor.handle, no_restart=True)
            except (ValueError, ray.exceptions.RayError):
                pass  # already gone
            if actor in self._actors:
                self._actors.remove(actor)

    def _drain_busy(self) -> None:
        """After an early exit, busy actors hold stale tasks: replace them so the next call starts clean."""
        self._kill([actor for actor in self._actors if actor.task_index is not None])

    def close(self) -> None:
        """Stops every actor and frees the shipped files."""
        self._kill(list(self._actors))
        self._shipped = {}
