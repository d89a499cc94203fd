"""The fixed experiment-directory layout: each stage reads the previous stage's folder."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from common.errors import UserError

# The pipeline's stages in order; each writes its own part of the layout below.
STAGES = ("collect", "vae", "encode", "rnn", "controller", "evaluate", "iterate", "report")


@dataclasses.dataclass(frozen=True)
class ExperimentLayout:
    """Paths inside one experiment folder.

    rollouts/   one ep######.npz per real episode (run.collect)
    series/     one ep######.npz per episode with V's mu, logvar (vae.encode), and initial_z.npz
    vae/        checkpoints, TensorBoard logs, vae.keras
    rnn/        checkpoints, TensorBoard logs, rnn.keras
    controller/ CMA-ES state, best parameters, history, plots
    report/     Markdown report and its PNGs
    """

    root: Path

    @property
    def rollouts(self) -> Path:
        return self.root / "rollouts"

    @property
    def series(self) -> Path:
        return self.root / "series"

    @property
    def initial_z(self) -> Path:
        return self.series / "initial_z.npz"

    @property
    def vae(self) -> Path:
        return self.root / "vae"

    @property
    def vae_model(self) -> Path:
        return self.vae / "vae.keras"

    @property
    def rnn(self) -> Path:
        return self.root / "rnn"

    @property
    def rnn_model(self) -> Path:
        return self.rnn / "rnn.keras"

    @property
    def controller(self) -> Path:
        return self.root / "controller"

    @property
    def report(self) -> Path:
        return self.root / "report"


def experiment(exp_dir: str | os.PathLike, create: bool = True) -> ExperimentLayout:
    """The layout of `exp_dir`, created (if asked) and checked writable; problems raise `UserError`."""
    if not str(exp_dir):
        raise UserError("--exp_dir is required")
    root = Path(exp_dir).expanduser().resolve()
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=root):
                pass
        except OSError as error:
            raise UserError(f"--exp_dir={exp_dir}: not writable ({error.strerror or error})") from None
    elif not root.is_dir():
        raise UserError(f"--exp_dir={exp_dir}: no such experiment folder")
    return ExperimentLayout(root)
