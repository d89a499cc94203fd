"""Encodes every rollout with the trained V into `DIR/series/`: the (mu, log sigma^2) of each frame, for M.

    python -m vae.encode --exp_dir=exp/doom

Writes `series/ep000123.npz` beside each `rollouts/ep000123.npz` (mu, logvar (T, Z) float32; action, reward,
done, seed, env copied), then `series/initial_z.npz` (mu, logvar (N, Z): the first frame of every episode, from
which the Doom dream starts). M trains on mu and logvar, drawing a fresh z each time (the paper's trick against
overfitting to one sample). Idempotent: a series file that is valid, as long as its rollout and newer than the
model is kept, so a killed run resumes where it stopped. Every file is written atomically.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from absl import flags

from common.errors import DataError, UserError, run_main
from common.interfaces import import_saved_module
from common.layout import experiment
from common.progress import Progress
from common.storage import episode_files, read_rollout, read_series, write_npz
from vae.data import scan_rollout
from vae.interface import VisionModel, vision_model_problem
from vae.model import ConvVAE

ENCODE_BATCH = 1000  # frames per compiled call; an episode's frames are encoded in chunks of this size


def load_vae(path: str | os.PathLike, z_size: int | None = None) -> VisionModel:
    """Loads a V saved as `.keras`: the paper's ConvVAE or any `vae.interface.VisionModel` (its module imported
    first); a missing, corrupt or foreign file, a class that cannot be imported, or another z_size raises
    DataError."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (train V first: python -m vae.train)")
    import_saved_module(path, "V")
    try:
        model = keras.saving.load_model(path, custom_objects={"ConvVAE": ConvVAE})
    except Exception as error:  # noqa: BLE001 - Keras raises many types for a bad file
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        raise DataError(f"{path}: not a loadable .keras model ({type(error).__name__}: {first_line})") from None
    problem = vision_model_problem(model)
    if problem:
        raise DataError(f"{path}: holds a {type(model).__name__}, not a ConvVAE or another V: {problem}")
    if z_size is not None and model.z_size != z_size:
        raise DataError(f"{path}: the model has z_size={model.z_size}, expected {z_size}")
    return model


def encode_frames(model: ConvVAE, frames: np.ndarray, batch_size: int = ENCODE_BATCH) -> tuple[np.ndarray, ...]:
    """(mu, logvar), each (T, z_size) float32, of uint8 frames (T, 64, 64, 3), in compiled chunks."""
    mus, logvars = [], []
    for start in range(0, len(frames), batch_size):
        mu, logvar = model.encode_frames(frames[start:start + batch_size])
        mus.append(mu.numpy())
        logvars.append(logvar.numpy())
    return np.concatenate(mus).astype(np.float32), np.concatenate(logvars).astype(np.float32)


def _is_current(series: Path, length: int, z_size: int, model_mtime: float) -> bool:
    """True when `series` is a valid series of `length` frames and z_size, written after the model."""
    try:
        if series.stat().st_mtime < model_mtime:
            return False
        arrays = read_series(series)
    except (OSError, DataError):
        return False
    return arrays["mu"].shape == (length, z_size)


def write_initial_z(series_dir: str | os.PathLike) -> Path:
    """Writes `initial_z.npz`: mu, logvar (N, Z) of the first frame of every series file in `series_dir`."""
    series_dir = Path(series_dir)
    mus, logvars = [], []
    for path in episode_files(series_dir, "series"):
        arrays = read_series(path)
        mus.append(arrays["mu"][0])
        logvars.append(arrays["logvar"][0])
    out = series_dir / "initial_z.npz"
    write_npz(out, mu=np.stack(mus).astype(np.float32), logvar=np.stack(logvars).astype(np.float32))
    return out


def encode_rollouts(exp_dir: str | os.PathLike, batch_size: int = ENCODE_BATCH,
                    model_path: str | os.PathLike | None = None, verbose: bool = True) -> list[Path]:
    """Encodes `exp_dir/rollouts/*` into `exp_dir/series/`, then writes `initial_z.npz`.

    The model is `exp_dir/vae/vae.keras` unless `model_path` is given. Series files already written (valid, of
    the rollout's length, newer than the model) are kept. Returns the series files in rollout order.
    """
    if batch_size < 1:
        raise UserError(f"--batch_size={batch_size}: must be at least 1")
    layout = experiment(exp_dir, create=False)
    rollouts = episode_files(layout.rollouts, "rollout")
    model_path = Path(model_path) if model_path is not None else layout.vae_model
    model = load_vae(model_path)
    model_mtime = model_path.stat().st_mtime
    layout.series.mkdir(parents=True, exist_ok=True)
    for stale in layout.series.glob(".*.tmp*"):  # temporary files of a killed run: never complete
        stale.unlink(missing_ok=True)

    progress = Progress("encode", len(rollouts), "episodes", rate_unit="frames",
                        stream=None if verbose else io.StringIO())
    outputs, encoded = [], 0
    for rollout_path in rollouts:
        out = layout.series / rollout_path.name
        outputs.append(out)
        length, _ = scan_rollout(rollout_path)
        if _is_current(out, length, model.z_size, model_mtime):
            progress.update(1, rate_count=0)
            continue
        rollout = read_rollout(rollout_path)
        mu, logvar = encode_frames(model, rollout["obs"], batch_size)
        extra = {name: rollout[name] for name in ("seed", "env", "truncated") if name in rollout}
        write_npz(out, mu=mu, logvar=logvar, action=rollout["action"], reward=rollout["reward"],
                  done=rollout["done"], **extra)
        encoded += 1
        progress.update(1, rate_count=len(mu))
    progress.close()
    initial_z = write_initial_z(layout.series)
    if verbose:
        print(f"encode: {encoded} episodes encoded, {len(rollouts) - encoded} already done; "
              f"series in {layout.series}, {initial_z.name} written")
    return outputs


def main(argv) -> None:
    FLAGS = flags.FLAGS
    encode_rollouts(FLAGS.exp_dir, batch_size=FLAGS.batch_size, model_path=FLAGS.model)


def define_flags() -> None:
    flags.DEFINE_string("exp_dir", None, "Experiment folder: reads EXP_DIR/rollouts/ and EXP_DIR/vae/vae.keras, "
                        "writes EXP_DIR/series/.", required=True)
    flags.DEFINE_integer("batch_size", ENCODE_BATCH, "Frames per compiled encoder call.")
    flags.DEFINE_string("model", None, "A .keras ConvVAE to use instead of EXP_DIR/vae/vae.keras.")


if __name__ == "__main__":
    define_flags()
    run_main(main)
