"""Bad input to the train scripts: one clear message, a non-zero exit, nothing written."""

from __future__ import annotations

import shutil

import pytest

from helpers import fails, nothing_written, run_script, tiny_args


def test_unknown_task_lists_the_valid_names(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    fails("train_stilts", ["--target", "foo", *tiny_args(tiny_model, tiny_glue, out, epochs=1)],
          "Unknown task 'foo'", "MNLI", "SST-2", "WNLI")
    fails("train_mtl", ["--target", "rte", "--support", "sts", *tiny_args(tiny_model, tiny_glue, out, epochs=1)],
          "Unknown task 'sts'")
    assert nothing_written(out)


def test_missing_data_folder_and_file(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tmp_path / "nowhere", out, epochs=1)], "nowhere")
    partial = tmp_path / "glue"
    shutil.copytree(tiny_glue, partial)
    (partial / "RTE" / "dev.tsv").unlink()
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, partial, out, epochs=1)], "dev.tsv")
    assert nothing_written(out)


def test_malformed_row_names_file_and_line(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    broken = tmp_path / "glue"
    shutil.copytree(tiny_glue, broken)
    train = broken / "RTE" / "train.tsv"
    lines = train.read_text().splitlines()
    lines[5] = "5\tonly two columns"
    train.write_text("\n".join(lines) + "\n")
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, broken, out, epochs=1)], "train.tsv", "line 6")
    assert nothing_written(out)


def test_support_equal_to_target(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    fails("train_stilts", ["--target", "rte", "--support", "RTE", *tiny_args(tiny_model, tiny_glue, out, epochs=1)],
          "--support must differ from --target")
    fails("train_mtl", ["--target", "rte", "--support", "rte", *tiny_args(tiny_model, tiny_glue, out, epochs=1)],
          "listed twice")
    assert nothing_written(out)


def test_stilts_without_a_supporting_run_prints_the_command(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    fails("train_stilts", ["--target", "rte", "--support", "sst2", *tiny_args(tiny_model, tiny_glue, out, epochs=1)],
          "STILTs needs the single-task runs of every supporting seed", "sst2: finished seeds: none.",
          "for seed in 0 1 2 3 4; do accelerate launch scripts/train_stilts.py --target sst2",
          "--init-from")
    assert nothing_written(out)


def test_changed_config_never_touches_the_finished_run(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out, epochs=1)])
    result_file = out / "single" / "rte" / "seed-0" / "result.json"
    before = result_file.read_bytes()
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out, epochs=1), "--lr", 5e-4],
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
