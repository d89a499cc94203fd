"""Extending V, M and C with your own models: one working alternative of each (a beta-VAE V, a GRU M, a C with a
small hidden layer) trained by the usual entry points, dreamt in, played in real Doom and reported, the GRU also
through the iterative round's fine-tuning and the dream audit; the example M of examples/custom_m.py trained by
`python -m rnn.train --rnn=...`; the interfaces checked when a model is built or loaded, with one-line errors
(exit 2) for bad input."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.errors import DataError, UserError
from common.layout import STAGES, experiment
from controller.es import ESConfig
from controller.evaluate import EvaluateConfig, evaluate_controller
from controller.interface import ControllerModel, make_controller
from controller.model import Controller, HiddenLayerController, load_controller
from controller.train import ControllerTrainConfig, train_controller
from envs.dream import DreamDynamics, load_dream
from rnn.interface import build_rnn
from rnn.model import MDNRNN, load_rnn, parameter_count
from rnn.train import RNNTrainConfig, train_rnn
from run.benchmark_rnn import write_synthetic_series
from run.dream_audit import FIXED_POLICIES, dream_fixed_policy
from run.iterate_rounds import rnn_config
from run.pipeline_config import load_config
from run.pipeline_runner import run_pipeline
from run.report import ReportConfig, write_report
from tests.test_tensorboard import read_summaries
from vae.model import ConvVAE, vae_loss
from vae.train import VAETrainConfig, train_vae

REPO = Path(__file__).resolve().parents[1]
DREAM_RUN = Path("controller") / "doomrnn_full_t1.15"
# doom_tiny cut further for these tests: fewer and shorter episodes at Doom's smaller render size, a few V
# steps, a GRU of 64 units, shorter dreams, fewer real episodes, no iterative round (its M step and the audit's
# dream are run on their own below; doom_tiny's whole round runs in tests/test_pipeline.py).
SMALLER = dict(episodes=6, max_steps=300, doom_resolution="320x240", vae_batch_size=50, vae_max_steps=6,
               vae_log_every=2, rnn_hidden=64, rnn_steps=10, rnn_eval_every=5, controller_max_steps=100,
               eval_rollouts=4, eval_episodes=2, iterate_rounds=0)
TINY_RNN = dict(steps=2, batch_size=2, seq_len=8, hidden=16, val_episodes=2, eval_every=2, checkpoint_every=2,
                log_every=2)


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single `error: ...` line a bad input must give, with exit code 2."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


# ---- the alternatives, through the pipeline a user runs ----

@pytest.fixture(scope="module")
def alternatives(tmp_path_factory) -> tuple[Path, list[str]]:
    """`python -m run.pipeline --config=doom_tiny --vae_beta=4 --rnn_cell=gru` from an empty folder (in this
    process, at even smaller sizes): a beta-VAE V and a GRU M, C trained in their dream, played in real Doom, the
    report."""
    exp = tmp_path_factory.mktemp("alternatives") / "exp"
    lines: list[str] = []
    config = load_config("doom_tiny", vae_beta=4, rnn_cell="gru", **SMALLER)
    run_pipeline(exp, config, verbose=False, config_name="doom_tiny", say=lines.append)
    return exp, lines


def test_beta_vae_trains_and_its_latents_are_dreamt_and_played(alternatives):
    exp, lines = alternatives
    assert json.loads((exp / "vae" / "config.json").read_text())["beta"] == 4.0
    logged = read_summaries(exp / "vae" / "tensorboard")
    assert logged["losses/total"], "V logged its losses"
    for (step, total), (_, recon), (_, kl) in zip(logged["losses/total"], logged["losses/recon"],
                                                  logged["losses/kl"]):
        assert total == pytest.approx(recon + 4.0 * kl, rel=1e-4), f"step {step}: the KL term is weighted x4"
    assert ConvVAE(z_size=64).count_params() == 4_446_915, "--beta changes the objective, not the model"
    history = json.loads((exp / DREAM_RUN / "history.json").read_text())
    assert len(history["generations"]) == 2, "C trained in the dream of the beta-VAE's latents"
    real = json.loads((exp / DREAM_RUN / "evaluation_doom.json").read_text())
    assert len(real["scores"]) == 2 and all(1 <= s <= 300 for s in real["scores"]), "and played in real Doom"


def test_gru_m_trains_dreams_plays_is_fine_tuned_audited_and_reported(alternatives, tmp_path):
    exp, lines = alternatives
    for stage in STAGES:
        assert any(f" {stage}: finished in " in line for line in lines), stage
    assert json.loads((exp / "rnn" / "config.json").read_text())["rnn_cell"] == "gru"
    rnn = load_rnn(exp / "rnn" / "rnn.keras")
    assert isinstance(rnn, MDNRNN) and rnn.cell == "gru" and not hasattr(rnn, "lstm")
    units, inputs = 64, 64 + 1 + 1
    assert rnn.hidden_size == units
    head = units * (15 * 64 + 1) + 15 * 64 + 1
    assert parameter_count(rnn) == 3 * units * (inputs + units + 2) + head
    state = rnn.initial_state(3)
    h, c = rnn.advance(tf.zeros([3, 64]), tf.ones([3, 1]), state, tf.ones([3]))
    assert h.shape == (3, units) and not np.any(c), "a GRU's state is (h, 0)"
    real = json.loads((exp / DREAM_RUN / "evaluation_doom.json").read_text())
    assert real["episodes"] == 2, "C trained in the GRU's dream, played in real Doom"
    report = (exp / "report" / "README.md").read_text()
    assert "GRU 64" in report and "LSTM 64" not in report

    iterate = load_config("doom_tiny", rnn_cell="gru", **{**SMALLER, "iterate_rounds": 1}).resolved()
    round_one = rnn_config(experiment(exp), 1, iterate.iterate_config())  # run.iterate's M step for round 1
    scratch = tmp_path / "round_01"
    (scratch / "rnn").mkdir(parents=True)
    (scratch / "series").symlink_to(exp / "series")
    fine_tuned = load_rnn(train_rnn(scratch, dataclasses.replace(round_one, steps=2), verbose=False))
    assert fine_tuned.cell == "gru" and fine_tuned.hidden_size == 64, "the round fine-tunes the GRU of round 0"
    dynamics = load_dream(exp, max_steps=100)
    for policy in FIXED_POLICIES:  # the dream half of run.dream_audit (its game half is the agent above)
        survived = dream_fixed_policy(dynamics, policy, np.arange(2))
        assert survived.shape == (2,) and np.all((survived >= 1) & (survived <= 100)), policy


def test_hidden_layer_c_learns_in_the_dream_plays_real_doom_and_is_reported(rigged_dream, tmp_path):
    """The rigged dream (tests/conftest.py) rewards pressing right: the new C finds it as the paper's does, then
    plays real Doom with the experiment's V and M and appears in the report."""
    exp = tmp_path / "exp"
    (exp / "rnn").mkdir(parents=True)
    for name in ("series", "vae", "rnn/rnn.keras"):
        (exp / name).symlink_to(rigged_dream / name)
    config = ControllerTrainConfig(env="doomrnn", controller="full_hidden", temperature=1.15,
                                   es=ESConfig(popsize=16, rollouts=4, generations=8, eval_every=8,
                                               eval_rollouts=16, seed=5, sigma=0.5))
    out = train_controller(exp, config, verbose=False)
    assert out.name == "doomrnn_full_hidden_t1.15"
    history = json.loads((out / "history.json").read_text())
    assert history["evaluations"][-1]["mean"] > 100, "it learnt to survive the rigged dream"
    controller, params = load_controller(out / "controller.json")
    linear = 64 + 2 * 16  # Doom's C reads [z, c, h] (the rigged M has 16 units), without bias
    assert isinstance(controller, HiddenLayerController) and controller.num_params == linear + 64 * 8 + 8
    assert np.any(params[linear:]), "CMA-ES searched the hidden layer's weights too"
    result = evaluate_controller(exp, EvaluateConfig(env="doom", episodes=2, workers=1, max_steps=100,
                                                     doom_resolution="320x240",
                                                     controller_file=str(out / "controller.json")), verbose=False)
    assert len(result["scores"]) == 2 and all(1 <= s <= 100 for s in result["scores"])
    write_report(ReportConfig(exp_dirs=(str(exp),)))
    report = (exp / "report" / "README.md").read_text()
    assert "doomrnn_full_hidden_t1.15" in report and "the full C plus 8 tanh units on z" in report


# ---- the alternatives' parts, by hand ----

def test_beta_weights_the_clamped_kl_term():
    rng = np.random.default_rng(0)
    images, reconstruction = rng.uniform(size=(2, 2, 64, 64, 3)).astype(np.float32)
    mu, logvar = rng.normal(size=(2, 2, 4)).astype(np.float32)
    recon = np.mean(np.sum((images - reconstruction) ** 2, axis=(1, 2, 3)))
    kl = np.mean(np.maximum(-0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=1), 0.5 * 4))
    total, got_recon, got_kl = (float(x) for x in vae_loss(images, reconstruction, mu, logvar, beta=4.0))
    assert got_recon == pytest.approx(recon, rel=1e-5) and got_kl == pytest.approx(kl, rel=1e-5)
    assert total == pytest.approx(recon + 4.0 * kl, rel=1e-5)


def test_gru_step_api_matches_its_sequence_call_and_round_trips(tmp_path):
    keras.utils.set_random_seed(3)
    model = MDNRNN(z_size=3, action_size=1, hidden_size=8, num_mixtures=2, predict_done=True, cell="gru")
    rng = np.random.default_rng(1)
    inputs = {"z": rng.normal(size=(2, 5, 3)).astype(np.float32), "action": rng.normal(size=(2, 5, 1)).astype(
        np.float32), "restart": np.eye(5, dtype=np.float32)[[0, 2]]}
    outputs, (h, _) = model(inputs)
    state = model.initial_state(2)
    for t in range(5):
        state, params, done_logit = model.step(state, inputs["z"][:, t], inputs["action"][:, t],
                                               inputs["restart"][:, t])
        np.testing.assert_allclose(params.mu, outputs["mu"][:, t], atol=1e-5)
        np.testing.assert_allclose(done_logit, outputs["done_logit"][:, t], atol=1e-5)
    np.testing.assert_allclose(state[0], h, atol=1e-5)
    model.save(tmp_path / "gru.keras")
    loaded = load_rnn(tmp_path / "gru.keras")
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded(inputs)[0]["mu"], outputs["mu"])


def test_models_and_runs_from_before_the_registry_still_load_and_resume(tmp_path):
    """An rnn.keras without the `cell` setting, and a checkpointed run whose config.json lacks `rnn_class` and
    `rnn_cell` (both written before these existed), load and resume as the paper's LSTM; another cell is refused."""
    keras.utils.set_random_seed(5)
    model = MDNRNN(z_size=3, action_size=1, hidden_size=8, num_mixtures=2, predict_done=True)
    model.save(tmp_path / "new.keras")
    with zipfile.ZipFile(tmp_path / "new.keras") as new, zipfile.ZipFile(tmp_path / "old.keras", "w") as old:
        for item in new.infolist():
            data = new.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                del config["config"]["cell"]
                data = json.dumps(config).encode()
            old.writestr(item, data)
    old_model = load_rnn(tmp_path / "old.keras")
    assert old_model.cell == "lstm" and old_model.get_config() == model.get_config()
    for mine, theirs in zip(old_model.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)

    exp = tmp_path / "exp"
    write_synthetic_series(exp / "series", "doom", episodes=6, z_size=4)
    train_rnn(exp, RNNTrainConfig(**{**TINY_RNN, "steps": 1, "checkpoint_every": 1}), verbose=False)
    recorded = json.loads((exp / "rnn" / "config.json").read_text())
    assert (recorded.pop("rnn_class"), recorded.pop("rnn_cell")) == ("rnn.model:MDNRNN", "lstm")
    (exp / "rnn" / "config.json").write_text(json.dumps(recorded))
    with pytest.raises(UserError, match="holds a run with rnn_cell=lstm, not gru; pass --rnn_cell=lstm or --noresume"):
        train_rnn(exp, RNNTrainConfig(**TINY_RNN, rnn_cell="gru"), verbose=False)
    train_rnn(exp, RNNTrainConfig(**TINY_RNN), verbose=False)
    steps = [entry["step"] for entry in json.loads((exp / "rnn" / "validation.json").read_text())]
    assert steps == [0, 1, 2], "resumed at step 1 (a fresh run validates at steps 0 and 2 only)"


def test_hidden_layer_c_acts_as_its_formula_for_one_and_many_parameter_vectors():
    controller = make_controller("full_hidden", "carracing", z_size=4, hidden_size=5)
    assert controller.num_params == (9 * 3 + 3) + (4 * 8 + 8) + 8 * 3
    rng = np.random.default_rng(2)
    params = rng.normal(size=(3, controller.num_params)).astype(np.float32)
    z, h = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32)
    features = controller.features(z, h, None)
    batched = controller.act(params, features).numpy()
    for row in range(3):
        p = params[row]
        w, b, u, d, v = np.split(p, np.cumsum([27, 3, 32, 8]))
        expected = np.tanh(np.concatenate([z[row], h[row]]) @ w.reshape(9, 3) + b
                           + np.tanh(z[row] @ u.reshape(4, 8) + d) @ v.reshape(8, 3))
        np.testing.assert_allclose(batched[row], expected, atol=1e-5)
        np.testing.assert_allclose(controller.act(p, features[row:row + 1])[0], expected, atol=1e-5)
    assert make_controller("full_hidden", "doom").num_params == 1608
    assert [make_controller(name, "carracing").num_params for name in ("full", "z", "z_hidden")] == [867, 99, 1443]


# ---- the example M ----

def test_example_m_trains_by_name_and_runs_in_the_dream_and_the_agent(tmp_path):
    from controller.agent import Agent
    from examples.custom_m import KerasCellM

    exp = tmp_path / "exp"
    write_synthetic_series(exp / "series", "doom", episodes=6, z_size=4)
    flags = [f"--{name}={value}" for name, value in TINY_RNN.items()]
    result = _run("rnn.train", f"--exp_dir={exp}", "--rnn=examples.custom_m:KerasCellM", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "KerasCellM 16" in result.stdout
    rnn = load_rnn(exp / "rnn" / "rnn.keras", expect={"z_size": 4, "predict_done": True})
    assert isinstance(rnn, KerasCellM) and rnn.hidden_size == 16

    controller = Controller("doom", "full", z_size=4, hidden_size=16)
    dynamics = DreamDynamics(rnn, np.zeros((3, 4), np.float32), np.full((3, 4), -2.0, np.float32), max_steps=30)
    returns = dynamics.returns(controller, np.zeros((5, controller.num_params), np.float32), np.arange(5))
    assert returns.shape == (5,) and np.all((returns >= 1) & (returns <= 30))
    agent = Agent(ConvVAE(z_size=4), rnn, controller)
    action, state, z = agent.act(np.zeros((64, 64, 3), np.uint8), agent.initial_state(),
                                 np.zeros(controller.num_params, np.float32), True, (0, 0))
    assert action.shape == (1,) and state[0].shape == (1, 16) and z.shape == (4,)

    given = tmp_path / "given"
    write_synthetic_series(given / "series", "doom", episodes=6, z_size=4)
    train_rnn(given, RNNTrainConfig(**TINY_RNN), verbose=False,
              model=KerasCellM(z_size=4, action_size=1, hidden_size=8, num_mixtures=5, predict_done=True))
    recorded = json.loads((given / "rnn" / "config.json").read_text())
    assert recorded["rnn_class"] == "examples.custom_m:KerasCellM" and recorded["hidden"] == 8
    assert isinstance(build_rnn("keras_cell", z_size=4, action_size=1, hidden_size=8, num_mixtures=5,
                                predict_done=True), KerasCellM), "registered by name once imported"


# ---- bad input ----

BAD_MODELS = '''
import keras

from examples.custom_m import KerasCellM


class NoHeadSplitM(keras.Model):
    """An M that forgot split_head and sample."""

    def __init__(self, z_size=32, action_size=3, hidden_size=256, num_mixtures=5, predict_done=False, **kwargs):
        super().__init__(**kwargs)
        self.z_size, self.action_size, self.hidden_size = z_size, action_size, hidden_size
        self.num_mixtures, self.predict_done = num_mixtures, predict_done
        self.head = keras.layers.Dense(1)

    def initial_state(self, batch):
        return None

    def advance(self, z, action, state, restart=None):
        return state


@keras.saving.register_keras_serializable(package="vanishing")
class VanishingM(KerasCellM):
    """A working M whose module will not be importable where the model is loaded."""
'''


@pytest.fixture
def bad_models(tmp_path, monkeypatch) -> Path:
    """A module `vanishing_models` in its own folder, importable in this process only."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "vanishing_models.py").write_text(textwrap.dedent(BAD_MODELS))
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_a_model_missing_part_of_its_interface_is_one_line_naming_it(bad_models, tmp_path):
    """(rnn.train and every entry point print a UserError as that one line and exit 2: see the last test.)"""
    exp = tmp_path / "exp"
    write_synthetic_series(exp / "series", "doom", episodes=6, z_size=4)
    with pytest.raises(UserError, match=r"^--rnn=vanishing_models:NoHeadSplitM: vanishing_models.NoHeadSplitM is "
                                        r"not an M: it lacks split_head, sample \(see rnn/interface.py\)$"):
        train_rnn(exp, RNNTrainConfig(rnn="vanishing_models:NoHeadSplitM", **TINY_RNN), verbose=False)
    from vanishing_models import NoHeadSplitM

    with pytest.raises(UserError, match=r"train_rnn\(model=...\): .*NoHeadSplitM is not an M: it lacks split_head"):
        train_rnn(exp, RNNTrainConfig(**TINY_RNN), verbose=False, model=NoHeadSplitM(4, 1, 8, 5, True))
    with pytest.raises(UserError, match="train_vae.*Sequential is not a V: it lacks z_size, encode, decode"):
        train_vae(exp, VAETrainConfig(), model=keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    with pytest.raises(UserError, match=r"--controller=builtins:dict: builtins.dict is not a C: it lacks env, "):
        make_controller("builtins:dict", "doom")
    assert ControllerModel  # the protocol the message points to


def test_an_unknown_registered_name_is_one_line_listing_the_known_ones(tmp_path):
    exp = tmp_path / "exp"
    write_synthetic_series(exp / "series", "carracing", episodes=4, z_size=4)
    with pytest.raises(UserError, match="^--rnn=transformer: no M is registered under that name; choose from "
                                        "(.*, )?mdnrnn(, .*)? or give module:Class$"):
        train_rnn(exp, RNNTrainConfig(rnn="transformer", steps=1), verbose=False)  # rnn.train: this line, exit 2
    with pytest.raises(UserError, match="--controller=mlp: no C is registered under that name; choose from full, "
                                        "full_hidden, z, z_hidden or give module:Class"):
        ControllerTrainConfig(controller="mlp").validated()
    with pytest.raises(UserError, match="--controller=mlp: no C is registered"):
        load_config("doom_tiny", controller="mlp").resolved()
    with pytest.raises(UserError, match="--rnn_cell=lstm2: choose from lstm, gru"):
        RNNTrainConfig(rnn_cell="lstm2").resolved("doom")
    with pytest.raises(UserError, match="--rnn_cell=gru: only the MDN-RNN"):
        RNNTrainConfig(rnn="examples.custom_m:KerasCellM", rnn_cell="gru").resolved("doom")
    with pytest.raises(UserError, match="--rnn=examples.nothing:M: cannot import examples.nothing"):
        build_rnn("examples.nothing:M")
    with pytest.raises(UserError, match="--rnn=examples.custom_m:Missing: examples.custom_m has no Missing"):
        build_rnn("examples.custom_m:Missing")
    saved = tmp_path / "c.json"
    saved.write_text(json.dumps({"controller": {"env": "doom", "variant": "mlp", "z_size": 64, "hidden_size": 512},
                                 "params": [0.0]}))
    with pytest.raises(DataError, match="c.json: --controller=mlp: no C is registered under that name"):
        load_controller(saved)


def test_a_saved_model_whose_class_cannot_be_imported_is_one_line_naming_it(bad_models, tmp_path):
    from vanishing_models import VanishingM

    exp = tmp_path / "exp"
    (exp / "rnn").mkdir(parents=True)
    VanishingM(z_size=4, action_size=1, hidden_size=8, num_mixtures=5, predict_done=True).save(
        exp / "rnn" / "rnn.keras")
    assert isinstance(load_rnn(exp / "rnn" / "rnn.keras"), VanishingM), "loads where its module imports"
    line = _one_error_line(_run("controller.train", f"--exp_dir={exp}", "--env=doomrnn", "--generations=1"))
    assert line.startswith("error: ") and line.endswith(
        "rnn/rnn.keras: the M class vanishing_models.VanishingM it holds cannot be imported "
        "(ModuleNotFoundError: No module named 'vanishing_models')")
