"""--report-to: accelerate's trackers, off by default; TensorBoard read back from its event file."""

from __future__ import annotations

import pytest

from helpers import model_dir, fails, nothing_written, read_log, read_result, run_script, tiny_args


def test_tensorboard_holds_loss_and_dev_metrics(tiny_model, tiny_glue, tmp_path):
    pytest.importorskip("tensorboard", reason="pip install 'mtlvsift[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_script("train_mtl", ["--target", "rte", "--support", "sst2", "--sampling", "size",
                             "--report-to", "tensorboard", "--log-every", 2,
                             *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)])
    folder = model_dir(tmp_path, tiny_model) / "mtl" / "rte--sst2__sampling-size" / "seed-0"
    events = EventAccumulator(str(folder / "tracking" / "mtlvsift"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/examples_per_second", "sampling/rte", "sampling/sst2",
            "dev/rte/accuracy", "dev/sst2/accuracy"} <= scalars
    log = read_log(folder)
    losses = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert losses == [(entry["step"], pytest.approx(entry["loss"], rel=1e-6)) for entry in log]
    history = read_result(tmp_path, "mtl", "rte--sst2__sampling-size")["history"]
    dev = [(e.step, e.value) for e in events.Scalars("dev/rte/accuracy")]
    assert dev == [(h["step"], pytest.approx(h["metrics"]["rte"]["accuracy"])) for h in history]
    assert [e.value for e in events.Scalars("sampling/rte")] == pytest.approx([0.5] * len(log))


def test_no_tracker_unless_asked(tiny_model, tiny_glue, tmp_path):
    run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)])
    folder = model_dir(tmp_path, tiny_model) / "single" / "rte" / "seed-0"
    assert (folder / "result.json").is_file() and not (folder / "tracking").exists()


def test_a_tracker_that_is_not_installed_is_one_error(tiny_model, tiny_glue, tmp_path, monkeypatch):
    import mtlvsift.train.trackers as trackers

    monkeypatch.setattr(trackers, "get_available_trackers", lambda: [])
    out = tmp_path / "out"
    fails("train_stilts", ["--target", "rte", "--report-to", "tensorboard",
                           *tiny_args(tiny_model, tiny_glue, out, epochs=1)],
          "--report-to tensorboard needs the package tensorboard", "pip install 'mtlvsift[tensorboard]'")
    fails("train_stilts", ["--target", "rte", "--report-to", "nonsense",
                           *tiny_args(tiny_model, tiny_glue, out, epochs=1)], "tensorboard", "wandb")
    assert nothing_written(out)


def tensorboard_points(folder) -> dict[str, list[int]]:
    """Each scalar tag's steps, as written in the raw event files of the run's tracking folder."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    points: dict[str, list[int]] = {}
    for path in sorted((folder / "tracking").rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                points.setdefault(value.tag, []).append(event.step)
    return points


@pytest.mark.parametrize("restart", [False, True])
def test_a_resumed_or_restarted_run_logs_each_step_once(restart, tiny_model, tiny_glue, tmp_path, monkeypatch):
    """Stopped at step 5 (the checkpoint is step 3's), then resumed (or restarted): steps 4 and 5,
    trained again, are not written to TensorBoard a second time; each tag has each step once."""
    pytest.importorskip("tensorboard", reason="pip install 'mtlvsift[tensorboard]'")
    import mtlvsift.faults as faults

    args = ["--target", "rte", "--report-to", "tensorboard", "--log-every", 1,
            *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)]
    faults._hits.clear()
    monkeypatch.setenv("MTLVSIFT_FAULT", "step:sigint:5")
    assert run_script("train_stilts", args, expect_ok=False).exit_code == 130
    monkeypatch.delenv("MTLVSIFT_FAULT")
    folder = model_dir(tmp_path, tiny_model) / "single" / "rte" / "seed-0"
    assert tensorboard_points(folder)["train/loss"] == [1, 2, 3, 4, 5]
    run_script("train_stilts", [*args, *(["--restart"] if restart else [])])
    points = tensorboard_points(folder)
    assert points["train/loss"] == [1, 2, 3, 4, 5, 6] and points["dev/rte/accuracy"] == [3, 6]
    assert all(len(steps) == len(set(steps)) for steps in points.values()), points
    assert points["_hparams_/experiment"] == [0]  # the hyperparameters are stored once too
