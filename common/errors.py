"""User-facing errors and the entry-point wrapper that turns them into one line and a non-zero exit."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from absl import app

from common.startup import find_devices_quietly


class UserError(Exception):
    """Bad input the user can fix: a flag, a file, a mismatched model. Printed as one line, exit code 2."""


class DataError(UserError):
    """A data or model file is missing, corrupt, or of the wrong shape; the message names the file."""


class TrainingInterrupted(UserError):
    """Ctrl-C or SIGTERM stopped training (`common.training`): a checkpoint was saved and the same command resumes.
    Defined here, beside `sigterm_as_interrupt`, so the pipeline recognises it without importing TensorFlow."""


EXIT_USER_ERROR = 2


def run_main(main: Callable[[Sequence[str]], None],
             prepare_argv: Callable[[Sequence[str]], Sequence[str]] | None = None) -> None:
    """`absl.app.run(main)`, where a bad flag or a `UserError` prints `error: ...` on one line and exits 2.

    `prepare_argv` may rewrite the command line before parsing (the pipeline turns `--config` into a flagfile).
    TensorFlow, when the entry point loaded it, finds its devices first with its start-up lines filtered
    (`common.startup`), so the screen shows our lines; a worker's failure is one line, its traceback in the
    experiment's worker_errors.log.
    """
    from absl import flags

    def parse(argv: Sequence[str]) -> list[str]:
        try:
            return flags.FLAGS(prepare_argv(argv) if prepare_argv else argv)
        except (flags.Error, UserError) as error:
            fail(str(error))
            raise  # unreachable: fail exits

    def guarded(argv: Sequence[str]) -> None:
        if len(argv) > 1:
            fail(f"unexpected positional arguments: {' '.join(argv[1:])}")
        find_devices_quietly()
        try:
            main(argv)
        except UserError as error:
            fail(str(error))

    app.run(guarded, flags_parser=parse)


def fail(message: str) -> None:
    """Prints `error: message` on one line and exits with the user-error code."""
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    sys.stderr.flush()
    sys.exit(EXIT_USER_ERROR)


class SignalReceived:
    """The SIGTERM a `sigterm_as_interrupt` block received, if any. Its handler raises KeyboardInterrupt at once,
    but Python drops an exception raised while a finalizer (`__del__`, e.g. of a finished tf.data iterator) runs:
    a training loop calls `raise_if_received()` each step, so such a signal still stops it at the next step."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def raise_if_received(self) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt(f"signal {self.signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[SignalReceived]:
    """Makes SIGTERM raise KeyboardInterrupt in the block, so a scheduler's kill ends a run the way Ctrl-C does:
    training saves a checkpoint, the pipeline records the stage as interrupted. Yields the `SignalReceived` a loop
    polls (outside the main thread no handler can be installed, and nothing is ever received)."""
    received = SignalReceived()
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: Any) -> None:
        received.signum = signum
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)
