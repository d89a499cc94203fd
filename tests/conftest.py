"""Shared fixtures: small real data sets made once per test session from the real environments."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame (CarRacing's renderer) stays headless
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def doom_rollouts(tmp_path_factory) -> Path:
    """An experiment folder whose `rollouts/` holds 6 real Take Cover episodes (paper settings, 640x480)."""
    from run.collect import collect_rollouts

    exp_dir = tmp_path_factory.mktemp("doom_rollouts")
    collect_rollouts(exp_dir, env="doom", episodes=6, workers=2, seed=0, verbose=False)
    return exp_dir


@pytest.fixture(scope="session")
def doom_series(doom_rollouts, tmp_path_factory) -> Path:
    """An experiment folder with `doom_rollouts`' episodes, a ConvVAE (z=64, briefly trained on them) in
    `vae/vae.keras`, and their encoded `series/` with `initial_z.npz`."""
    import shutil

    from vae.encode import encode_rollouts
    from vae.train import VAETrainConfig, train_vae

    exp_dir = tmp_path_factory.mktemp("doom_series")
    shutil.copytree(doom_rollouts / "rollouts", exp_dir / "rollouts")
    train_vae(exp_dir, VAETrainConfig(z_size=64, epochs=1, batch_size=50, seed=0))
    encode_rollouts(exp_dir, verbose=False)
    return exp_dir
