"""run.export_web: a small Doom world model (the trained test V, a perturbed rigged M, a C that moves right) exported
to its web page and played in headless Chromium (Debian's chromium, driven by playwright; no browser download).

The page loads without a console error and dreams 100 steps; a held arrow key replaces C's action in what M is fed;
the tau slider sets the temperature the step samples at; the browser's C, M step, mixture sampling and decoder
match Keras on the same inputs and fixed noise within 1e-4. Bad input is one line and exit 2 (a CarRacing M without
a reward output among it). CarRacing's page has a module of its own, tests/test_export_web_carracing.py: playwright's
sync API cannot open a page while this module's stays open.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from common.errors import DataError, UserError
from controller.model import Controller
from rnn.model import MDNRNN, load_rnn, sample_mixture_from_noise
from run.export_web import ExportWebConfig, export_web
from run.export_web_browser import browser_missing, open_page, serve_folder, wait_for_steps
from run.export_web_graphs import controller_action
from run.export_web_runtime import cached_runtime, runtime_missing, vendor_runtime
from tests.conftest import make_carracing_world
from vae.encode import load_vae

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4
HIDDEN = 16  # the rigged M's units (tests/conftest.py)


def _browser_missing() -> str | None:
    """Why the page cannot be exported and played here (the tests then skip), or None."""
    return browser_missing() or runtime_missing()


needs_browser = pytest.mark.skipif(_browser_missing() is not None, reason=_browser_missing() or "")


def copy_parts(source: Path, target: Path, parts=("vae", "series")) -> Path:
    for part in parts:
        shutil.copytree(source / part, target / part, ignore=shutil.ignore_patterns("ckpt*", "tb*", "logs*"))
    return target


@pytest.fixture(scope="module")
def world(rigged_dream, tmp_path_factory) -> Path:
    """The test V and start frames, the rigged M with every weight perturbed (so that the check exercises all of
    them, the recurrent kernel included) and a C whose saturated LSTM unit 2 makes it move right (a safe action)."""
    exp = copy_parts(rigged_dream, tmp_path_factory.mktemp("web_world"))
    rnn = load_rnn(rigged_dream / "rnn" / "rnn.keras")
    rng = np.random.default_rng(0)
    rnn.set_weights([w + rng.normal(0.0, 0.05, w.shape).astype(np.float32) for w in rnn.get_weights()])
    (exp / "rnn").mkdir()
    rnn.save(exp / "rnn" / "rnn.keras")
    controller = Controller("doom", "full", z_size=64, hidden_size=HIDDEN)
    params = rng.normal(0.0, 0.1, controller.num_params).astype(np.float32)
    params[64 + 2] = params[64 + HIDDEN + 2] = 50.0  # [z, c, h]: once unit 2 saturates, move right
    controller.save(exp / "controller" / "doomrnn_full_t1.15" / "controller.json", params)
    return exp


@pytest.fixture(scope="module")
def exported(world) -> Path:
    if _browser_missing():
        pytest.skip(_browser_missing())
    result = export_web(world, ExportWebConfig())
    assert result.out == world / "web" and result.driver.startswith("C (full")
    return result.out


@pytest.fixture(scope="module")
def page(exported):
    """The exported page, served on 127.0.0.1 and open in headless Chromium (both stopped after the module), with
    the list of console errors it logs."""
    with serve_folder(exported) as url, open_page(f"{url}?seed=0") as (browser_page, errors):
        browser_page.evaluate("window.worldModel.ready")
        yield browser_page, errors


def steps_now(page) -> int:
    return page.evaluate("window.worldModel.totalSteps")


def after_new_steps(page, count: int = 2) -> dict:
    """The page's last step once `count` more steps have run (so the last one began after what the test did)."""
    wait_for_steps(page, steps_now(page) + count)
    return page.evaluate("window.worldModel.last")


@needs_browser
def test_export_writes_every_file_the_page_needs_and_no_link_outside(exported):
    names = {path.relative_to(exported).as_posix() for path in exported.rglob("*") if path.is_file()}
    assert {"index.html", "dream.js", "model.json", "check.json", "rnn_step.onnx", "decoder.onnx",
            "controller.onnx", "vendor/ort.wasm.min.js", "vendor/ort-wasm-simd-threaded.mjs",
            "vendor/ort-wasm-simd-threaded.wasm"} <= names
    for name in ("index.html", "dream.js"):
        text = (exported / name).read_text()
        assert "http://" not in text and "https://" not in text  # no CDN: the page opens offline


@needs_browser
def test_page_loads_and_dreams_100_steps_without_console_errors(page):
    browser_page, errors = page
    wait_for_steps(browser_page, 100)
    state = browser_page.evaluate("""() => {
        const pixels = document.getElementById('frame').getContext('2d').getImageData(0, 0, 64, 64).data;
        const alpha = pixels.filter((value, index) => index % 4 === 3);
        return {steps: worldModel.totalSteps, last: worldModel.last, error: worldModel.error,
                opaque: alpha.every(value => value === 255), distinct: new Set(pixels).size,
                death: document.getElementById('death').textContent, config: worldModel.config};
    }""")
    assert state["steps"] >= 100 and state["error"] is None
    assert errors == []
    assert state["opaque"] and state["distinct"] > 2  # V's frame is drawn (a blank canvas is transparent black)
    assert state["death"] == f"{state['last']['pDeath']:.2f}"
    assert state["config"]["z_size"] == 64 and state["config"]["hidden_size"] == HIDDEN
    assert state["last"]["source"] == "C" and state["last"]["action"] == state["last"]["agentAction"]


@needs_browser
def test_arrow_key_replaces_cs_action_in_what_m_is_fed(page):
    browser_page, errors = page
    browser_page.keyboard.down("ArrowLeft")
    try:
        held = after_new_steps(browser_page)
    finally:
        browser_page.keyboard.up("ArrowLeft")
    released = after_new_steps(browser_page)
    assert held["source"] == "you" and held["action"] == [-1.0] and held["agentAction"] != [-1.0]
    assert released["source"] == "C" and released["action"] == released["agentAction"]
    assert browser_page.locator("#source").text_content() == "C, the agent"
    assert errors == []


@needs_browser
def test_temperature_slider_sets_the_steps_sampling_temperature(page):
    browser_page, errors = page
    assert after_new_steps(browser_page, 1)["temperature"] == pytest.approx(1.15)
    for value in ("0.5", "2"):
        browser_page.locator("#temperature").fill(value)
        assert after_new_steps(browser_page)["temperature"] == float(value)
        assert browser_page.locator("#temperature-value").text_content() == f"{float(value):.2f}"
    assert errors == []


@needs_browser
def test_page_check_against_keras_passes(page):
    browser_page, errors = page
    result = browser_page.evaluate("window.worldModel.check()")
    assert result["passed"] and result["worst"] <= TOLERANCE and result["cases"] == 3
    assert set(result["errors"]) == {"h_next", "c_next", "logits", "mu", "log_sigma", "done_logit", "z_next",
                                     "frame", "controller_action"}
    assert browser_page.locator("#check-result").text_content().startswith("ok:")
    assert errors == []


@needs_browser
def test_browser_step_sampling_and_decoder_match_keras_on_the_same_inputs(page, world):
    """Inputs and noise made here, not by the export: M's step (restart 0 and 1), the mixture drawn at two
    temperatures from the same uniforms and normals, V's frame and C's action, each within 1e-4 of Keras."""
    browser_page, errors = page
    rnn = load_rnn(world / "rnn" / "rnn.keras")
    vae = load_vae(world / "vae" / "vae.keras")
    controller, params = Controller.load(world / "controller" / "doomrnn_full_t1.15" / "controller.json")
    rng = np.random.default_rng(7)
    for restart, temperature in ((0.0, 0.4), (1.0, 1.9)):
        z = rng.normal(0, 1, (1, 64)).astype(np.float32)
        h, c = (rng.normal(0, 0.5, (1, HIDDEN)).astype(np.float32) for _ in range(2))
        action = rng.uniform(-1, 1, (1, 1)).astype(np.float32)
        uniform = rng.uniform(1e-20, 1, (1, 64, 5)).astype(np.float32)
        normal = rng.normal(0, 1, (1, 64)).astype(np.float32)
        inputs = {"z": z[0].tolist(), "h": h[0].tolist(), "c": c[0].tolist(), "action": action[0].tolist(),
                  "restart": restart, "temperature": temperature, "uniform": uniform[0].tolist(),
                  "normal": normal[0].tolist()}
        got = browser_page.evaluate("inputs => window.worldModel.evaluate(inputs)", inputs)
        (h_next, c_next), mixture, done_logit = rnn.step((tf.constant(h), tf.constant(c)), tf.constant(z),
                                                         tf.constant(action), tf.constant([restart]))
        expected = {"h_next": h_next, "c_next": c_next, "logits": mixture.logits, "mu": mixture.mu,
                    "log_sigma": mixture.log_sigma, "done_logit": done_logit,
                    "z_next": sample_mixture_from_noise(mixture, temperature, uniform, normal),
                    "frame": vae.decode(z), "controller_action": controller_action(controller, params, z, h, c)}
        for name, want in expected.items():
            want = np.asarray(want, np.float32).reshape(-1)
            np.testing.assert_allclose(np.asarray(got[name], np.float32).reshape(-1), want, rtol=0, atol=TOLERANCE,
                                       err_msg=name)
    assert errors == []


# ---- bad input ----

def test_missing_m_or_v_and_an_output_file_are_one_line_errors(world, tmp_path):
    no_m = copy_parts(world, tmp_path / "no_m")
    with pytest.raises(DataError, match=r"rnn\.keras: file not found \(train M first"):
        export_web(no_m, ExportWebConfig())
    no_v = copy_parts(world, tmp_path / "no_v", parts=("rnn", "series"))
    with pytest.raises(DataError, match=r"vae\.keras: file not found \(train V first"):
        export_web(no_v, ExportWebConfig())
    (tmp_path / "page").write_text("not a folder")
    with pytest.raises(UserError, match="is a file, not a folder"):
        export_web(world, ExportWebConfig(out=str(tmp_path / "page")))
    with pytest.raises(UserError, match="between 0.1 and 2.0"):
        export_web(world, ExportWebConfig(temperature=3.0))
    assert not (no_m / "web").exists() and not (no_v / "web").exists()


def test_carracing_m_without_a_reward_output_is_one_error_line_with_exit_code_2(tmp_path):
    exp = make_carracing_world(tmp_path / "car", seed=0)  # its M predicts no reward: there is no dream to play
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "run.export_web", f"--exp_dir={exp}"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "a CarRacing M without a reward output" in errors[0], result.stderr[-2000:]
    assert "python -m rnn.train --predict_reward" in errors[0]
    assert not (exp / "web").exists()


def test_an_m_of_no_task_is_a_one_line_error(world, tmp_path):
    exp = copy_parts(world, tmp_path / "one_action_no_death")
    (exp / "rnn").mkdir()
    MDNRNN(z_size=64, action_size=1, hidden_size=HIDDEN).save(exp / "rnn" / "rnn.keras")  # neither Doom's nor
    # CarRacing's: no death output, 1 action value
    with pytest.raises(DataError, match="makes no dream"):
        export_web(exp, ExportWebConfig())
    assert not (exp / "web").exists()


def test_without_npm_or_a_cached_runtime_the_export_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no npm on it
    with pytest.raises(UserError, match=r"npm is not installed.*\(apt-get install -y npm\)"):
        vendor_runtime(tmp_path / "vendor", cache=tmp_path / "cache")
    assert not (tmp_path / "vendor" / "ort.wasm.min.js").exists()


@needs_browser
def test_runtime_comes_from_the_cache_once_fetched(exported, tmp_path, monkeypatch):
    cached = cached_runtime()  # the export fetched it
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # npm is not needed any more
    copied = vendor_runtime(tmp_path / "vendor")
    assert [path.name for path in copied] == ["ort.wasm.min.js", "ort-wasm-simd-threaded.mjs",
                                              "ort-wasm-simd-threaded.wasm"]
    assert all(path.read_bytes() == (cached / path.name).read_bytes() for path in copied)
