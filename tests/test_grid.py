"""scripts/run_grid.py: the plan (order, prerequisites, commands that rebuild each run exactly),
the in-process grid and compare.py over it, a second call that does nothing, a dry run that
writes nothing, and the emitted shell and SLURM scripts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO_ROOT, grid_options, load_script, model_dir, read_result, run_script
from mtlvsift.grid.estimate import RunWork, Speeds, TaskSpeed, inside_seconds, run_seconds, speed_of_record
from mtlvsift.errors import MtlvsiftError
from mtlvsift.grid.plan import grid_runs
from mtlvsift.train.config import mtl_all_config, mtl_config, stilts_config


def test_plan_orders_prerequisites_and_pairs_once(tmp_path):
    runs = grid_runs(["rte", "mrpc", "stsb"], [0, 1], ["single", "stilts", "mtl", "mtl_all"],
                     grid_options(tmp_path / "out"))
    labels = [r.label for r in runs]
    assert labels[:6] == ["single rte seed 0", "single rte seed 1", "single mrpc seed 0",
                          "single mrpc seed 1", "single stsb seed 0", "single stsb seed 1"]
    # MTL_All (size sampling) reads no run: stage 1; STILTs and dynamic MTL read the singles.
    assert labels[6:8] == ["MTL_All rte+mrpc+stsb seed 0", "MTL_All rte+mrpc+stsb seed 1"]
    assert [r.stage for r in runs] == [1] * 8 + [2] * 18
    assert labels[8:14] == ["STILTs rte <- mrpc seed 0", "STILTs rte <- stsb seed 0",
                            "STILTs mrpc <- rte seed 0", "STILTs mrpc <- stsb seed 0",
                            "STILTs stsb <- rte seed 0", "STILTs stsb <- mrpc seed 0"]
    # One MTL run per unordered pair, the smaller training set as target (RTE < MRPC < STS-B).
    assert [label for label in labels if label.startswith("MTL ")] == [
        "MTL rte <- mrpc seed 0", "MTL rte <- stsb seed 0", "MTL mrpc <- stsb seed 0",
        "MTL rte <- mrpc seed 1", "MTL rte <- stsb seed 1", "MTL mrpc <- stsb seed 1"]
    stilts = runs[8]
    assert stilts.config.support_seeds == [0, 1]
    assert stilts.needs == (str(model_dir(tmp_path / "out") / "single/mrpc/seed-0"),
                            str(model_dir(tmp_path / "out") / "single/mrpc/seed-1"))
    assert "--support-seeds '0 1'" in stilts.command()


def test_single_runs_that_other_runs_read_are_added(tmp_path):
    runs = grid_runs(["rte", "mrpc"], [0], ["stilts"], grid_options(tmp_path))
    assert [(r.label, r.added) for r in runs] == [
        ("single rte seed 0", True), ("single mrpc seed 0", True),
        ("STILTs rte <- mrpc seed 0", False), ("STILTs mrpc <- rte seed 0", False)]
    assert [r.label for r in grid_runs(["rte", "mrpc"], [0], ["mtl"], grid_options(tmp_path),
                                       mtl_sampling="size")] == ["MTL rte <- mrpc seed 0"]


def test_size_experiment_adds_the_capped_supporting_runs(tmp_path):
    """--support-ratios: every ordered pair at every ratio, STILTs from single runs of the support
    capped at K x the target's size (GLUE's official sizes without --data-dir: RTE 2,490, MRPC
    3,668; --target-fraction 0.5 makes the targets 1,245 and 1,834)."""
    runs = grid_runs(["rte", "mrpc"], [0], ["stilts", "mtl"], grid_options(tmp_path),
                     support_ratios=[0.5, 1.0], target_fraction=0.5)
    folders = [str(Path(r.run_dir).relative_to(model_dir(tmp_path))) for r in runs]
    assert folders[:6] == ["single/rte/seed-0", "single/mrpc/seed-0", "single/mrpc__n-622/seed-0",
                           "single/rte__n-917/seed-0", "single/mrpc__n-1245/seed-0",
                           "single/rte__n-1834/seed-0"]
    assert folders[6:] == [
        "stilts/rte--mrpc__tf-0.5_sr-0.5/seed-0", "stilts/mrpc--rte__tf-0.5_sr-0.5/seed-0",
        "stilts/rte--mrpc__tf-0.5_sr-1/seed-0", "stilts/mrpc--rte__tf-0.5_sr-1/seed-0",
        "mtl/rte--mrpc__tf-0.5_sr-0.5/seed-0", "mtl/mrpc--rte__tf-0.5_sr-0.5/seed-0",
        "mtl/rte--mrpc__tf-0.5_sr-1/seed-0", "mtl/mrpc--rte__tf-0.5_sr-1/seed-0"]
    assert runs[6].needs == (str(model_dir(tmp_path) / "single/mrpc__n-622/seed-0"),)
    assert runs[10].needs == (str(model_dir(tmp_path) / "single/rte/seed-0"),
                              str(model_dir(tmp_path) / "single/mrpc/seed-0"))
    for run in runs:  # the commands rebuild the same runs
        assert _config_from_command(run).identity() == run.config.identity()
    with pytest.raises(MtlvsiftError, match="RTE as target needs 3735 MRPC training examples .3 x the target.s., but 3668"):
        grid_runs(["rte", "mrpc"], [0], ["stilts"], grid_options(tmp_path), support_ratios=[3.0],
                  target_fraction=0.5)


def _config_from_command(run) -> object:
    """The config the printed command's script builds (parsed by the script's own options)."""
    args = run.args()
    script = load_script(Path(args[0]).stem)
    params = dict(script.main.make_context(Path(args[0]).name, args[1:]).params)
    for key in ("restart", "dry_run", "plan_json"):
        params.pop(key, None)
    if run.method in ("single", "stilts"):
        return stilts_config(params.pop("target"), params.pop("support"), params)
    if run.method == "mtl":
        return mtl_config(params.pop("target"), params.pop("support"), params)
    tasks = tuple(t for t in params.pop("tasks").split(",") if t)
    return mtl_all_config(tasks, params)


@pytest.mark.parametrize("extra", [
    {},
    {"max_train_examples": 300, "epochs": 2, "max_seq_length": 64, "batch_size": 32, "lr": 3.3e-5,
     "data_dir": "/data/glue dir", "protocol": "original", "warmup_ratio": 0.06, "data_seed": 7},
    {"select_on": "holdout", "holdout_fraction": 0.2},
])
def test_every_command_rebuilds_its_run_exactly(tmp_path, extra):
    """What the grid prints (and --emit writes) is parsed by the train scripts into the same run
    identity and folder the grid trains in process."""
    runs = grid_runs(["rte", "sst2", "stsb"], [0, 3], ["single", "stilts", "mtl", "mtl_all"],
                     grid_options(tmp_path / "my outputs", **extra), mtl_all_sampling="uniform")
    for run in runs:
        rebuilt = _config_from_command(run)
        assert rebuilt.identity() == run.config.identity(), run.command()
        assert rebuilt.run_dir == run.config.run_dir
        assert rebuilt.data_dir == run.config.data_dir


def test_estimate_from_speeds():
    speeds = Speeds(tasks={"rte": TaskSpeed(10.0, 2.0, 0.5, "runs"),
                           "sst2": TaskSpeed(40.0, 1.0, 0.25, "runs")},
                    overhead={"in-process": 3.0})
    work = RunWork(rows={"rte": 100.0, "sst2": 400.0}, evaluations=4, steps=10)
    # 100/10 + 400/40 training, 4 x (2 + 1) evaluating, 4 x 0.5 waiting, 3 of set-up
    assert run_seconds(work, speeds, "in-process") == pytest.approx(20 + 12 + 2 + 3)
    assert run_seconds(work, speeds, "process") == pytest.approx(34 + 15)  # default until measured
    assert run_seconds(RunWork({"cola": 1.0}, 1, 1), speeds, "in-process") is None
    timing = {"train_seconds": 4.0, "examples": 40, "eval_seconds": [9.0, 1.0, 3.0],
              "checkpoint_blocked_seconds": [0.1, 0.3]}
    speed = speed_of_record(timing)
    assert (speed.train_examples_per_s, speed.eval_seconds, speed.checkpoint_seconds) == (10.0, 2.0, 0.2)
    assert inside_seconds(timing) == pytest.approx(4 + 13 + 0.4)
    assert inside_seconds({**timing, "eval_seconds": [1, "x"]}) == pytest.approx(4.4)
    assert inside_seconds("not a timing") == 0.0
    for bad in ({**timing, "train_seconds": float("nan")}, {**timing, "eval_seconds": "1"},
                {**timing, "examples": -3}, {**timing, "eval_seconds": [1, None]}, ["timing"]):
        assert speed_of_record(bad) is None


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}


def test_grid_runs_then_compare_reports_its_variant(tmp_path, tiny_model, tiny_glue):
    out = tmp_path / "out"
    grid = ["--tasks", "rte,sst2,cola", "--seeds", "0,1", "--model", tiny_model, "--data-dir", tiny_glue,
            "--output-dir", out, "--epochs", "1", "--batch-size", "8", "--lr", "1e-3",
            "--max-train-examples", "40", "--max-seq-length", "32"]
    dry = run_script("run_grid", [*grid, "--dry-run"])  # nothing measured yet: calibrates
    assert not out.exists(), "--dry-run wrote under the outputs"
    assert "speeds measured by: cola (calibration), rte (calibration), sst2 (calibration)" in \
        " ".join(dry.output.split())
    run_script("run_grid", [*grid, "--methods", "single"])  # some runs exist before the dry run
    before = _tree(out)
    dry = run_script("run_grid", [*grid, "--dry-run"])
    assert _tree(out) == before, "--dry-run wrote under the outputs"
    assert "ETA:" in dry.output and "Commands (in this order" in dry.output
    assert "26 runs, 20 to train" in " ".join(dry.output.split())
    assert "cola (runs), rte (runs), sst2 (runs)" in " ".join(dry.output.split())

    first = run_script("run_grid", grid)
    assert "Grid: 20 trained, 6 already complete, 0 failed." in " ".join(first.output.split())
    before = _tree(out)
    again = run_script("run_grid", grid)
    assert "All 26 runs of the grid are complete" in " ".join(again.output.split())
    assert _tree(out) == before

    run_script("compare", ["--outputs", out])
    summary = json.loads(next((out / "report").rglob("summary.json")).read_text())
    cells = [c for c in summary["cells"] if c["n_mtl"] and c["n_stilts"]]
    assert len(cells) == 6, summary["cells"]
    assert all(c["n_mtl"] == 2 and c["n_stilts"] == 2 for c in cells), cells
    # Two seeds a side: no test, each cell open with the reason (the degenerate-cell rule).
    assert all(c["p"] is None and c["verdict"] == "open" for c in cells), cells
    assert all("fewer than 3 seeds" in c["verdict_reason"] for c in cells), cells
    report = next((out / "report").rglob("report.md")).read_text()
    assert "MTL_All" in report and "n-40" in report and "Table 1" in report
    again = run_script("run_grid", [*grid, "--methods", "single", "--overwrite"])  # trains again
    assert "Grid: 6 trained, 0 already complete, 0 failed." in " ".join(again.output.split())


def test_a_finished_run_with_other_options_is_not_taken_as_done(tmp_path, tiny_model, tiny_glue):
    """--epochs is not in the folder name: a grid with other epochs must not call the runs done."""
    grid = ["--tasks", "rte,sst2", "--seeds", "0", "--methods", "single", "--model", tiny_model,
            "--data-dir", tiny_glue, "--output-dir", tmp_path, "--batch-size", "8"]
    run_script("run_grid", [*grid, "--epochs", "1"])
    dry = " ".join(run_script("run_grid", [*grid, "--epochs", "2", "--dry-run"]).output.split())
    assert "2 runs, 2 to train" in dry and "2 run folder(s) hold a run with other options" in dry
    failed = run_script("run_grid", [*grid, "--epochs", "2"], expect_ok=False)
    assert failed.exit_code == 1
    text = " ".join(failed.output.split())
    assert "Grid: 0 trained, 0 already complete, 2 failed." in text and "epochs: 1 -> 2" in text
    done = run_script("run_grid", [*grid, "--epochs", "2", "--overwrite"])
    assert "Grid: 2 trained" in " ".join(done.output.split())
    assert read_result(tmp_path, "single", "rte")["config"]["epochs"] == 2


@pytest.mark.slow
def test_grid_under_accelerate_launch_runs_each_run_on_both_processes(tmp_path, tiny_model_no_dropout,
                                                                     tiny_glue):
    """Every process walks the same plan; each run is one DDP run over both (its record says 2
    processes), and a STILTs run finds the single runs the grid made before it."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO_ROOT / "launch_configs" / "cpu_multi_process.yaml"), "--num_processes", "2",
               str(REPO_ROOT / "scripts" / "run_grid.py"), "--tasks", "rte,sst2", "--seeds", "0",
               "--methods", "single,stilts", "--model", str(tiny_model_no_dropout), "--data-dir",
               str(tiny_glue), "--output-dir", str(out), "--epochs", "1", "--batch-size", "8"]
    done = subprocess.run(command, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Grid: 4 trained, 0 already complete, 0 failed." in " ".join(done.stdout.split())
    assert done.stdout.count("Grid: 4 trained") == 1  # the main process reports
    records = [json.loads(p.read_text()) for p in out.rglob("result.json")]
    assert len(records) == 4 and all(r["timing"]["num_processes"] == 2 for r in records)
    stilts = read_result(out, "stilts", "rte--sst2")
    assert stilts["start_model"]["run"] == f"{model_dir(out, tiny_model_no_dropout).name}/single/sst2/seed-0"


@pytest.mark.slow
def test_jobs_skip_the_runs_whose_single_runs_failed(tmp_path, tiny_model, tiny_glue):
    """--jobs: a single run that fails (here --max-seq-length beyond the model's 128 positions)
    is reported with its log, and the STILTs runs that read it never start."""
    result = run_script("run_grid", ["--tasks", "rte,sst2", "--seeds", "0", "--methods", "stilts",
                                     "--model", tiny_model, "--data-dir", tiny_glue, "--output-dir",
                                     tmp_path / "out", "--max-seq-length", "512", "--jobs", "2"],
                        expect_ok=False)
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "Grid: 0 trained, 0 already complete, 4 failed." in text
    assert text.count("a single run it reads failed") == 2
    logs = sorted(p.name for p in (tmp_path / "out" / "grid-logs").iterdir())
    slug = model_dir(tmp_path, tiny_model).name
    assert logs == [f"{slug}__single__rte__seed-0.log", f"{slug}__single__sst2__seed-0.log"]
    assert "max-seq-length" in (tmp_path / "out" / "grid-logs" / logs[0]).read_text()
    assert not list((tmp_path / "out").glob("*/stilts/*"))


def test_help_says_what_the_grid_is():
    text = " ".join(run_script("run_grid", ["--help"]).output.split())
    assert text.startswith("Usage: ") and "The experiment as one command" in text
    assert "mrpc, rte, wnli" in text and "--support-ratios" in text and "--emit-to" in text
    assert "--single-scores" not in text and "--seed " not in text and "--support-seeds" not in text


def test_a_failed_runs_message_is_shown_escaped(tmp_path, monkeypatch):
    """A run that fails with an error naming a path with ESC sequences: the grid's line and the
    outcome hold it escaped (\\x1b), rich markup in it shown as text."""
    import io

    from rich.console import Console

    import mtlvsift.train.loop
    from mtlvsift.grid.run import run_here

    def fail(config):
        raise MtlvsiftError(f"{tmp_path}/x\x1b[2J\x07[bold]y is damaged.")

    monkeypatch.setattr(mtlvsift.train.loop, "run_training", fail)
    runs = grid_runs(["rte"], [0], ["single"], grid_options(tmp_path))
    shown = io.StringIO()
    outcome = run_here(runs, [], tmp_path, {}, Console(file=shown, width=400))
    text = shown.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "x\\x1b[2J\\x07[bold]y" in text, text
    assert "\x1b" not in outcome.failed[0][1]


@pytest.mark.slow
def test_jobs_started_elsewhere_keep_relative_paths_where_the_caller_meant(tmp_path, monkeypatch,
                                                                           tiny_model, tiny_glue):
    """--jobs 2 from a folder outside the repository, with a relative --output-dir and
    --data-dir: the runs' processes (started in the repository) read and write where the grid
    itself looks, so the runs are trained, logged and found by the next call."""
    caller = tmp_path / "caller"
    caller.mkdir()
    shutil.copytree(tiny_glue, caller / "glue")
    monkeypatch.chdir(caller)
    grid = ["--tasks", "rte", "--seeds", "0,1", "--methods", "single", "--model", tiny_model,
            "--data-dir", "glue", "--output-dir", "rel", "--epochs", "1", "--batch-size", "8",
            "--max-train-examples", "16", "--max-seq-length", "32", "--jobs", "2"]
    first = run_script("run_grid", grid)
    assert "Grid: 2 trained, 0 already complete, 0 failed." in " ".join(first.output.split())
    assert sorted(p.parent.name for p in (caller / "rel").rglob("result.json")) == ["seed-0", "seed-1"]
    assert len((caller / "rel" / "grid-log.jsonl").read_text().splitlines()) == 2
    assert not (REPO_ROOT / "rel").exists()
    again = run_script("run_grid", grid)
    assert "All 2 runs of the grid are complete" in " ".join(again.output.split())


@pytest.mark.parametrize("field, value", [("eval_seconds", [1e308, 1e308, 1e308]),
                                          ("train_seconds", 1e308), ("examples", 1e300),
                                          ("checkpoint_blocked_seconds", [-1.0])])
def test_a_timing_beyond_any_measurement_is_ignored_with_a_warning(tmp_path, capsys, field, value):
    """A finished run's timing of 1e308 seconds (whose sums overflow the ETA) or a negative one
    is ignored with a warning naming the record and the field; the ETA is still computed."""
    from synthetic import write_record

    from mtlvsift.grid.estimate import describe_seconds, measured_speeds

    write_record(tmp_path, "single", "sst2", seed=0, model="m")
    path = write_record(tmp_path, "single", "rte", seed=0, model="m")
    record = json.loads(path.read_text())
    record["timing"][field] = value
    path.write_text(json.dumps(record))
    speeds = measured_speeds(tmp_path, "m")
    assert set(speeds.tasks) == {"sst2"}
    warning = " ".join(capsys.readouterr().err.split())
    assert f"Warning: ignored the timing of {path}: '{field}'" in warning
    work = RunWork(rows={"sst2": 100.0}, evaluations=2, steps=4)
    assert describe_seconds(run_seconds(work, speeds, "in-process")) != "?"


def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that holds ``folder``'s run lock (run_lock's own API) until killed."""
    code = ("import sys, time; from mtlvsift.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.slow
def test_a_run_another_grid_holds_is_left_to_it(tmp_path, tiny_model, tiny_glue):
    """Two grids on one tree: the run whose lock the other holds is said to be in use by it
    (its pid), neither failed nor trained here, and only the run this grid trained is logged."""
    out = tmp_path / "out"
    holder = _hold_lock(model_dir(out, tiny_model) / "single" / "rte" / "seed-0")
    try:
        result = run_script("run_grid", ["--tasks", "rte", "--seeds", "0,1", "--methods", "single",
                                         "--model", tiny_model, "--data-dir", tiny_glue,
                                         "--output-dir", out, "--epochs", "1", "--batch-size", "16",
                                         "--max-seq-length", "32"])
    finally:
        holder.kill()
        holder.wait()
    text = " ".join(result.output.split())
    assert f"single rte seed 0: in use by another process (pid {holder.pid})" in text, text
    assert "Grid: 1 trained, 0 already complete, 0 failed, 1 in use by another process." in text
    logged = [json.loads(line)["run"] for line in (out / "grid-log.jsonl").read_text().splitlines()]
    assert logged == [str(model_dir(out, tiny_model) / "single" / "rte" / "seed-1")]
    assert not (model_dir(out, tiny_model) / "single" / "rte" / "seed-0" / "result.json").exists()


def test_runs_another_grid_holds_or_finished_meanwhile_are_not_trained_or_logged(tmp_path,
                                                                                monkeypatch):
    """The in-process grid's turn comes for a run another grid finished since the plan (seed 0)
    and for one it holds (seed 1): neither is trained, failed or logged here."""
    import io

    from rich.console import Console

    import mtlvsift.train.loop
    from mtlvsift.grid.run import run_here

    trained = []
    monkeypatch.setattr(mtlvsift.train.loop, "run_training", lambda config: trained.append(config.seed))
    runs = grid_runs(["rte"], [0, 1, 2], ["single"], grid_options(tmp_path))
    done = Path(runs[0].run_dir)
    done.mkdir(parents=True)
    (done / "result.json").write_text(json.dumps({"schema": 1, "method": "single"}))
    holder = _hold_lock(Path(runs[1].run_dir))
    shown = io.StringIO()
    try:
        outcome = run_here(runs, [], tmp_path, {}, Console(file=shown, width=400))
    finally:
        holder.kill()
        holder.wait()
    assert trained == [2] and outcome.trained == [runs[2]] and outcome.failed == []
    assert outcome.skipped == [runs[0]] and outcome.busy == [(runs[1], holder.pid)]
    assert "single rte seed 0: finished by another process meanwhile." in shown.getvalue()
    assert f"single rte seed 1: in use by another process (pid {holder.pid})" in shown.getvalue()
    assert len((tmp_path / "grid-log.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("jobs, gpus, preset, cores, expected", [
    (2, 0, None, 2, 1), (4, 0, None, 16, 4), (3, 0, None, 2, 1), (1, 0, None, 2, None),
    (2, 2, None, 16, None), (2, 0, "3", 2, None)])
def test_cpu_jobs_share_the_cores(monkeypatch, jobs, gpus, preset, cores, expected):
    from mtlvsift.grid.run import cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if preset:
        monkeypatch.setenv("OMP_NUM_THREADS", preset)
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert cpu_threads(jobs, gpus) == expected
