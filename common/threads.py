"""Settings of worker processes: one thread each, no GPU unless asked.

Thread limits: on a few cores, BLAS and TF thread pools in every worker fight; measured here, collection workers
without `OMP_NUM_THREADS=1` ran ~10x slower on 2 cores. No GPU: workers play episodes one frame at a time, which a
GPU does not speed up, and on a machine with one each of K workers would start CUDA on it and take its memory
(the PyTorch port ran a GPU out of memory with more than 6 workers). Training V and M in the main process keeps it.
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
}
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}  # TF's C++ INFO and WARNING lines; errors still print
NO_GPU_ENV = {"CUDA_VISIBLE_DEVICES": "-1"}  # CUDA sees no device, so TF places everything on the CPU


@contextlib.contextmanager
def worker_environ(single_thread: bool = True, gpu: bool = False) -> Iterator[None]:
    """Sets the worker variables in `os.environ` for the block, so the processes spawned in it inherit them."""
    settings = dict(QUIET_ENV)
    settings.update(SINGLE_THREAD_ENV if single_thread else {})
    settings.update({} if gpu else NO_GPU_ENV)
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
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
