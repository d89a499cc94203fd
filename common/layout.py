"""The fixed experiment-directory layout: each stage reads the previous stage's folder."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from common.errors import UserError

# The pipeline's stages in order; each writes its own part of the layout below.
STAGES = ("collect", "vae", "encode", "rnn", "controller", "evaluate", "iterate", "finetune", "report")


@dataclasses.dataclass(frozen=True)
class ControllerRun:
    """The files of one trained controller, `controller/<env>_<variant>[_t<tau>]/` (controller.train)."""

    folder: Path

    @property
    def controller(self) -> Path:
        """The CMA mean (with `--select_by_real_check`, at the end: the one of the best real check): what
        `controller.evaluate` plays."""
        return self.folder / "controller.json"

    @property
    def best(self) -> Path:
        """The best candidate seen."""
        return self.folder / "best.json"

    @property
    def best_real_check(self) -> Path:
        """The CMA mean whose real check scored best so far (`controller.train --select_by_real_check`)."""
        return self.folder / "best_real_check.json"

    @property
    def history(self) -> Path:
        return self.folder / "history.json"

    @property
    def es_state(self) -> Path:
        """The pickled pycma strategy and everything a resume needs."""
        return self.folder / "es.pkl"

    @property
    def progress_plot(self) -> Path:
        return self.folder / "progress.png"

    @property
    def tensorboard(self) -> Path:
        return self.folder / "tensorboard"

    def evaluation(self, env: str) -> Path:
        """Per-episode scores of this controller in `env` (controller.evaluate)."""
        return self.folder / f"evaluation_{env}.json"

    @property
    def config(self) -> Path:
        """The settings a resumed run must share with this one."""
        return self.folder / "config.json"

    @property
    def dream_evaluation(self) -> Path:
        """This controller's score in the dream (run.temperature_sweep)."""
        return self.folder / "dream_evaluation.json"

    def histogram(self, env: str) -> Path:
        return self.folder / f"histogram_{env}.png"

    @property
    def real_finetune(self) -> ControllerRun:
        """The real-game fine-tuning of this dream-trained C (controller.train --real_generations), a run of its
        own beside it, `<this folder>_real/`: this folder keeps what the dream alone achieved."""
        return ControllerRun(self.folder.with_name(self.folder.name + "_real"))


# Where C can train inside M's dream, and the real task each dream stands for.
DREAM_ENVS = {"doomrnn": "doom", "carracingrnn": "carracing"}


def controller_run_name(env: str, variant: str, temperature: float | None = None) -> str:
    """`<env>_<variant>[_t<tau>]`: one folder per trained controller, so sweeps sit side by side."""
    return f"{env}_{variant}" + (f"_t{temperature:g}" if env in DREAM_ENVS and temperature is not None else "")


@dataclasses.dataclass(frozen=True)
class ExperimentLayout:
    """Paths inside one experiment folder; every stage finds its files here, nowhere else.

    rollouts/   one ep######.npz per real episode (run.collect)
    series/     one ep######.npz per episode with V's mu, logvar (vae.encode), and initial_z.npz
    vae/        checkpoints/, tensorboard/, vae.keras
    rnn/        checkpoints/, tensorboard/, best.json, rnn.keras
    controller/ one folder per trained controller (`ControllerRun`), and `<folder>_real/` beside a dream-trained
                one fine-tuned in the real game
    iterate/    round_NN/, each an experiment folder of its own (run.iterate)
    temperature_sweep/  run.temperature_sweep's experiment folder (V and M copied from the last round)
    controller_ablation/  run.controller_ablation's experiment folder (likewise)
    report/     Markdown report and its PNGs
    web/        the dream as a static web page (run.export_web)
    pipeline.json  the pipeline's settings and stage times
    worker_errors.log  tracebacks of failed worker processes
    """

    root: Path

    @property
    def rollouts(self) -> Path:
        return self.root / "rollouts"

    @property
    def collect_manifest(self) -> Path:
        """What the rollouts were collected with: a resumed collection must agree with it."""
        return self.rollouts / "collect.json"

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
    def vae_reconstructions(self) -> Path:
        """Originals above V's reconstructions of them, written when V's training ends."""
        return self.vae / "reconstructions.png"

    @property
    def rnn(self) -> Path:
        return self.root / "rnn"

    @property
    def rnn_model(self) -> Path:
        return self.rnn / "rnn.keras"

    @property
    def rnn_best(self) -> Path:
        """The step and validation losses of the M kept as rnn.keras."""
        return self.rnn / "best.json"

    @property
    def rnn_split(self) -> Path:
        """The names of the episodes M holds out for validation (kept when a run resumes)."""
        return self.rnn / "split.json"

    @property
    def rnn_validation(self) -> Path:
        """M's validation losses at every evaluation."""
        return self.rnn / "validation.json"

    def run_config(self, stage: str) -> Path:
        """`vae/config.json` or `rnn/config.json`: the resolved settings of the stage's training run."""
        return self.root / stage / "config.json"

    def checkpoints(self, stage: str) -> Path:
        """`vae/checkpoints` or `rnn/checkpoints`: the training state a killed run resumes from."""
        return self.root / stage / "checkpoints"

    def tensorboard(self, stage: str) -> Path:
        """`vae/tensorboard` or `rnn/tensorboard` (a controller's is `ControllerRun.tensorboard`)."""
        return self.root / stage / "tensorboard"

    @property
    def controller(self) -> Path:
        return self.root / "controller"

    def controller_run(self, env: str, variant: str = "full", temperature: float | None = None) -> ControllerRun:
        return ControllerRun(self.controller / controller_run_name(env, variant, temperature))

    @property
    def iterate(self) -> Path:
        return self.root / "iterate"

    @property
    def iterate_progress(self) -> Path:
        """The iterative rounds' scores so far (in round 0's layout): what the pipeline checks and the report
        reads."""
        return self.iterate / "progress.json"

    @property
    def iterate_table(self) -> Path:
        """The iterative rounds as a Markdown table."""
        return self.report / "iterate.md"

    def temperature_table(self, suffix: str = ".json") -> Path:
        """run.temperature_sweep's table, `.json` (data) or `.md`."""
        return (self.report / "temperature_table").with_suffix(suffix)

    @property
    def temperature_sweep(self) -> ExperimentLayout:
        """run.temperature_sweep's own experiment folder: V, M and the start frames copied from the world model
        it sweeps (the last iterative round's), and one controller folder per tau."""
        return ExperimentLayout(self.root / "temperature_sweep")

    def ablation_table(self, suffix: str = ".json") -> Path:
        """run.controller_ablation's table, `.json` (data) or `.md`."""
        return (self.report / "controller_ablation").with_suffix(suffix)

    @property
    def controller_ablation(self) -> ExperimentLayout:
        """run.controller_ablation's own experiment folder: V, M and the start frames copied from the world model
        its C's train on (the last iterative round's), and one controller folder per variant."""
        return ExperimentLayout(self.root / "controller_ablation")

    @property
    def world_model_record(self) -> Path:
        """Which round's V and M a derived folder (the temperature sweep's, the controller ablation's) holds, with
        their SHA-256 (`run.world_copy`)."""
        return self.root / "world_model.json"

    def round(self, k: int) -> ExperimentLayout:
        """Iterative round k's experiment folder; round 0 is this experiment itself."""
        return self if k == 0 else ExperimentLayout(self.iterate / f"round_{k:02d}")

    def rounds(self) -> list[ExperimentLayout]:
        """The iterative rounds present, round 0 first."""
        found = sorted(self.iterate.glob("round_[0-9][0-9]")) if self.iterate.is_dir() else []
        return [self] + [ExperimentLayout(path) for path in found]

    def holes(self, policy: str) -> Path:
        """Real episodes of a fixed policy an audit flagged as a hole (run.iterate --hole_episodes)."""
        return self.root / "holes" / policy

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def web(self) -> Path:
        """The dream as a static web page (run.export_web's default output)."""
        return self.root / "web"

    @property
    def dream_audit(self) -> Path:
        """The dream audit's data; its Markdown table is `dream_audit_markdown`."""
        return self.report / "dream_audit.json"

    @property
    def dream_audit_markdown(self) -> Path:
        return self.report / "dream_audit.md"

    @property
    def pipeline_record(self) -> Path:
        return self.root / "pipeline.json"

    @property
    def worker_errors(self) -> Path:
        """Tracebacks of worker processes that failed (the one-line error on screen names this file)."""
        return self.root / "worker_errors.log"


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
