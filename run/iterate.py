"""The paper's iterative training (after Learning to Think): play the current controller in the real game,
improve M on what it saw, retrain C with the improved M, repeat.

    python -m run.iterate --exp_dir=DIR --rounds=2 --episodes_per_round=600 --explore=0.3 [--env=carracing]

DIR is round 0: an experiment trained on random data (V, M, series, and C: for Doom trained in the dream, e.g.
by `run.pipeline --config=doom_small`; for CarRacing trained in the real game or, through the pipeline, in the
dream). C is the paper's full [z, h] C unless `--controller` names another (z, z_hidden). Round k lives
in DIR/iterate/round_k/, an experiment folder of its own:
  rollouts/  real episodes of round k-1's controller, with random held actions mixed in (`--explore`) in a
             share of them (`--explore_episodes`)
  holes/<policy>/ (`--hole_episodes`) real episodes of each fixed policy round k-1's audit flagged as
             a hole (e.g. Doom's always_right, CarRacing's full_gas), so M learns what the game really does
             there, not only where C went
  series/    their encoding by V (V stays round 0's) plus links to every earlier round's series
  rnn/       M fine-tuned from round k-1's weights on all series so far
  controller/doomrnn_full_t<tau>/ (Doom: C retrained in the new dream) or carracing_full/ (CarRacing: C retrained
             in the real game on the new M's h), warm-started from round k-1's CMA mean, with its real evaluation
and, for Doom with --audit_episodes, report/dream_audit.md. Each step resumes or is skipped when done, so a
killed round resumes. DIR/iterate/progress.json and DIR/report/iterate.md sum the rounds up: real (and dream)
scores per round, beside round 0's (random data only).

Why: a Doom prototype here scored 163 ± 45 with random data only (M had learnt that hugging a wall is safe) and
768 ± 498 after one round. In CarRacing, random driving rarely goes fast along the track: M sees that only in
the controller's episodes.
"""

from __future__ import annotations

from absl import flags

from common.errors import run_main

# The rounds' modules (and TensorFlow with them) are imported inside the functions below, not here: workers are
# spawned, and a spawned worker imports `python -m`'s module again; one playing fixed policies needs no TensorFlow.


def main(argv) -> None:
    from run.iterate_rounds import ITERATE_FLAGS, iterate

    iterate(flags.FLAGS.exp_dir, ITERATE_FLAGS.parse())


def define_flags() -> None:
    from run.iterate_rounds import ITERATE_FLAGS

    ITERATE_FLAGS.define()
    flags.DEFINE_string("exp_dir", None, "Round 0's experiment folder.", required=True)


if __name__ == "__main__":
    define_flags()
    run_main(main)
