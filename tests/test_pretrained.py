"""Shipped agents (issue 19): packing V, M and C compactly with a manifest, `--pretrained` on the commands that
read an experiment, and the agent the repository ships."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.errors import UserError
from common.layout import ControllerRun, experiment
from common.storage import file_digest
from controller.model import Controller
from controller.pretrained import (
    MANIFEST,
    RNN_WEIGHTS,
    VAE_WEIGHTS,
    find_agent,
    pack_agent,
    unpack_agent,
)

REPO = Path(__file__).resolve().parents[1]
# The pipeline's settings name another C than the one shipped (as when an ablation trained it): the manifest must
# describe the shipped one.
SETTINGS = {"env": "doom", "doom_resolution": "160x120", "z_size": 64, "temperature": 1.15, "controller": "z",
            "controller_env": "doom"}
SHIPPED_SETTINGS = {**SETTINGS, "controller": "full", "controller_env": "doomrnn"}


def _run(module: str, *args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "XDG_CACHE_HOME": str(cache)})


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def trained(rigged_dream, tmp_path_factory) -> Path:
    """The rigged Doom world with a C trained in its dream's place (`controller/doomrnn_full_t1.15/`)."""
    exp_dir = tmp_path_factory.mktemp("to_ship")
    for part in ("vae", "rnn", "series"):
        shutil.copytree(rigged_dream / part, exp_dir / part)
    controller = Controller("doom", "full", z_size=64, hidden_size=16)
    params = np.random.default_rng(0).normal(0, 0.5, controller.num_params)
    path = experiment(exp_dir).controller_run("doomrnn", "full", 1.15).controller
    path.parent.mkdir(parents=True)
    controller.save(path, params, env="doomrnn", generation=3)
    return exp_dir


@pytest.fixture(scope="module")
def packed(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "agent"
    pack_agent(trained, "tiny", experiment(trained).controller_run("doomrnn", "full", 1.15).controller, out,
               SETTINGS)
    return out


def test_packed_files_match_the_manifest_and_unpack_to_the_same_agent(trained, packed, tmp_path):
    from rnn.model import load_rnn
    from vae.encode import load_vae

    manifest = json.loads((packed / MANIFEST).read_text())
    assert manifest["task"] == "doom" and manifest["settings"] == SHIPPED_SETTINGS
    assert sorted(manifest["files"]) == sorted(p.name for p in packed.iterdir() if p.name != MANIFEST)
    for name, digest in manifest["files"].items():
        assert file_digest(packed / name) == digest
    layout = experiment(trained)
    # float16 weights: about half of the float32 .keras files
    assert (packed / VAE_WEIGHTS).stat().st_size < 0.55 * layout.vae_model.stat().st_size

    unpacked = experiment(unpack_agent(find_agent(str(packed)), root=tmp_path))
    assert unpack_agent(find_agent(str(packed)), root=tmp_path) == unpacked.root  # unpacked once
    for original, copy in ((load_vae(layout.vae_model), load_vae(unpacked.vae_model)),
                           (load_rnn(layout.rnn_model), load_rnn(unpacked.rnn_model))):
        assert type(copy) is type(original) and copy.get_config() == original.get_config()
        for a, b in zip(original.get_weights(), copy.get_weights()):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4)  # float16 rounding only
    frames = np.random.default_rng(1).integers(0, 256, (4, 64, 64, 3), np.uint8)
    np.testing.assert_allclose(load_vae(unpacked.vae_model).encode_frames(frames)[0],
                               load_vae(layout.vae_model).encode_frames(frames)[0], atol=0.05)
    shipped_c = ControllerRun(unpacked.controller / "doomrnn_full_t1.15").controller
    assert shipped_c.read_bytes() == layout.controller_run("doomrnn", "full", 1.15).controller.read_bytes()
    assert unpacked.initial_z.read_bytes() == layout.initial_z.read_bytes()
    assert json.loads(unpacked.pipeline_record.read_text())["config"] == SHIPPED_SETTINGS


def test_pretrained_plays_the_real_game_and_dreams_through_the_commands(packed, tmp_path):
    """--pretrained stands for --exp_dir; the agent's own settings (Doom, 160x120) fill the unset flags."""
    result = _run("controller.evaluate", f"--pretrained={packed}", "--episodes=2", "--max_steps=60",
                  "--workers=1", cache=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [folder] = (tmp_path / "worldmodels" / "pretrained").iterdir()
    scores = json.loads(ControllerRun(folder / "controller" / "doomrnn_full_t1.15").evaluation("doom").read_text())
    assert scores["episodes"] == 2 and scores["doom_resolution"] == "160x120"
    assert all(1 <= s <= 60 for s in scores["scores"])

    video = tmp_path / "dream.gif"
    result = _run("run.dream", f"--pretrained={packed}", f"--out={video}", "--max_steps=5", cache=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert video.stat().st_size > 0 and "tau 1.15" in result.stdout  # Doom's dream at the agent's tau


def test_bad_pretrained_input_is_one_line_with_exit_code_2(trained, packed, tmp_path):
    assert "not a shipped agent" in _one_error_line(
        _run("controller.evaluate", "--pretrained=nosuch", cache=tmp_path))
    assert "either --exp_dir" in _one_error_line(
        _run("controller.evaluate", f"--pretrained={packed}", f"--exp_dir={trained}", cache=tmp_path))
    assert "either --exp_dir" in _one_error_line(_run("run.dream", "--play", cache=tmp_path))

    tampered = tmp_path / "tampered"
    shutil.copytree(packed, tampered)
    with open(tampered / RNN_WEIGHTS, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    line = _one_error_line(_run("controller.evaluate", f"--pretrained={tampered}", cache=tmp_path))
    assert RNN_WEIGHTS in line and "SHA-256" in line
    assert not (tmp_path / "worldmodels").exists()  # nothing unpacked from bad input


def test_an_agent_not_shipped_yet_says_so(tmp_path):
    with pytest.raises(UserError, match="no agent is shipped"):
        find_agent("carracing", root=tmp_path)
