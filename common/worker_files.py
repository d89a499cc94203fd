"""Files a pool's workers read when they start (V, M, a controller), named, so that no backend has to assume the
workers share the driver's filesystem.

Give a `WorkerFiles` to a pool as one of its `init_args`. The `processes` backend hands the workers these paths
(they run on the driver's machine); the `ray` backend sends the files' bytes through Ray's object store and gives
each worker a copy in a private temporary folder, under the same file name (loaders look at the extension).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class WorkerFiles:
    """Paths by name, e.g. `{"vae": ".../vae.keras", "rnn": ".../rnn.keras"}`; `path(name)` gives one."""

    paths: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, **paths: str | os.PathLike | None) -> WorkerFiles:
        """The files given by keyword; those given as None are left out."""
        return cls({name: str(path) for name, path in paths.items() if path is not None})

    def path(self, name: str) -> Path:
        """The file called `name` where this worker can read it."""
        if name not in self.paths:
            raise KeyError(f"no worker file named {name!r} (the pool was given {', '.join(sorted(self.paths))})")
        return Path(self.paths[name])
