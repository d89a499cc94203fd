"""The layering and the lint rules hold: `vae`, `rnn`, `controller`, `envs` and `common` never import an entry
point in `run`, and no arrow points back up (contract in `.importlinter`); `ruff check` is clean (`ruff.toml`)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "vae", "rnn", "envs", "controller", "run")
RUN_IMPORT = re.compile(r"\s*(from|import)\s+run(\.|\s|$)")


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_layers_contract_is_kept():
    assert shutil.which("lint-imports"), "import-linter is missing: pip install -e .[test]"
    result = _run(["lint-imports"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_library_packages_never_import_run():
    offenders = []
    for package in PACKAGES[:-1]:
        for path in (ROOT / package).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if RUN_IMPORT.match(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_ruff_is_clean():
    result = _run([sys.executable, "-m", "ruff", "check", "."])
    assert result.returncode == 0, result.stdout + result.stderr


def test_random_collection_loads_no_tensorflow():
    """Collection workers playing a model-free policy import run.collect and envs.policies only: TensorFlow would
    cost each of them seconds and hundreds of MB at start."""
    code = "import sys, run.collect, envs.policies; print('tensorflow' in sys.modules)"
    result = _run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_no_import_cycle_between_modules():
    """No module reaches itself through imports, function-level ones included (grimp builds import-linter's
    graph); a cycle was what pushed imports into function bodies."""
    graph = grimp.build_graph(*PACKAGES)
    cycles = [(module, other) for module in sorted(graph.modules)
              for other in graph.find_modules_directly_imported_by(module)
              if module != other and graph.chain_exists(importer=other, imported=module)]
    assert not cycles, cycles
