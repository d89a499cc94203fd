"""TensorFlow's start-up lines kept off the user's screen, its real errors kept on it.

Loading TensorFlow 2.21 prints lines no user can act on: absl's "All log messages before absl::InitializeLog() is
called are written to STDERR" (twice), oneDNN's and cudart_stub's notes, the CPU-feature guard, and on a machine
without a usable GPU "failed call to cuInit". C++ writes them to file descriptor 2 before `TF_CPP_MIN_LOG_LEVEL`
applies, so no setting silences them. `filtered_stderr` sends descriptor 2 to a temporary file for a block and
afterwards writes every line of it that is not one of those start-up lines back to stderr: a Python traceback,
a fatal (F) line or any other error still reaches the screen.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# absl/glog lines look like "I0000 00:00:1795975806.419568    6453 port.cc:153] ..."
_LOG_LINE = r"[IWE]\d{4} [\d:.]+ +\d+ "
STARTUP_NOISE = re.compile("|".join([
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    _LOG_LINE + r"(port|cudart_stub|cpu_feature_guard|cuda_platform|cuda_diagnostics|cuda_driver|cuda_executor|"
                r"cuda_fft|cuda_dnn|cuda_blas|gpu_device|computation_placer|dso_loader)\.cc:\d+\] ",
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$",
]))


def is_startup_noise(line: str) -> bool:
    """True for a line TensorFlow prints while it loads and finds its devices (see the module docstring)."""
    return bool(STARTUP_NOISE.search(line.rstrip("\n")))


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Holds back what is written to file descriptor 2 in the block; then writes all but the start-up noise.

    Output is delayed until the block ends, so keep the block to start-up (loading TensorFlow, finding devices).
    """
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not is_startup_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def find_devices_quietly() -> None:
    """Lets an already imported TensorFlow find its devices (where cuInit runs and may complain) with the
    start-up noise filtered; does nothing in a process that did not load TensorFlow."""
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        with filtered_stderr():
            tf.config.list_physical_devices()


class _QuietTensorFlowLoader(importlib.abc.Loader):
    """Runs TensorFlow's own loader, then the device search, inside `filtered_stderr`."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr():
            self._loader.exec_module(module)
            module.config.list_physical_devices()


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # find TensorFlow's own spec, once
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietTensorFlowLoader(spec.loader)
        return spec


def quiet_tensorflow_startup() -> None:
    """Makes the next `import tensorflow` (direct, or through Keras) load with its start-up lines filtered.

    Call it before anything imports TensorFlow (an entry point's package `__init__`); later it is too late for
    the lines printed on import, and `find_devices_quietly` still filters the cuInit line.
    """
    if "tensorflow" in sys.modules:
        return
    # TensorFlow's INFO lines at run time (tf.data's "Memory patch applied", ...) off too; warnings and errors stay.
    # A user's own setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    # oneDNN's CPU kernels: TensorFlow turns them on by itself only on some CPUs (it did on an AVX-512 Xeon here,
    # not on an AVX2 AMD EPYC, where V's training step then ran at 34 frames/s against 117 with them: Eigen's
    # convolutions). On for every CPU unless the user says otherwise.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if not any(isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())
