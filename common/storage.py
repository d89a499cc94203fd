"""Atomic file writes and validated readers for the project's `.npz` formats (rollouts and series).

Every file is written under a temporary name in the same folder and renamed into place, so a reader (or a
resumed run) sees either the complete file or nothing: a killed process never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import DataError

FRAME_SHAPE = (64, 64, 3)

# name -> (dtype, shape with -1 for "any"; T is the episode length shared by all per-step arrays).
ROLLOUT_SCHEMA: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "obs": (np.dtype(np.uint8), (-1, *FRAME_SHAPE)),
    "action": (np.dtype(np.float32), (-1, -1)),
    "reward": (np.dtype(np.float32), (-1,)),
    "done": (np.dtype(np.bool_), (-1,)),
}
SERIES_SCHEMA: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "mu": (np.dtype(np.float32), (-1, -1)),
    "logvar": (np.dtype(np.float32), (-1, -1)),
    "action": (np.dtype(np.float32), (-1, -1)),
    "reward": (np.dtype(np.float32), (-1,)),
    "done": (np.dtype(np.bool_), (-1,)),
}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it onto `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private (0600); written files follow the umask
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_npz(path: str | os.PathLike, compress: bool = True, **arrays: Any) -> None:
    """Writes `arrays` to `path` as an `.npz` file, atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)
            f.flush()
            os.fsync(f.fileno())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes `obj` as indented JSON, atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path`, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file; a missing or unparsable file raises `DataError` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({error})") from None


@contextlib.contextmanager
def npz_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turns the ways reading an `.npz` file fails into one-line `DataError`s naming the file."""
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise DataError(f"{path}: corrupt or truncated .npz file ({type(error).__name__}: {error})") from None


def read_npz(path: str | os.PathLike,
             schema: Mapping[str, tuple[np.dtype, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    """Reads and validates an `.npz` file against `schema`; any problem raises `DataError` naming the file.

    Per-step arrays (first dimension -1 in the schema) must all have the same length, at least 1.
    Fields not in the schema (e.g. `seed`) are returned as they are.
    """
    with npz_errors(path):
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    lengths = set()
    for name, (dtype, shape) in schema.items():
        if name not in arrays:
            raise DataError(f"{path}: missing array '{name}' (has {sorted(arrays)})")
        array = arrays[name]
        if array.dtype != dtype:
            raise DataError(f"{path}: '{name}' has dtype {array.dtype}, expected {dtype}")
        if array.ndim != len(shape) or any(want not in (-1, got) for want, got in zip(shape, array.shape)):
            pattern = "(" + ", ".join("T" if i == 0 else ("*" if s == -1 else str(s))
                                      for i, s in enumerate(shape)) + ")"
            raise DataError(f"{path}: '{name}' has shape {array.shape}, expected {pattern}")
        lengths.add(array.shape[0])
    if len(lengths) > 1:
        raise DataError(f"{path}: per-step arrays disagree in length ({sorted(lengths)})")
    if lengths == {0}:
        raise DataError(f"{path}: empty episode (0 steps)")
    return arrays


def read_rollout(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads one episode written by `run.collect`: obs (T,64,64,3) uint8, action (T,A), reward (T,), done (T,)."""
    return read_npz(path, ROLLOUT_SCHEMA)


def read_series(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads one encoded episode written by `vae.encode`: mu, logvar (T,Z), action (T,A), reward, done (T,)."""
    arrays = read_npz(path, SERIES_SCHEMA)
    if arrays["mu"].shape != arrays["logvar"].shape:
        raise DataError(f"{path}: 'mu' {arrays['mu'].shape} and 'logvar' {arrays['logvar'].shape} differ")
    return arrays


def episode_files(folder: str | os.PathLike, what: str = "episode") -> list[Path]:
    """Sorted `ep*.npz` files of a folder; an absent or empty folder raises `DataError` naming it."""
    folder = Path(folder)
    files = sorted(folder.glob("ep*.npz")) if folder.is_dir() else []
    if not files:
        raise DataError(f"{folder}: no {what} files (ep*.npz) found")
    return files


def episode_name(index: int) -> str:
    """File name of episode `index`, the same in `rollouts/` and `series/`."""
    return f"ep{index:06d}.npz"


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a small file's bytes: tells whether a result was computed from this very file (a controller
    trained further since keeps its path but not its digest)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
