"""run.report and run.temperature_sweep on a finished doom_tiny run (shared with test_pipeline), on folders that
lack pieces, and with bad input; and the committed results/*/ folders: reports that read complete on GitHub (no
machine path, no link out of the folder or to a missing file) and scores.json in RESULTS.md's format."""

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.errors import DataError, UserError
from run.report import NOT_RUN, ReportConfig, write_report
from run.results_table import (
    RECIPES_BEGIN,
    RECIPES_END,
    RESULTS_BEGIN,
    RESULTS_END,
    load_settings,
    recipe_cells,
    recipes_table,
    replace_block,
    results_table,
)
from run.temperature_sweep import SweepConfig, run_sweep
from tests.test_pipeline import CONTROLLER, finished_doom_tiny

REPO = Path(__file__).resolve().parents[1]
RESULTS = sorted(path for path in (REPO / "results").iterdir() if path.is_dir())
MACHINE_PATH = re.compile(r"(/work/|/tmp/|/home/|/root/|/Users/|(?<![A-Za-z])[A-Za-z]:[\\/])")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target), ![alt](target)
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)  # [label]: target
HTML_SOURCE = re.compile(r"""<(?:img|a)\b[^>]*\b(?:src|href)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


def portability_problems(folder: Path) -> list[str]:
    """What keeps the Markdown files of `folder` from reading complete wherever the folder is (GitHub): an absolute
    path of the machine that wrote them, a path leading out of the folder, or a link whose target is not a file in
    the folder."""
    problems = []
    for record in sorted(folder.glob("*.json")):  # read by scripts anywhere: no machine path either
        found = MACHINE_PATH.search(record.read_text(encoding="utf-8"))
        if found:
            problems.append(f"{record.name}: machine path: {found[0]}")
    for page in sorted(folder.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATH.search(line):
                problems.append(f"{page.name}:{number}: machine path: {line.strip()[:120]}")
            if "../" in line or "..\\" in line:
                problems.append(f"{page.name}:{number}: path out of the folder: {line.strip()[:120]}")
        for target in LINK.findall(text) + REFERENCE.findall(text) + HTML_SOURCE.findall(text):
            path = (folder / target.split("#")[0]).resolve()
            inside = path.is_relative_to(folder.resolve()) and path != folder.resolve()
            if not target or "://" in target or target.startswith(("/", "#")) or not inside or not path.is_file():
                problems.append(f"{page.name}: link to {target!r}: not a file in the folder")
    return problems


def _score_problems(score: object, where: str) -> list[str]:
    if score is None:
        return []
    if not isinstance(score, dict) or set(score) != {"mean", "std", "episodes"}:
        return [f"{where}: not null or {{mean, std, episodes}}: {score!r}"]
    ok = (isinstance(score["mean"], (int, float)) and isinstance(score["std"], (int, float)) and score["std"] >= 0
          and isinstance(score["episodes"], int) and score["episodes"] > 0)
    return [] if ok else [f"{where}: bad values {score!r}"]


def _row_problems(row: object, index: int) -> list[str]:
    where = f"rows[{index}]"
    if not isinstance(row, dict):
        return [f"{where}: not an object"]
    problems = [f"{where}: missing {key}" for key in ("name", "dream", "real", "result") if key not in row]
    unknown = set(row) - {"name", "controller", "temperature", "round", "dream", "real", "finetune", "result"}
    problems += [f"{where}: unknown fields {sorted(unknown)}"] if unknown else []
    if not isinstance(row.get("name"), str) or not isinstance(row.get("result"), bool):
        problems.append(f"{where}: name must be a string and result a boolean")
    if "temperature" in row and not isinstance(row["temperature"], (int, float)):
        problems.append(f"{where}: temperature must be a number")
    if "round" in row and not (isinstance(row["round"], int) and row["round"] >= 0):
        problems.append(f"{where}: round must be an integer >= 0")
    finetune = row.get("finetune")  # a C fine-tuned in the real game after the dream (--real_generations)
    if finetune is not None and not (isinstance(finetune, dict) and set(finetune) == {"generations", "episodes"}
                                     and all(isinstance(v, int) and v > 0 for v in finetune.values())):
        problems.append(f"{where}: finetune must be {{generations, episodes}}, whole numbers > 0")
    problems += _score_problems(row.get("dream"), f"{where}.dream") + _score_problems(row.get("real"), f"{where}.real")
    if row.get("dream") is None and row.get("real") is None:
        problems.append(f"{where}: neither a dream nor a real score")
    return problems


def scores_problems(record: object) -> list[str]:
    """How `record` departs from RESULTS.md's scores.json (empty when it matches)."""
    keys = {"task", "config", "command", "commit", "total_seconds", "machine", "rows"}
    if not isinstance(record, dict) or set(record) != keys:
        return [f"fields {sorted(record) if isinstance(record, dict) else record!r}, expected {sorted(keys)}"]
    problems = [] if record["task"] in ("doom", "carracing") else [f"task {record['task']!r}"]
    for key in ("config", "command"):
        if not isinstance(record[key], str) or not record[key]:
            problems.append(f"{key} must be a non-empty string")
    if not (isinstance(record["commit"], str) and re.fullmatch(r"[0-9a-f]{7,40}", record["commit"])):
        problems.append(f"commit {record['commit']!r} is not a commit hash")
    if not (isinstance(record["total_seconds"], (int, float)) and record["total_seconds"] > 0):
        problems.append(f"total_seconds {record['total_seconds']!r}")
    machine = record["machine"]
    if not (isinstance(machine, dict) and set(machine) == {"cpu", "cores", "gpu", "tensorflow"}
            and isinstance(machine["cpu"], str) and isinstance(machine["cores"], int) and machine["cores"] > 0
            and (machine["gpu"] is None or isinstance(machine["gpu"], str)) and isinstance(machine["tensorflow"], str)):
        problems.append(f"machine {machine!r}: expected cpu, cores, gpu (null if none), tensorflow")
    rows = record["rows"] if isinstance(record["rows"], list) else []
    problems += [] if rows else ["rows: none"]
    for index, row in enumerate(rows):
        problems += _row_problems(row, index)
    if sum(1 for row in rows if isinstance(row, dict) and row.get("result") is True) != 1:
        problems.append("rows: exactly one row must have result: true")
    return problems


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
    # the folder reads complete anywhere: no path of this machine (the run is under /tmp), no link out of it
    assert portability_problems(out) == []
    assert "| 1 | + round 0 controller | " in text and "below: *Dream audit after round 01*" in text
    # scores.json: RESULTS.md's format with this run's numbers, the last round the result
    scores = json.loads((out / "scores.json").read_text())
    # the commit the run started from and its command, as pipeline.json has them (null where it has none)
    assert scores["commit"] == record.get("commit") and scores["command"] == record.get("command")
    assert scores_problems({**scores, **{key: "0000000" for key in ("commit", "command") if not scores[key]}}) == []
    assert scores["task"] == "doom" and scores["config"] == "doom_tiny"
    assert scores["total_seconds"] == round(record["total_seconds"])
    assert scores["machine"] == {"cpu": record["machine"]["cpu"], "cores": record["machine"]["usable_cores"],
                                 "gpu": None, "tensorflow": record["machine"]["tensorflow"]}
    # settings.json: every setting the run resolved, as pipeline.json has them, for the recipes table
    settings = json.loads((out / "settings.json").read_text())
    assert settings["config"] == "doom_tiny" and settings["settings"] == record["config"]
    assert recipe_cells(settings["settings"])[1:3] == [f"{record['config']['vae_epochs']}",
                                                      f"{record['config']['rnn_steps']:,} + "
                                                      f"{record['config']['iterate_rnn_steps']:,} "
                                                      f"({record['config']['rnn_batch_size']} × "
                                                      f"{record['config']['rnn_seq_len']})"]
    first, last = scores["rows"]
    assert first["name"] == "full, tau 1.15, round 0" and first["result"] is False
    assert first["real"] == {"mean": round(evaluation["mean"], 1), "std": round(evaluation["std"], 1), "episodes": 4}
    assert last == {"name": "full, tau 1.15, round 1", "controller": "full", "temperature": 1.15, "round": 1,
                    "dream": {"mean": round(round_one["dream"]["mean"], 1), "std": round(round_one["dream"]["std"], 1),
                              "episodes": round_one["dream"]["episodes"]},
                    "real": {"mean": round(round_one["real_mean"], 1), "std": round(round_one["real_std"], 1),
                             "episodes": 4},
                    "result": True}


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
    assert json.loads((out / f"1_{doom_tiny.name}_scores.json").read_text())["task"] == "doom"
    assert json.loads((out / "2_sparse_scores.json").read_text())["rows"] == [], "nothing scored, nothing invented"
    assert portability_problems(out) == []


def test_temperature_sweep_trains_scores_and_tabulates_each_tau(doom_tiny, tmp_path):
    """The sweep trains C from scratch at each tau in the last round's dream, in a folder of its own that holds
    copies of that round's V and M, and leaves the pipeline's own controllers alone."""
    exp_dir = tmp_path / "sweep"
    shutil.copytree(doom_tiny, exp_dir)
    before = (exp_dir / CONTROLLER / "evaluation_doom.json").read_text()
    rows = run_sweep(exp_dir, SweepConfig(temperatures=(0.5, 1.15), dream_episodes=6, real_episodes=4),
                     verbose=False)
    assert [row["temperature"] for row in rows] == [0.5, 1.15]
    last_round = exp_dir / "iterate" / "round_01"
    record = json.loads((exp_dir / "temperature_sweep" / "world_model.json").read_text())
    assert record["round"] == 1 and all(row["round"] == 1 for row in rows)
    assert record["sha256"]["rnn"] == hashlib.sha256((last_round / "rnn" / "rnn.keras").read_bytes()).hexdigest()
    assert (exp_dir / "temperature_sweep" / "rnn" / "rnn.keras").read_bytes() == \
        (last_round / "rnn" / "rnn.keras").read_bytes(), "the sweep dreams with the last round's M"
    for row in rows:
        folder = exp_dir / row["controller"]
        assert row["generations"] == 2, "the CMA-ES settings default to the pipeline's"
        assert row["dream_episodes"] == 6 and 1 <= row["dream_mean"] <= 300  # doom_tiny caps dreams at 300
        assert row["real_episodes"] == 4 and row["real_mean"] >= 1
        dream = json.loads((folder / "dream_evaluation.json").read_text())
        assert dream["mean"] == row["dream_mean"] and len(dream["scores"]) == 6
    assert rows[0]["controller"] == "temperature_sweep/controller/doomrnn_full_t0.5"
    assert rows[1]["controller"] == "temperature_sweep/controller/doomrnn_full_t1.15", "every tau from scratch"
    assert (exp_dir / "temperature_sweep/controller/doomrnn_full_t0.5/evaluation_doom.json").is_file()
    assert (exp_dir / CONTROLLER / "evaluation_doom.json").read_text() == before, \
        "the pipeline's own controllers are neither retrained nor replayed"
    table = json.loads((exp_dir / "report" / "temperature_table.json").read_text())
    assert table["rows"] == rows
    markdown = (exp_dir / "report" / "temperature_table.md").read_text()
    assert "| 0.50 | 2,060 ± 277 | 196 ± 50 |" in markdown and "| 1.15 | 918 ± 546 | 1,092 ± 556 |" in markdown
    assert "round 1's V and M" in markdown
    report = write_report(ReportConfig(exp_dirs=(str(exp_dir),))).read_text()
    assert "| 0.50 | 2,060 ± 277 | 196 ± 50 |" in report.split("### Temperature sweep")[1]
    # the Doom table shows the sweep's scores at each tau, and the pipeline's round-0 C on a row of its own
    assert f"| 0.50 | 2,060 ± 277 | 196 ± 50 | {rows[0]['dream_mean']:,.0f} ± {rows[0]['dream_std']:,.0f} (6) |" \
        in report
    assert "| 1.15, round 0: M trained on random data only |" in report
    scores = json.loads((exp_dir / "report" / "scores.json").read_text())
    swept = [row for row in scores["rows"] if "temperature sweep" in row["name"]]
    assert [row["temperature"] for row in swept] == [0.5, 1.15] and not any(row["result"] for row in swept)
    [result] = [row for row in scores["rows"] if row["result"]]
    assert result["round"] == 1 and "sweep" not in result["name"], "the run still stands for its last round"
    with pytest.raises(UserError, match="swept another world model"):
        run_sweep(exp_dir, SweepConfig(temperatures=(0.5,), round=0, dream_episodes=6, real_episodes=4),
                  verbose=False)


@pytest.mark.parametrize("module, args, message", [
    ("run.report", ["--exp_dir=/nonexistent/exp"], "--exp_dir=/nonexistent/exp: no such experiment folder"),
    ("run.report", ["--exp_dir=.", "--dream_frames=x"], "--dream_frames=x"),
    ("run.report", ["--results=/nonexistent/results"], "/nonexistent/results: no scores.json"),
    ("run.report", ["--results=/nonexistent/*"], "--results=/nonexistent/*: matches no folder"),
    ("run.report", ["--results=results/doom_small", "--readme=/nonexistent.md"], "--readme=/nonexistent.md"),
    ("run.report", [], "--exp_dir: give at least one experiment folder"),
    ("run.temperature_sweep", ["--exp_dir=/nonexistent/exp"], "--exp_dir=/nonexistent/exp"),
    ("run.temperature_sweep", ["--exp_dir=.", "--temperatures=0.5,hot"], "--temperatures=0.5,hot"),
])
def test_bad_input_gives_one_error_line_and_exit_2(module, args, message):
    result = _cli(module, *args)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]


@pytest.mark.parametrize("folder", RESULTS, ids=lambda folder: folder.name)
def test_a_committed_report_names_no_machine_path_and_links_only_files_in_its_folder(folder):
    assert (folder / "README.md").is_file()
    assert portability_problems(folder) == []


def _score_texts(score: dict) -> set[str]:
    """How a report may show a scores.json score: the report rounds the raw value to a whole number, scores.json
    to one decimal first, so a x.5 there (192.53 -> 192.5) may have been shown either way (193)."""
    return {f"{mean:,.0f} ± {std:,.0f} ({score['episodes']:,})"
            for mean in (score["mean"] - 0.05, score["mean"] + 0.05)
            for std in (score["std"] - 0.05, score["std"] + 0.05)}


@pytest.mark.parametrize("folder", RESULTS, ids=lambda folder: folder.name)
def test_a_committed_results_folder_holds_scores_json_with_its_reports_numbers(folder):
    record = json.loads((folder / "scores.json").read_text(encoding="utf-8"))
    assert scores_problems(record) == []
    report = (folder / "README.md").read_text(encoding="utf-8")
    assert f"Config `{record['config']}`; command: `{record['command']}`" in report
    for row in record["rows"]:
        for score in (row["dream"], row["real"]):
            assert score is None or any(text in report for text in _score_texts(score)), (row["name"], score)


def test_the_portability_check_finds_machine_paths_and_dead_links(tmp_path):
    (tmp_path / "README.md").write_text(
        "Written for `/work/main/exp/doom_small_v2`.\n\n![kept](kept.png)\n\nThe whole dream: [dream.gif](dream.gif)."
        "\n\n| 1 | `../iterate/round_01/report/dream_audit.md` |\n[up](../README.md) [c](C:\\exp\\a.png)\n")
    (tmp_path / "kept.png").write_bytes(b"")
    problems = portability_problems(tmp_path)
    assert any("machine path" in p and ":1:" in p for p in problems)
    assert any("'dream.gif'" in p for p in problems) and any("'../README.md'" in p for p in problems)
    assert any("path out of the folder" in p and ":7:" in p for p in problems)
    assert not any("kept.png" in p for p in problems)


def test_the_readmes_results_table_is_generated_from_the_committed_scores(tmp_path, monkeypatch):
    """README.md's results table is exactly what `run.report --results='results/*'` makes of the committed
    scores.json files: a changed score or a new results folder fails here until the table is regenerated."""
    monkeypatch.chdir(REPO)
    folders = [f"results/{folder.name}" for folder in RESULTS]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert replace_block(readme, results_table(folders)) == readme
    table = readme.split(RESULTS_BEGIN)[1].split(RESULTS_END)[0]
    assert len([line for line in table.splitlines() if line.startswith("| `results/")]) == len(RESULTS)
    scores = json.loads((REPO / "results/doom_small/scores.json").read_text())
    result = next(row for row in scores["rows"] if row["result"])
    real = result["real"]
    assert f"{real['mean']:,.0f} ± {real['std']:,.0f} ({real['episodes']})" in table
    # the command rewrites a copy of the README's table; a changed score changes it
    copy = tmp_path / "README.md"
    stale = replace_block(readme, table.replace(f"{real['mean']:,.0f} ± {real['std']:,.0f}", "1 ± 1").lstrip("\n"))
    copy.write_text(stale, encoding="utf-8")
    assert copy.read_text(encoding="utf-8") != readme
    result = _cli("run.report", "--results=results/*", f"--readme={copy}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert copy.read_text(encoding="utf-8") == readme
    every_row = results_table(folders, all_rows=True)
    assert "full, tau 1.15, round 0" in every_row and "185 ± 52 (100)" in every_row


def test_the_readmes_recipes_table_is_generated_from_the_committed_settings(tmp_path, monkeypatch):
    """README.md's recipes table (data, V epochs, M steps, C budget beside the real score and the time they bought)
    is what `run.report --results='results/*'` makes of the committed settings.json files; a folder without one is
    left out, and a broken one is a one-line error."""
    monkeypatch.chdir(REPO)
    folders = [f"results/{folder.name}" for folder in RESULTS]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert replace_block(readme, recipes_table(folders), "README.md", RECIPES_BEGIN, RECIPES_END) == readme
    table = readme.split(RECIPES_BEGIN)[1].split(RECIPES_END)[0]
    with_settings = [folder for folder in RESULTS if (folder / "settings.json").is_file()]
    assert with_settings, "no committed results folder records its settings"
    assert len([line for line in table.splitlines() if line.startswith("| `results/")]) == len(with_settings)
    for folder in with_settings:
        settings = load_settings(folder)
        scores = json.loads((folder / "scores.json").read_text())
        real = next(row for row in scores["rows"] if row["result"])["real"]
        line = next(line for line in table.splitlines() if line.startswith(f"| `results/{folder.name}` |"))
        assert f"| {settings['vae_epochs']:g} | {settings['rnn_steps']:,}" in line, line
        assert f"{settings['popsize']} × {settings['rollouts']}: {settings['generations']:,}" in line, line
        assert f"{real['mean']:,.0f} ± {real['std']:,.0f} ({real['episodes']})" in line, line
    # the printed table is the README's; a settings.json that lacks a setting names it
    result = _cli("run.report", "--results=results/*", "--recipes")
    assert result.returncode == 0 and result.stdout.strip() == table.strip(), result.stderr[-2000:]
    broken = tmp_path / "broken"
    shutil.copytree(with_settings[0], broken)
    record = json.loads((broken / "settings.json").read_text())
    del record["settings"]["vae_epochs"]
    (broken / "settings.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match="lacks the settings vae_epochs"):
        recipes_table([broken])
    result = _cli("run.report", f"--results={broken}", "--recipes")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "vae_epochs" in errors[0], result.stderr[-2000:]


def test_the_tables_name_a_later_rounds_own_controller_and_the_cpu_that_timed_the_run(tmp_path):
    """A run whose later rounds train another C (`--iterate_round_controller/_temperature`) says so in its C budget,
    and a time is marked with the CPU's vector unit where the record names it (AVX2 VMs ran these pipelines up to
    twice as slow as AVX-512 ones)."""
    run = tmp_path / "zfull"
    shutil.copytree(REPO / "results/carracing_dream_z", run)
    record = json.loads((run / "settings.json").read_text())
    settings = record["settings"]
    assert recipe_cells(settings)[3] == "z, 32 × 8: 40 + 40"  # one C throughout: as before
    record["settings"] = {**settings, "iterate_round_controller": "full", "iterate_round_temperature": 1.3}
    (run / "settings.json").write_text(json.dumps(record))
    scores = json.loads((run / "scores.json").read_text())
    scores["machine"]["cpu"] = "AMD EPYC (family 25, model 1; AVX2)"
    (run / "scores.json").write_text(json.dumps(scores))
    line = recipes_table([run]).splitlines()[-1]
    assert "| z, 32 × 8: 40 + full at τ 1.3: 40 |" in line, line
    assert line.endswith(" h 13 min (AVX2) |"), line
    assert results_table([run]).splitlines()[-1].endswith(" h 13 min (AVX2) |")
    # an older record names no unit: the time alone, as the committed tables show it
    assert results_table([REPO / "results/carracing_dream_z"]).splitlines()[-1].endswith("2 h 13 min |")
    only_tau = {**settings, "iterate_round_temperature": 1.3}
    assert recipe_cells(only_tau)[3] == "z, 32 × 8: 40 + z at τ 1.3: 40"
