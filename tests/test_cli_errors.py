"""Bad input to the train scripts: one clear message, a non-zero exit, nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import run_script


def args(tiny_model, data_dir, out, *extra):
    return ["--model", tiny_model, "--data-dir", data_dir, "--output-dir", out, "--epochs", 1,
            "--batch-size", 8, "--lr", 1e-3, *extra]


def fails(script: str, arguments: list, *expected: str) -> str:
    result = run_script(script, arguments, expect_ok=False)
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.output.split())  # rich/click may wrap long lines
    for text in expected:
        assert text in message, f"{text!r} not in {result.output!r}"
    return result.output


def nothing_written(out: Path) -> bool:
    return not out.exists() or not any(out.rglob("*"))


def test_unknown_task_lists_the_valid_names(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    fails("train_stilts", ["--target", "foo", *args(tiny_model, tiny_glue, out)],
          "Unknown task 'foo'", "MNLI", "SST-2", "WNLI")
    fails("train_mtl", ["--target", "rte", "--support", "sts", *args(tiny_model, tiny_glue, out)],
          "Unknown task 'sts'")
    assert nothing_written(out)


def test_missing_data_folder_and_file(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    fails("train_stilts", ["--target", "rte", *args(tiny_model, tmp_path / "nowhere", out)], "nowhere")
    partial = tmp_path / "glue"
    shutil.copytree(tiny_glue, partial)
    (partial / "RTE" / "dev.tsv").unlink()
    fails("train_stilts", ["--target", "rte", *args(tiny_model, partial, out)], "dev.tsv")
    assert nothing_written(out)


def test_malformed_row_names_file_and_line(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    broken = tmp_path / "glue"
    shutil.copytree(tiny_glue, broken)
    train = broken / "RTE" / "train.tsv"
    lines = train.read_text().splitlines()
    lines[5] = "5\tonly two columns"
    train.write_text("\n".join(lines) + "\n")
    fails("train_stilts", ["--target", "rte", *args(tiny_model, broken, out)], "train.tsv", "line 6")
    assert nothing_written(out)


def test_support_equal_to_target(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    fails("train_stilts", ["--target", "rte", "--support", "RTE", *args(tiny_model, tiny_glue, out)],
          "--support must differ from --target")
    fails("train_mtl", ["--target", "rte", "--support", "rte", *args(tiny_model, tiny_glue, out)],
          "listed twice")
    assert nothing_written(out)


def test_stilts_without_a_supporting_run_prints_the_command(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    fails("train_stilts", ["--target", "rte", "--support", "sst2", *args(tiny_model, tiny_glue, out)],
          "needs a finished single-task run of sst2", "scripts/train_stilts.py --target sst2", "--init-from")
    assert nothing_written(out)


def test_changed_config_never_touches_the_finished_run(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    run_script("train_stilts", ["--target", "rte", *args(tiny_model, tiny_glue, out)])
    result_file = out / "single" / "rte" / "seed-0" / "result.json"
    before = result_file.read_bytes()
    fails("train_stilts", ["--target", "rte", *args(tiny_model, tiny_glue, out), "--lr", 5e-4],
          "different config", "lr: 0.001 -> 0.0005", "--overwrite")
    assert result_file.read_bytes() == before


def test_no_data_dir_and_no_hub(tiny_model, tmp_path):
    out = tmp_path / "out"
    fails("train_stilts", ["--target", "rte", "--model", tiny_model, "--output-dir", out],
          "--data-dir", "MTLVSIFT_GLUE_DIR")
    assert nothing_written(out)


@pytest.mark.parametrize("model", ["no-such-org/no-such-model", "/no/such/folder"])
def test_unloadable_model_mentions_minilm(model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    fails("train_stilts", ["--target", "rte", "--model", model, "--data-dir", tiny_glue,
                           "--output-dir", out], "--model minilm")
    assert nothing_written(out)
