"""What a researcher looks for (issue 25, finding 8): the training curves (compare.py curves),
train_log.jsonl's epoch as a fraction like the history's, and the runs at or below the
majority-class baseline flagged per configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import load_script, read_log, run_dir, run_script, tiny_args
from synthetic import write_record

main = load_script("compare").main
PNG = b"\x89PNG\r\n\x1a\n"


def run(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def trained(tiny_model, tiny_glue, tmp_path_factory) -> Path:
    """Two seeds of a tiny single RTE run, 2 epochs of 6 steps, logged every step."""
    out = tmp_path_factory.mktemp("curves") / "outputs"
    for seed in (0, 1):
        run_script("train_stilts", ["--target", "rte", "--seed", seed, "--log-every", 1,
                                    *tiny_args(tiny_model, tiny_glue, out)])
    return out


def test_the_logs_epoch_is_a_fraction_like_the_historys(trained):
    folder = run_dir(trained, "single", "rte", 0)
    log = read_log(folder)
    assert [e["step"] for e in log] == list(range(1, 13))
    # Before: 1, 1, ..., 2 (the epoch under way, counted from 1); now steps / 6 batches an epoch.
    assert [e["epoch"] for e in log] == pytest.approx([s / 6 for s in range(1, 13)], abs=1e-6)
    history = json.loads((folder / "result.json").read_text())["history"]
    logged = {e["step"]: e["epoch"] for e in log}
    assert [h["epoch"] for h in history] == [logged[h["step"]] for h in history] == [0.5, 1, 1.5, 2]


def test_curves_draw_every_seed_and_skip_bad_lines_with_a_warning(trained, tmp_path):
    folder = run_dir(trained, "single", "rte", 1)
    log = folder / "train_log.jsonl"
    good = log.read_text()
    result_file = folder / "result.json"
    record = result_file.read_text()
    try:
        log.write_text(good + '{"step": 13, "loss": NaN}\nnot json\n[1, 2]\n{"step": -1, "loss": 1}\n')
        raw = json.loads(record)
        raw["history"] += [{"step": "x"}, {"step": 14, "metrics": {"rte": {"accuracy": 7}}}]
        result_file.write_text(json.dumps(raw))
        result = CliRunner().invoke(main, ["--outputs", str(trained), "curves", "--report-dir",
                                           str(tmp_path / "report")], catch_exceptions=False)
    finally:
        log.write_text(good)
        result_file.write_text(record)
    assert result.exit_code == 0, result.output
    png = tmp_path / "report" / "curves" / "rte.png"
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000
    out = flat(result.output)
    assert f"Curves written to {tmp_path / 'report' / 'curves'}/: rte.png" in out
    assert "skipped 4 of 16 lines that are not log entries (a step and a finite loss; first: " \
           "line 13)" in out
    assert "skipped 2 of 6 evaluations in 'history' without a step and a RTE accuracy score" in out


def test_curves_of_one_target_and_an_unknown_target(tmp_path):
    for seed in (0, 1):  # records copied without their logs: dev curves only
        write_record(tmp_path, "single", "rte", [], seed, 0.6, baselines={"rte": 0.527})
        write_record(tmp_path, "mtl", "rte", ["wnli"], seed, 0.62)
        write_record(tmp_path, "single", "wnli", [], seed, 0.56)
    result = run("curves", "--outputs", tmp_path, "--target", "RTE")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "report" / "curves").iterdir()) == ["rte.png"]
    assert "6 run(s) have no train_log.jsonl" in flat(result.output)
    unknown = run("curves", "--outputs", tmp_path, "--target", "sst2")
    assert unknown.exit_code == 1 and "Traceback" not in unknown.output
    assert unknown.output.startswith("Error: No run trains sst2; the runs' targets are: rte, wnli.")


def test_curves_loss_and_dev_readers_are_pure(tmp_path):
    """The readers on their own: what counts as a log line and as an evaluation."""
    from mtlvsift.report.curves import loss_points

    warnings: list[str] = []
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 1, "epoch": 0.1, "loss": 0.7}\n{"step": true, "loss": 1}\n\n'
                   '{"step": 2, "loss": "0.5"}\n{"step": 3, "loss": 0.4}')  # last line unended
    assert loss_points(log, warnings.append) == [(1, 0.7), (3, 0.4)]
    assert len(warnings) == 1 and "skipped 2 of 5 lines" in warnings[0]
    assert loss_points(tmp_path / "none.jsonl", warnings.append) is None and len(warnings) == 1
