"""Where a pool's workers run: `processes` on this machine (`common.pool.WorkerPool`), or `ray` actors on the
nodes of a Ray cluster (`common.ray_pool.RayPool`). Call sites build one `Backend` from their config's `backend`
and `ray_address` and ask it for a pool; the pools behave alike, so nothing else knows which one runs.

Ray is imported only when `--backend=ray` is used: `pip install -e .[ray]` installs it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable, Sequence
from typing import Any

from common.errors import UserError
from common.pool import Pool, WorkerPool, check_worker_count

BACKENDS = ("processes", "ray")


@dataclasses.dataclass(frozen=True)
class Backend:
    """A pool backend and, for Ray, the cluster to join (None or '': start a local Ray; 'auto': the cluster
    `ray start` runs on this node; 'host:port': that cluster's head)."""

    name: str = "processes"
    ray_address: str | None = None

    @classmethod
    def of(cls, config: Any) -> Backend:
        """The backend of a stage config with `backend` and `ray_address` fields."""
        return cls(config.backend, config.ray_address or None)

    def validated(self) -> Backend:
        """Checks the names; `--backend=ray` without Ray installed is one error line."""
        if self.name not in BACKENDS:
            raise UserError(f"--backend={self.name}: choose from {', '.join(BACKENDS)}")
        if self.name == "processes" and self.ray_address:
            raise UserError(f"--ray_address={self.ray_address}: needs --backend=ray")
        if self.name == "ray" and importlib.util.find_spec("ray") is None:
            raise UserError("--backend=ray: Ray is not installed (pip install -e .[ray])")
        return self

    def check_workers(self, workers: int) -> None:
        """Refuses worker counts this backend cannot use well. Processes: far beyond this machine's cores; Ray:
        checked against the cluster's CPUs when the pool starts (they are not known before joining it)."""
        if workers < 1:
            raise UserError(f"--workers={workers}: must be at least 1")
        if self.name == "processes":
            check_worker_count(workers)

    def default_workers(self) -> int:
        """One worker per core of this machine; with Ray, one per CPU of the cluster (joined here to count them)."""
        if self.name == "ray":
            from common.ray_pool import cluster_cpus

            return cluster_cpus(self.ray_address)
        return os.cpu_count() or 1

    def pool(self, num_workers: int, task_fn: Callable[[Any, Any], Any], init_fn: Callable[..., Any] | None = None,
             init_args: Sequence[Any] = (), **options: Any) -> Pool:
        """A started pool of `num_workers` workers; `options` are `WorkerPool`'s (task_timeout, describe, ...).

        `init_args` may hold `common.worker_files.WorkerFiles`: each worker receives them readable where it runs.
        """
        self.validated()
        if self.name == "ray":
            from common.ray_pool import RayPool

            return RayPool(num_workers, task_fn, init_fn, init_args, address=self.ray_address, **options)
        return WorkerPool(num_workers, task_fn, init_fn, init_args, **options)
