"""TensorBoard: the one writer (`common.tensorboard`) and the event files M and C write, read back from disk.
V's are read back in tests/test_vae.py, which has the real rollouts V trains on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from common.layout import experiment
from common.storage import write_npz
from common.tensorboard import HYPERPARAMETERS_TAG, SummaryWriter
from controller.es import ESConfig
from controller.train import ControllerTrainConfig, train_controller
from rnn.train import RNNTrainConfig, train_rnn
from run.benchmark_rnn import write_synthetic_series
from tests.conftest import rigged_doom_rnn


def read_summaries(folder: Path) -> dict[str, list[tuple[int, Any]]]:
    """Every value in `folder`'s event files by tag, [(step, value)]: scalars as floats, text as str, images as
    their (width, height, PNG) strings; read with `tf.compat.v1.train.summary_iterator`, as TensorBoard would."""
    found: dict[str, list[tuple[int, Any]]] = {}
    paths = sorted(Path(folder).glob("events.out.tfevents.*"))
    assert paths, f"no event file in {folder}"
    for path in paths:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                if array.dtype == object:
                    item = array.item().decode() if array.ndim == 0 else list(array)
                else:
                    item = float(array)
                found.setdefault(value.tag, []).append((event.step, item))
    return found


def test_writer_round_trip(tmp_path):
    writer = SummaryWriter(tmp_path / "tensorboard")
    writer.hyperparameters({"batch_size": 100, "path": tmp_path}, step=3)
    writer.scalars(4, {"losses/recon": 1.5, "perf/steps_per_s": 20})
    writer.scalars(8, {"losses/recon": 0.5})
    writer.image("images/sample", np.full((4, 6, 3), 200, np.uint8), step=8)
    writer.close()
    found = read_summaries(tmp_path / "tensorboard")
    assert found["losses/recon"] == [(4, 1.5), (8, 0.5)] and found["perf/steps_per_s"] == [(4, 20.0)]
    [(step, text)] = found[HYPERPARAMETERS_TAG]
    assert step == 3 and '"batch_size": 100' in text
    [(step, (width, height, png))] = found["images/sample"]
    assert (step, width, height) == (8, b"6", b"4") and png.startswith(b"\x89PNG")


@pytest.fixture
def dream_experiment(tmp_path) -> Path:
    """Synthetic Doom series (z 4) with their start frames, and a rigged Doom M for the dream."""
    exp = tmp_path / "exp"
    paths = write_synthetic_series(exp / "series", "doom", episodes=8, z_size=4)
    firsts = [np.load(path) for path in paths]
    write_npz(exp / "series" / "initial_z.npz", mu=np.stack([f["mu"][0] for f in firsts]),
              logvar=np.stack([f["logvar"][0] for f in firsts]))
    (exp / "rnn").mkdir()
    rigged_doom_rnn(z_size=4).save(experiment(exp).rnn_model)
    return exp


def test_m_and_c_write_grouped_tags_into_their_tensorboard_folders(dream_experiment, tmp_path):
    layout = experiment(dream_experiment)
    m_exp = experiment(tmp_path / "m")  # M trains in a folder of its own: C plays the rigged M
    write_synthetic_series(m_exp.series, "doom", episodes=8, z_size=4)
    train_rnn(m_exp.root, RNNTrainConfig(steps=4, batch_size=2, seq_len=10, hidden=8, val_episodes=2, eval_every=2,
                                         log_every=2), verbose=False)
    m_tags = read_summaries(m_exp.tensorboard("rnn"))
    for tag in ("losses/z_nll", "losses/restart", "losses/total", "train/learning_rate", "perf/steps_per_s",
                "perf/sequences_per_s"):
        assert [step for step, _ in m_tags[tag]] == [2, 4], tag
    assert [step for step, _ in m_tags["val/z_nll"]] == [0, 2, 4]
    assert '"hidden": 8' in m_tags[HYPERPARAMETERS_TAG][0][1]
    assert not (m_exp.rnn / "logs").exists()

    config = ControllerTrainConfig(env="doomrnn", es=ESConfig(popsize=4, rollouts=2, generations=2, eval_every=2,
                                                              eval_rollouts=4, seed=1), max_steps=30)
    out = train_controller(layout.root, config, verbose=False)
    run = layout.controller_run("doomrnn", "full", config.temperature)
    assert run.folder == out
    c_tags = read_summaries(run.tensorboard)
    for tag in ("es/best", "es/mean", "es/worst", "es/sigma", "perf/seconds_per_generation"):
        assert [step for step, _ in c_tags[tag]] == [1, 2], tag
    assert [step for step, _ in c_tags["eval/return_mean"]] == [2]
    assert '"popsize": 4' in c_tags[HYPERPARAMETERS_TAG][0][1]
