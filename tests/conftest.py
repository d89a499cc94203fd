"""Shared fixtures: small real data sets made once per test session from the real environments."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame (CarRacing's renderer) stays headless
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as common.startup sets it, whichever module loads TF first

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


def rigged_doom_rnn(hidden: int = 16, z_size: int = 64):
    """A Doom M with weights set by hand so that survival depends on the action: pressing right (a -> 1) drives
    LSTM unit 0 up and the death logit far down; standing still leaves the death logit to unit 1, which follows
    the sampled z and crosses the threshold within tens of steps. A CMA-ES run that works must discover this."""
    import keras

    from rnn.model import MDNRNN

    keras.utils.set_random_seed(0)
    rnn = MDNRNN(z_size=z_size, action_size=1, hidden_size=hidden, num_mixtures=5, predict_done=True)
    kernel, recurrent, bias = (w * 0.0 for w in rnn.lstm.get_weights())
    action_row = z_size  # inputs are [z, action, restart]
    kernel[action_row, 2 * hidden] = 4.0  # candidate value of unit 0 follows the action
    kernel[0, 2 * hidden + 1] = 1.0  # unit 1 follows z_0, which the dream samples: random danger
    bias[2 * hidden + 2] = 4.0  # unit 2 saturates: a constant input C can lean on (it has no bias)
    bias[0 * hidden:1 * hidden] = 4.0  # input gates open
    bias[1 * hidden:2 * hidden] = 1.0  # forget gates
    bias[3 * hidden:4 * hidden] = 3.0  # output gates open
    rnn.lstm.set_weights([kernel, recurrent, bias])
    head_kernel, head_bias = (w * 0.0 for w in rnn.head.get_weights())
    head_kernel[0, -1] = -12.0  # death logit falls as unit 0's output rises (moving right is safe) ...
    head_kernel[1, -1] = 5.0  # ... and rises with unit 1: standing still, a dream dies within tens of steps
    head_bias[-1] = -4.5
    components = 5
    for dim in range(z_size):  # per dimension: [log pi (K), mu (K), log sigma (K)]
        start = dim * 3 * components
        head_bias[start + 2 * components:start + 3 * components] = -3.0  # sharp components
    head_bias[components:2 * components] = [2.0, -2.0, 2.0, -2.0, 2.0]  # z_0 jumps between +2 and -2
    rnn.head.set_weights([head_kernel, head_bias])
    return rnn


@pytest.fixture(scope="session")
def rigged_dream(doom_series, tmp_path_factory) -> Path:
    """An experiment folder with `doom_series`' V and initial_z and the rigged M in `rnn/rnn.keras`."""
    import shutil

    exp_dir = tmp_path_factory.mktemp("rigged_dream")
    shutil.copytree(doom_series / "series", exp_dir / "series")
    shutil.copytree(doom_series / "vae", exp_dir / "vae", ignore=shutil.ignore_patterns("ckpt*", "tb*", "logs*"))
    (exp_dir / "rnn").mkdir()
    rigged_doom_rnn().save(exp_dir / "rnn" / "rnn.keras")
    return exp_dir


def make_carracing_world(exp_dir: Path, seed: int) -> Path:
    """An untrained CarRacing V (z 32), a small M (16 units) and one 7-step series file (no initial_z.npz)."""
    import keras
    import numpy as np

    from common.storage import write_npz
    from rnn.model import MDNRNN
    from vae import ConvVAE

    keras.utils.set_random_seed(seed)
    (exp_dir / "vae").mkdir(parents=True)
    (exp_dir / "rnn").mkdir()
    ConvVAE(z_size=32).save(exp_dir / "vae" / "vae.keras")
    MDNRNN(z_size=32, action_size=3, hidden_size=16, num_mixtures=5, predict_done=False).save(
        exp_dir / "rnn" / "rnn.keras")
    rng = np.random.default_rng(0)
    steps = 7
    write_npz(exp_dir / "series" / "ep000000.npz", mu=rng.normal(size=(steps, 32)).astype(np.float32),
              logvar=np.full((steps, 32), -4.0, np.float32), action=rng.uniform(0, 1, (steps, 3)).astype(np.float32),
              reward=np.full(steps, -0.1, np.float32), done=np.arange(steps) == steps - 1, env="carracing")
    return exp_dir
