"""run.export_web for CarRacing: a tiny CarRacing world model (an untrained V of z 32, an M of 16 units with reward
and done outputs, a random C) exported to its web page and played in headless Chromium.

The page loads without a console error and dreams 100 steps; held arrow keys set the action M is fed (up: gas 1;
then left and down with it: steer -1, gas 1, brake 0.8) and C acts again once they are released; the return the
page shows is the sum of the rewards its M predicted; the browser's C, M step (its done and reward outputs
included), sampling and decoder match Keras within 1e-4.

A module of its own: its page stays open for the whole module, and playwright's sync API cannot open one page
inside another (tests/test_export_web.py keeps Doom's open for its module).
"""

import json
from pathlib import Path

import keras
import numpy as np
import onnx
import pytest

from common.layout import experiment
from controller.model import Controller
from rnn.model import MDNRNN
from run.export_web import ExportWebConfig, export_web
from run.export_web_browser import open_page, serve_folder, wait_for_steps
from run.export_web_graphs import export_rnn_step
from tests.conftest import make_carracing_world
from tests.test_export_web import TOLERANCE, _browser_missing, after_new_steps, needs_browser
from vae.encode import write_initial_z

Z, HIDDEN = 32, 16  # make_carracing_world's V and series; the M made here


@pytest.fixture(scope="module")
def car_world(tmp_path_factory) -> Path:
    """make_carracing_world's V and series with their start frame, an M with reward and done outputs (every weight
    perturbed, so that the check exercises all of them; its done logit far below 0, so that no dream ends during
    these tests) and a C with random weights where the export looks for the dream-trained one."""
    exp = make_carracing_world(tmp_path_factory.mktemp("web_car"), seed=0)
    write_initial_z(exp / "series")
    keras.utils.set_random_seed(0)
    rnn = MDNRNN(z_size=Z, action_size=3, hidden_size=HIDDEN, num_mixtures=5, predict_done=True, predict_reward=True)
    rng = np.random.default_rng(0)
    rnn.set_weights([w + rng.normal(0.0, 0.05, w.shape).astype(np.float32) for w in rnn.get_weights()])
    kernel, bias = rnn.head.get_weights()
    bias[-2] = -8.0  # outputs: ..., done logit, reward
    rnn.head.set_weights([kernel, bias])
    rnn.save(exp / "rnn" / "rnn.keras")  # replaces make_carracing_world's M, which predicts no reward
    controller = Controller("carracing", "full", z_size=Z, hidden_size=HIDDEN)
    controller.save(experiment(exp).controller_run("carracingrnn", "full", 1.0).controller,
                    rng.normal(0.0, 0.3, controller.num_params).astype(np.float32))
    return exp


@pytest.fixture(scope="module")
def exported(car_world) -> Path:
    if _browser_missing():
        pytest.skip(_browser_missing())
    result = export_web(car_world, ExportWebConfig())
    assert result.driver == "C (full, from carracingrnn_full_t1/controller.json)"
    return result.out


@pytest.fixture(scope="module")
def page(exported):
    with serve_folder(exported) as url, open_page(f"{url}?seed=0") as (browser_page, errors):
        browser_page.evaluate("window.worldModel.ready")
        yield browser_page, errors


@needs_browser
def test_export_says_the_task_and_ms_step_has_the_done_and_reward_outputs(exported):
    model = json.loads((exported / "model.json").read_text())
    assert (model["env"], model["temperature"], model["max_steps"], model["action_size"]) == ("carracing", 1.0,
                                                                                              1000, 3)
    assert model["predicts_reward"] and model["predicts_death"]
    assert model["action_names"] == ["steer", "gas", "brake"]
    graph = onnx.load(str(exported / "rnn_step.onnx")).graph
    assert [node.name for node in graph.input] == ["z", "action", "h", "c", "restart"]  # this M reads restart
    assert [node.name for node in graph.output] == ["h_next", "c_next", "logits", "mu", "log_sigma", "done_logit",
                                                    "reward"]


@needs_browser
def test_page_dreams_100_steps_driven_by_c_without_console_errors(page):
    browser_page, errors = page
    wait_for_steps(browser_page, 100)
    state = browser_page.evaluate("""() => {
        const pixels = document.getElementById('frame').getContext('2d').getImageData(0, 0, 64, 64).data;
        const text = (id) => document.getElementById(id).textContent;
        return {steps: worldModel.totalSteps, dreams: worldModel.dreams, last: worldModel.last,
                opaque: pixels.filter((value, index) => index % 4 === 3).every(value => value === 255),
                stepsLabel: text('steps-label'), endLabel: text('death-label'), tau: text('temperature-value'),
                returnShown: !document.getElementById('return-row').hidden, action: text('action')};
    }""")
    assert state["steps"] >= 100 and state["dreams"] == 1 and errors == []  # the done logit stays below 0
    last = state["last"]
    assert last["source"] == "C" and last["action"] == last["agentAction"] and len(last["action"]) == 3
    steer, gas, brake = last["action"]
    assert -1 <= steer <= 1 and 0 <= gas <= 1 and 0 <= brake <= 1  # C's tanh outputs mapped as the real game's
    assert last["temperature"] == 1.0 and state["tau"] == "1.00"
    assert last["pDeath"] < 0.01 and isinstance(last["reward"], float)
    assert state["opaque"] and state["returnShown"]
    assert (state["stepsLabel"], state["endLabel"]) == ("steps", "p(end)")
    assert state["action"].startswith("steer ")


@needs_browser
def test_held_arrow_keys_set_the_action_m_is_fed(page):
    browser_page, errors = page
    keyboard = browser_page.keyboard
    keyboard.down("ArrowUp")
    try:
        gas = after_new_steps(browser_page)
        keyboard.down("ArrowLeft")
        keyboard.down("ArrowDown")
        combined = after_new_steps(browser_page)
    finally:
        for key in ("ArrowUp", "ArrowLeft", "ArrowDown"):
            keyboard.up(key)
    released = after_new_steps(browser_page)
    assert gas["source"] == "you" and gas["action"] == [0.0, 1.0, 0.0] and gas["agentAction"][1] != 1.0
    assert combined["source"] == "you" and combined["action"] == pytest.approx([-1.0, 1.0, 0.8])
    assert released["source"] == "C" and released["action"] == released["agentAction"]
    assert browser_page.locator("#source").text_content() == "C, the agent"
    assert errors == []


@needs_browser
def test_return_shown_is_the_sum_of_the_rewards_m_predicted(page):
    browser_page, errors = page
    wait_for_steps(browser_page, 20)
    browser_page.evaluate("window.worldModel.pause()")  # resolves once the step under way is done
    try:
        state = browser_page.evaluate("""() => ({last: worldModel.last, rewards: worldModel.rewards,
                                                 shown: document.getElementById('return').textContent})""")
    finally:
        browser_page.evaluate("window.worldModel.resume()")
    rewards, last = state["rewards"], state["last"]
    assert len(rewards) == last["step"] >= 20 and rewards[-1] == last["reward"]
    assert len(set(rewards)) > 10  # M's prediction changes from step to step
    total = 0.0
    for reward in rewards:  # in the page's order
        total += reward
    assert last["return"] == total and state["shown"] == f"{total:.2f}"
    assert after_new_steps(browser_page)["step"] > last["step"]  # the dream goes on
    assert errors == []


@needs_browser
def test_page_check_against_keras_passes_with_the_reward_and_done_outputs(page):
    browser_page, errors = page
    result = browser_page.evaluate("window.worldModel.check()")
    assert result["passed"] and result["worst"] <= TOLERANCE and result["cases"] == 3
    assert set(result["errors"]) == {"h_next", "c_next", "logits", "mu", "log_sigma", "done_logit", "reward",
                                     "z_next", "frame", "controller_action"}
    assert browser_page.locator("#check-result").text_content().startswith("ok:")
    assert errors == []


def test_an_m_without_a_done_output_exports_a_step_without_restart_and_done_logit(tmp_path):
    """Such an M reads no restart flag and predicts no end: its dream runs to the step cap."""
    rnn = MDNRNN(z_size=8, action_size=3, hidden_size=8, predict_reward=True)
    graph = onnx.load(str(export_rnn_step(rnn, tmp_path / "rnn_step.onnx"))).graph
    assert [node.name for node in graph.input] == ["z", "action", "h", "c"]
    assert [node.name for node in graph.output] == ["h_next", "c_next", "logits", "mu", "log_sigma", "reward"]
