"""Every script answers ``--help``, an option error and an unknown task name at once: none of them
imports torch, transformers, accelerate, datasets or evaluate (issue 25); nor does a train
script's dry run. Each case runs the script in a fresh interpreter under ``python -X importtime``
and reads the modules it imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.start_time import HEAVY, imported_modules  # the benchmark's reading of -X importtime
from helpers import REPO_ROOT

UNKNOWN = "Error: Unknown task 'nosuch'."


def run_timed(script: str, args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("MTLVSIFT_FAULT", None)
    done = subprocess.run([sys.executable, "-X", "importtime", str(REPO_ROOT / "scripts" / f"{script}.py"),
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return done, imported_modules(done.stderr)


def messages(done: subprocess.CompletedProcess) -> str:
    """What the user sees: stdout and stderr without importtime's lines."""
    lines = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    return done.stdout + "\n".join(lines)


# (script, arguments, exit status, a text the answer holds); {tmp} is a fresh empty folder.
CASES = [
    *[(script, ["--help"], 0, "Usage:") for script in
      ("train_stilts", "train_mtl", "train_mtl_all", "run_grid", "predict", "recommend", "compare")],
    # click's own errors: an unknown option, a value out of its range
    *[(script, ["--no-such-option"], 2, "No such option") for script in
      ("train_stilts", "train_mtl", "train_mtl_all", "run_grid", "predict", "recommend", "compare")],
    ("train_stilts", ["--target", "rte", "--lr", "-1"], 2, "--lr"),
    ("train_mtl", ["--target", "rte", "--support", "mnli", "--epochs", "0"], 2, "--epochs"),
    ("train_mtl_all", ["--batch-size", "0"], 2, "--batch-size"),
    ("run_grid", ["--tasks", "rte", "--seeds", "x"], 2, "--seeds"),
    ("predict", ["--run", "{tmp}", "--out", "{tmp}/out", "--batch-size", "0"], 2, "--batch-size"),
    ("recommend", ["--target", "rte", "--max-examples", "0"], 2, "--max-examples"),
    ("compare", ["--alpha", "2"], 2, "--alpha"),
    # an unknown task: the one-line error
    ("train_stilts", ["--target", "nosuch"], 1, UNKNOWN),
    ("train_stilts", ["--target", "rte", "--support", "nosuch"], 1, UNKNOWN),
    ("train_mtl", ["--target", "nosuch", "--support", "rte"], 1, UNKNOWN),
    ("train_mtl_all", ["--tasks", "rte,nosuch"], 1, UNKNOWN),
    ("run_grid", ["--tasks", "rte,nosuch", "--dry-run"], 1, UNKNOWN),
    ("recommend", ["--target", "nosuch"], 1, UNKNOWN),
    ("recommend", ["--target", "rte", "--candidates", "nosuch"], 1, UNKNOWN),
    # predict names a task only of a finished run: its early error is the run folder's
    ("predict", ["--run", "{tmp}", "--split", "dev", "--out", "{tmp}/out"], 1, "holds no finished run"),
    ("compare", ["--outputs", "{tmp}"], 1, "No run records"),
]


@pytest.mark.parametrize("script, args, status, expected", CASES,
                         ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_answers_without_the_heavy_libraries(script, args, status, expected, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    done, modules = run_timed(script, args, tmp_path)
    shown = messages(done)
    assert done.returncode == status, shown
    assert expected in shown, shown
    assert "Traceback" not in shown, shown
    assert "mtlvsift" in modules or "click" in modules, "importtime's lines were not read"
    heavy = sorted(m for m in HEAVY if m in modules)
    assert heavy == [], f"{script} {' '.join(args)} imported {', '.join(heavy)}"


def test_importtime_lines_are_read():
    sample = ("import time: self [us] | cumulative | imported package\n"
              "import time:       141 |        141 |   mtlvsift\n"
              "import time:      1584 |      22638 | mtlvsift.cli\n"
              "import time:      9000 |      90000 |     torch._C\n")
    assert imported_modules(sample) == {"mtlvsift", "torch"}


@pytest.mark.parametrize("script, args", [
    ("train_stilts", ["--target", "rte"]),
    ("train_mtl", ["--target", "rte", "--support", "sst2", "--sampling", "size"]),
])
def test_a_dry_run_plans_without_the_heavy_libraries(script, args, tiny_glue, tmp_path):
    """A dry run counts the training files' lines and does arithmetic: no model, no tokenizer."""
    done, modules = run_timed(script, [*args, "--dry-run", "--batch-size", "8", "--data-dir", str(tiny_glue),
                                       "--output-dir", str(tmp_path / "out")], tmp_path)
    assert done.returncode == 0 and "LR schedule" in done.stdout, messages(done)
    assert sorted(m for m in HEAVY if m in modules) == []
    assert not (tmp_path / "out").exists()  # writes nothing


@pytest.mark.parametrize("script, args, status", [
    ("compare", ["--help"], 0), ("compare", ["--alpha", "2"], 2),
    ("run_grid", ["--tasks", "rte,nosuch"], 1), ("recommend", ["--target", "nosuch"], 1),
])
def test_quick_answers_skip_the_statistics(script, args, status, tmp_path):
    """scipy and statsmodels (about a second to import) load where a statistic is computed."""
    done, modules = run_timed(script, args, tmp_path)
    assert done.returncode == status, messages(done)
    assert sorted({"scipy", "statsmodels"} & modules) == []
