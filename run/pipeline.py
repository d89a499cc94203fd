"""Runs the paper's whole pipeline in one experiment folder: collect -> V -> encode -> M -> C -> evaluate ->
iterate -> finetune -> report (iterate with --iterate_rounds, finetune with --real_generations).

    python -m run.pipeline --config=doom_tiny --exp_dir=exp/doom_tiny      # every stage, real, in a few minutes
    python -m run.pipeline --config=doom_small --exp_dir=exp/doom_small    # about two hours on 2 CPU cores
    python -m run.pipeline --config=doom_paper --exp_dir=exp/doom --workers=64
    python -m run.pipeline --config=my_run.cfg --exp_dir=exp/x --generations=50   # a copied config, overridden
    python -m run.pipeline --config=carracing_dream_tiny --exp_dir=exp/crd --real_generations=2  # then real games

`--config` names a flagfile shipped in `run/configs/` (doom_paper, doom_small, doom_tiny, carracing_paper,
carracing_small, carracing_tiny) or a path to one; any flag on the command line overrides the file, and flags
neither give keep the paper's values. Each stage is skipped when `DIR/pipeline.json` records it finished with
the same settings and its output is on disk; the other stages resume from their own checkpoints, so a killed
pipeline run again continues where it stopped. `DIR/pipeline.json` (written atomically after every stage) holds
the resolved settings, each stage's wall time and the machine it ran on; the last stage writes
`DIR/report/README.md`.
"""

from __future__ import annotations

import shlex
import sys

from absl import flags, logging

from common.errors import run_main, sigterm_as_interrupt

EXIT_INTERRUPTED = 130  # the shell's code for a run ended by Ctrl-C

# The pipeline's own modules (and TensorFlow with them) are imported inside the functions below, not here: the
# collection workers are spawned, and a spawned worker imports `python -m`'s module again; playing random
# episodes, they must not load TensorFlow.


def main(argv) -> None:
    from run.pipeline_config import PIPELINE_FLAGS
    from run.pipeline_runner import run_pipeline

    logging.set_verbosity(logging.WARNING)  # TF's checkpoint saver logs a line at INFO on every save
    FLAGS = flags.FLAGS
    try:
        with sigterm_as_interrupt():  # a scheduler's kill is recorded as an interrupted stage, like Ctrl-C
            run_pipeline(FLAGS.exp_dir, PIPELINE_FLAGS.parse(FLAGS), config_name=FLAGS.config,
                         command=" ".join(["python -m run.pipeline", *map(shlex.quote, sys.argv[1:])]))
    except KeyboardInterrupt:
        sys.stderr.write("pipeline: interrupted; the same command resumes\n")
        sys.exit(EXIT_INTERRUPTED)


def define_flags() -> None:
    from run.pipeline_config import define_config_flags

    flags.DEFINE_string("exp_dir", None, "Experiment folder; every stage writes its own subfolder of it.",
                        required=True)
    define_config_flags(flags.FLAGS)


def _with_config_flagfile(argv: list[str]) -> list[str]:
    from run.pipeline_config import with_config_flagfile

    return with_config_flagfile(argv)


if __name__ == "__main__":
    define_flags()
    run_main(main, prepare_argv=_with_config_flagfile)
