"""run.report and run.temperature_sweep on a finished doom_tiny run (shared with test_pipeline), on folders that
lack pieces, and with bad input."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from run.report import NOT_RUN, ReportConfig, write_report
from run.temperature_sweep import SweepConfig, run_sweep
from tests.test_pipeline import CONTROLLER, finished_doom_tiny

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def doom_tiny(tmp_path_factory) -> Path:
    return finished_doom_tiny(tmp_path_factory)[0]


def _cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_report_of_a_finished_run_has_the_papers_columns_counts_times_and_images(doom_tiny, tmp_path):
    out = tmp_path / "report"
    result = _cli("run.report", f"--exp_dir={doom_tiny}", f"--out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    text = (out / "README.md").read_text()
    evaluation = json.loads((doom_tiny / CONTROLLER / "evaluation_doom.json").read_text())
    # the paper's tables, this run's column beside them
    assert "| method (100 random tracks) | paper | this run |" in text
    assert "| World Model (V + M), full | 906 ± 21 | not run |" in text
    assert "| 1.15 | 918 ± 546 | 1,092 ± 556 |" in text
    assert f"{evaluation['mean']:,.0f} ± {evaluation['std']:,.0f} (4) |" in text
    assert "| 0.10 | 2,086 ± 140 | 193 ± 58 | not run | not run |" in text
    round_one = json.loads((doom_tiny / "iterate" / "progress.json").read_text())["rounds"][1]
    assert (f"| 1.15, after iterative round 1 (the paper's iterative procedure; M also saw the controller's real "
            f"episodes) | — | — | {round_one['dream']['mean']:,.0f} ± ") in text
    assert f"| {round_one['real_mean']:,.0f} ± {round_one['real_std']:,.0f} (4) |" in text
    assert "#### Dream audit after round 01" in text and "| always left |" in text  # each round's audit, inline
    assert "#### C after round 01: training and real scores" in text, "each round's C: its curve and histogram"
    assert "round_01_doomrnn_full_t1.15_progress.png)" in text and "round_01_doomrnn_full_t1.15_histogram.png)" in text
    # parameter counts, this run (the paper's architectures) beside the paper's
    assert "| V (ConvVAE) | 4,446,915 | 4,446,915 |" in text
    assert "| M (MDN-RNN) | 1,678,785 | 1,678,785 |" in text
    assert "| C `doomrnn_full_t1.15` (reads [z, c, h]) | 1,088 | 1,088 |" in text
    # stage times and the machine, from pipeline.json
    record = json.loads((doom_tiny / "pipeline.json").read_text())
    for stage in ("collect", "vae", "encode", "rnn", "controller", "evaluate"):
        assert f"| {stage} | done |" in text, stage
    assert record["machine"]["cpu"] in text and record["machine"]["tensorflow"] in text
    # every embedded image is in the report folder and is a real image
    images = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert {"reconstructions.png", "doomrnn_full_t1.15_progress.png", "doomrnn_full_t1.15_histogram.png",
            "dream_strip.png"} <= set(images)
    for name in images:
        with Image.open(out / name) as image:
            assert image.size[0] >= 64 and image.size[1] >= 64, name
    strip = np.asarray(Image.open(out / "dream_strip.png"))
    assert strip.shape[0] == 128 and strip.shape[1] % 128 == 0  # frames of V's decoding, 2x enlarged
    assert (out / "dream.gif").is_file()
    assert "### Temperature sweep\n\nnot run" in text
    assert "### Dream audit\n\n##### Dream audit (tau = 1.15, 2 episodes per policy" in text  # round 0's, by iterate


def test_missing_pieces_are_shown_as_not_run_and_several_experiments_make_one_report(doom_tiny, tmp_path):
    sparse = tmp_path / "sparse"
    (sparse / "rollouts").mkdir(parents=True)
    (sparse / "rollouts" / "collect.json").write_text(json.dumps({"env": "carracing"}))
    (sparse / "report").mkdir()
    (sparse / "report" / "dream_audit.md").write_text("# Audit\n\nThe dream was checked.\n")
    path = write_report(ReportConfig(exp_dirs=(str(sparse),)))
    text = path.read_text()
    assert path == sparse / "report" / "README.md"
    assert "| sparse | V (ConvVAE) | not run | 4,348,547 |" in text
    assert "| World Model (V + M), full | 906 ± 21 | not run |" in text
    assert f"Reconstructions: {NOT_RUN}" in text and f"Dream samples: {NOT_RUN}" in text
    assert "### Audit" in text and "The dream was checked." in text  # the audit, its headings nested
    noted = tmp_path / "noted"  # a hand-written note in pipeline.json (e.g. stages copied from another run)
    noted.mkdir()
    record = json.loads((doom_tiny / "pipeline.json").read_text())
    (noted / "pipeline.json").write_text(json.dumps({**record, "note": "Stages copied from run A."}))
    text = write_report(ReportConfig(exp_dirs=(str(noted),))).read_text()
    assert "Total of the finished stages:" in text and "Note: Stages copied from run A.\n" in text

    out = tmp_path / "combined"
    text = write_report(ReportConfig(exp_dirs=(str(doom_tiny), str(sparse)), out=str(out))).read_text()
    assert f"## Experiment `{doom_tiny.name}` (doom)" in text and "## Experiment `sparse` (carracing)" in text
    assert f"this run: {doom_tiny.name}: real" in text and "this run: sparse |" in text
    assert (out / f"1_{doom_tiny.name}_reconstructions.png").is_file()
    assert (out / f"1_{doom_tiny.name}_dream_strip.png").is_file()


def test_temperature_sweep_trains_scores_and_tabulates_each_tau(doom_tiny, tmp_path):
    exp_dir = tmp_path / "sweep"
    shutil.copytree(doom_tiny, exp_dir)
    before = (exp_dir / CONTROLLER / "evaluation_doom.json").read_text()
    rows = run_sweep(exp_dir, SweepConfig(temperatures=(0.5, 1.15), dream_episodes=6, real_episodes=4),
                     verbose=False)
    assert [row["temperature"] for row in rows] == [0.5, 1.15]
    for row in rows:
        folder = exp_dir / row["controller"]
        assert row["generations"] == 2, "the CMA-ES settings default to the pipeline's"
        assert row["dream_episodes"] == 6 and 1 <= row["dream_mean"] <= 300  # doom_tiny caps dreams at 300
        assert row["real_episodes"] == 4 and row["real_mean"] >= 1
        dream = json.loads((folder / "dream_evaluation.json").read_text())
        assert dream["mean"] == row["dream_mean"] and len(dream["scores"]) == 6
    assert rows[0]["controller"] == "controller/doomrnn_full_t0.5"
    assert (exp_dir / "controller/doomrnn_full_t0.5/evaluation_doom.json").is_file()
    assert (exp_dir / CONTROLLER / "evaluation_doom.json").read_text() == before, \
        "the pipeline's own tau is neither retrained nor replayed"
    table = json.loads((exp_dir / "report" / "temperature_table.json").read_text())
    assert table["rows"] == rows
    markdown = (exp_dir / "report" / "temperature_table.md").read_text()
    assert "| 0.50 | 2,060 ± 277 | 196 ± 50 |" in markdown and "| 1.15 | 918 ± 546 | 1,092 ± 556 |" in markdown
    report = write_report(ReportConfig(exp_dirs=(str(exp_dir),))).read_text()
    assert "| 0.50 | 2,060 ± 277 | 196 ± 50 |" in report.split("### Temperature sweep")[1]
    # the Doom table now shows the sweep's dream score (no *) at tau 0.5
    assert f"| 0.50 | 2,060 ± 277 | 196 ± 50 | {rows[0]['dream_mean']:,.0f} ± {rows[0]['dream_std']:,.0f} (6) |" \
        in report


@pytest.mark.parametrize("module, args, message", [
    ("run.report", ["--exp_dir=/nonexistent/exp"], "--exp_dir=/nonexistent/exp: no such experiment folder"),
    ("run.report", ["--exp_dir=.", "--dream_frames=x"], "--dream_frames=x"),
    ("run.temperature_sweep", ["--exp_dir=/nonexistent/exp"], "--exp_dir=/nonexistent/exp"),
    ("run.temperature_sweep", ["--exp_dir=.", "--temperatures=0.5,hot"], "--temperatures=0.5,hot"),
])
def test_bad_input_gives_one_error_line_and_exit_2(module, args, message):
    result = _cli(module, *args)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
