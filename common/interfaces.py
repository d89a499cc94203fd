"""Checks a model against the interface of its component (a `typing.Protocol`: `vae.interface.VisionModel`,
`rnn.interface.MemoryModel`, `controller.interface.ControllerModel`), so that a model missing a part fails in one
line when it is built or loaded, not with a traceback from inside a compiled dream hours later."""

from __future__ import annotations

import importlib
import json
import sys
import typing
import zipfile
from pathlib import Path
from typing import Any

from common.errors import DataError


def interface_members(protocol: type) -> dict[str, bool]:
    """The public names a protocol lists, each mapped to whether it is a method (True) or an attribute (False)."""
    members: dict[str, bool] = {}
    for klass in reversed(protocol.__mro__):
        if klass in (object, typing.Protocol, typing.Generic):
            continue
        for name in getattr(klass, "__annotations__", {}):
            members[name] = False
        for name, value in vars(klass).items():
            if callable(value) or isinstance(value, (staticmethod, classmethod)):
                members[name] = True
    return {name: method for name, method in members.items() if not name.startswith("_")}


def model_name(model: Any) -> str:
    """`module.Class` of a model (or of a class), as an error message names it."""
    klass = model if isinstance(model, type) else type(model)
    return f"{klass.__module__}.{klass.__qualname__}"


def missing_members(model: Any, protocol: type) -> list[str]:
    """The members of `protocol` that `model` lacks (a method must be callable)."""
    missing = []
    for name, method in interface_members(protocol).items():
        if not hasattr(model, name) or method and not callable(getattr(model, name)):
            missing.append(name)
    return missing


def interface_problem(model: Any, protocol: type, component: str) -> str | None:
    """None when `model` provides everything `protocol` lists, else one line naming it and what it lacks, e.g.
    "examples.custom_m.MyM is not an M: it lacks split_head, sample (see rnn/interface.py)"."""
    missing = missing_members(model, protocol)
    if not missing:
        return None
    where = protocol.__module__.replace(".", "/") + ".py"
    return f"{model_name(model)} is not {component}: it lacks {', '.join(missing)} (see {where})"


def import_saved_module(path: Path, component: str) -> None:
    """Imports the module of the class a `.keras` file holds, so that Keras finds a user's class in any process
    (Keras only looks among the classes already registered, and a worker starts with none of the user's).

    A module that cannot be imported raises a one-line `DataError` naming the file and the class; a file that is
    no Keras archive is left to the loader to report.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        module, class_name = str(config.get("module") or ""), config.get("class_name")
    except (OSError, KeyError, ValueError, AttributeError, zipfile.BadZipFile):
        return
    if not module or module == "keras" or module.startswith("keras.") or module in sys.modules:
        return
    try:
        importlib.import_module(module)
    except Exception as error:  # a user's module may fail in any way while it imports
        reason = " ".join(str(error).split())[:200]
        raise DataError(f"{path}: the {component} class {module}.{class_name} it holds cannot be imported "
                        f"({type(error).__name__}: {reason})") from None
