"""Models found by name: one `Registry` per component (`rnn.interface.RNN_MODELS` behind `--rnn`,
`controller.interface.CONTROLLERS` behind `--controller`), which a user's own module adds to.

A name is either registered (`mdnrnn`, `full`, ...) or `module:attribute`, which is imported when used:

    python -m rnn.train --exp_dir=DIR --rnn=examples.custom_m:MyM

The second form needs no registration and also works in spawned worker processes (which start with only the
project's own modules imported, and so know only the names those register).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from common.errors import UserError


def spec_of(entry: Any) -> str:
    """`module:QualifiedName` of a class or function: the name that finds it again in any process."""
    return f"{entry.__module__}:{entry.__qualname__}"


class Registry:
    """Names -> model classes (or factories) of one component.

    Args:
      component: what the entries are, for messages ("M", "C").
      flag: the flag that names an entry, for messages ("rnn" gives "--rnn=NAME: ...").
    """

    def __init__(self, component: str, flag: str):
        self.component, self.flag = component, flag
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, entry: Callable[..., Any] | None = None) -> Any:
        """Adds `entry` under `name`; without `entry`, a class decorator. Registering another object under a taken
        name raises `ValueError` (the same class imported again, e.g. by a spawned worker, is fine)."""
        if ":" in name or not name:
            raise ValueError(f"{self.component} name {name!r}: must be non-empty and without ':'")

        def add(entry: Callable[..., Any]) -> Callable[..., Any]:
            known = self._entries.get(name)
            if known is not None and known is not entry and spec_of(known) != spec_of(entry):
                raise ValueError(f"{self.component} name {name!r} is taken by {spec_of(known)}")
            self._entries[name] = entry
            return entry

        return add if entry is None else add(entry)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def resolve(self, name: str) -> Callable[..., Any]:
        """The entry of a registered name or of `module:attribute`; anything else raises a one-line `UserError`."""
        if ":" not in name:
            if name not in self._entries:
                raise UserError(f"--{self.flag}={name}: no {self.component} is registered under that name; choose "
                                f"from {', '.join(self.names())} or give module:Class")
            return self._entries[name]
        module_name, _, attribute = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # a user's module may fail in any way while it imports
            reason = " ".join(str(error).split())[:200]
            raise UserError(f"--{self.flag}={name}: cannot import {module_name} ({type(error).__name__}: "
                            f"{reason})") from None
        try:
            return functools.reduce(getattr, attribute.split("."), module)
        except AttributeError:
            raise UserError(f"--{self.flag}={name}: {module_name} has no {attribute}") from None
