"""Iterative training and the dream audit, at tiny sizes on the real game and a rigged M."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from absl import flags

from common.errors import UserError
from common.layout import experiment
from controller.es import ESConfig
from controller.train import ControllerTrainConfig, train_controller
from run.dream_audit import FIXED_POLICIES, AuditConfig, audit_dream
from run.iterate_rounds import FINE_TUNE, ITERATE_FLAGS, IterateConfig, controller_config, iterate, parse_generations
from run.report import ReportConfig, write_report
from tests.conftest import make_carracing_world

REPO = Path(__file__).resolve().parents[1]


def tiny(**fields) -> IterateConfig:
    """Rounds of 3 real episodes, 4 steps of M, and 2 generations of a 4 x 2 population."""
    settings = dict(episodes_per_round=3, explore=0.3, generations=(2,), eval_episodes=2, workers=2, max_steps=100,
                    doom_resolution="160x120", rnn=dataclasses.replace(FINE_TUNE, steps=4, batch_size=2, seq_len=20),
                    controller=ControllerTrainConfig(es=ESConfig(popsize=4, rollouts=2, eval_every=1, eval_rollouts=4)))
    return IterateConfig(**{**settings, **fields})


def as_flags(config: IterateConfig) -> list[str]:
    """`config` as run.iterate's command-line flags."""
    args = []
    for name, value in ITERATE_FLAGS.values(config).items():
        if isinstance(value, bool):
            args.append(f"--{name}" if value else f"--no{name}")
        elif value is not None:
            args.append(f"--{name}={','.join(map(str, value)) if isinstance(value, tuple) else value}")
    return args


@pytest.fixture()
def round_zero(rigged_dream, tmp_path) -> Path:
    """A copy of the rigged experiment with a controller trained (briefly) in its dream: round 0."""
    exp = tmp_path / "exp"
    exp.mkdir()
    for name in ("vae", "rnn", "series"):
        shutil.copytree(rigged_dream / name, exp / name)
    train_controller(exp, ControllerTrainConfig(env="doomrnn", es=ESConfig(
        popsize=4, rollouts=2, generations=1, eval_every=1, eval_rollouts=4, seed=0)), verbose=False)
    return exp


def test_two_rounds_write_their_folders_and_a_report_section(round_zero):
    rounds = iterate(round_zero, tiny(rounds=2, audit_episodes=2, generations=(2, 3)),
                     verbose=False)
    assert [r["round"] for r in rounds] == [0, 1, 2]
    for k in (1, 2):
        folder = round_zero / "iterate" / f"round_{k:02d}"
        assert len(list((folder / "rollouts").glob("ep*.npz"))) == 3
        own = list((folder / "series").glob("ep[0-9]*.npz"))
        linked = list((folder / "series").glob("ep_r*.npz"))
        assert len(own) == 3 and len(linked) == 6 + 3 * (k - 1), "M sees all data so far"
        assert (folder / "rnn" / "rnn.keras").exists()
        controller = folder / "controller" / "doomrnn_full_t1.15"
        assert (controller / "controller.json").exists() and (controller / "evaluation_doom.json").exists()
        generations = len(json.loads((controller / "history.json").read_text())["generations"])
        assert generations == (3 if k == 2 else 2), "each round trains its own generations"
        assert (folder / "report" / "dream_audit.md").exists()
        assert json.loads((folder / "rnn" / "config.json").read_text())["init_model"].endswith("rnn.keras")
        validation = json.loads((folder / "rnn" / "split.json").read_text())["validation"]
        assert validation and all(name.startswith("ep0") for name in validation), "picked on the new episodes"
    assert (round_zero / "report" / "dream_audit.md").exists(), "round 0's audit, for comparison"
    report = (round_zero / "report" / "iterate.md").read_text()
    assert "| 0 | random policy |" in report and "| 2 | + round 1 controller |" in report
    assert "[table](dream_audit.md)" in report and "../" not in report
    assert "`iterate/round_02/report/dream_audit.md` (in the experiment folder)" in report
    progress = json.loads((round_zero / "iterate" / "progress.json").read_text())
    assert all(r["real_episodes"] == 2 for r in progress["rounds"])

    # Run again: nothing is redone, except the scores of a controller trained further since (same path).
    folder = round_zero / "iterate" / "round_02"
    controller = folder / "controller" / "doomrnn_full_t1.15" / "controller.json"
    results = [controller.parent / "evaluation_doom.json", folder / "report" / "dream_audit.json",
               round_zero / "iterate" / "round_01" / "controller" / "doomrnn_full_t1.15" / "evaluation_doom.json"]
    written = [path.stat().st_mtime_ns for path in results]
    record = json.loads(controller.read_text())
    controller.write_text(json.dumps({**record, "params": [x + 0.5 for x in record["params"]]}))
    iterate(round_zero, tiny(rounds=2, audit_episodes=2, generations=(2, 3)), verbose=False)
    rewritten = [path.stat().st_mtime_ns for path in results]
    assert rewritten[0] != written[0] and rewritten[1] != written[1], "the changed controller is scored again"
    assert rewritten[2] == written[2], "round 1's unchanged controller is not"


def test_later_rounds_may_train_another_controller_from_scratch_at_their_own_temperature(round_zero, tmp_path):
    """Round 0's full C at tau 1.15, then the z C at tau 1.0: round 1 trains it from scratch (a warm start from a
    full C would be refused), round 2 warm-starts from round 1's; the report names the rounds' C."""
    config = tiny(rounds=2, round_controller="z", round_temperature=1.0, audit_episodes=1).validated()
    rounds = iterate(round_zero, config, verbose=False)
    assert [r["round"] for r in rounds] == [0, 1, 2]
    base = experiment(round_zero)
    assert controller_config(base, 1, config).init_file is None, "another variant: from scratch"
    assert controller_config(base, 2, config).init_file == str(
        round_zero / "iterate" / "round_01" / "controller" / "doomrnn_z_t1" / "controller.json")
    for k in (1, 2):
        controller = round_zero / "iterate" / f"round_{k:02d}" / "controller" / "doomrnn_z_t1"
        assert json.loads((controller / "config.json").read_text())["temperature"] == 1.0
        assert json.loads((controller / "controller.json").read_text())["controller"]["variant"] == "z"
        audit = json.loads((round_zero / "iterate" / f"round_{k:02d}" / "report" / "dream_audit.json").read_text())
        assert audit["temperature"] == 1.0
    assert json.loads((round_zero / "report" / "dream_audit.json").read_text())["temperature"] == 1.15
    assert not (round_zero / "iterate" / "round_01" / "controller" / "doomrnn_full_t1.15").exists()
    progress = json.loads((round_zero / "iterate" / "progress.json").read_text())
    assert progress["config"]["temperature"] == 1.0 and progress["config"]["round_controller"] == "z"
    write_report(ReportConfig(exp_dirs=(str(round_zero),), out=str(tmp_path / "report")))
    rows = {row["name"]: row for row in json.loads((tmp_path / "report" / "scores.json").read_text())["rows"]}
    assert rows["z, tau 1, round 2"]["result"] and "full, tau 1.15, round 0" in rows
    for bad, message in (({"round_temperature": 0.0}, "--round_temperature=0.0: must be positive"),
                         ({"round_controller": "wide"}, "--round_controller: --controller=wide")):
        with pytest.raises(UserError, match=message):
            tiny(rounds=1, **bad).validated()


def test_a_round_adds_real_episodes_of_the_holes_its_audit_flagged(round_zero):
    # The rigged M never kills a right-mover, the game does within a few hundred steps: round 0's audit must flag
    # "always right", and round 1 must play it for real and give those episodes to M (but not validate on them).
    config = tiny(rounds=1, audit_episodes=2, hole_episodes=2, max_steps=600)
    rounds = iterate(round_zero, config, verbose=False)

    audit = json.loads((round_zero / "report" / "dream_audit.json").read_text())
    flagged = [row["policy"] for row in audit["rows"] if row["hole"] and row["policy"] != "controller"]
    assert "always right" in flagged and rounds[1]["holes"] == [name.replace(" ", "_") for name in flagged]
    folder = round_zero / "iterate" / "round_01"
    played = sorted((folder / "holes" / "always_right" / "rollouts").glob("ep*.npz"))
    assert len(played) == 2 and all((np.load(path)["action"] == 1.0).all() for path in played)
    linked = sorted((folder / "series").glob("ep_r01_always_right_ep*.npz"))
    assert len(linked) == 2 and all(path.resolve().parent.parent.name == "always_right" for path in linked)
    validation = json.loads((folder / "rnn" / "split.json").read_text())["validation"]
    assert all(name.startswith("ep0") for name in validation), "M is still picked on the controller's play"
    assert "| 1 | + round 0 controller + always_right" in (round_zero / "report" / "iterate.md").read_text()
    with pytest.raises(UserError, match="--hole_episodes=2: needs the dream audit"):
        IterateConfig(hole_episodes=2).validated()
    with pytest.raises(UserError, match="--hole_episodes=2: needs the dream audit"):
        IterateConfig(env="carracing", hole_episodes=2, audit_episodes=2).validated()  # C in the real game


def test_carracing_holes_name_the_audits_driving_policies(tmp_path):
    """A CarRacing audit's flagged probes map to the collection policies a round plays for real."""
    from common.storage import write_json
    from run.iterate_rounds import flagged_holes

    layout = experiment(tmp_path)
    write_json(layout.dream_audit, {"rows": [
        {"policy": "full gas straight", "hole": True}, {"policy": "steer left", "hole": False},
        {"policy": "steer right", "hole": True}, {"policy": "controller", "hole": True}]})
    assert flagged_holes(layout, "carracing") == ["full_gas", "steer_right"]
    assert flagged_holes(layout, "doom") == []
    IterateConfig(env="carracing", controller_env="carracingrnn", hole_episodes=2, audit_episodes=2).validated()


def test_carracing_rounds_fine_tune_m_on_the_controllers_episodes_and_retrain_c_in_the_real_game(tmp_path):
    from common.storage import write_json

    exp = make_carracing_world(tmp_path / "exp", seed=5)
    write_json(exp / "rollouts" / "collect.json", {"env": "carracing", "policy": "mixed_driving"})  # round 0's data
    train_controller(exp, ControllerTrainConfig(env="carracing", workers=2, max_steps=40, es=ESConfig(
        popsize=4, rollouts=1, generations=1, eval_every=1, eval_rollouts=2, seed=0)), verbose=False)
    config = tiny(env="carracing", rounds=1, rnn=dataclasses.replace(FINE_TUNE, steps=3, batch_size=2, seq_len=20),
                  controller=ControllerTrainConfig(es=ESConfig(popsize=4, rollouts=1, eval_every=1, eval_rollouts=2)),
                  max_steps=40, audit_episodes=2)
    rounds = iterate(exp, config, verbose=False)

    assert [r["round"] for r in rounds] == [0, 1] and all(r["dream"] is None for r in rounds), "no dream in CarRacing"
    folder = exp / "iterate" / "round_01"
    own = list((folder / "series").glob("ep[0-9]*.npz"))
    assert len(own) == 3 and len(list((folder / "series").glob("ep_r00_*.npz"))) == 1, "M sees all data so far"
    assert all(len(np.load(path)["action"]) == 40 for path in own), "the controller drove every episode"
    rnn_config = json.loads((folder / "rnn" / "config.json").read_text())
    assert rnn_config["init_model"] == str((exp / "rnn" / "rnn.keras").resolve()) and not rnn_config["predict_done"]
    controller = folder / "controller" / "carracing_full"
    assert len(json.loads((controller / "history.json").read_text())["generations"]) == 2
    assert json.loads((controller / "config.json").read_text())["env"] == "carracing", "trained in the real game"
    assert json.loads((controller / "evaluation_carracing.json").read_text())["episodes"] == 2
    assert not (folder / "report" / "dream_audit.md").exists(), "the dream audit is Doom's"
    table = (exp / "report" / "iterate.md").read_text()
    assert "| 1 | + round 0 controller |" in table and "dream" not in table
    assert "| 0 | mixed driving (Brownian, noisy track follower) |" in table, "round 0's data by its policy"
    report = write_report(ReportConfig(exp_dirs=(str(exp),), out=str(tmp_path / "report"))).read_text()
    assert "| 0 | mixed driving (Brownian, noisy track follower) |" in report
    assert "World Model (V + M), full, after iterative round 1" in report

    links = [path.relative_to(exp) for path in folder.rglob("*") if path.is_symlink()]
    assert len(links) == 2, "round 0's V and its episode"
    moved = exp.rename(tmp_path / "moved")
    assert all((moved / link).exists() for link in links), "a moved experiment still finds its earlier rounds"


def test_generations_are_given_per_round_and_the_last_value_repeats():
    assert [IterateConfig(generations=(20, 60)).generations_of(k) for k in (1, 2, 3)] == [20, 60, 60]
    assert parse_generations("20,60,30") == (20, 60, 30)
    for bad in ("", "20,x", "20,0"):
        with pytest.raises(UserError, match=f"--generations={bad}:"):
            parse_generations(bad)


def test_a_round_killed_mid_way_resumes(round_zero):
    args = [sys.executable, "-m", "run.iterate", f"--exp_dir={round_zero}", "--rounds=1"]
    args += as_flags(tiny()) + ["--episodes_per_round=6"]
    process = subprocess.Popen(args, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    rollouts = round_zero / "iterate" / "round_01" / "rollouts"
    deadline = time.monotonic() + 300
    while len(list(rollouts.glob("ep*.npz"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 2 <= len(list(rollouts.glob("ep*.npz"))) < 6
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list(rollouts.glob("ep*.npz"))) == 6
    assert "round 1:" in result.stdout and "real" in result.stdout


def test_audit_has_a_row_per_policy_with_real_and_dream_columns(round_zero):
    rows = audit_dream(round_zero, AuditConfig(episodes=3, workers=2, max_steps=200, doom_resolution="160x120"),
                       verbose=False)
    assert [r["policy"] for r in rows] == list(FIXED_POLICIES) + ["controller"]
    for row in rows:
        assert 1 <= row["real_mean"] <= 200 and 1 <= row["dream_mean"] <= 200
        assert row["ratio"] == pytest.approx(row["dream_mean"] / max(row["real_mean"], 1.0))
    # The rigged M is safe for a right-mover and deadly for a left-mover: its dream says so.
    by_policy = {r["policy"]: r for r in rows}
    assert by_policy["always right"]["dream_mean"] > by_policy["always left"]["dream_mean"]
    table = (round_zero / "report" / "dream_audit.md").read_text()
    assert "| policy | dream survival | real survival | dream / real |" in table
    assert table.count("\n| ") == len(rows) + 1


def test_the_iterate_flags_keep_their_names_and_the_entry_points_smaller_evaluations():
    flag_values = flags.FlagValues()
    ITERATE_FLAGS.define(flag_values)
    flag_values(["iterate", "--rounds=3", "--episodes_per_round=50", "--explore=0.2", "--generations=20,60",
                 "--rnn_steps=300", "--rnn_batch_size=8", "--popsize=16", "--temperature=1.3", "--workers=1"])
    config = ITERATE_FLAGS.parse(flag_values)
    assert (config.rounds, config.episodes_per_round, config.explore, config.generations) == (3, 50, 0.2, (20, 60))
    rnn = config.rnn
    assert (rnn.steps, rnn.batch_size, rnn.eval_every, rnn.val_fraction) == (300, 8, 100, 0.1), "fine-tuning's own"
    assert (config.controller.es.popsize, config.temperature, config.workers) == (16, 1.3, 1)
    assert (config.controller.es.eval_every, config.controller.es.eval_rollouts) == (10, 256), "run.iterate's own"
    assert (ESConfig().eval_every, ESConfig().eval_rollouts) == (25, 1024), "the config's are the paper's"
    for skipped in ("controller_env", "hidden", "rnn_hidden", "rnn_seed", "init_file", "rnn_init_model"):
        assert skipped not in flag_values, "set by each round, not by a flag"
    with pytest.raises(UserError, match="--generations=20,x: expected a comma-separated list of int"):
        other = flags.FlagValues()
        ITERATE_FLAGS.define(other)
        other(["iterate", "--generations=20,x"])
        ITERATE_FLAGS.parse(other)

    flag_values = flags.FlagValues()
    ITERATE_FLAGS.define(flag_values)
    flag_values(["iterate", *as_flags(tiny(env="carracing", generations=(2, 5)))])
    assert ITERATE_FLAGS.parse(flag_values) == tiny(env="carracing", generations=(2, 5)), "flags round-trip"
