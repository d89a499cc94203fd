"""Real fine-tuning after the dream (controller.train --real_generations): a CMA-ES run of its own in real
CarRacing, started from the dream's CMA mean, beside the dream run, which stays the dream's alone; a SIGKILL in the
real phase and the resumed run, equal to the uninterrupted one; bad input refused in one line before anything is
written. The pipeline's finetune stage runs in tests/test_carracing_dream.py (carracing_dream_tiny)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common.errors import UserError
from common.flags import ConfigFlags
from common.layout import experiment
from controller.es import ESConfig, load_state
from controller.model import Controller
from controller.train import ControllerTrainConfig, finetune_controller, train_controller
from run.pipeline_config import load_config
from tests.test_carracing_dream import Z, _one_error_line, _run, rigged_carracing_rnn, write_carracing_series
from tests.test_controller_train import _assert_same_trajectory
from vae import ConvVAE
from vae.encode import write_initial_z

REPO = Path(__file__).resolve().parents[1]
DREAM_RUN = "controller/carracingrnn_full_t1"
REAL_RUN = DREAM_RUN + "_real"
# Two generations in the rigged dream, then real CarRacing: 4 candidates x 1 track of 30 steps a generation, the
# CMA mean scored on 2 tracks after every generation, one worker.
CONFIG = ControllerTrainConfig(env="carracingrnn", temperature=1.0, workers=1, max_steps=30,
                               es=ESConfig(popsize=4, rollouts=2, generations=2, eval_every=1, eval_rollouts=4, seed=3),
                               real_popsize=4, real_rollouts=1, real_eval_episodes=2)


def _as_flags(config: ControllerTrainConfig) -> list[str]:
    """`config` as controller.train's command-line flags."""
    return [f"--{name}={value}" for name, value in ConfigFlags(ControllerTrainConfig).values(config).items()
            if value is not None and not isinstance(value, bool)]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The rigged CarRacing dream of test_carracing_dream (M pays for steering left) with an untrained V of its z
    size, so that C plays real tracks too; and CONFIG's dream-only run in it."""
    exp_dir = tmp_path_factory.mktemp("finetune_world")
    layout = experiment(exp_dir)
    write_carracing_series(layout.series, episodes=4)
    write_initial_z(layout.series)
    layout.rnn_model.parent.mkdir(parents=True)
    rigged_carracing_rnn().save(layout.rnn_model)
    layout.vae_model.parent.mkdir(parents=True)
    ConvVAE(z_size=Z).save(layout.vae_model)
    train_controller(exp_dir, CONFIG, verbose=False)
    return exp_dir


def _linked(world: Path, exp: Path, with_dream: bool = False) -> Path:
    """An experiment folder of its own with the world's V, M and series linked in (and a copy of its dream run)."""
    for folder in ("vae", "rnn"):
        (exp / folder).mkdir(parents=True)
    for name in ("series", "vae/vae.keras", "rnn/rnn.keras"):
        os.symlink(world / name, exp / name)
    if with_dream:
        shutil.copytree(world / DREAM_RUN, exp / DREAM_RUN)
    return exp


@pytest.fixture(scope="module")
def finetuned(world, tmp_path_factory) -> Path:
    """An experiment where CONFIG with 2 real generations ran, uninterrupted."""
    exp = _linked(world, tmp_path_factory.mktemp("finetuned") / "exp")
    assert train_controller(exp, dataclasses.replace(CONFIG, real_generations=2), verbose=False) == exp / DREAM_RUN
    return exp


def test_real_generations_fine_tune_the_dreams_c_in_a_run_of_its_own(world, finetuned, capsys):
    exp, dream = finetuned, finetuned / DREAM_RUN
    # the dream's folder holds the dream alone: the same C as the run without fine-tuning
    assert (dream / "controller.json").read_bytes() == (world / DREAM_RUN / "controller.json").read_bytes()
    _assert_same_trajectory(world / DREAM_RUN, dream)
    real = exp / REAL_RUN
    history = json.loads((real / "history.json").read_text())
    assert [len(g["fitness"]) for g in history["generations"]] == [4, 4], "2 generations of real_popsize"
    assert [(e["generation"], e["episodes"]) for e in history["evaluations"]] == [(1, 2), (2, 2)]
    assert all(-3.1 <= e["mean"] < 100 for e in history["evaluations"]), "30 real steps at -0.1 each, plus tiles"
    # the real search started at the dream's CMA mean, with the dream's final step size
    _, dream_params = Controller.load(dream / "controller.json")
    np.testing.assert_array_equal(load_state(real / "es.pkl").strategy.x0, dream_params.astype(np.float64))
    recorded = json.loads((real / "config.json").read_text())
    assert recorded["env"] == "carracing" and recorded["fine_tuned_from"] == "carracingrnn_full_t1"
    assert recorded["es"]["sigma"] == load_state(dream / "es.pkl").strategy.sigma
    assert (recorded["es"]["popsize"], recorded["es"]["rollouts"], recorded["es"]["eval_rollouts"]) == (4, 1, 2)
    controller, params = Controller.load(real / "controller.json")
    assert controller.env == "carracing" and not np.array_equal(params, dream_params), "the real CMA mean moved"
    assert json.loads((real / "controller.json").read_text())["generation"] == 2
    for name in ("best.json", "progress.png"):
        assert (real / name).is_file(), name
    assert list((real / "tensorboard").glob("events.out.tfevents.*"))
    # run again: both are complete, and neither runs a generation more
    capsys.readouterr()
    train_controller(exp, dataclasses.replace(CONFIG, real_generations=2), verbose=True)
    out = capsys.readouterr().out
    assert "already ran 2 generations" in out and "real fine-tuning: " in out and "generation 3" not in out
    assert len(json.loads((real / "history.json").read_text())["generations"]) == 2


def test_a_killed_real_fine_tuning_resumes_on_the_uninterrupted_trajectory(world, finetuned, tmp_path, capsys):
    config = dataclasses.replace(CONFIG, real_generations=2)
    killed = _linked(world, tmp_path / "killed", with_dream=True)
    process = subprocess.Popen([sys.executable, "-m", "controller.train", f"--exp_dir={killed}",
                                *_as_flags(dataclasses.replace(config, real_generations=100))], cwd=REPO,
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    history = killed / REAL_RUN / "history.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if (killed / REAL_RUN / "es.pkl").exists():  # the checkpoint of the first real generation, its last file
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read()[-3000:]
    os.killpg(process.pid, signal.SIGKILL)  # the trainer and its worker
    process.wait()
    process.stderr.close()
    assert len(json.loads(history.read_text())["generations"]) < 2, "killed in the middle of the real phase"
    capsys.readouterr()
    train_controller(killed, config, verbose=True)
    out = capsys.readouterr().out
    assert "controller: " in out and "already ran 2 generations" in out, "the dream is not trained again"
    resumed = re.search(r"real fine-tuning: resuming .* at generation (\d+)", out)
    assert resumed and int(resumed.group(1)) == 2, out
    _assert_same_trajectory(finetuned / REAL_RUN, killed / REAL_RUN)
    assert (killed / DREAM_RUN / "es.pkl").read_bytes() == (world / DREAM_RUN / "es.pkl").read_bytes()


def test_real_generations_in_the_real_game_are_one_line_exit_2_and_write_nothing(world, tmp_path):
    """The other settings give their lines through the same path (run.pipeline's: tests/test_pipeline.py)."""
    exp = _linked(world, tmp_path / "exp")
    line = _one_error_line(_run("controller.train", f"--exp_dir={exp}", "--env=carracing", "--real_generations=2"))
    assert "--real_generations=2: fine-tunes a C trained in a dream (doomrnn or carracingrnn)" in line
    assert not (exp / "controller").exists()


@pytest.mark.parametrize("fields, pipeline_flags, message", [
    ({"real_generations": -1}, {}, "--real_generations=-1: must be >= 0"),
    ({"real_popsize": 1}, {}, "--real_popsize=1: CMA-ES needs at least 2 candidates"),
    ({"real_rollouts": 0}, {}, "--real_rollouts=0: must be at least 1"),
    ({"real_sigma": 0.0}, {}, "--real_sigma=0.0: must be positive"),
    ({"real_eval_episodes": 0}, {}, "--real_eval_episodes=0: must be at least 1"),
    ({"env": "carracing"}, {"controller_env": "carracing"}, "--real_generations=1: fine-tunes a C trained in a dream"),
])
def test_the_real_fine_tunings_settings_are_checked(fields, pipeline_flags, message):
    with pytest.raises(UserError, match=re.escape(message)):
        dataclasses.replace(CONFIG, **{"real_generations": 1, **fields}).validated()
    flags = {"real_generations": 1, **(pipeline_flags or fields)}  # the pipeline checks them before any stage runs
    with pytest.raises(UserError, match=re.escape(message)):
        load_config("carracing_dream_tiny", **flags).resolved().validate_stages()


def test_fine_tuning_without_v_or_without_a_dream_run_is_refused_before_anything_is_written(world, tmp_path):
    exp = _linked(world, tmp_path / "exp")
    (exp / "vae" / "vae.keras").unlink()
    with pytest.raises(UserError, match="vae.keras: missing; real fine-tuning plays the real game"):
        train_controller(exp, dataclasses.replace(CONFIG, real_generations=1), verbose=False)
    assert not (exp / "controller").exists(), "refused before the dream's training, not after it"
    exp = _linked(world, tmp_path / "no_dream")
    dream_run = experiment(exp).controller_run("carracingrnn", "full", 1.0)
    with pytest.raises(UserError, match="controller.json: missing; the real fine-tuning starts from a C trained"):
        finetune_controller(exp, dream_run, dataclasses.replace(CONFIG, real_generations=1), verbose=False)
    assert not (exp / "controller").exists()
