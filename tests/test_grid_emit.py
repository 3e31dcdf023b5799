"""The grid written out (--emit shell, --emit slurm): the scripts make the same runs as the grid,
from any folder, and refuse what SLURM cannot hold."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import REPO_ROOT, grid_options, run_script
from mtlvsift.grid.plan import grid_runs


def test_emit_slurm_array_sizes_and_dependency(tmp_path):
    folder = tmp_path / "slurm"
    run_script("run_grid", ["--tasks", "rte,mrpc,stsb", "--seeds", "0,1", "--output-dir", tmp_path / "out",
                            "--emit", "slurm", "--emit-to", folder, "--sbatch", "--gres=gpu:1"])
    assert not (tmp_path / "out").exists()
    runs = grid_runs(["rte", "mrpc", "stsb"], [0, 1], ["single", "stilts", "mtl", "mtl_all"],
                     grid_options(tmp_path / "out"))
    for stage in (1, 2):
        text = (folder / f"stage-{stage}.sbatch").read_text()
        subprocess.run(["bash", "-n", folder / f"stage-{stage}.sbatch"], check=True)
        count = sum(r.stage == stage for r in runs)
        assert f"#SBATCH --array=0-{count - 1}\n" in text and "#SBATCH --gres=gpu:1\n" in text
        assert text.count("accelerate launch") == count
    submit = (folder / "submit.sh").read_text()
    subprocess.run(["bash", "-n", folder / "submit.sh"], check=True)
    assert re.search(r"sbatch --parsable --dependency=afterok:\$\{stage1\} stage-2.sbatch", submit)
    for bad in (["--sbatch", "--gres=gpu:1\nrm -rf ~"], ["--sbatch", "gres"], ["--emit-to", tmp_path / "a b"]):
        args = ["--tasks", "rte,mrpc", "--emit", "slurm", "--emit-to", folder, *bad]
        result = run_script("run_grid", args, expect_ok=False)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert not (tmp_path / "a b").exists()
    # A command picked by an array index is the one the plan has at that place.
    stage2 = [r for r in runs if r.stage == 2]
    listing = subprocess.run(["bash", "-c", f"SLURM_ARRAY_TASK_ID=4; eval \"$(sed -n '/^commands=(/,/^)/p' "
                              f"{folder / 'stage-2.sbatch'})\"; printf '%s' \"${{commands[4]}}\""],
                             capture_output=True, text=True, check=True).stdout
    assert listing == stage2[4].command()


@pytest.mark.slow
def test_emitted_shell_script_makes_the_same_runs(tmp_path, tiny_model, tiny_glue):
    """grid.sh (one `accelerate launch` per run) trains the runs the in-process grid trains."""
    if shutil.which("accelerate") is None:
        pytest.skip("the accelerate command is not on PATH")
    common = ["--tasks", "rte,sst2", "--seeds", "0", "--model", tiny_model, "--data-dir", tiny_glue,
              "--epochs", "1", "--batch-size", "8", "--max-seq-length", "32"]
    run_script("run_grid", [*common, "--output-dir", tmp_path / "here"])
    run_script("run_grid", [*common, "--output-dir", tmp_path / "sh", "--emit", "shell",
                            "--emit-to", tmp_path / "emitted"])
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(["bash", tmp_path / "emitted" / "grid.sh"], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    def runs(root: Path) -> dict[str, dict]:
        found = {}
        for result in root.rglob("result.json"):
            config = json.loads((result.parent / "config.json").read_text())
            found[str(result.parent.relative_to(root))] = config
        return found

    here, sh = runs(tmp_path / "here"), runs(tmp_path / "sh")
    assert len(here) == 6 and here.keys() == sh.keys()
    assert here == sh  # identities (the output folder is not part of them)
    jobs = run_script("run_grid", [*common, "--output-dir", tmp_path / "jobs", "--jobs", "2"])
    assert "Grid: 6 trained" in " ".join(jobs.output.split())
    assert runs(tmp_path / "jobs") == here


def _stub_accelerate(folder: Path) -> tuple[Path, Path]:
    """A bin folder with an `accelerate` that only records its arguments; (bin, calls file)."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "accelerate").write_text('#!/bin/sh\necho "$@" >> "$CALLS"\n')
    (bin_dir / "accelerate").chmod(0o755)
    return bin_dir, folder / "calls.txt"


def test_emitted_scripts_keep_relative_paths_where_the_caller_meant(tmp_path, monkeypatch):
    """grid.sh and stage-*.sbatch cd into the repository: a relative --output-dir and --data-dir
    become absolute against the folder the grid was emitted from, whatever folder the scripts
    then run in."""
    caller = tmp_path / "caller"
    caller.mkdir()
    monkeypatch.chdir(caller)
    common = ["--tasks", "rte,mrpc", "--seeds", "0", "--methods", "single,mtl", "--output-dir",
              "rel", "--data-dir", "glue"]
    run_script("run_grid", [*common, "--emit", "shell", "--emit-to", "emitted"])
    run_script("run_grid", [*common, "--emit", "slurm", "--emit-to", "slurm"])
    elsewhere = tmp_path / "elsewhere"
    bin_dir, calls = _stub_accelerate(elsewhere)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), "SLURM_ARRAY_TASK_ID": "0"}
    for script in (caller / "emitted" / "grid.sh", caller / "slurm" / "stage-1.sbatch",
                   caller / "slurm" / "stage-2.sbatch"):
        done = subprocess.run(["bash", str(script)], cwd=elsewhere, env=env, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
    launched = calls.read_text().splitlines()
    assert len(launched) == 3 + 2  # grid.sh: 2 single runs and the MTL run; one per array job
    for line in launched:
        assert f"--output-dir {caller / 'rel'} " in line and f"--data-dir {caller / 'glue'} " in line, line
    assert not (REPO_ROOT / "rel").exists()


@pytest.mark.parametrize("name, problem", [("logs", None), ("logs-%u", "'%'"), ("a%%b", "'%'"),
                                           ("%j", "'%'"), ("a b", "spaces"), ("a\tb", "spaces")])
def test_a_slurm_emit_folder_with_a_pattern_or_a_space_is_refused(tmp_path, name, problem):
    """#SBATCH --output=<emit-to>/logs/stage1-%A_%a.out: a '%' of the folder's own would be one of
    SLURM's filename patterns (%u: the user name), a space would end the path."""
    from mtlvsift.grid.emit import slurm_path_problem

    found = slurm_path_problem(tmp_path / name)
    assert found is None if problem is None else (problem in found and "choose a folder" in found)


def test_run_grid_refuses_a_slurm_emit_folder_with_a_percent(tmp_path):
    result = run_script("run_grid", ["--tasks", "rte,mrpc", "--emit", "slurm", "--emit-to",
                                     tmp_path / "logs-%u"], expect_ok=False)
    assert result.exit_code == 1 and "'%'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "logs-%u").exists()
