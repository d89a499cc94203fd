"""The report's figures: PNGs copied from the experiment (V's reconstructions, each C's CMA-ES curve and score
histogram, every iterative round's) and the dream decoded by V, drawn as a strip and a GIF. Every file the report
links is written into its folder here, so the folder reads complete wherever it is copied or committed.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from common.errors import UserError
from common.layout import ControllerRun, ExperimentLayout
from common.storage import atomic_path
from run.dream_config import DreamConfig
from run.dream_rollout import dream_rollout
from run.dream_video import caption_text, render_frames, write_video
from run.report_data import NOT_RUN, Experiment, exp_dir_argument, is_real_finetune, portable


@dataclasses.dataclass(frozen=True)
class Assets:
    """Writes files into the report folder under per-experiment names (`prefix`, empty for one experiment)."""

    out: Path
    prefix: str = ""

    def path(self, name: str) -> Path:
        return self.out / f"{self.prefix}{name}"

    def copy(self, source: Path, name: str) -> str | None:
        """Copies `source` (if it exists) into the report folder; returns its name there (what a link uses)."""
        if not source.is_file():
            return None
        target = self.path(name)
        if source.resolve() != target.resolve():
            with atomic_path(target, suffix=source.suffix) as tmp:
                shutil.copyfile(source, tmp)
        return target.name


@dataclasses.dataclass(frozen=True)
class DreamSample:
    """How the report's dream is drawn."""

    steps: int = 150  # Doom's ends earlier when M predicts death
    frames: int = 8  # frames shown in the strip
    seed: int = 0


def controller_figures(files: ControllerRun, task: str, assets: Assets,
                       prefix: str = "") -> tuple[str | None, str | None]:
    """A controller's CMA-ES curve and score histogram copied into the report; their names there (or None)."""
    name = files.folder.name
    curve = assets.copy(files.progress_plot, f"{prefix}{name}_progress.png")
    histogram = assets.copy(files.histogram(task), f"{prefix}{name}_histogram.png")
    return curve, histogram


def controller_images(curve: str | None, histogram: str | None, label: str = "") -> str:
    """Markdown embedding a curve and a histogram; 'not run' for a missing one."""
    suffix = f", {label}" if label else ""
    text = f"![CMA-ES progress{suffix}]({curve})\n" if curve else f"Training curve: {NOT_RUN}.\n"
    return text + (f"![score histogram{suffix}]({histogram})\n" if histogram else f"Score histogram: {NOT_RUN}.\n")


def round_figures(layout: ExperimentLayout, task: str, assets: Assets) -> str:
    """The CMA-ES curve and histogram of the C of one iterative round (`layout` is the round's folder)."""
    folder, label = layout.root.name, layout.root.name.replace("_", " ")
    text = ""
    for run_folder in sorted(layout.controller.glob("*/")) if layout.controller.is_dir() else []:
        files = ControllerRun(run_folder)
        if not files.progress_plot.is_file() or is_real_finetune(files):  # a fine-tuning has its own part
            continue
        figures = controller_figures(files, task, assets, prefix=f"{folder}_")
        text += f"#### C after {label}: training and real scores\n\n{controller_images(*figures, label)}\n"
    return text


def dream_section(experiment: Experiment, assets: Assets, sample: DreamSample) -> str:
    """A dream decoded by V (`run.dream`): a strip of frames and a GIF written beside the report; or why none."""
    layout = experiment.layout
    if experiment.env is None or not layout.rnn_model.exists() or not layout.vae_model.exists():
        return f"Dream samples: {NOT_RUN} (needs V and M).\n"
    try:
        rollout = dream_rollout(layout.root, DreamConfig(env=experiment.env, max_steps=sample.steps, seed=sample.seed))
    except UserError as error:
        return f"Dream samples: {NOT_RUN} ({portable(str(error), experiment)}).\n"
    pick = np.unique(np.linspace(0, rollout.steps - 1, min(sample.frames, rollout.steps)).astype(int))
    strip = assets.path("dream_strip.png")
    with atomic_path(strip, suffix=".png") as tmp:
        Image.fromarray(np.concatenate(list(render_frames(rollout.frames[pick], scale=2)), axis=1)).save(tmp)
    doom = experiment.env == "doom"
    captions = [caption_text(t + 1, rollout.temperature, float(p) if doom else None)
                for t, p in enumerate(rollout.death_probabilities)]
    gif = write_video(render_frames(rollout.frames, 2, captions), assets.path("dream.gif"), fps=30)
    end = "M predicted death" if rollout.died else "the step limit"
    steps = ", ".join(str(int(t) + 1) for t in pick)
    return (f"A dream: M's samples at τ {rollout.temperature:g} decoded by V, driven by "
            f"{portable(rollout.driver, experiment)}; {rollout.steps} steps, ended by {end}. Steps {steps}:\n\n"
            f"![dream frames]({strip.name})\n\nThe whole dream: [{gif.name}]({gif.name}). More: "
            f"`python -m run.dream --exp_dir={exp_dir_argument(experiment)} --env={experiment.env} "
            f"--out=dream.gif`.\n")
