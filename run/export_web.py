"""Exports a trained world model to a static web page where you play in its dream, as in the paper's article:
Doom's, or CarRacing's once its M predicts reward (`rnn.train --predict_reward`, the CarRacing dream of
`envs.carracing_dream`).

    python -m run.export_web --exp_dir=exp/doom --serve                 # writes exp/doom/web/, serves it on
                                                                        # http://127.0.0.1:8000/ until Ctrl-C
    python -m run.export_web --exp_dir=exp/doom --out=site/dream        # then any static server, e.g.
    python -m http.server --directory site/dream --bind 127.0.0.1 8000
    python -m run.export_web --exp_dir=exp/doom --screenshot=dream.png  # the page after 100 steps, from Chromium
    python -m run.export_web --exp_dir=exp/carracing_dream --serve      # CarRacing: M with a reward output

The folder holds everything the page needs (it opens offline): `index.html` and `dream.js`, M's step, V's decoder
and C as ONNX graphs (`run.export_web_graphs`), `model.json` (the task, sizes, tau, the driver and real first
frames to start dreams from), `check.json` (fixed inputs and noise with Keras's outputs) and onnxruntime-web in
`vendor/` (from the npm registry, cached after the first export: `run.export_web_runtime`). Browsers do not run
pages from file:// with WebAssembly, so serve it.

The page dreams as `envs.dream.dream_step` defines a step: V's decoding of z shown at 6x, C acting unless an arrow
key is held, M's step, z' drawn at the slider's tau (0.1-2.0), the dream ending where M's done logit passes 0 or
at the task's step cap; it shows the steps, who acts and the action M is fed.
  Doom: C acts on [z, c, h]; left -1, right +1 (both: stay); tau starts at 1.15; the dream ends at M's predicted
    death or 2,100 steps; the page shows the steps survived and p(death).
  CarRacing: C acts on [z, h] (steer, gas, brake); while any arrow key is held the keys set the whole action
    (left/right steer -1/+1, up gas 1, down brake 0.8, keys combine); tau starts at 1.0; each step pays M's
    predicted reward and the page shows the dream's return so far and, for an M with a done output
    (--predict_done), p(end); the dream ends where that done logit passes 0 or at 1,000 steps. A CarRacing M
    without a reward output has no dream: the export says to train one with --predict_reward.
Its "check against Keras" button runs the browser's C, M step (with its done and reward outputs), sampling and
decoder on check.json's inputs and shows the largest difference.
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
from common.paper import EPISODE_STEPS
from common.storage import write_text
from controller.agent import check_compatible
from controller.evaluate import default_controller_file
from controller.model import Controller
from controller.pretrained import define_experiment_flags, experiment_from_flags
from envs.dream import load_initial_z
from rnn.model import load_rnn
from run.dream_config import ACTION_NAMES, ACTION_RANGES, ACTION_SIZES, DEFAULT_ACTIONS, DEFAULT_TEMPERATURE
from run.export_web_browser import screenshot, serve_folder
from run.export_web_graphs import (
    as_json,
    export_controller,
    export_decoder,
    export_rnn_step,
    predicts_reward,
    reference_cases,
)
from run.export_web_runtime import vendor_runtime
from vae.encode import load_vae

PAGE_FILES = ("index.html", "dream.js")
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.1, 2.0  # the page's slider
CHECK_TOLERANCE = 1e-4  # float32: the browser's graphs and sampling against Keras


@dataclasses.dataclass(frozen=True)
class ExportWebConfig:
    """What to export and what to do with the page afterwards."""

    out: str = ""  # Folder to write the page to (default: DIR/web); its files are replaced.
    controller_file: str = ""  # C that drives the dream (default: the experiment's trained controller of its task,
    # if any; without one nobody acts until you press a key: Doom stands still, CarRacing drives straight at full
    # gas).
    temperature: float | None = None  # tau the page starts at (default: Doom 1.15, CarRacing 1.0; the slider spans
    # 0.1-2.0).
    fps: int = 30  # Dream steps a second the page aims at.
    start_frames: int = 256  # Real first frames (series/initial_z.npz) the page may start a dream from, at most.
    runtime_cache: str = ""  # Folder keeping onnxruntime-web between exports (default: ~/.cache/worldmodels).
    serve: bool = False  # After exporting, serve the page on http://127.0.0.1:PORT/ until Ctrl-C.
    port: int = 8000  # Port of --serve (0: any free one).
    screenshot: str = ""  # After exporting, let the page dream in headless Chromium and save it as this PNG.
    screenshot_steps: int = 100  # Steps the page dreams before --screenshot.
    chromium: str = ""  # Chromium for --screenshot (default: chromium on PATH; apt-get install -y chromium).

    def validated(self) -> ExportWebConfig:
        if self.temperature is not None and not MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE:
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
    """What the page is made of: the task, an experiment's M, V, real first frames and C (None: no trained C)."""

    task: str  # doom or carracing
    rnn: Any
    vae: Any
    start_mu: np.ndarray  # (N, Z)
    start_logvar: np.ndarray  # (N, Z)
    controller: Any = None
    params: np.ndarray | None = None
    controller_file: Path | None = None


def dream_task(rnn: Any, path: Path) -> str:
    """The task whose dream M makes: Doom's (1 action value, the death output) or CarRacing's (3 action values and
    a reward output, which the CarRacing dream pays); any other M raises a one-line error."""
    if rnn.action_size == ACTION_SIZES["carracing"]:
        if not predicts_reward(rnn):
            raise UserError(f"{path}: a CarRacing M without a reward output; the CarRacing dream pays M's predicted "
                            "reward, so its page needs an M trained with python -m rnn.train --predict_reward")
        return "carracing"
    if rnn.action_size == ACTION_SIZES["doom"] and rnn.predict_done:
        return "doom"
    raise DataError(f"{path}: an M of {rnn.action_size} action value(s)"
                    f"{'' if rnn.predict_done else ' without the death output'} makes no dream: Doom's has 1 value "
                    "and the death output, CarRacing's 3 values and a reward output")


def _load_world(exp_dir: str | os.PathLike, config: ExportWebConfig) -> World:
    """The task, M, V, the start frames and C (the given one, else the experiment's trained one, if any); bad or
    missing files raise one-line errors."""
    layout = experiment(exp_dir, create=False)
    if not layout.rnn_model.is_file():
        raise DataError(f"{layout.rnn_model}: file not found (train M first: python -m rnn.train)")
    rnn = load_rnn(layout.rnn_model)
    task = dream_task(rnn, layout.rnn_model)
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
            path = default_controller_file(exp_dir, task)
        except UserError:  # no trained controller yet: nobody acts but the keys
            return World(task, rnn, vae, mu, logvar)
    controller, params = Controller.load(path)
    if controller.env != task:
        raise UserError(f"{path}: a {controller.env} controller cannot drive the {task} dream")
    check_compatible(vae, rnn, controller)
    return World(task, rnn, vae, mu, logvar, controller, params, path)


NO_DRIVER = {"doom": "the agent stands still", "carracing": "straight ahead at full gas"}  # DEFAULT_ACTIONS, in words


def _model_json(exp_dir: str | os.PathLike, config: ExportWebConfig, world: World) -> dict:
    """The page's settings: the task, sizes, tau, the driver, the graphs and (at most `start_frames`) real first
    frames."""
    rnn, path, task = world.rnn, world.controller_file, world.task
    chosen = np.random.default_rng(0).permutation(len(world.start_mu))[:config.start_frames]
    default_action = list(DEFAULT_ACTIONS[task])
    driver = ({"kind": "controller", "action": default_action,
               "description": f"C ({world.controller.variant}, from {path.parent.name}/{path.name})"}
              if world.controller is not None
              else {"kind": "none", "description": f"none (no trained C: {NO_DRIVER[task]})",
                    "action": default_action})
    temperature = DEFAULT_TEMPERATURE[task] if config.temperature is None else config.temperature
    return {"format": 1, "env": task, "experiment": Path(exp_dir).resolve().name,
            "z_size": rnn.z_size, "hidden_size": rnn.hidden_size, "action_size": rnn.action_size,
            "num_mixtures": rnn.num_mixtures, "predicts_death": bool(rnn.predict_done),
            "predicts_reward": predicts_reward(rnn), "action_names": list(ACTION_NAMES[task]),
            "temperature": temperature, "temperature_range": [MIN_TEMPERATURE, MAX_TEMPERATURE],
            "max_steps": EPISODE_STEPS[task], "fps": config.fps, "driver": driver,
            "graphs": {"rnn_step": "rnn_step.onnx", "decoder": "decoder.onnx",
                       "controller": "controller.onnx" if world.controller is not None else None},
            "start_frames": {"mu": as_json(world.start_mu[chosen]), "logvar": as_json(world.start_logvar[chosen])}}


def export_web(exp_dir: str | os.PathLike, config: ExportWebConfig) -> ExportResult:
    """Writes the page of `exp_dir`'s world model (V, M, C if trained; Doom's, or CarRacing's with a reward output)
    into `config.out`; bad input raises a one-line `UserError`."""
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
    cases = reference_cases(world.rnn, world.vae, z0, controller=world.controller, params=world.params,
                            action_ranges=ACTION_RANGES[world.task])
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

    define_experiment_flags("Experiment folder with vae/vae.keras, rnn/rnn.keras (Doom's, or CarRacing's with a "
                            "reward output) and series/initial_z.npz (and a trained controller, if any).")
    CONFIG_FLAGS.define()


if __name__ == "__main__":
    define_flags()
    run_main(main)
