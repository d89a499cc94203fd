"""Exports a trained Doom world model to a static web page where you play in its dream, as in the paper's article.

    python -m run.export_web --exp_dir=exp/doom --serve                 # writes exp/doom/web/, serves it on
                                                                        # http://127.0.0.1:8000/ until Ctrl-C
    python -m run.export_web --exp_dir=exp/doom --out=site/dream        # then any static server, e.g.
    python -m http.server --directory site/dream --bind 127.0.0.1 8000
    python -m run.export_web --exp_dir=exp/doom --screenshot=dream.png  # the page after 100 steps, from Chromium

The folder holds everything the page needs (it opens offline): `index.html` and `dream.js`, M's step, V's decoder
and C as ONNX graphs (`run.export_web_graphs`), `model.json` (sizes, tau, the driver and real first frames to
start dreams from), `check.json` (fixed inputs and noise with Keras's outputs) and onnxruntime-web in `vendor/`
(from the npm registry, cached after the first export: `run.export_web_runtime`). Browsers do not run pages from
file:// with WebAssembly, so serve it.

The page dreams as `run.dream --play` does: V's decoding of z shown at 6x, C acting on [z, c, h] unless an arrow key
is held (left -1, right +1), M's step, z' drawn at the slider's tau (0.1-2.0), the dream ending where the death
logit passes 0 or at 2,100 steps; it shows the steps survived, p(death) and who acts. Its "check against Keras"
button runs the browser's C, M step, sampling and decoder on check.json's inputs and shows the largest difference.
Only Doom for now: CarRacing has no dream yet.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from common.errors import DataError, UserError, run_main
from common.flags import ConfigFlags
from common.layout import experiment
from common.paper import DOOM_TEMPERATURE, EPISODE_STEPS
from common.storage import write_text
from controller.agent import check_compatible
from controller.evaluate import default_controller_file
from controller.model import Controller
from controller.pretrained import define_experiment_flags, experiment_from_flags
from envs.dream import load_initial_z
from rnn.model import load_rnn
from run.export_web_browser import screenshot, serve_folder
from run.export_web_graphs import as_json, export_controller, export_decoder, export_rnn_step, reference_cases
from run.export_web_runtime import vendor_runtime
from vae.encode import load_vae

PAGE_FILES = ("index.html", "dream.js")
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.1, 2.0  # the page's slider
CHECK_TOLERANCE = 1e-4  # float32: the browser's graphs and sampling against Keras


@dataclasses.dataclass(frozen=True)
class ExportWebConfig:
    """What to export and what to do with the page afterwards."""

    out: str = ""  # Folder to write the page to (default: DIR/web); its files are replaced.
    controller_file: str = ""  # C that drives the dream (default: the experiment's trained Doom controller, if any;
    # without one nobody acts and the agent stands still until you press a key).
    temperature: float = DOOM_TEMPERATURE  # tau the page starts at (its slider spans 0.1-2.0).
    fps: int = 30  # Dream steps a second the page aims at.
    start_frames: int = 256  # Real first frames (series/initial_z.npz) the page may start a dream from, at most.
    runtime_cache: str = ""  # Folder keeping onnxruntime-web between exports (default: ~/.cache/worldmodels).
    serve: bool = False  # After exporting, serve the page on http://127.0.0.1:PORT/ until Ctrl-C.
    port: int = 8000  # Port of --serve (0: any free one).
    screenshot: str = ""  # After exporting, let the page dream in headless Chromium and save it as this PNG.
    screenshot_steps: int = 100  # Steps the page dreams before --screenshot.
    chromium: str = ""  # Chromium for --screenshot (default: chromium on PATH; apt-get install -y chromium).

    def validated(self) -> ExportWebConfig:
        if not MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE:
            raise UserError(f"--temperature={self.temperature}: must be between {MIN_TEMPERATURE} and "
                            f"{MAX_TEMPERATURE} (the page's slider)")
        if self.fps < 1:
            raise UserError(f"--fps={self.fps}: must be at least 1")
        if self.start_frames < 1:
            raise UserError(f"--start_frames={self.start_frames}: must be at least 1")
        if not 0 <= self.port < 65536:
            raise UserError(f"--port={self.port}: must be between 0 and 65535")
        if self.screenshot_steps < 1:
            raise UserError(f"--screenshot_steps={self.screenshot_steps}: must be at least 1")
        if self.screenshot and Path(self.screenshot).suffix.lower() != ".png":
            raise UserError(f"--screenshot={self.screenshot}: must end in .png")
        return self


@dataclasses.dataclass(frozen=True)
class ExportResult:
    out: Path  # the page's folder
    driver: str  # who acts by default
    megabytes: float  # the folder's size


def _output_folder(exp_dir: str | os.PathLike, out: str) -> Path:
    folder = Path(out).expanduser() if out else experiment(exp_dir, create=False).web
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out={folder}: is a file, not a folder")
    return folder


class World(NamedTuple):
    """What the page is made of: a Doom experiment's M, V, real first frames and C (None: no trained C)."""

    rnn: Any
    vae: Any
    start_mu: np.ndarray  # (N, Z)
    start_logvar: np.ndarray  # (N, Z)
    controller: Any = None
    params: np.ndarray | None = None
    controller_file: Path | None = None


def _load_world(exp_dir: str | os.PathLike, config: ExportWebConfig) -> World:
    """M, V, the start frames and C (the given one, else the experiment's trained one, if any); bad or missing
    files raise one-line errors."""
    layout = experiment(exp_dir, create=False)
    if not layout.rnn_model.is_file():
        raise DataError(f"{layout.rnn_model}: file not found (train M first: python -m rnn.train)")
    rnn = load_rnn(layout.rnn_model)
    if not rnn.predict_done:
        raise UserError(f"{layout.rnn_model}: a CarRacing M; CarRacing's dream does not exist yet, so its web page "
                        "cannot be exported (only Doom's)")
    vae = load_vae(layout.vae_model, z_size=rnn.z_size)
    if not layout.initial_z.is_file():
        raise DataError(f"{layout.initial_z}: file not found (the dream starts from it; write it with "
                        "python -m vae.encode)")
    mu, logvar = load_initial_z(layout.initial_z)
    if mu.shape[1] != rnn.z_size or len(mu) == 0:
        raise DataError(f"{layout.initial_z}: {len(mu)} start frames of z size {mu.shape[1]}, M needs z size "
                        f"{rnn.z_size}")
    path = Path(config.controller_file) if config.controller_file else None
    if path is None:
        try:
            path = default_controller_file(exp_dir, "doom")
        except UserError:  # no trained controller yet: nobody acts but the keys
            return World(rnn, vae, mu, logvar)
    controller, params = Controller.load(path)
    if controller.env != "doom":
        raise UserError(f"{path}: a {controller.env} controller cannot drive the Doom dream")
    check_compatible(vae, rnn, controller)
    return World(rnn, vae, mu, logvar, controller, params, path)


def _model_json(exp_dir: str | os.PathLike, config: ExportWebConfig, world: World) -> dict:
    """The page's settings: sizes, tau, the driver, the graphs and (at most `start_frames`) real first frames."""
    rnn, path = world.rnn, world.controller_file
    chosen = np.random.default_rng(0).permutation(len(world.start_mu))[:config.start_frames]
    driver = ({"kind": "controller", "action": [0.0],
               "description": f"C ({world.controller.variant}, from {path.parent.name}/{path.name})"}
              if world.controller is not None
              else {"kind": "none", "description": "none (no trained C: the agent stands still)", "action": [0.0]})
    return {"format": 1, "env": "doom", "experiment": Path(exp_dir).resolve().name,
            "z_size": rnn.z_size, "hidden_size": rnn.hidden_size, "action_size": rnn.action_size,
            "num_mixtures": rnn.num_mixtures, "predicts_death": True, "temperature": config.temperature,
            "temperature_range": [MIN_TEMPERATURE, MAX_TEMPERATURE], "max_steps": EPISODE_STEPS["doom"],
            "fps": config.fps, "driver": driver,
            "graphs": {"rnn_step": "rnn_step.onnx", "decoder": "decoder.onnx",
                       "controller": "controller.onnx" if world.controller is not None else None},
            "start_frames": {"mu": as_json(world.start_mu[chosen]), "logvar": as_json(world.start_logvar[chosen])}}


def export_web(exp_dir: str | os.PathLike, config: ExportWebConfig) -> ExportResult:
    """Writes the page of `exp_dir`'s Doom world model (V, M, C if trained) into `config.out`; bad input raises a
    one-line `UserError`."""
    config = config.validated()
    missing = [name for name in ("onnx", "tf2onnx") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"the export needs {' and '.join(missing)}: pip install -e .[web]")
    out = _output_folder(exp_dir, config.out)
    world = _load_world(exp_dir, config)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out={out}: cannot create the folder ({error.strerror or error})") from None
    vendor_runtime(out / "vendor", config.runtime_cache or None)
    export_rnn_step(world.rnn, out / "rnn_step.onnx")
    export_decoder(world.vae, out / "decoder.onnx")
    if world.controller is not None:
        export_controller(world.controller, world.params, out / "controller.onnx")
    elif (out / "controller.onnx").exists():
        (out / "controller.onnx").unlink()  # an earlier export's C must not drive this model
    for name in PAGE_FILES:
        shutil.copyfile(Path(__file__).parent / "web" / name, out / name)
    model = _model_json(exp_dir, config, world)
    write_text(out / "model.json", json.dumps(model, separators=(",", ":")))
    z0 = np.asarray(model["start_frames"]["mu"][0], np.float32)
    cases = reference_cases(world.rnn, world.vae, z0, controller=world.controller, params=world.params)
    write_text(out / "check.json", json.dumps({"tolerance": CHECK_TOLERANCE, "cases": as_json(cases)},
                                              separators=(",", ":")))
    size = sum(file.stat().st_size for file in out.rglob("*") if file.is_file())
    return ExportResult(out, model["driver"]["description"], size / 1e6)


def main(argv) -> None:

    config = CONFIG_FLAGS.parse().validated()
    result = export_web(experiment_from_flags(), config)
    print(f"export_web: wrote {result.out} ({result.megabytes:.1f} MB; driver {result.driver})")
    if config.screenshot:
        screenshot(result.out, config.screenshot, config.screenshot_steps, executable=config.chromium or None)
        print(f"export_web: saved the page after {config.screenshot_steps} steps to {config.screenshot}")
    if config.serve:
        serve_forever(result.out, config.port)
    elif not config.screenshot:
        print(f"export_web: to play, serve it: python -m http.server --directory {result.out} --bind 127.0.0.1 8000"
              " and open http://127.0.0.1:8000/ (or pass --serve)")


def serve_forever(folder: Path, port: int) -> None:
    """Serves the page until Ctrl-C."""
    with serve_folder(folder, port) as url:
        print(f"export_web: serving {folder} on {url} (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("export_web: stopped")


CONFIG_FLAGS = ConfigFlags(ExportWebConfig)


def define_flags() -> None:

    define_experiment_flags("Experiment folder with vae/vae.keras, rnn/rnn.keras and series/initial_z.npz (and a "
                            "trained controller, if any).")
    CONFIG_FLAGS.define()


if __name__ == "__main__":
    define_flags()
    run_main(main)
