"""The browser runtime of the exported page: onnxruntime-web from the npm registry, vendored into the page's folder.

The page runs M, V's decoder and C with onnxruntime-web's WebAssembly backend on one thread, which needs three of
the package's files: `ort.wasm.min.js` (the API, a classic script defining `ort`), `ort-wasm-simd-threaded.mjs`
(the WebAssembly module's loader) and `ort-wasm-simd-threaded.wasm` (14 MB). They are not kept in git: the first
export runs `npm pack onnxruntime-web@<version>`, checks each file's SHA-256 against the digests pinned below and
keeps them in a cache folder (default `~/.cache/worldmodels/`, or `$XDG_CACHE_HOME/worldmodels/`), from which
later exports copy them, offline. The page then loads nothing from outside its folder (no CDN).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from common.errors import UserError

PACKAGE = "onnxruntime-web"
VERSION = "1.30.0"
# The files the page needs, with the SHA-256 of the 1.30.0 release's copies (the npm tarball's package/dist/).
FILES = {
    "ort.wasm.min.js": "faece07e84faa9001f5104bbe4e5c70861d06cb2376a0dea1fa0ad33a67adc81",
    "ort-wasm-simd-threaded.mjs": "e13f7f94fc51b4ca72b12faeb1ee95f4ace6dfbc8939bc718aabdc0a27c4299b",
    "ort-wasm-simd-threaded.wasm": "3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2",
}
NPM_TIMEOUT_S = 600  # the tarball is 33 MB


def default_cache() -> Path:
    """`$XDG_CACHE_HOME/worldmodels` (default `~/.cache/worldmodels`): where the runtime is kept between exports."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "worldmodels"


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() and _digest(folder / name) == digest for name, digest in FILES.items())


def _download(folder: Path) -> None:
    """`npm pack` of the pinned release, its needed files checked and moved into `folder` (atomically)."""
    npm = shutil.which("npm")
    if npm is None:
        raise UserError(f"the page needs {PACKAGE} {VERSION} from the npm registry, but npm is not installed and "
                        f"{folder} holds no copy: install npm (apt-get install -y npm), or put the package's "
                        f"dist/{{{','.join(FILES)}}} there")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}.") as tmp:
        tmp = Path(tmp)
        result = subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(tmp), "--silent"],
                                capture_output=True, text=True, timeout=NPM_TIMEOUT_S, cwd=tmp)
        tarballs = list(tmp.glob("*.tgz"))
        if result.returncode != 0 or len(tarballs) != 1:
            reason = (result.stderr.strip().splitlines() or ["no tarball"])[-1]
            raise UserError(f"npm pack {PACKAGE}@{VERSION} failed: {reason}")
        files = tmp / "files"
        files.mkdir()
        with tarfile.open(tarballs[0]) as archive:
            for name in FILES:
                member = archive.extractfile(f"package/dist/{name}")
                if member is None:
                    raise UserError(f"{PACKAGE}@{VERSION} from npm has no dist/{name}")
                with member, open(files / name, "wb") as out:
                    shutil.copyfileobj(member, out)
        if not _complete(files):
            raise UserError(f"{PACKAGE}@{VERSION} from npm does not match the pinned SHA-256 digests")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(files, folder)


def _cache_folder(cache: str | os.PathLike | None) -> Path:
    return (Path(cache).expanduser() if cache else default_cache()) / f"{PACKAGE}-{VERSION}"


def cached_runtime(cache: str | os.PathLike | None = None) -> Path:
    """The folder holding the runtime's files in `cache` (default `default_cache()`), fetched with npm if needed."""
    folder = _cache_folder(cache)
    if not _complete(folder):
        _download(folder)
    return folder


def runtime_missing(cache: str | os.PathLike | None = None) -> str | None:
    """Why an export could not vendor the runtime here (no complete copy in `cache` and no npm to fetch one), or
    None."""
    folder = _cache_folder(cache)
    if shutil.which("npm") is None and not _complete(folder):
        return f"npm is missing (apt-get install -y npm) and {folder} holds no copy of {PACKAGE} {VERSION}"
    return None


def vendor_runtime(destination: str | os.PathLike, cache: str | os.PathLike | None = None) -> list[Path]:
    """Copies the runtime's files into `destination` (the page's `vendor/`); returns their paths."""
    source = cached_runtime(cache)
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in FILES:
        target = destination / name
        if not (target.is_file() and target.stat().st_size == (source / name).stat().st_size
                and _digest(target) == FILES[name]):
            shutil.copyfile(source / name, target)
        copied.append(target)
    (destination / "NOTICE.txt").write_text(
        f"{', '.join(FILES)}: {PACKAGE} {VERSION} (MIT License, Microsoft Corporation), from the npm registry.\n",
        encoding="utf-8")
    return copied
