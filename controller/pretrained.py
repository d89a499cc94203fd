"""Trained agents that ship with the project: V, M and C of one experiment in `pretrained/<name>/`, stored
compactly (float16 weights), with a manifest of the task, the settings, the scores and each file's SHA-256.

    python -m controller.evaluate --pretrained=doom --episodes=100 --seed=12345
    python -m run.dream --pretrained=doom --play

`--pretrained=NAME` (a shipped agent, `SHIPPED_AGENTS`) or `--pretrained=FOLDER` (one `pack_agent` wrote) stands
for `--exp_dir` on every command that reads an experiment's V, M or C. The files are checked against the manifest
each time, then unpacked once into an ordinary experiment folder in the user's cache
(`$XDG_CACHE_HOME/worldmodels/pretrained/`, default `~/.cache/...`), so every command runs on it unchanged; what a
command writes (a retrained C, an evaluation) goes there, never into the repository.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import DataError, UserError
from common.layout import ExperimentLayout, experiment
from common.storage import file_digest, read_json, write_json, write_npz

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"  # the repository's shipped agents
SHIPPED_AGENTS = ("doom", "carracing")
MANIFEST = "manifest.json"
FORMAT = 1  # the manifest's format version
# The packed files: each model as its Keras serialisation (JSON) and its weights (float16 npz).
VAE_SPEC, VAE_WEIGHTS = "vae.json", "vae_weights.npz"
RNN_SPEC, RNN_WEIGHTS = "rnn.json", "rnn_weights.npz"
CONTROLLER, INITIAL_Z = "controller.json", "initial_z.npz"


@dataclasses.dataclass(frozen=True)
class ShippedAgent:
    """A packed agent: its folder and manifest, checked against each other."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def settings(self) -> dict[str, Any]:
        """The experiment's pipeline settings (resolution, sizes, tau, CMA-ES budget)."""
        return self.manifest.get("settings", {})

    @property
    def digest(self) -> str:
        """A short hash of the manifest: the unpacked folder's name, so a changed agent unpacks afresh."""
        return hashlib.sha256(json.dumps(self.manifest, sort_keys=True).encode()).hexdigest()[:12]


def find_agent(name_or_folder: str, root: Path = PRETRAINED_DIR) -> ShippedAgent:
    """The shipped agent `name` (or the packed agent in a folder), its files checked against its manifest.
    An unknown name, a missing manifest or a file whose SHA-256 differs raises a one-line `UserError`."""
    folder = root / name_or_folder if name_or_folder in SHIPPED_AGENTS else Path(name_or_folder)
    if not (folder / MANIFEST).is_file():
        if name_or_folder in SHIPPED_AGENTS:
            raise UserError(f"--pretrained={name_or_folder}: no agent is shipped in {folder} yet")
        raise UserError(f"--pretrained={name_or_folder}: not a shipped agent ({', '.join(SHIPPED_AGENTS)}) "
                        f"nor a folder holding {MANIFEST}")
    manifest = read_json(folder / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "files" not in manifest:
        raise DataError(f"{folder / MANIFEST}: not a format-{FORMAT} agent manifest")
    for relative, want in manifest["files"].items():
        path = folder / relative
        if not path.is_file():
            raise DataError(f"{path}: listed in {MANIFEST} but missing")
        got = file_digest(path)
        if got != want:
            raise DataError(f"{path}: SHA-256 {got[:12]}... does not match the manifest's {want[:12]}... "
                            "(a changed or truncated file; check it out again)")
    return ShippedAgent(folder, manifest)


def cache_root() -> Path:
    """Where agents are unpacked: `$XDG_CACHE_HOME/worldmodels/pretrained` (default `~/.cache`)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "worldmodels" / "pretrained"


def unpack_agent(agent: ShippedAgent, root: Path | None = None) -> Path:
    """The experiment folder of `agent` (vae/vae.keras, rnn/rnn.keras, series/initial_z.npz, its controller and
    pipeline.json), written once and atomically; later calls return it as it is."""
    out = (root or cache_root()) / f"{agent.name}-{agent.digest}"
    if (out / MANIFEST).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    layout = experiment(staging)
    for spec, weights, target in ((VAE_SPEC, VAE_WEIGHTS, layout.vae_model), (RNN_SPEC, RNN_WEIGHTS,
                                                                               layout.rnn_model)):
        target.parent.mkdir(parents=True, exist_ok=True)
        _unpack_model(agent.folder / spec, agent.folder / weights).save(target)
    controller = staging / agent.manifest["controller_path"]
    controller.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(agent.folder / CONTROLLER, controller)
    layout.series.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(agent.folder / INITIAL_Z, layout.initial_z)
    write_json(layout.pipeline_record, {"config": agent.settings, "pretrained": agent.name})
    write_json(staging / MANIFEST, agent.manifest)  # written last: the mark of a complete folder
    try:
        staging.rename(out)
    except OSError:  # another process unpacked it first
        shutil.rmtree(staging, ignore_errors=True)
    return out


def experiment_dir(exp_dir: str | None, pretrained: str | None, root: Path = PRETRAINED_DIR) -> str:
    """`--exp_dir`, or the unpacked folder of `--pretrained`: exactly one of them must be given."""
    if bool(exp_dir) == bool(pretrained):
        raise UserError("pass either --exp_dir=DIR or --pretrained=NAME (" + ", ".join(SHIPPED_AGENTS) + ")")
    if exp_dir:
        return exp_dir
    return str(unpack_agent(find_agent(pretrained, root)))


def with_agent_settings(config: Any, pretrained: str | None, fields: Iterable[str], is_set: Any,
                        root: Path = PRETRAINED_DIR) -> Any:
    """`config` with each of `fields` the command line left unset (`is_set(name)` false) taken from the shipped
    agent's settings, e.g. the Doom resolution it was trained at; unchanged without `--pretrained`."""
    if not pretrained:
        return config
    settings = find_agent(pretrained, root).settings
    changes = {name: settings[name] for name in fields if name in settings and not is_set(name)}
    return dataclasses.replace(config, **changes)


def _unpack_model(spec_path: Path, weights_path: Path):
    import keras

    import rnn.model  # noqa: F401 - registers the paper's classes with Keras
    import vae.model  # noqa: F401

    spec = read_json(spec_path)
    model = keras.saving.deserialize_keras_object(spec)
    with np.load(weights_path) as packed:
        weights = [packed[f"w{i:03d}"] for i in range(len(packed.files))]
    targets = model.get_weights()
    if len(weights) != len(targets) or any(w.shape != t.shape for w, t in zip(weights, targets)):
        raise DataError(f"{weights_path}: its weights do not fit the model in {spec_path.name}")
    model.set_weights([w.astype(t.dtype) for w, t in zip(weights, targets)])
    return model


def _pack_model(model: Any, spec_path: Path, weights_path: Path) -> None:
    """The model's Keras serialisation and its weights, float32 ones stored as float16."""
    import keras

    write_json(spec_path, keras.saving.serialize_keras_object(model))
    arrays = {f"w{i:03d}": w.astype(np.float16) if w.dtype == np.float32 else w
              for i, w in enumerate(model.get_weights())}
    write_npz(weights_path, **arrays)


def _controller_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """The pipeline settings a saved controller JSON fixes: its variant and the env it was trained in."""
    settings = {"controller": saved.get("controller", {}).get("variant"), "controller_env": saved.get("env")}
    return {name: value for name, value in settings.items() if value is not None}


def pack_agent(exp_dir: str | os.PathLike, name: str, controller_file: str | os.PathLike, out: Path,
               settings: dict[str, Any]) -> ShippedAgent:
    """Writes V, M and C of `exp_dir` (the controller `controller_file`) to `out` with their manifest, which
    records `settings` (the experiment's pipeline config, with `controller` and `controller_env` those of the
    shipped C: an ablation may have trained it, not the pipeline) and, once measured, the packed agent's scores
    (`record_scores`). Replaces the folder's previous contents."""
    from rnn.model import load_rnn
    from vae.encode import load_vae

    layout: ExperimentLayout = experiment(exp_dir, create=False)
    controller_file = Path(controller_file).resolve()
    try:
        controller_path = controller_file.relative_to(layout.root.resolve())
    except ValueError:
        raise UserError(f"{controller_file}: not inside {layout.root}") from None
    settings = {**settings, **_controller_settings(read_json(controller_file))}
    staging = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _pack_model(load_vae(layout.vae_model), staging / VAE_SPEC, staging / VAE_WEIGHTS)
    _pack_model(load_rnn(layout.rnn_model), staging / RNN_SPEC, staging / RNN_WEIGHTS)
    shutil.copyfile(controller_file, staging / CONTROLLER)
    shutil.copyfile(layout.initial_z, staging / INITIAL_Z)
    files = {path.name: file_digest(path) for path in sorted(staging.iterdir())}
    manifest = {"format": FORMAT, "name": name, "task": settings.get("env", "doom"),
                "source": str(exp_dir), "controller_path": str(controller_path),
                "settings": settings, "scores": {}, "files": files}
    write_json(staging / MANIFEST, manifest)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return ShippedAgent(out, manifest)


def record_scores(agent: ShippedAgent, scores: dict[str, Any]) -> ShippedAgent:
    """Adds `scores` to the agent's manifest (the files and their checksums stay as they are)."""
    manifest = {**agent.manifest, "scores": {**agent.manifest.get("scores", {}), **scores}}
    write_json(agent.folder / MANIFEST, manifest)
    return ShippedAgent(agent.folder, manifest)


def define_experiment_flags(exp_dir_help: str) -> None:
    """`--exp_dir` and `--pretrained` for an entry point that reads an experiment's V, M or C (absl's flag
    module is imported here, by the entry point's `define_flags`, never at import)."""
    from absl import flags

    flags.DEFINE_string("exp_dir", None, exp_dir_help)
    flags.DEFINE_string("pretrained", None, f"A shipped agent instead of --exp_dir: {' or '.join(SHIPPED_AGENTS)} "
                        "(pretrained/NAME/, checked against its manifest), or a folder run.ship_agent wrote.")


def experiment_from_flags(config: Any = None, fields: Iterable[str] = ()) -> Any:
    """The experiment folder the parsed `--exp_dir` / `--pretrained` give; with `config`, also `config` with the
    shipped agent's settings for `fields` the command line left unset: `(exp_dir, config)`."""
    from absl import flags

    values = flags.FLAGS
    exp_dir = experiment_dir(values.exp_dir, values.pretrained)
    if config is None:
        return exp_dir
    return exp_dir, with_agent_settings(config, values.pretrained, fields, lambda name: values[name].present)
