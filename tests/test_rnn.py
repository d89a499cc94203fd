"""Tests of M, the MDN-RNN: sizes, the mixture loss and sampling, restart resets, the step API, data layout,
training (validation, best model, resume, NaN guard) and the CLI's errors. Tiny models, real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.errors import DataError, UserError
from common.storage import episode_name, write_npz
from common.training import TrainingInterrupted
from rnn import MDNRNN, load_rnn, mixture_distribution, sample_mixture
from rnn import steps as rnn_steps
from rnn import train as rnn_train
from rnn.data import EpisodeBatches, StreamBatches, load_series
from rnn.model import MixtureParams, done_loss, mixture_nll, parameter_count
from rnn.steps import PaperDecay, make_train_step
from rnn.train import RNNTrainConfig, train_rnn
from run.benchmark_rnn import benchmark_rnn, write_synthetic_series

REPO = Path(__file__).resolve().parents[1]
TINY = dict(steps=12, batch_size=3, seq_len=10, hidden=16, val_episodes=3, eval_every=4, checkpoint_every=4,
            log_every=4, learning_rate=1e-2)


def logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.exp(x - top).sum(axis=axis))


def numpy_mixture_nll(logits, mu, log_sigma, x):
    """-log sum_k pi_k N(x; mu_k, sigma_k), per entry, by hand."""
    log_pi = logits - logsumexp(logits, -1)[..., None]
    sigma = np.exp(log_sigma)
    log_normal = -0.5 * ((x[..., None] - mu) / sigma) ** 2 - log_sigma - 0.5 * np.log(2 * np.pi)
    return -logsumexp(log_pi + log_normal, -1)


def make_exp(tmp_path: Path, env: str, episodes: int = 12, name: str = "exp", **kwargs) -> Path:
    exp = tmp_path / name
    write_synthetic_series(exp / "series", env, episodes, **kwargs)
    return exp


# ---- model ----

@pytest.mark.parametrize("kwargs, count", [
    (dict(z_size=32, action_size=3, hidden_size=256, num_mixtures=5, predict_done=False), 422_368),
    (dict(z_size=64, action_size=1, hidden_size=512, num_mixtures=5, predict_done=True), 1_678_785),
])
def test_paper_parameter_counts(kwargs, count):
    model = MDNRNN(**kwargs)
    assert model.count_params() == count == parameter_count(model)
    assert model.input_size == kwargs["z_size"] + kwargs["action_size"] + int(kwargs["predict_done"])
    assert model.head.units == 15 * kwargs["z_size"] + int(kwargs["predict_done"])


def test_mixture_nll_matches_hand_computed():
    rng = np.random.default_rng(0)
    logits, mu = rng.normal(size=(2, 3, 2, 5)), rng.normal(size=(2, 3, 2, 5))
    log_sigma, x = rng.normal(size=(2, 3, 2, 5)) * 0.5, rng.normal(size=(2, 3, 2))
    mask = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    expected = numpy_mixture_nll(logits, mu, log_sigma, x)
    params = MixtureParams(*(tf.constant(a, tf.float32) for a in (logits, mu, log_sigma)))
    np.testing.assert_allclose(float(mixture_nll(params, x.astype(np.float32))), expected.mean(), rtol=1e-5)
    masked = (expected * mask[..., None]).sum() / (mask.sum() * 2)
    np.testing.assert_allclose(float(mixture_nll(params, x.astype(np.float32), mask)), masked, rtol=1e-5)
    # Unnormalised logits give the same density: the distribution normalises them.
    np.testing.assert_allclose(float(mixture_nll(params._replace(logits=params.logits + 3.0), x)), expected.mean(),
                               rtol=1e-5)
    logit, target = rng.normal(size=(2, 3)), (rng.random((2, 3)) < 0.3).astype(np.float32)
    ce = -(10 * target * np.log(1 / (1 + np.exp(-logit))) + (1 - target) * np.log(1 - 1 / (1 + np.exp(-logit))))
    np.testing.assert_allclose(float(done_loss(tf.constant(logit, tf.float32), target)), ce.mean(), rtol=1e-5)


def test_model_loss_is_the_mixture_nll_of_its_head():
    """The training loss on a batch equals the hand-computed NLL of the next z under the head's outputs, split
    per dimension as [log pi (K), mu (K), log sigma (K)] and masked where the target is not a real next frame."""
    keras.utils.set_random_seed(1)
    model = MDNRNN(z_size=2, action_size=1, hidden_size=8, num_mixtures=3, predict_done=True)
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 6, 2)).astype(np.float32)
    batch = {"mu": z, "logvar": np.full_like(z, -60.0), "action": rng.normal(size=(2, 5, 1)).astype(np.float32),
             "restart": np.zeros((2, 5), np.float32), "done": np.zeros((2, 5), np.float32),
             "z_mask": np.array([[1, 1, 1, 0, 1], [1, 1, 0, 0, 0]], np.float32),
             "step_mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.float32)}
    batch["done"][0, 3] = 1.0
    sums, _ = rnn_steps.loss_sums(model, {k: tf.constant(v) for k, v in batch.items()}, tf.constant([0, 0]))
    losses = rnn_steps.mean_losses(sums)

    x = np.concatenate([z[:, :-1], batch["action"], batch["restart"][..., None]], -1)
    kernel, recurrent, bias = (w.numpy() for w in model.lstm.weights)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h, c, hs = np.zeros((2, 8)), np.zeros((2, 8)), []
    for t in range(5):
        i, f, g, o = np.split(x[:, t] @ kernel + h @ recurrent + bias, 4, -1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        hs.append(h)
    out = np.stack(hs, 1) @ model.head.kernel.numpy() + model.head.bias.numpy()  # (2, 5, 19)
    mixture = out[..., :18].reshape(2, 5, 2, 3, 3)
    nll = numpy_mixture_nll(mixture[..., 0, :], mixture[..., 1, :], mixture[..., 2, :], z[:, 1:])
    expected_z = (nll * batch["z_mask"][..., None]).sum() / (batch["z_mask"].sum() * 2)
    logit, target = out[..., 18], batch["done"]
    ce = -(10 * target * np.log(sigmoid(logit)) + (1 - target) * np.log(1 - sigmoid(logit)))
    expected_restart = (ce * batch["step_mask"]).sum() / batch["step_mask"].sum()
    np.testing.assert_allclose(float(losses["z_nll"]), expected_z, rtol=1e-4)
    np.testing.assert_allclose(float(losses["restart"]), expected_restart, rtol=1e-4)
    np.testing.assert_allclose(float(losses["total"]), expected_z + expected_restart, rtol=1e-4)


def test_fit_recovers_a_known_1d_mixture():
    """Teacher forcing on i.i.d. draws of a 3-component mixture: the head learns its weights, means, scales."""
    weights, means, scales = np.array([0.2, 0.5, 0.3]), np.array([-2.0, 0.0, 3.0]), np.array([0.3, 0.5, 0.2])
    rng = np.random.default_rng(0)

    def batch(rows: int = 32, steps: int = 16) -> dict[str, np.ndarray]:
        k = rng.choice(3, size=(rows, steps + 1), p=weights)
        z = rng.normal(means[k], scales[k]).astype(np.float32)[..., None]
        return {"mu": z, "logvar": np.full_like(z, -40.0), "action": np.zeros((rows, steps, 1), np.float32),
                "restart": np.zeros((rows, steps), np.float32), "done": np.zeros((rows, steps), np.float32),
                "z_mask": np.ones((rows, steps), np.float32), "step_mask": np.ones((rows, steps), np.float32)}

    x = batch(64)["mu"].ravel().astype(np.float64)
    true_nll = numpy_mixture_nll(np.log(weights), means, np.log(scales), x).mean()
    config = RNNTrainConfig(learning_rate=0.05, min_learning_rate=1e-3).resolved("carracing")
    for seed in (0, 1, 2):  # restarts, as for any mixture fit: gradient descent can merge two components
        keras.utils.set_random_seed(seed)
        model = MDNRNN(z_size=1, action_size=1, hidden_size=8, num_mixtures=3)
        optimizer = keras.optimizers.Adam(PaperDecay(0.05, 1e-3, 0.999))
        optimizer.build(model.trainable_variables)
        train_step = make_train_step(model, optimizer, tf.Variable(0, dtype=tf.int64), None, config)
        for _ in range(600):
            train_step(batch())
        test = batch(64)
        outputs, _ = model({"z": test["mu"][:, :-1], "action": test["action"]})
        fitted_nll = numpy_mixture_nll(outputs["logits"].numpy(), outputs["mu"].numpy(),
                                       outputs["log_sigma"].numpy(), test["mu"][:, 1:]).mean()
        if fitted_nll < true_nll + 0.05:
            break
    order = np.argsort(outputs["mu"].numpy().reshape(-1, 3).mean(0))
    pi = np.exp(outputs["logits"].numpy().reshape(-1, 3))[:, order]
    mu = outputs["mu"].numpy().reshape(-1, 3)[:, order]
    sigma = np.exp(outputs["log_sigma"].numpy().reshape(-1, 3))[:, order]
    np.testing.assert_allclose(pi.mean(0), weights, atol=0.04)
    np.testing.assert_allclose(mu.mean(0), means, atol=0.15)
    np.testing.assert_allclose(sigma.mean(0), scales, rtol=0.15)
    assert fitted_nll < true_nll + 0.05


def test_temperature_sampling():
    logits = np.log(np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]], np.float32))[None]  # (1, Z=2, K=3)
    mu = np.array([[[-3.0, 1.0, 5.0], [4.0, -4.0, 0.0]]], np.float32)
    log_sigma = np.log(np.full((1, 2, 3), 0.5, np.float32))
    params = MixtureParams(*(np.repeat(a, 20_000, 0) for a in (logits, mu, log_sigma)))
    cold = sample_mixture(params, 1e-6, [1, 2]).numpy()
    np.testing.assert_allclose(cold, np.broadcast_to([1.0, 4.0], cold.shape), atol=1e-2)  # the likeliest means
    assert sample_mixture(params, 0.0, [1, 2]).numpy() == pytest.approx(cold, abs=1e-2)
    # At tau = 1 each dimension picks its own component with the mixture's weights.
    picks = sample_mixture(params, 1.0, [3, 4]).numpy()
    assert np.mean(np.abs(picks[:, 0] - 5.0) < 1.5) == pytest.approx(0.3, abs=0.02)
    assert np.mean(np.abs(picks[:, 1] - 4.0) < 2.0) == pytest.approx(0.5, abs=0.02)
    # One dominant component: the spread grows as sigma * sqrt(tau).
    single = params._replace(logits=np.repeat(np.array([[[0.0, -1e4, -1e4]] * 2], np.float32), 20_000, 0))
    for tau in (0.25, 1.0, 2.0):
        draws = sample_mixture(single, tau, tf.random.Generator.from_seed(5)).numpy()
        np.testing.assert_allclose(draws.std(0), 0.5 * np.sqrt(tau), rtol=0.03)
        np.testing.assert_allclose(draws.mean(0), [-3.0, 4.0], atol=0.03)
    # The distribution applies tau to the logits: softmax(logits / tau).
    dist = mixture_distribution(*(tf.constant(a) for a in (logits, mu, log_sigma)), temperature=2.0)
    probs = dist.mixture_distribution.probs_parameter().numpy()[0, 0]
    np.testing.assert_allclose(probs, np.sqrt([0.1, 0.6, 0.3]) / np.sqrt([0.1, 0.6, 0.3]).sum(), rtol=1e-5)


def test_restart_zeroes_the_state_mid_sequence():
    keras.utils.set_random_seed(2)
    model = MDNRNN(z_size=3, action_size=1, hidden_size=16, num_mixtures=2, predict_done=True)
    rng = np.random.default_rng(2)
    z, a = rng.normal(size=(2, 12, 3)).astype(np.float32), rng.normal(size=(2, 12, 1)).astype(np.float32)
    restart = np.zeros((2, 12), np.float32)
    restart[:, 0] = restart[:, 7] = 1.0
    full, _ = model({"z": z, "action": a, "restart": restart},
                    initial_state=tuple(tf.constant(rng.normal(size=(2, 16)), tf.float32) for _ in range(2)))
    tail, _ = model({"z": z[:, 7:], "action": a[:, 7:], "restart": restart[:, 7:]})
    for key in ("mu", "log_sigma", "logits", "done_logit"):
        np.testing.assert_allclose(full[key][:, 7:], tail[key], atol=1e-6)
    no_reset, _ = model({"z": z, "action": a, "restart": np.eye(12, dtype=np.float32)[[0, 0]]})
    assert np.abs(no_reset["mu"][:, 7:] - tail["mu"]).max() > 1e-3  # without the flag the past leaks in


@pytest.mark.parametrize("predict_done", [False, True])
def test_step_api_matches_the_sequence_call(predict_done):
    keras.utils.set_random_seed(3)
    model = MDNRNN(z_size=4, action_size=2, hidden_size=16, num_mixtures=3, predict_done=predict_done)
    rng = np.random.default_rng(3)
    z, a = rng.normal(size=(5, 6, 4)).astype(np.float32), rng.normal(size=(5, 6, 2)).astype(np.float32)
    restart = (rng.random((5, 6)) < 0.3).astype(np.float32)
    outputs, final = model({"z": z, "action": a, "restart": restart})
    state = model.initial_state(5)
    flags = (lambda t: restart[:, t]) if predict_done else (lambda t: None)
    for t in range(6):
        advanced = model.next_state(z[:, t], a[:, t], state, flags(t))
        state, params, done_logit = model.step(state, z[:, t], a[:, t], flags(t))
        np.testing.assert_allclose(advanced[0], state[0], atol=1e-6)
        for key, value in params._asdict().items():
            np.testing.assert_allclose(value, outputs[key][:, t], atol=1e-5)
        if predict_done:
            np.testing.assert_allclose(done_logit, outputs["done_logit"][:, t], atol=1e-5)
        else:
            assert done_logit is None
    np.testing.assert_allclose(state[1], final[1], atol=1e-5)
    # Batch 1 and batch 1,024 through the same compiled functions; logsumexp of log pi is 0.
    big = model.step(model.initial_state(1024), np.zeros((1024, 4), np.float32), np.zeros((1024, 2), np.float32),
                     np.ones(1024, np.float32) if predict_done else None)
    assert big[1].mu.shape == (1024, 4, 3)
    np.testing.assert_allclose(tf.reduce_logsumexp(big[1].logits, -1), 0.0, atol=1e-5)
    assert sample_mixture(big[1], 1.15, tf.random.Generator.from_seed(0)).shape == (1024, 4)

    @tf.function(jit_compile=True)
    def dream_step(z, action, h, c, restart, seed):  # the pure parts, built into someone else's compiled step
        state = model.advance(z, action, (h, c), restart)
        params, done_logit = model.split_head(model.head(state[0]))
        return state, model.sample(params, 1.15, seed)

    restart_t = tf.constant(restart[:, 0]) if predict_done else None
    state, z_next = dream_step(z[:, 0], a[:, 0], *model.initial_state(5), restart_t, tf.constant([1, 2]))
    np.testing.assert_allclose(state[0], model.next_state(z[:, 0], a[:, 0], model.initial_state(5), restart_t)[0],
                               atol=1e-5)
    assert z_next.shape == (5, 4) and np.all(np.isfinite(z_next))


def test_save_load_and_load_errors(tmp_path):
    keras.utils.set_random_seed(4)
    model = MDNRNN(z_size=3, action_size=1, hidden_size=8, num_mixtures=2, predict_done=True)
    path = tmp_path / "rnn.keras"
    rnn_steps.save_model(model, path)
    loaded = load_rnn(path, expect={"z_size": 3, "predict_done": True})
    inputs = {"z": np.ones((2, 4, 3), np.float32), "action": np.ones((2, 4, 1), np.float32),
              "restart": np.eye(4, dtype=np.float32)[[0, 2]]}
    for key, value in model(inputs)[0].items():
        np.testing.assert_array_equal(value, loaded(inputs)[0][key])
    assert loaded.get_config() == model.get_config()
    state = loaded.next_state(np.ones((1, 3), np.float32), np.ones((1, 1), np.float32), loaded.initial_state(1),
                              np.ones(1, np.float32))
    np.testing.assert_array_equal(state[0], model.next_state(np.ones((1, 3), np.float32),
                                                             np.ones((1, 1), np.float32), model.initial_state(1),
                                                             np.ones(1, np.float32))[0])

    with pytest.raises(DataError, match="z_size=3, expected 64"):
        load_rnn(path, expect={"z_size": 64})
    with pytest.raises(DataError, match="missing.keras: file not found"):
        load_rnn(tmp_path / "missing.keras")
    (tmp_path / "corrupt.keras").write_bytes(b"not a zip archive")
    with pytest.raises(DataError, match="corrupt.keras: not a loadable Keras model"):
        load_rnn(tmp_path / "corrupt.keras")
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(DataError, match="other.keras: holds a Sequential, not an MDNRNN"):
        load_rnn(tmp_path / "other.keras")


# ---- data ----

def test_stream_batches_continue_across_chunks(tmp_path):
    """Frames carry their (episode, index) in mu: chunks continue one another, restart flags sit on first
    frames, the z target is masked and the death target set where the next frame is another episode."""
    lengths = [9, 14, 6, 11, 8, 12]
    for e, n in enumerate(lengths):
        mu = np.stack([np.full(n, e), np.arange(n)], 1).astype(np.float32)
        done = np.arange(n) == n - 1
        write_npz(tmp_path / episode_name(e), mu=mu, logvar=np.zeros_like(mu), action=mu[:, :1].copy(),
                  reward=np.ones(n, np.float32), done=done, seed=np.int64(e), env=np.str_("doom"))
    data = load_series(tmp_path)
    batches = StreamBatches(data, np.arange(6), batch_size=2, seq_len=5, seed=0)
    steps, step = [], 0
    while batches.position(step)[0] == 0:
        steps.append(batches.batch(step))
        step += 1
    assert len(steps) >= 3  # 60 frames in 2 streams: at least (25 - 1) // 5 chunks
    assert batches.is_epoch_start(0) and not batches.is_epoch_start(1) and batches.is_epoch_start(len(steps))
    seen = set()
    for row in range(2):
        frames = np.concatenate([steps[0]["mu"][row, :1]] + [b["mu"][row, 1:] for b in steps])  # continuous
        restart = np.concatenate([b["restart"][row] for b in steps])
        done = np.concatenate([b["done"][row] for b in steps])
        z_mask = np.concatenate([b["z_mask"][row] for b in steps])
        first = np.r_[True, frames[1:, 0] != frames[:-1, 0]]
        np.testing.assert_array_equal(restart, first[:-1])
        np.testing.assert_array_equal(frames[first, 1], 0)  # whole episodes from their first frame
        np.testing.assert_array_equal(np.diff(frames[:, 1])[~first[1:]], 1)  # consecutive within an episode
        np.testing.assert_array_equal(done, first[1:])
        np.testing.assert_array_equal(z_mask, ~first[1:])
        seen |= set(frames[:, 0].astype(int).tolist())
    assert len(seen) >= 4  # the streams are dealt different episodes
    for b in steps:
        np.testing.assert_array_equal(b["action"][..., 0], b["mu"][:, :-1, 0])
    assert batches.position(len(steps) + 1) == (1, 1)


def test_episode_batches_pad_and_mask(tmp_path):
    write_synthetic_series(tmp_path, "carracing", episodes=3, length=(5, 5), z_size=2)
    data = load_series(tmp_path)
    batch = EpisodeBatches(data, np.arange(3), batch_size=4, seq_len=8, seed=0).batch(0)
    assert batch["mu"].shape == (4, 9, 2) and batch["action"].shape == (4, 8, 3)
    np.testing.assert_array_equal(batch["z_mask"][:, :4], 1)
    np.testing.assert_array_equal(batch["z_mask"][:, 4:], 0)
    np.testing.assert_array_equal(batch["step_mask"][:, :5], 1)
    np.testing.assert_array_equal(batch["done"][:, 4], 1)  # the last frame's death target counts
    np.testing.assert_array_equal(batch["mu"][:, 5:], 0)
    window = EpisodeBatches(data, np.arange(3), batch_size=2, seq_len=3, seed=0).batch(7)
    np.testing.assert_array_equal(window["z_mask"], 1)  # a window inside an episode: every target is real


# ---- training ----

@pytest.fixture(scope="module", params=["doom", "carracing"])
def trained(request, tmp_path_factory):
    exp = make_exp(tmp_path_factory.mktemp(f"trained_{request.param}"), request.param, episodes=12)
    train_rnn(exp, RNNTrainConfig(**TINY), verbose=False)
    return exp, request.param


def test_training_lowers_validation_nll(trained):
    exp, env = trained
    history = json.loads((exp / "rnn" / "validation.json").read_text())
    assert [h["step"] for h in history] == [0, 4, 8, 12]
    assert history[-1]["z_nll"] < history[0]["z_nll"] - 0.3
    if env == "doom":
        assert history[-1]["restart"] < history[0]["restart"]
    else:
        assert all(h["restart"] == 0.0 for h in history)


def test_best_model_is_the_lowest_validation_loss(trained):
    exp, env = trained
    history = json.loads((exp / "rnn" / "validation.json").read_text())
    best = json.loads((exp / "rnn" / "best.json").read_text())
    assert best["step"] == min(history, key=lambda h: h["total"])["step"]
    model = load_rnn(exp / "rnn" / "rnn.keras", expect={"predict_done": env == "doom", "hidden_size": 16})
    data = load_series(exp / "series")
    split = json.loads((exp / "rnn" / "split.json").read_text())["validation"]
    val = [i for i, f in enumerate(data.files) if f.name in split]
    again = rnn_steps.evaluate(rnn_steps.make_eval_step(model), EpisodeBatches(data, val, 3, 10, 0), seed=0)
    assert again["total"] == pytest.approx(best["total"], abs=1e-5)


def test_best_checkpoint_and_early_stop_follow_validation(tmp_path, monkeypatch):
    """Scripted validation losses: the saved model is the one at the lowest, and training stops once the
    death loss has not improved for `early_stop_patience` validations."""
    exp = make_exp(tmp_path, "doom")
    scripted = iter([(3.0, 0.9), (2.0, 0.3), (1.5, 0.4), (1.0, 0.5), (1.4, 0.6), (0.1, 0.1)])

    def fake_evaluate(eval_step, batches, seed):
        z_nll, restart = next(scripted)
        return {"z_nll": z_nll, "restart": restart, "total": z_nll + restart}

    monkeypatch.setattr(rnn_train, "evaluate", fake_evaluate)
    config = RNNTrainConfig(**{**TINY, "steps": 40, "eval_every": 2, "checkpoint_every": 2},
                            early_stop_patience=3)
    train_rnn(exp, config, verbose=False)
    history = json.loads((exp / "rnn" / "validation.json").read_text())
    assert [h["step"] for h in history] == [0, 2, 4, 6, 8]  # best death loss at 2, then 3 worse: stop at 8
    best = json.loads((exp / "rnn" / "best.json").read_text())
    assert best["step"] == 6 and best["total"] == pytest.approx(1.5)  # the lowest total validation loss
    checkpoints = exp / "rnn" / "checkpoints"
    assert tf.train.latest_checkpoint(checkpoints).endswith("ckpt-8")
    saved = load_rnn(exp / "rnn" / "rnn.keras")
    for step, same in ((6, True), (8, False)):  # rnn.keras holds the weights of step 6, not the last ones
        model = MDNRNN(z_size=4, action_size=1, hidden_size=16, predict_done=True)
        tf.train.Checkpoint(model=model).restore(str(checkpoints / f"ckpt-{step}")).expect_partial()
        assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(model.weights, saved.weights)) == same
    train_rnn(exp, config, verbose=False)  # the same command again: already stopped, no more training
    assert tf.train.latest_checkpoint(checkpoints).endswith("ckpt-8")
    assert len(json.loads((exp / "rnn" / "validation.json").read_text())) == 5


@pytest.mark.parametrize("env", ["doom", "carracing"])
def test_interrupt_then_resume_gives_the_same_model(tmp_path, monkeypatch, capsys, env):
    """Streams carry the LSTM state across chunks: a run stopped at step 5 and resumed ends where an
    uninterrupted run does (same weights, Adam state, data position and carried state)."""
    straight = make_exp(tmp_path, env, name="straight")
    resumed = make_exp(tmp_path, env, name="resumed")
    config = RNNTrainConfig(**{**TINY, "eval_every": 100, "checkpoint_every": 100})
    train_rnn(straight, config, verbose=False)

    class StopAt5(rnn_train.Progress):
        def update(self, n=1, rate_count=None, **extra):
            super().update(n, rate_count, **extra)
            if self.done == 5:
                raise KeyboardInterrupt

    monkeypatch.setattr(rnn_train, "Progress", StopAt5)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 5 of 12"):
        train_rnn(resumed, config, verbose=False)
    assert tf.train.latest_checkpoint(resumed / "rnn" / "checkpoints").endswith("ckpt-5")
    monkeypatch.undo()
    capsys.readouterr()
    train_rnn(resumed, config, verbose=True)
    printed = capsys.readouterr().out
    assert "rnn: resuming at step 5 from" in printed and "rnn: 12/12 steps, 21 sequences" in printed  # 7 steps
    a, b = load_rnn(straight / "rnn" / "rnn.keras"), load_rnn(resumed / "rnn" / "rnn.keras")
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-6)
    assert tf.train.latest_checkpoint(resumed / "rnn" / "checkpoints").endswith("ckpt-12")


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    exp = make_exp(tmp_path, "doom")
    config = RNNTrainConfig(**{**TINY, "steps": 4})
    train_rnn(exp, config, verbose=False)
    checkpoints = exp / "rnn" / "checkpoints"
    before = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
    for path in sorted((exp / "series").glob("ep*.npz")):  # finite in the file, but exp(200 / 2) overflows
        arrays = dict(np.load(path))
        arrays["logvar"][:] = 200.0
        write_npz(path, **arrays)
    with pytest.raises(UserError, match=r"non-finite loss at step 5 .*ckpt-4\) is kept"):
        train_rnn(exp, RNNTrainConfig(**{**TINY, "steps": 8}), verbose=False)
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == before


def test_training_on_real_doom_series(request, tmp_path):
    """A short run on series V encoded from real Take Cover episodes lowers the validation NLL."""
    doom_series = request.getfixturevalue("doom_series")
    exp = tmp_path / "exp"
    shutil.copytree(doom_series / "series", exp / "series")
    config = RNNTrainConfig(steps=30, batch_size=2, seq_len=32, hidden=32, val_episodes=1, eval_every=15,
                            checkpoint_every=30, learning_rate=3e-3)
    train_rnn(exp, config, verbose=False)
    history = json.loads((exp / "rnn" / "validation.json").read_text())
    assert history[-1]["z_nll"] < history[0]["z_nll"] - 0.1  # measured: 1.92 -> 1.66 nats per dimension
    assert history[-1]["restart"] < history[0]["restart"]  # measured: 0.77 -> 0.27
    model = load_rnn(exp / "rnn" / "rnn.keras", expect={"z_size": 64, "action_size": 1, "predict_done": True})
    assert model.hidden_size == 32


def test_validation_pattern_holds_out_only_matching_episodes(tmp_path):
    exp = make_exp(tmp_path, "doom", episodes=12)
    files = sorted((exp / "series").glob("*.npz"))
    for path in files[:8]:  # as an iterate round links in earlier rounds' episodes
        path.rename(path.with_name("ep_r00_" + path.name))
    train_rnn(exp, RNNTrainConfig(**{**TINY, "steps": 4, "val_episodes": 2}, val_pattern="ep[0-9]*.npz"),
              verbose=False)
    validation = json.loads((exp / "rnn" / "split.json").read_text())["validation"]
    assert len(validation) == 2 and set(validation) <= {path.name for path in files[8:]}
    with pytest.raises(UserError, match="--val_pattern=new_\\*: matches 0"):
        train_rnn(exp, RNNTrainConfig(**TINY, val_pattern="new_*", resume=False), verbose=False)


def test_bad_series_folders(tmp_path):
    with pytest.raises(DataError, match="series: no series files"):
        train_rnn(tmp_path / "empty", RNNTrainConfig(**TINY), verbose=False)
    exp = make_exp(tmp_path, "doom", episodes=3)
    write_synthetic_series(exp / "series", "carracing", episodes=1, z_size=4)  # overwrites ep000000
    with pytest.raises(DataError, match="ep000001.npz: env doom with z 4, action 1 differs from ep000000.npz"):
        train_rnn(exp, RNNTrainConfig(**TINY), verbose=False)
    exp = make_exp(tmp_path, "doom", episodes=3, name="nan")
    arrays = dict(np.load(exp / "series" / "ep000001.npz"))
    arrays["mu"][3, 1] = np.nan
    write_npz(exp / "series" / "ep000001.npz", **arrays)
    with pytest.raises(DataError, match="ep000001.npz: 'mu' has NaN or infinite values"):
        train_rnn(exp, RNNTrainConfig(**TINY), verbose=False)


def test_cli_reports_a_corrupt_series_file_in_one_line(tmp_path):
    exp = make_exp(tmp_path, "doom", episodes=3)
    (exp / "series" / "ep000001.npz").write_bytes(b"truncated")
    result = subprocess.run([sys.executable, "-m", "rnn.train", f"--exp_dir={exp}", "--steps=2"], cwd=REPO,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "ep000001.npz: corrupt or truncated .npz file" in last
    assert "Traceback" not in result.stderr


def test_benchmark_reports_speeds(tmp_path):
    tiny = {"episodes": 12, "length": (30, 60), "batch_size": 4, "seq_len": 20, "z_size": 8}
    result = benchmark_rnn(tmp_path, doom={**tiny, "hidden": 32}, carracing={**tiny, "hidden": 16}, steps=3,
                           dream_batch=64)
    for key in ("rnn_doom_step_s", "rnn_reference_step_s", "rnn_doom_in_memory_step_s", "rnn_carracing_step_s",
                "rnn_carracing_reference_step_s", "next_state_ms_batch1", "dream_steps_per_s"):
        assert 0 < result[key] < float("inf"), key
    assert result["rnn_doom_vs_reference_ratio"] == result["rnn_reference_step_s"] / result["rnn_doom_step_s"]
    assert (tmp_path / "series_doom").is_dir() and (tmp_path / "series_carracing").is_dir()


def test_an_episode_cut_by_the_step_cap_is_not_a_death(tmp_path):
    from common.storage import read_series, write_npz
    from rnn.data import StreamBatches, load_series
    from run.benchmark_rnn import write_synthetic_series

    paths = write_synthetic_series(tmp_path, env="doom", episodes=2, length=(30, 30))
    capped = read_series(paths[1])
    write_npz(paths[1], truncated=np.bool_(True), **capped)
    data = load_series(tmp_path)
    assert data.done[29] and not data.done[59], "the first episode died; the second hit the cap"
    streams = StreamBatches(data, np.arange(2), batch_size=1, seq_len=59, seed=0)
    batch = streams.batch(0)
    np.testing.assert_array_equal(np.flatnonzero(batch["restart"][0]), [0, 30])
    died_first = np.array_equal(batch["mu"][0, 0], data.mu[0])  # the dealt order is a seeded permutation
    # Only the boundary after the died episode carries a death target; the capped one's boundary does not.
    np.testing.assert_array_equal(np.flatnonzero(batch["done"][0]), [29] if died_first else [])


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.5])
def test_fast_sampler_draws_the_tfp_mixture(temperature):
    """`sample_mixture` (Gumbel-max choice) and `mixture_distribution(...).sample` agree in distribution."""
    from scipy import stats

    logits = tf.math.log(tf.constant([[[0.6, 0.3, 0.1]]]))
    mu, log_sigma = tf.constant([[[-2.0, 0.5, 3.0]]]), tf.math.log(tf.constant([[[0.3, 0.5, 0.2]]]))
    batch = lambda t: tf.tile(t, [4000, 1, 1])  # noqa: E731
    fast = sample_mixture(MixtureParams(batch(logits), batch(mu), batch(log_sigma)), temperature,
                          [7, 8]).numpy().ravel()
    reference = mixture_distribution(logits[0, 0], mu[0, 0], log_sigma[0, 0], temperature).sample(
        4000, seed=[9, 10]).numpy().ravel()
    assert stats.ks_2samp(fast, reference).pvalue > 0.001


def _scan_over_projected_inputs(lstm, x, keep, initial_state):
    """ResettableLSTM.call before the speed-up (one projection of the whole sequence, then tf.scan), kept here
    to prove the faster unroll computes the same thing."""
    projected = tf.einsum("bti,ij->tbj", x, lstm.kernel) + lstm.bias
    keep = tf.transpose(keep)[:, :, None]
    recurrent_kernel = tf.convert_to_tensor(lstm.recurrent_kernel)

    def body(state, inputs):
        (h, c), (projected_t, keep_t) = state, inputs
        return lstm._cell(projected_t, h * keep_t, c * keep_t, recurrent_kernel)

    hs, cs = tf.scan(body, (projected, keep), initializer=initial_state)
    return tf.transpose(hs, [1, 0, 2]), (hs[-1], cs[-1])


def test_faster_unroll_gives_the_same_loss_and_gradients_as_before(tmp_path):
    """M's training loss on a real Doom-shaped batch (restarts mid-chunk, a carried state) and every gradient
    equal those of the previous implementation."""
    from rnn.steps import loss_sums, mean_losses

    write_synthetic_series(tmp_path, env="doom", episodes=10, length=(15, 40), z_size=6)
    data = load_series(tmp_path)
    batch = {k: tf.constant(v) for k, v in StreamBatches(data, np.arange(10), 4, 30, seed=0).batch(1).items()}
    assert float(tf.reduce_sum(batch["restart"][:, 1:])) > 0, "the chunk must hold restarts after its start"
    keras.utils.set_random_seed(3)
    model = MDNRNN(z_size=6, action_size=1, hidden_size=16, predict_done=True)
    carried = tuple(tf.random.normal([4, 16]) for _ in range(2))
    seed = tf.constant([5, 6], tf.int64)

    def losses_and_gradients():
        with tf.GradientTape() as tape:
            losses = mean_losses(loss_sums(model, batch, seed, carried)[0])
        return losses, tape.gradient(losses["total"], model.trainable_variables)

    new_losses, new_gradients = losses_and_gradients()
    lstm = model.lstm
    model.lstm.call = lambda x, keep=None, initial_state=None: _scan_over_projected_inputs(
        lstm, x, keep, tuple(initial_state))
    old_losses, old_gradients = losses_and_gradients()
    for key in ("z_nll", "restart", "total"):
        np.testing.assert_allclose(new_losses[key].numpy(), old_losses[key].numpy(), rtol=1e-6)
    for new, old in zip(new_gradients, old_gradients, strict=True):
        np.testing.assert_allclose(new.numpy(), old.numpy(), rtol=1e-5, atol=1e-7)
