"""User-facing errors and the entry-point wrapper that turns them into one line and a non-zero exit."""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import app


class UserError(Exception):
    """Bad input the user can fix: a flag, a file, a mismatched model. Printed as one line, exit code 2."""


class DataError(UserError):
    """A data or model file is missing, corrupt, or of the wrong shape; the message names the file."""


EXIT_USER_ERROR = 2


def run_main(main: Callable[[Sequence[str]], None]) -> None:
    """`absl.app.run(main)`, printing a `UserError` as `error: ...` on one line and exiting with code 2."""

    def guarded(argv: Sequence[str]) -> None:
        if len(argv) > 1:
            fail(f"unexpected positional arguments: {' '.join(argv[1:])}")
        try:
            main(argv)
        except UserError as error:
            fail(str(error))

    app.run(guarded)


def fail(message: str) -> None:
    """Prints `error: message` on one line and exits with the user-error code."""
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    sys.stderr.flush()
    sys.exit(EXIT_USER_ERROR)
