"""Speed of the dream in the browser: dream steps a second of the page `run.export_web` writes, in headless Chromium
with no frame cap, at the paper's Doom sizes, beside the 30 steps a second the page aims at.

    python -m run.benchmark --cases=web     # the case that calls benchmark_web

`page_steps_per_s` serves an exported folder on 127.0.0.1, opens it with `?fps=0` (each step starts as soon as the
previous one is done: V's decoder, C and M's step in onnxruntime-web's WebAssembly on one thread, the mixture
sampled in JavaScript, the frame drawn) and counts `window.worldModel.totalSteps` over a timed window after a
warm-up. `benchmark_web` writes an untrained Doom world model of the paper's sizes in the experiment layout
(`write_untrained_doom_world`: ConvVAE z 64; MDNRNN z 64, action 1, 512 units, 5 mixtures, death output; the full
Doom C; random start frames), exports it and measures its page. The weights do not change the work a step does,
so no training is needed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import keras
import numpy as np

from common.errors import UserError
from common.layout import experiment
from common.paper import DOOM_TEMPERATURE, LSTM_UNITS, NUM_MIXTURES, Z_SIZE
from common.storage import write_npz
from controller.model import Controller
from rnn.model import MDNRNN
from run.export_web import ExportWebConfig, export_web
from run.export_web_browser import browser_missing, open_page, serve_folder, wait_for_steps
from run.export_web_runtime import runtime_missing
from vae.model import ConvVAE

TARGET_STEPS_PER_S = ExportWebConfig.fps  # the rate the page plays at: it should keep up with it
WARMUP_STEPS = 10  # steps before the timed window (the graphs' first runs compile and allocate)


def page_steps_per_s(folder: str | os.PathLike, seconds: float, executable: str | None = None) -> float:
    """Dream steps a second of the exported page in `folder`, uncapped (`?fps=0`), over `seconds` after a warm-up,
    timed by the page's own clock. A page that fails or logs an error raises `UserError`."""
    with serve_folder(folder) as url, open_page(f"{url}?fps=0&seed=0", executable) as (page, errors):
        wait_for_steps(page, WARMUP_STEPS)
        measure = "[window.worldModel.totalSteps, performance.now()]"
        steps_before, before_ms = page.evaluate(measure)
        page.wait_for_timeout(seconds * 1000)
        steps_after, after_ms = page.evaluate(measure)
        failure = page.evaluate("window.worldModel.error") or (errors[0] if errors else None)
    if failure is not None:
        raise UserError(f"the page failed: {failure}")
    return (steps_after - steps_before) / ((after_ms - before_ms) / 1000.0)


def write_untrained_doom_world(exp_dir: str | os.PathLike, z_size: int = Z_SIZE["doom"],
                               hidden_size: int = LSTM_UNITS["doom"], start_frames: int = 64,
                               seed: int = 0) -> Path:
    """An untrained Doom world model in `exp_dir`'s layout, as `run.export_web` reads one: V (`vae/vae.keras`), M
    with the death output (`rnn/rnn.keras`), the full Doom C with small random weights where the export looks for
    the dream-trained one, and random start frames (`series/initial_z.npz`). Returns the experiment folder."""
    keras.utils.set_random_seed(seed)
    layout = experiment(exp_dir)
    layout.vae.mkdir(exist_ok=True)
    ConvVAE(z_size=z_size).save(layout.vae_model)
    layout.rnn.mkdir(exist_ok=True)
    MDNRNN(z_size=z_size, action_size=1, hidden_size=hidden_size, num_mixtures=NUM_MIXTURES,
           predict_done=True).save(layout.rnn_model)
    rng = np.random.default_rng(seed)
    write_npz(layout.initial_z, mu=rng.standard_normal((start_frames, z_size)).astype(np.float32),
              logvar=np.full((start_frames, z_size), -2.0, np.float32))
    controller = Controller("doom", "full", z_size=z_size, hidden_size=hidden_size)
    controller.save(layout.controller_run("doomrnn", "full", DOOM_TEMPERATURE).controller,
                    rng.normal(0.0, 0.1, controller.num_params).astype(np.float32))
    return layout.root


def _missing(executable: str | None) -> str | None:
    """Why the page cannot be exported and opened here, or None."""
    absent = [name for name in ("onnx", "tf2onnx") if importlib.util.find_spec(name) is None]
    if absent:
        return f"the export needs {' and '.join(absent)}: pip install -e .[web]"
    return browser_missing(executable) or runtime_missing()


def benchmark_web(work_dir: str | os.PathLike, seconds: float = 10.0, hidden_size: int = LSTM_UNITS["doom"],
                  executable: str | None = None) -> dict:
    """Exports an untrained paper-size Doom world (`write_untrained_doom_world`; tests shrink `hidden_size`) into
    `work_dir` and measures its page: {"web_page_steps_per_s", "web_page_target_steps_per_s"}, or {"skipped":
    reason} without Chromium, playwright, the export's packages or npm (and no cached runtime)."""
    missing = _missing(executable)
    if missing:
        return {"skipped": missing}
    exp_dir = Path(work_dir) / "web_world"
    shutil.rmtree(exp_dir, ignore_errors=True)
    write_untrained_doom_world(exp_dir, hidden_size=hidden_size)
    page = export_web(exp_dir, ExportWebConfig()).out
    return {"web_page_steps_per_s": page_steps_per_s(page, seconds, executable),
            "web_page_target_steps_per_s": TARGET_STEPS_PER_S}
