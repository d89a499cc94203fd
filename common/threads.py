"""Thread limits for worker processes: on a few cores, BLAS and TF thread pools in every worker fight.

Measured here: collection workers without `OMP_NUM_THREADS=1` ran ~10x slower on 2 cores.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


@contextlib.contextmanager
def single_thread_environ() -> Iterator[None]:
    """Sets the single-thread variables in `os.environ` for the block (for spawning children)."""
    saved = {name: os.environ.get(name) for name in SINGLE_THREAD_ENV}
    os.environ.update(SINGLE_THREAD_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def limit_tensorflow_threads(threads: int = 1) -> None:
    """Caps TensorFlow's thread pools; call in a worker before any TF op runs."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TF already initialised its pools in this process; the environment variables still apply.
