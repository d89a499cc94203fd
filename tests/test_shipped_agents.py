"""The agents the repository ships (`pretrained/`, issue 19): their files match their manifests, they are small,
their manifests say how their committed scores were measured, and the shipped Doom agent plays the real game far
better than random play."""

from __future__ import annotations

import numpy as np
import pytest

from common.paper import EPISODE_STEPS
from common.storage import file_digest, read_json, read_rollout
from controller.evaluate import EvaluateConfig, evaluate_controller
from controller.pretrained import CONTROLLER, MANIFEST, PRETRAINED_DIR, SHIPPED_AGENTS, find_agent, unpack_agent
from run.collect import collect_rollouts

MAX_SHIPPED_MB = 30  # "tens of MB in all, not hundreds" for every shipped agent together


@pytest.mark.parametrize("name", SHIPPED_AGENTS)
def test_shipped_files_match_their_manifest(name):
    agent = find_agent(name)  # checks every file's SHA-256 against the manifest, or raises naming the file
    folder = PRETRAINED_DIR / name
    assert sorted(agent.manifest["files"]) == sorted(p.name for p in folder.iterdir() if p.name != MANIFEST)
    for file_name, digest in agent.manifest["files"].items():
        assert file_digest(folder / file_name) == digest
    assert agent.manifest["task"] == name
    real = agent.manifest["scores"]["real"]
    assert real["episodes"] == 100 and real["command"].startswith(f"python -m controller.evaluate --pretrained={name}")
    assert real["mean"] > 0 and real["std"] >= 0
    shipped_c = read_json(folder / CONTROLLER)  # the settings describe the C shipped, not another the run trained
    assert agent.settings["controller"] == shipped_c["controller"]["variant"]
    assert agent.settings["controller_env"] == shipped_c["env"]


def test_shipped_agents_are_tens_of_megabytes_not_hundreds():
    size = sum(path.stat().st_size for name in SHIPPED_AGENTS for path in (PRETRAINED_DIR / name).iterdir())
    assert size < MAX_SHIPPED_MB * 1e6, f"{size / 1e6:.1f} MB shipped"


def test_shipped_doom_agent_survives_far_longer_than_random_play(tmp_path):
    """Six real Take Cover episodes of the shipped agent against six of the paper's random policy (a uniform
    action held 1-10 frames), on the agent's render size: the agent's mean survival is at least twice random's."""
    agent = find_agent("doom")
    resolution = agent.settings["doom_resolution"]
    exp_dir = unpack_agent(agent, root=tmp_path / "cache")
    played = evaluate_controller(exp_dir, EvaluateConfig(env="doom", episodes=6, seed=7, workers=2,
                                                          doom_resolution=resolution), verbose=False)
    paths = collect_rollouts(tmp_path / "random", env="doom", episodes=6, workers=2, seed=7, min_length=0,
                             doom_resolution=resolution, verbose=False)
    random_steps = np.array([len(read_rollout(path)["reward"]) for path in paths])
    assert np.all(np.asarray(played["scores"]) <= EPISODE_STEPS["doom"])
    assert played["mean"] > 2 * random_steps.mean(), (played["scores"], random_steps.tolist())
