"""The controller's sizes, action mappings, flat-vector and file round trips, and the CMA-ES state machinery."""

import numpy as np
import pytest

from common.errors import DataError
from controller import Controller
from controller.es import ESConfig, load_state, new_state, run_generation, save_state


@pytest.mark.parametrize("env, variant, count", [("carracing", "full", 867), ("carracing", "z", 99),
                                                 ("carracing", "z_hidden", 1443), ("doom", "full", 1088)])
def test_parameter_counts_match_the_paper(env, variant, count):
    assert Controller(env=env, variant=variant).num_params == count


def test_carracing_action_is_tanh_of_affine_map_then_mapped():
    controller = Controller("carracing", "full")
    rng = np.random.default_rng(0)
    params = rng.normal(size=controller.num_params).astype(np.float32)
    z, h = rng.normal(size=(4, 32)), rng.normal(size=(4, 256))
    weights, bias = params[:288 * 3].reshape(288, 3), params[288 * 3:]
    expected = np.tanh(np.concatenate([z, h], 1) @ weights + bias)
    output = controller.act(params, controller.features(z.astype(np.float32), h.astype(np.float32), None))
    np.testing.assert_allclose(output.numpy(), expected, atol=1e-5)
    action = controller.env_action(np.array([[-0.5, -1.0, -0.3], [0.2, 1.0, 0.7]], np.float32))
    np.testing.assert_allclose(action, [[-0.5, 0.0, 0.0], [0.2, 1.0, 0.7]])


def test_doom_reads_z_c_h_without_bias():
    controller = Controller("doom", "full")
    rng = np.random.default_rng(1)
    params = rng.normal(size=1088).astype(np.float32)
    z, c, h = (rng.normal(size=(3, n)).astype(np.float32) for n in (64, 512, 512))
    expected = np.tanh(np.concatenate([z, c, h], 1) @ params[:, None])
    np.testing.assert_allclose(controller.act(params, controller.features(z, h, c)).numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(controller.env_action(np.array([[0.9]])), [[0.9]], rtol=1e-6)


def test_batched_parameters_act_per_row():
    controller = Controller("carracing", "z_hidden")
    rng = np.random.default_rng(2)
    params = rng.normal(size=(5, controller.num_params)).astype(np.float32)
    features = rng.normal(size=(5, 32)).astype(np.float32)
    batched = controller.act(params, features).numpy()
    for row in range(5):
        single = controller.act(params[row], features[row:row + 1]).numpy()
        np.testing.assert_allclose(batched[row], single[0], atol=1e-5)


def test_file_round_trip_and_wrong_sizes(tmp_path):
    controller = Controller("carracing", "z")
    params = np.arange(99, dtype=np.float32) / 100
    controller.save(tmp_path / "c.json", params, generation=3)
    loaded, loaded_params = Controller.load(tmp_path / "c.json")
    assert loaded == controller
    np.testing.assert_array_equal(loaded_params, params)
    with pytest.raises(DataError, match="98 parameters, but the carracing 'z' controller has 99"):
        controller.check_params(params[:-1], "x.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not a controller file"):
        Controller.load(tmp_path / "bad.json")


def _sphere(population, seeds):
    """A deterministic stand-in for rollouts: negative distance to a target, noisy by seed."""
    noise = np.array([np.random.default_rng(int(s)).normal() for s in seeds])
    return -np.sum((population - 0.5) ** 2, axis=1, keepdims=True) + 0.01 * noise[None]


def test_cma_es_improves_and_resumes_on_the_same_trajectory(tmp_path):
    config = ESConfig(popsize=8, rollouts=2, generations=6, seed=3, weight_decay=0.0)
    straight = new_state(10, config)
    for _ in range(6):
        run_generation(straight, config, _sphere)
    interrupted = new_state(10, config)
    for _ in range(3):
        run_generation(interrupted, config, _sphere)
    save_state(tmp_path / "es.pkl", interrupted)
    np.random.seed(12345)  # a new process starts from another global state
    resumed = load_state(tmp_path / "es.pkl")
    for _ in range(3):
        run_generation(resumed, config, _sphere)
    np.testing.assert_array_equal(resumed.strategy.mean, straight.strategy.mean)
    assert [r["best"] for r in resumed.history] == [r["best"] for r in straight.history]
    assert straight.history[-1]["mean"] > straight.history[0]["mean"]
