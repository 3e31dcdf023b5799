"""The emitted grid on a real SLURM cluster (one node, started in a temporary folder by
``slurm_cluster.py``): submit.sh trains every run, stage 2 after stage 1, several runs per array
task with one start-up each; a job requeued mid-training, or warned ahead of its time limit,
resumes and ends as an uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import REPO_ROOT, folder_of, read_log, run_dir, run_script
from slurm_cluster import Cluster, missing_daemons

pytestmark = pytest.mark.slow
TINY = ["--epochs", "1", "--batch-size", "8", "--max-seq-length", "32"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = missing_daemons()
    if os.geteuid() != 0:
        pytest.skip("the test cluster runs munged, slurmctld and slurmd as root")
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing: apt-get install slurm-wlm munge)")
    started = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield started.start()
    finally:
        started.stop()


def submit(cluster: Cluster, folder: Path) -> str:
    done = subprocess.run(["bash", str(folder / "submit.sh")], env=cluster.env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr + cluster.logs()
    return done.stdout


def job_records(cluster: Cluster) -> list[dict[str, str]]:
    """jobcomp/filetxt's line per finished job (array task), as key -> value."""
    text = (cluster.root / "log" / "jobcomp.txt").read_text()
    return [dict(field.split("=", 1) for field in line.split() if "=" in field)
            for line in text.splitlines() if line.strip()]


def test_submit_sh_trains_the_grid_stage_by_stage_with_several_runs_per_task(cluster, tmp_path,
                                                                            tiny_model, tiny_glue):
    out, emitted = tmp_path / "out", tmp_path / "slurm"
    run_script("run_grid", ["--tasks", "rte,sst2", "--seeds", "0,1", "--model", tiny_model,
                            "--data-dir", tiny_glue, "--output-dir", out, *TINY, "--emit", "slurm",
                            "--emit-to", emitted, "--runs-per-task", "4"])
    printed = submit(cluster, emitted)
    assert "stage 1 (6 runs in 2 array tasks)" in printed and "stage 2 (6 runs in 2 array tasks)" in printed
    cluster.wait_for_jobs(420)
    records = [json.loads(path.read_text()) for path in out.rglob("result.json")]
    assert sorted((r["method"], r["target"], r["seed"]) for r in records) == sorted(
        [(m, t, s) for s in (0, 1) for m, t in [("single", "rte"), ("single", "sst2"), ("stilts", "rte"),
                                                ("stilts", "sst2"), ("mtl", "rte"), ("mtl_all", None)]]), \
        [(r["method"], r["target"], r["seed"]) for r in records]
    jobs = job_records(cluster)
    assert all(j["JobState"] == "COMPLETED" for j in jobs), jobs
    times = {stage: [(datetime.fromisoformat(j["StartTime"]), datetime.fromisoformat(j["EndTime"]))
                     for j in jobs if j["Name"] == f"mtlvsift-stage{stage}"] for stage in (1, 2)}
    assert len(times[1]) == len(times[2]) == 2
    assert min(start for start, _ in times[2]) >= max(end for _, end in times[1])
    # One start-up per array task, each holding its share of the stage: 4 runs, then 2.
    log = [json.loads(line) for line in (out / "grid-log.jsonl").read_text().splitlines()]
    tasks = [entry for entry in log if entry.get("event") == "array-task"]
    assert sorted((entry["task"], entry["runs"]) for entry in tasks) == [(0, 4), (0, 4), (1, 2), (1, 2)]
    assert len([entry for entry in log if "run" in entry]) == 12  # each run trained once
    for task_log in (emitted / "logs").glob("stage*.out"):
        text = task_log.read_text()
        assert len(re.findall(r"array task \d: \d runs in this process \(start-up", text)) == 1, text[-2000:]
    report = run_script("compare", ["--outputs", out])
    summary = json.loads((out / "report" / "summary.json").read_text())
    cells = {(c["target"], c["support"]): c for c in summary["cells"]}
    assert set(cells) == {("rte", "sst2"), ("sst2", "rte")}, report.output
    assert all(c["n_mtl"] == 2 and c["n_stilts"] == 2 for c in cells.values()), cells


def test_a_job_requeued_or_warned_mid_training_resumes_and_ends_as_if_uninterrupted(
        cluster, tmp_path, tiny_model, tiny_glue, monkeypatch):
    """Array task 0 is requeued by ``scontrol requeue`` (SIGTERM to all its processes, then SLURM
    starts it again); array task 1 gets SLURM's time-limit warning (SIGUSR1 to the batch shell,
    as ``--signal=B:USR1@...`` sends it), which passes it on to the run and requeues itself.
    Each run hangs at its 4th step of 6 until the signal comes (the fault's 4th step is never
    reached again after the resume); each stops with that step's checkpoint, resumes there and
    ends with the weights, dev scores and log of an uninterrupted run."""
    common = ["--tasks", "rte", "--seeds", "0,1", "--methods", "single", "--model", tiny_model,
              "--data-dir", tiny_glue, *TINY, "--keep-state"]
    # One thread on both sides: accelerate launch runs the jobs with OMP_NUM_THREADS=1 where it
    # is unset, and a run on another thread count rounds differently (its weights are not equal).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_script("run_grid", [*common, "--output-dir", tmp_path / "clean"])
    finally:
        torch.set_num_threads(threads)
    emitted = tmp_path / "slurm"
    run_script("run_grid", [*common, "--output-dir", tmp_path / "out", "--emit", "slurm",
                            "--emit-to", emitted])
    monkeypatch.setenv("MTLVSIFT_FAULT", "step:hang:4")
    submit(cluster, emitted)
    logs = {task: emitted / "logs" for task in (0, 1)}

    def task_log(task: int) -> str:
        found = list(logs[task].glob(f"stage1-*_{task}.out"))
        return found[0].read_text() if found else ""

    cluster._wait(lambda: all("fault: hanging at step" in task_log(t) for t in (0, 1)), 240,
                  "both runs to reach step 4")
    array = cluster.command("squeue", "-h", "-o", "%F").stdout.split()[0]
    requeued = cluster.command("scontrol", "requeue", f"{array}_0")
    warned = cluster.command("scancel", "--batch", "--signal=USR1", f"{array}_1")
    assert requeued.returncode == 0 and warned.returncode == 0, requeued.stderr + warned.stderr
    resumed = [run_dir(tmp_path / "out", "single", "rte", seed) / "result.json" for seed in (0, 1)]
    cluster.wait_for_jobs(300, hurry_requeued=True, until=lambda: all(r.exists() for r in resumed))
    for seed in (0, 1):
        text = " ".join(task_log(seed).split())
        assert f"Resuming from step 4 " in text, task_log(seed)[-3000:]
        name = "SIGTERM" if seed == 0 else "SIGUSR1"
        assert f"Stopped ({name}): the last checkpoint, at step 4" in text, task_log(seed)[-3000:]
        clean, resumed = run_dir(tmp_path / "clean", "single", "rte", seed), run_dir(tmp_path / "out", "single", "rte", seed)
        for weights in ("state/model.safetensors", "best/encoder/model.safetensors"):
            a, b = load_file(clean / weights), load_file(resumed / weights)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (seed, weights)
        ra, rb = (json.loads((folder / "result.json").read_text()) for folder in (clean, resumed))
        assert ra["history"] == rb["history"] and ra["best"] == rb["best"]
        steps = [entry["step"] for entry in read_log(resumed)]
        assert steps == [entry["step"] for entry in read_log(clean)] and len(set(steps)) == len(steps)
    assert f"requeueing {array}_1 to resume" in task_log(1) and "requeueing" not in task_log(0)


def test_runs_per_task_4_on_a_16_run_stage_is_4_array_tasks_of_4_runs_each_started_once(
        cluster, tmp_path, tiny_model, tiny_glue):
    out, emitted = tmp_path / "out", tmp_path / "slurm"
    run_script("run_grid", ["--tasks", "rte,sst2,cola,stsb", "--seeds", "0,1,2,3", "--methods", "single",
                            "--model", tiny_model, "--data-dir", tiny_glue, "--output-dir", out, *TINY,
                            "--emit", "slurm", "--emit-to", emitted, "--runs-per-task", "4"])
    assert "stage 1 (16 runs in 4 array tasks)" in submit(cluster, emitted)
    cluster.wait_for_jobs(420)
    assert len(list(out.rglob("result.json"))) == 16
    log = [json.loads(line) for line in (out / "grid-log.jsonl").read_text().splitlines()]
    starts = [entry for entry in log if entry.get("event") == "array-task"]
    assert sorted((entry["task"], entry["runs"]) for entry in starts) == [(k, 4) for k in range(4)]
    assert len({entry["job"] for entry in starts}) == 4  # four array tasks, one process each
    trained = [entry["run"] for entry in log if "run" in entry]
    assert len(trained) == len(set(trained)) == 16
    for task in range(4):
        text = next((emitted / "logs").glob(f"stage1-*_{task}.out")).read_text()
        assert text.count(f"array task {task}: 4 runs in this process (start-up") == 1, text[-2000:]
        assert text.count("Done: ") == 4 and f"array task {task}: 4 trained" in text
