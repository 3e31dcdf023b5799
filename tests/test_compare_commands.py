"""The report's commands run as printed: the first command of missing.sh, executed by bash from the
repository root (``accelerate launch`` mapped to this Python), trains exactly the run the report
said was missing, with the options of the runs that exist (a tiny model, capped data)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import model_dir, REPO_ROOT, run_script, tiny_args

from mtlvsift.run_record import read_record


def _setup(out, tiny_model, tiny_glue, runs) -> list[str]:
    """Train ``runs`` ((task, seed), ...) capped at 16 examples, report, return missing.sh."""
    for task, seed in runs:
        run_script("train_stilts", ["--target", task, "--seed", seed, *tiny_args(
            tiny_model, tiny_glue, out, "--max-train-examples", 16, "--eval-every", 1.0,
            epochs=1)])
    report = run_script("compare", ["--outputs", out])
    assert "n-16" in report.output and "seeds 0, 1" in report.output
    return (out / "report" / "missing.sh").read_text().splitlines()


def _run_first(script: list[str], out) -> tuple[str, list[str]]:
    """Execute missing.sh's first command as printed; its comment line and the new records."""
    first = next(line for line in script if line.startswith(("accelerate", "for ")))
    before = set(out.rglob("result.json"))
    shim = f'accelerate() {{ [ "$1" = launch ] && shift; [ "$1" = --quiet ] && shift; "{sys.executable}" "$@"; }}\n'
    done = subprocess.run(["bash", "-c", shim + first], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    made = sorted(str(p.relative_to(out)) for p in set(out.rglob("result.json")) - before)
    return script[script.index(first) - 1], made


def test_the_first_command_of_missing_sh_trains_the_missing_run(tmp_path, tiny_model, tiny_glue):
    out = tmp_path / "runs"
    script = _setup(out, tiny_model, tiny_glue, [("rte", 0), ("rte", 1), ("sst2", 0)])
    comment, made = _run_first(script, out)
    assert comment == "# single sst2: seed 1 (others done)"
    slug = model_dir(out, tiny_model).name
    assert made == [f"{slug}/single/sst2__n-16/seed-1/result.json"]
    done = read_record(out / made[0])
    seed0 = read_record(model_dir(out, tiny_model) / "single" / "sst2__n-16" / "seed-0" / "result.json")
    assert (done.method, done.target, done.seed, done.variant) == ("single", "sst2", 1, "n-16")
    assert done.options == seed0.options and "max_train_examples" in done.options
    assert json.loads((out / made[0]).read_text())["config"]["data_dir"] == str(tiny_glue)


@pytest.mark.slow
def test_a_missing_stilts_loop_runs_as_printed(tmp_path, tiny_model, tiny_glue):
    out = tmp_path / "runs"
    script = _setup(out, tiny_model, tiny_glue, [(t, s) for t in ("sst2", "rte") for s in (0, 1)])
    comment, made = _run_first(script, out)
    assert comment == "# STILTs sst2 <- rte: seeds 0, 1"
    slug = model_dir(out, tiny_model).name
    folder = f"{slug}/stilts/sst2--rte__n-16"
    assert made == [f"{folder}/seed-{s}/result.json" for s in (0, 1)]
    single = read_record(model_dir(out, tiny_model) / "single" / "sst2__n-16" / "seed-0" / "result.json")
    for seed in (0, 1):
        record = read_record(out / folder / f"seed-{seed}" / "result.json")
        assert (record.method, record.target, record.support, record.seed, record.variant) == (
            "stilts", "sst2", ("rte",), seed, "n-16")
        assert record.options == {**single.options, "support_seeds": [0, 1]}
        raw = json.loads((out / folder / f"seed-{seed}" / "result.json").read_text())
        assert raw["start_model"]["run"].startswith(f"{slug}/single/rte__n-16/seed-")
        assert raw["start_model"]["seeds"] == [0, 1]
