"""The grid written out (--emit shell, --emit slurm): the scripts make the same runs as the grid,
from any folder, and refuse what SLURM cannot hold."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
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
        assert "#SBATCH --signal=B:USR1@120\n" in text and "#SBATCH --requeue\n" in text
        assert text.count("'accelerate launch --quiet scripts/") == count
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


def _stub(bin_dir: Path, name: str, text: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / name).write_text(text)
    (bin_dir / name).chmod(0o755)


def _array_task(script: Path, task: int, bin_dir: Path, calls: Path, **env) -> subprocess.CompletedProcess:
    environment = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), "SLURM_ARRAY_TASK_ID": str(task),
                   "SLURM_ARRAY_JOB_ID": "7", "SLURM_JOB_ID": "7", **env}
    return subprocess.run(["bash", str(script)], cwd=bin_dir, env=environment, capture_output=True,
                          text=True, timeout=60)


def test_runs_per_task_packs_a_16_run_stage_into_4_array_tasks_of_4_runs(tmp_path):
    """--runs-per-task 4: #SBATCH --array=0-3, and array task k starts one process
    (``-m mtlvsift.grid.array_task``) with the plan's runs 4k..4k+3, each an argument."""
    out, folder = tmp_path / "out", tmp_path / "slurm"
    emitted = run_script("run_grid", ["--tasks", "rte,mrpc,stsb,sst2", "--seeds", "0,1,2,3", "--methods",
                                      "single", "--output-dir", out, "--emit", "slurm", "--emit-to",
                                      folder, "--runs-per-task", "4"])
    assert "stage 1: 16 in 4 array tasks" in " ".join(emitted.output.split())
    runs = grid_runs(["rte", "mrpc", "stsb", "sst2"], [0, 1, 2, 3], ["single"], grid_options(out))
    text = (folder / "stage-1.sbatch").read_text()
    assert "#SBATCH --array=0-3\n" in text and not (folder / "stage-2.sbatch").exists()
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    _stub(bin_dir, "accelerate", '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$CALLS"\n')
    for task in range(4):
        assert _array_task(folder / "stage-1.sbatch", task, bin_dir, calls).returncode == 0
        args = calls.read_text().splitlines()
        assert args[:9] == ["launch", "--quiet", "-m", "mtlvsift.grid.array_task", "--outputs", str(out),
                            "--task-number", str(task), "--"]
        assert args[9:] == [run.command() for run in runs[4 * task:4 * task + 4]]


def test_an_array_task_parses_the_plans_commands_into_the_same_runs(tmp_path):
    from mtlvsift.errors import MtlvsiftError
    from mtlvsift.grid.array_task import parse_command

    runs = grid_runs(["rte", "mrpc"], [0], ["single", "stilts", "mtl", "mtl_all"],
                     grid_options(tmp_path, epochs=2, max_train_examples=300))
    for run in runs:
        parsed = parse_command(run.command())
        assert parsed.config.identity() == run.config.identity() and parsed.run_dir == run.run_dir
    for bad in ("rm -rf ~", "accelerate launch --quiet scripts/predict.py --run x",
                "accelerate launch --quiet scripts/train_stilts.py --target rte --dry-run", "'"):
        with pytest.raises(MtlvsiftError, match="emit the scripts again"):
            parse_command(bad)


# The launcher: started with SIGUSR1 ignored (as the sbatch file starts accelerate launch), it
# starts the run, which stops on SIGUSR1 (138); like accelerate launch --quiet it then exits 1.
LAUNCHER = """#!{python}
import os, signal, subprocess, sys
assert signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
RUN = '''
import os, signal, sys, time
def stop(*_):
    open(os.environ["CALLS"], "a").write("run stopped\\\\n")
    sys.exit(138)
signal.signal(signal.SIGUSR1, stop)
open(os.environ["CALLS"], "a").write("run started\\\\n")
time.sleep(30)
'''
sys.exit(1 if subprocess.call([sys.executable, "-c", RUN]) else 0)
"""


def test_slurms_warning_reaches_the_run_past_the_launcher_and_the_task_requeues_itself(tmp_path):
    """SIGUSR1 to the batch shell (``--signal=B:USR1@...``): the launcher, started with it ignored,
    lives on; the run (its child) gets it and exits; the shell waits for both, then requeues its
    own array task (7_1, not the array 7)."""
    folder = tmp_path / "slurm"
    run_script("run_grid", ["--tasks", "rte", "--seeds", "0,1", "--methods", "single", "--output-dir",
                            tmp_path / "out", "--emit", "slurm", "--emit-to", folder, "--signal-lead", "300"])
    assert "#SBATCH --signal=B:USR1@300\n" in (folder / "stage-1.sbatch").read_text()
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    _stub(bin_dir, "accelerate", LAUNCHER.format(python=sys.executable))
    _stub(bin_dir, "scontrol", '#!/bin/sh\necho "scontrol $*" >> "$CALLS"\n')
    environment = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), "SLURM_ARRAY_TASK_ID": "1",
                   "SLURM_ARRAY_JOB_ID": "7", "SLURM_JOB_ID": "7"}
    shell = subprocess.Popen(["bash", str(folder / "stage-1.sbatch")], env=environment, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not (calls.exists() and "run started" in calls.read_text()):
        assert time.monotonic() < deadline and shell.poll() is None, shell.stdout.read()
        time.sleep(0.1)
    shell.send_signal(signal.SIGUSR1)
    output = shell.communicate(timeout=30)[0]
    assert shell.returncode == 0, output
    assert calls.read_text().splitlines() == ["run started", "run stopped", "scontrol requeue 7_1"], output
    assert "requeueing 7_1 to resume" in output


def test_a_multi_node_run_is_srun_accelerate_launch_with_each_nodes_rank(tmp_path):
    """--nodes 2 --gpus-per-node 4: one array task holds 2 nodes, srun starts the launch on each,
    with --machine_rank $SLURM_NODEID (expanded on the node) and the first node's address."""
    folder = tmp_path / "slurm"
    run_script("run_grid", ["--tasks", "rte", "--seeds", "0", "--methods", "single", "--output-dir",
                            tmp_path / "out", "--emit", "slurm", "--emit-to", folder, "--nodes", "2",
                            "--gpus-per-node", "4"])
    text = (folder / "stage-1.sbatch").read_text()
    assert all(f"#SBATCH {line}\n" in text for line in ("--nodes=2", "--ntasks-per-node=1", "--gres=gpu:4"))
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    _stub(bin_dir, "accelerate", '#!/bin/sh\necho "$@" >> "$CALLS"\n')
    _stub(bin_dir, "scontrol", '#!/bin/sh\nprintf "node-a\\nnode-b\\n"\n')
    # srun: its two options, then the command on every node (here node 1, then node 0)
    _stub(bin_dir, "srun", '#!/bin/sh\necho "srun $1 $2" >> "$CALLS"; shift 2\n'
                           'SLURM_NODEID=1 "$@"; SLURM_NODEID=0 "$@"\n')
    done = _array_task(folder / "stage-1.sbatch", 0, bin_dir, calls, SLURM_JOB_NODELIST="node-[a-b]",
                       SLURM_NODEID="0")
    assert done.returncode == 0, done.stderr
    srun, *launches = calls.read_text().splitlines()
    assert srun == "srun --ntasks-per-node=1 --kill-on-bad-exit=1" and len(launches) == 2
    for rank, line in zip((1, 0), launches):
        assert line.startswith(f"launch --quiet --multi_gpu --num_processes 8 --num_machines 2 --machine_rank "
                               f"{rank} --main_process_ip node-a --main_process_port 29500 "), line
        assert "scripts/train_stilts.py --target rte" in line


@pytest.mark.parametrize("args, message", [
    (["--runs-per-task", "2"], "--runs-per-task go(es) with --emit slurm"),
    (["--emit", "shell", "--signal-lead", "60"], "--signal-lead go(es) with --emit slurm"),
    (["--emit", "slurm", "--nodes", "2"], "give --gpus-per-node too"),
    (["--runs-per-gpu", "2"], "--runs-per-gpu R goes with --jobs N"),
])
def test_layout_options_out_of_place_are_one_error(tmp_path, args, message):
    from helpers import fails

    emit_to = ["--emit-to", tmp_path / "emitted"] if "--emit" in args else []
    fails("run_grid", ["--tasks", "rte,mrpc", "--output-dir", tmp_path / "out", *args, *emit_to], message)
    assert not (tmp_path / "emitted").exists() and not (tmp_path / "out").exists()


def test_runs_per_gpu_puts_consecutive_slots_on_one_gpu():
    from mtlvsift.errors import MtlvsiftError
    from mtlvsift.grid.run import check_runs_per_gpu, gpu_of_slot

    assert [gpu_of_slot(s, 2, None) for s in range(4)] == ["0", "1", "0", "1"]
    assert [gpu_of_slot(s, 2, 3) for s in range(6)] == ["0", "0", "0", "1", "1", "1"]
    assert gpu_of_slot(0, 0, None) is None
    check_runs_per_gpu(6, 2, 3)
    with pytest.raises(MtlvsiftError, match="--jobs 7 with --runs-per-gpu 3 needs 3 GPUs; 2 are visible"):
        check_runs_per_gpu(7, 2, 3)
    with pytest.raises(MtlvsiftError, match="no GPU is visible"):
        check_runs_per_gpu(4, 0, 2)
