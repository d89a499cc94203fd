"""run.controller_ablation: the paper's CarRacing table (full, z, z_hidden with one budget on one world model) on
a tiny CarRacing experiment whose M predicts the reward, scored on real CarRacing tracks; the report's rows taken
from it; bad input through the command line."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from common.errors import UserError
from common.layout import experiment
from controller.model import Controller
from rnn.model import MDNRNN
from run.controller_ablation import AblationConfig, run_ablation
from run.report import ReportConfig, write_report
from tests.conftest import make_carracing_world
from tests.test_report import scores_problems
from vae.encode import write_initial_z

REPO = Path(__file__).resolve().parents[1]
Z, HIDDEN = 32, 16  # make_carracing_world's V and series; the M made here
PIPELINE = {"env": "carracing", "controller_env": "carracingrnn", "temperature": 1.0, "popsize": 4, "rollouts": 1,
            "generations": 1, "eval_every": 1, "eval_rollouts": 2, "sigma": 0.1, "max_steps": 40, "workers": 1,
            "seed": 0}  # what a tiny pipeline would record; the ablation's settings default to these


def _reward_m(seed: int) -> MDNRNN:
    """A small CarRacing M with a reward output, its weights perturbed per seed (so two rounds' Ms differ)."""
    keras.utils.set_random_seed(seed)
    rnn = MDNRNN(z_size=Z, action_size=3, hidden_size=HIDDEN, num_mixtures=5, predict_reward=True)
    rng = np.random.default_rng(seed)
    rnn.set_weights([w + rng.normal(0.0, 0.05, w.shape).astype(np.float32) for w in rnn.get_weights()])
    return rnn


@pytest.fixture(scope="module")
def car_experiment(tmp_path_factory) -> Path:
    """A tiny CarRacing experiment as the pipeline leaves it: V (untrained, z 32), an M with a reward output, the
    series with their start frames, one iterative round whose M differs, the pipeline's record, and the pipeline's
    own full C with its real evaluation (numbers set here: the ablation must not replace them)."""
    exp = make_carracing_world(tmp_path_factory.mktemp("ablation") / "exp", seed=0)
    write_initial_z(exp / "series")
    _reward_m(0).save(exp / "rnn" / "rnn.keras")
    round_one = experiment(exp).round(1)
    for part in ("vae", "series"):
        (round_one.root / part).mkdir(parents=True)
    for source, target in ((experiment(exp).vae_model, round_one.vae_model),
                           (experiment(exp).initial_z, round_one.initial_z)):
        target.write_bytes(source.read_bytes())
    (round_one.root / "rnn").mkdir()
    _reward_m(1).save(round_one.rnn_model)
    (exp / "pipeline.json").write_text(json.dumps({
        "config": PIPELINE, "config_name": "carracing_tiny", "command": "python -m run.pipeline --exp_dir=exp",
        "commit": "0123abc", "total_seconds": 60.0,
        "machine": {"cpu": "a CPU", "usable_cores": 2, "gpus": [], "tensorflow": "2"}}))
    own = experiment(exp).controller_run("carracingrnn", "full", 1.0)
    Controller("carracing", "full", z_size=Z, hidden_size=HIDDEN).save(own.controller, np.zeros(147, np.float32))
    own.config.write_text(json.dumps({"env": "carracingrnn", "temperature": 1.0}))
    own.evaluation("carracing").write_text(json.dumps({"env": "carracing", "episodes": 2, "mean": -11.0, "std": 1.0,
                                                       "scores": [-12.0, -10.0]}))
    return exp


def test_ablation_trains_each_c_with_one_budget_on_the_last_rounds_m_and_tabulates_it(car_experiment):
    exp = car_experiment
    rows = run_ablation(exp, AblationConfig(real_episodes=2, dream_episodes=4), verbose=False)
    folder = exp / "controller_ablation"
    # one world model: the last round's V, M and start frames, copied and recorded
    record = json.loads((folder / "world_model.json").read_text())
    round_m = exp / "iterate" / "round_01" / "rnn" / "rnn.keras"
    assert record["round"] == 1 and set(record["sha256"]) == {"vae", "rnn", "initial_z"}
    assert record["sha256"]["rnn"] == hashlib.sha256(round_m.read_bytes()).hexdigest()
    assert (folder / "rnn" / "rnn.keras").read_bytes() == round_m.read_bytes()
    assert (folder / "series" / "initial_z.npz").is_file() and (folder / "vae" / "vae.keras").is_file()
    # each C from scratch in the dream at the pipeline's tau, with the pipeline's budget, scored in both worlds
    assert [row["controller"] for row in rows] == ["full", "z", "z_hidden"]
    assert [row["params"] for row in rows] == [(Z + HIDDEN) * 3 + 3, 99, 1_443]  # z and z_hidden: the paper's
    assert [row["paper"]["params"] for row in rows] == [867, 99, 1_443]
    assert [(row["paper"]["mean"], row["paper"]["std"]) for row in rows] == [(906, 21), (632, 251), (788, 141)]
    for row in rows:
        run = exp / row["folder"]
        assert row["folder"] == f"controller_ablation/controller/carracingrnn_{row['controller']}_t1"
        assert row["round"] == 1 and row["train_env"] == "carracingrnn" and row["temperature"] == 1.0
        assert (row["generations"], row["popsize"], row["rollouts"], row["episodes"]) == (1, 4, 1, 4)
        assert Controller.load(run / "controller.json")[0].variant == row["controller"]
        real = json.loads((run / "evaluation_carracing.json").read_text())
        assert real["episodes"] == row["real_episodes"] == 2 and real["mean"] == row["real_mean"]
        assert real["max_steps"] == 40, "real tracks capped as the pipeline's episodes"
        dream = json.loads((run / "dream_evaluation.json").read_text())
        assert dream["episodes"] == row["dream_episodes"] == 4 and dream["mean"] == row["dream_mean"]
        assert dream["max_steps"] == 40
    table = json.loads((exp / "report" / "controller_ablation.json").read_text())
    assert table["rows"] == rows
    markdown = (exp / "report" / "controller_ablation.md").read_text()
    full, z = rows[0], rows[1]
    assert (f"| World Model (V + M), full (`full`) | 906 ± 21 | {full['real_mean']:,.0f} ± {full['real_std']:,.0f} (2) "
            f"| {full['dream_mean']:,.0f} ± {full['dream_std']:,.0f} (4) | 147 (867) | 1 | 4 |") in markdown
    assert "| V model only, z input (`z`) | 632 ± 251 |" in markdown and "| 99 (99) |" in markdown
    assert "| 1,443 (1,443) |" in markdown and "round 1's V and M" in markdown

    # the same command again reuses every score on disk; another world model is refused
    stamps = [(exp / row["folder"] / "evaluation_carracing.json").stat().st_mtime_ns for row in rows]
    assert run_ablation(exp, AblationConfig(real_episodes=2, dream_episodes=4), verbose=False) == rows
    assert stamps == [(exp / row["folder"] / "evaluation_carracing.json").stat().st_mtime_ns for row in rows]
    with pytest.raises(UserError, match="trained its C's on another world model"):
        run_ablation(exp, AblationConfig(round=0, real_episodes=2, dream_episodes=4), verbose=False)

    # the report's CarRacing table takes the three rows from the ablation; the pipeline's own C keeps a row
    report = write_report(ReportConfig(exp_dirs=(str(exp),))).read_text()
    carracing = report.split("### CarRacing")[1].split("### Doom")[0]
    assert f"| World Model (V + M), full | 906 ± 21 | {full['real_mean']:,.0f} ± {full['real_std']:,.0f} (2) |" \
        in carracing
    assert f"| V model only, z input | 632 ± 251 | {z['real_mean']:,.0f} ± {z['real_std']:,.0f} (2) |" in carracing
    assert "| World Model (V + M), full: the experiment's own C (round 0) | — | -11 ± 1 (2) |" in carracing
    assert "trained from scratch with one budget (CMA-ES population 4 x 1 dreams a candidate, 1 generation) " \
           "in the dream (τ 1) of iterative round 1's world model" in carracing
    assert "### Controller ablation" in report and "| 1,443 (1,443) |" in report.split("### Controller ablation")[1]
    scores = json.loads((exp / "report" / "scores.json").read_text())
    assert scores_problems(scores) == []
    ablated = [row for row in scores["rows"] if "controller ablation" in row["name"]]
    assert [row["name"] for row in ablated] == [f"{c}, tau 1, controller ablation on round 1's M"
                                                for c in ("full", "z", "z_hidden")]
    assert [row["controller"] for row in ablated] == ["full", "z", "z_hidden"]
    assert ablated[1]["real"] == {"mean": round(z["real_mean"], 1), "std": round(z["real_std"], 1), "episodes": 2}
    assert ablated[1]["dream"]["episodes"] == 4 and not any(row["result"] for row in ablated)
    [result] = [row for row in scores["rows"] if row["result"]]
    assert result["name"] == "full, tau 1" and result["real"]["mean"] == -11.0, "the run's result is unchanged"


def test_in_the_real_game_each_c_is_scored_on_real_tracks_only(car_experiment):
    """--env=carracing (what an M without a reward output needs): CMA-ES plays real tracks, the final C is scored
    on real tracks only, and the table and the report say so."""
    exp = car_experiment
    [row] = run_ablation(exp, AblationConfig(controllers=("z",), env="carracing", popsize=2, eval_rollouts=1,
                                             real_episodes=2), verbose=False)
    assert row["folder"] == "controller_ablation/controller/carracing_z" and row["round"] == 1
    assert row["train_env"] == "carracing" and row["temperature"] is None and "dream_mean" not in row
    assert (row["params"], row["generations"], row["popsize"], row["episodes"]) == (99, 1, 2, 2)
    history = json.loads((exp / row["folder"] / "history.json").read_text())
    assert [len(g["fitness"]) for g in history["generations"]] == [2]
    assert not (exp / row["folder"] / "dream_evaluation.json").exists()
    markdown = (exp / "report" / "controller_ablation.md").read_text()
    assert "trained from scratch in the real game" in markdown and "2 x 1 real episodes a candidate" in markdown
    assert f"| V model only, z input (`z`) | 632 ± 251 | {row['real_mean']:,.0f} ± {row['real_std']:,.0f} (2) | — |" \
        in markdown
    write_report(ReportConfig(exp_dirs=(str(exp),)))
    scores = json.loads((exp / "report" / "scores.json").read_text())
    [ablated] = [r for r in scores["rows"] if "controller ablation" in r["name"]]
    assert ablated["name"] == "z, trained in real CarRacing, controller ablation on round 1's M"
    assert ablated["dream"] is None and "temperature" not in ablated and ablated["real"]["episodes"] == 2


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "run.controller_ablation", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def no_reward_m(tmp_path_factory) -> Path:
    """make_carracing_world as it is: its M has no reward output."""
    exp = make_carracing_world(tmp_path_factory.mktemp("no_reward") / "exp", seed=0)
    write_initial_z(exp / "series")
    return exp


@pytest.mark.parametrize("args, message", [
    (["--controllers=full,bogus"], "--controllers=full,bogus: no C is registered as 'bogus'"),
    (["--env=carracingrnn"], "--env=carracingrnn: "),
    (["--real_episodes=0"], "--real_episodes=0: must be at least 1"),
    (["--popsize=0"], "--popsize=0: must be at least 1"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(no_reward_m, args, message):
    result = _cli(f"--exp_dir={no_reward_m}", *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert message in lines[0], lines[0]
    assert not (no_reward_m / "controller_ablation").exists() and not (no_reward_m / "report").exists()


def test_a_doom_experiment_is_refused_before_anything_is_written(no_reward_m, tmp_path):
    doom = tmp_path / "doom"
    doom.mkdir()
    (doom / "pipeline.json").write_text(json.dumps({"config": {"env": "doom"}}))
    with pytest.raises(UserError, match="a doom experiment; the controller ablation is CarRacing's"):
        run_ablation(doom, AblationConfig(), verbose=False)
    doom_m = tmp_path / "doom_m"  # no pipeline.json: M's single action value tells
    for part in ("vae", "series"):
        (doom_m / part).mkdir(parents=True)
    experiment(doom_m).vae_model.write_bytes(experiment(no_reward_m).vae_model.read_bytes())
    experiment(doom_m).initial_z.write_bytes(experiment(no_reward_m).initial_z.read_bytes())
    (doom_m / "rnn").mkdir()
    MDNRNN(z_size=Z, action_size=1, hidden_size=HIDDEN, predict_done=True).save(experiment(doom_m).rnn_model)
    with pytest.raises(UserError, match="a Doom experiment's; the controller ablation is CarRacing's"):
        run_ablation(doom_m, AblationConfig(), verbose=False)
    for folder in (doom, doom_m):
        assert not (folder / "controller_ablation").exists() and not (folder / "report").exists()
