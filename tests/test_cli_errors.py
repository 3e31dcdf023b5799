"""Bad input to the train scripts: one clear message, a non-zero exit, nothing written."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

from helpers import model_dir, fails, nothing_written, run_script, tiny_args


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
          "for seed in 0 1 2 3 4; do accelerate launch --quiet scripts/train_stilts.py --target sst2",
          "--init-from")
    assert nothing_written(out)


def test_changed_config_never_touches_the_finished_run(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out, epochs=1)])
    result_file = model_dir(out, tiny_model) / "single" / "rte" / "seed-0" / "result.json"
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


# --- option values: finite floats, seeds, steps, the model's length (issue 12) ---------------

FLOAT_OPTIONS = ["--lr", "--eval-every", "--warmup-ratio", "--weight-decay", "--target-fraction",
                 "--support-ratio"]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("option", FLOAT_OPTIONS)
def test_a_float_option_must_be_finite(option, value, tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    result = run_script("train_mtl", ["--target", "rte", "--support", "sst2", "--sampling", "size",
                                      *tiny_args(tiny_model, tiny_glue, out), option, value],
                        expect_ok=False)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"Error: Invalid value for '{option}'" in result.output
    assert nothing_written(out)


@pytest.mark.parametrize("option, value", [("--seed", -1), ("--seed", 2**32), ("--data-seed", -1),
                                           ("--data-seed", 10**30), ("--max-train-examples", 10**300)])
def test_a_seed_or_count_out_of_range_is_a_usage_error(option, value, tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    result = run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out),
                                         option, value], expect_ok=False)
    assert result.exit_code == 2 and f"Error: Invalid value for '{option}'" in result.output
    assert nothing_written(out)


def test_eval_every_below_one_step_says_the_least(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"  # 48 examples in batches of 8: six steps per epoch
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out), "--eval-every", 1e-6],
          "--eval-every 1e-06 is less than one training step", "6 steps", "--eval-every 0.1667")
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out), "--grad-accum", 9],
          "--grad-accum 9", "at most 8")
    assert nothing_written(out)


@pytest.mark.parametrize("option, value, message", [
    ("--eval-every", 0.1, "Error: --eval-every 0.1 is less than one training step: an epoch has 6 steps"),
    ("--grad-accum", 9, "Error: --grad-accum 9 asks for more micro-batches than the 8 rows")])
def test_a_dry_run_refuses_what_the_run_refuses(option, value, message, tiny_model, tiny_glue, tmp_path):
    """--dry-run checks --eval-every and --grad-accum against the data as the run does (one
    function): the same one error, instead of a plan the run would refuse."""
    out = tmp_path / "out"
    args = ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out), option, value]
    planned = fails("train_stilts", [*args, "--dry-run"], message)
    assert planned.count("Error:") == 1 and "Plan" not in planned
    trained = fails("train_stilts", args, message)
    assert " ".join(trained.split()).split("Error:")[1] == " ".join(planned.split()).split("Error:")[1]
    assert nothing_written(out)


def test_max_seq_length_beyond_the_model_names_its_limit(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"  # the tiny encoder has 128 positions
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out), "--max-seq-length", 129],
          "--max-seq-length 129", "128 tokens", "--max-seq-length 128 or less")
    assert nothing_written(out)


@pytest.mark.parametrize("content, expected", [
    ('{"rte": 66, "sst2": 0.9}', "the score of rte is 66, not a number in [0, 1]"),
    ('{"rte": NaN, "sst2": 0.9}', "the score of rte is NaN"),
    ('{"rte": true, "sst2": 0.9}', "the score of rte is true"),
    ('{"rte": "0.6", "sst2": 0.9}', 'the score of rte is "0.6"'),
    ("[0.6, 0.9]", "it holds an array, not an object"),
    ('"rte"', "it holds a string, not an object"),
    ("null", "it holds null, not an object"),
    ('{"rte": 0.6}', "it has no score for: sst2"),
    ('{"rte": 0.6, "sst2": 0.9, "foo": 0.5}', "'foo' is not a task of this run"),
    ('{"rte": 0.6, "sst2": 0.9, "cola": 0.5}', "'cola' is not a task of this run"),
    ('{"rte": 0.6, "RTE": 0.6, "sst2": 0.9}', "rte is named twice"),
    ("{", "cannot read it as JSON"),
])
def test_single_scores_must_be_scores_of_exactly_the_runs_tasks(content, expected, tiny_model,
                                                                  tiny_glue, tmp_path):
    out = tmp_path / "out"
    scores = tmp_path / "scores.json"
    scores.write_text(content)
    fails("train_mtl", ["--target", "rte", "--support", "sst2", "--single-scores", scores,
                        *tiny_args(tiny_model, tiny_glue, out)],
          f"--single-scores {scores}: {expected}")
    assert nothing_written(out)


def test_an_sts_b_dev_set_of_one_row_is_refused_before_training(tiny_model, tiny_glue, tmp_path):
    out, glue = tmp_path / "out", tmp_path / "glue"
    shutil.copytree(tiny_glue, glue)
    dev = glue / "STS-B" / "dev.tsv"
    dev.write_text("\n".join(dev.read_text().splitlines()[:2]) + "\n")
    fails("train_stilts", ["--target", "stsb", *tiny_args(tiny_model, glue, out)],
          str(dev), "has 1 example", "at least 2")
    assert nothing_written(out)


@pytest.mark.parametrize("content, reason", [("{not json", "JSONDecodeError"), ("[1, 2]", "an array")])
def test_a_hand_broken_config_json_is_one_error(content, reason, tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    config = model_dir(out, tiny_model) / "single" / "rte" / "seed-0" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(content)
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out)],
          str(config), "is damaged", reason, "--overwrite")
    assert config.read_text() == content and sorted(p.name for p in config.parent.iterdir()) == ["config.json"]


def test_a_supporting_record_without_best_is_named(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    run_script("train_stilts", ["--target", "sst2", *tiny_args(tiny_model, tiny_glue, out, epochs=1)])
    record = model_dir(out, tiny_model) / "single" / "sst2" / "seed-0" / "result.json"
    raw = json.loads(record.read_text())
    del raw["best"]
    record.write_text(json.dumps(raw))
    fails("train_stilts", ["--target", "rte", "--support", "sst2", *tiny_args(tiny_model, tiny_glue, out)],
          str(record), "not a valid run record", "'best.score' is missing")
    assert not (model_dir(out, tiny_model) / "stilts").exists()


def test_a_read_only_output_folder_is_one_error(tiny_model, tiny_glue, read_only_dir):
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, read_only_dir, epochs=1)],
          "Could not create the lock file", "writable")
    assert nothing_written(read_only_dir)


def test_a_cache_dir_that_is_a_file_is_one_error(tiny_model, tiny_glue, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("MTLVSIFT_CACHE_DIR", str(tmp_path / "a-file"))
    (tmp_path / "a-file").write_text("")
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out, epochs=1)],
          "Could not write the tokenization cache", "MTLVSIFT_CACHE_DIR")
    assert nothing_written(out)


def test_a_full_cache_disk_is_one_error_and_leaves_no_temporary_folder(tiny_model, tiny_glue, tmp_path,
                                                                        monkeypatch):
    import datasets

    out, cache = tmp_path / "out", tmp_path / "cache"
    monkeypatch.setenv("MTLVSIFT_CACHE_DIR", str(cache))

    def full_disk(self, path, *args, **kwargs):
        Path(path).mkdir(parents=True)
        (Path(path) / "data-00000-of-00001.arrow").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", full_disk)
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out, epochs=1)],
          "Could not write the tokenization cache", "No space left on device")
    assert nothing_written(out) and list((cache / "tokenized").iterdir()) == []


# --- the model's tokenizer (issue 24) ----------------------------------------------------------

def without_tokenizer_files(model: Path, folder: Path) -> Path:
    """A copy of the model folder with its config and weights only."""
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model / name, folder / name)
    return folder


def test_a_model_folder_without_tokenizer_files_is_refused(tiny_model, tiny_glue, tmp_path):
    out, bare = tmp_path / "out", without_tokenizer_files(Path(tiny_model), tmp_path / "bare")
    fails("train_stilts", ["--target", "rte", *tiny_args(bare, tiny_glue, out, epochs=1)],
          f"The tokenizer of {bare} has 5 tokens, its encoder's embeddings 30522",
          "the folder lacks tokenizer files")
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out, epochs=1),
                           "--init-from", bare], f"The tokenizer of {bare} has 5 tokens")
    assert nothing_written(out)


def test_a_tokenizer_that_reads_the_text_as_unknown_is_refused(tiny_glue, tmp_path):
    from transformers import BertConfig, BertModel

    out, model = tmp_path / "out", tmp_path / "five-tokens"  # fits the placeholder tokenizer's size
    BertModel(BertConfig(vocab_size=5, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(model)
    fails("train_stilts", ["--target", "rte", *tiny_args(model, tiny_glue, out, epochs=1)],
          f"The tokenizer of {model} reads 100% of the training text as its unknown token [UNK]",
          "the folder lacks tokenizer files")
    assert nothing_written(out)


def test_a_bad_init_from_is_named_as_init_from(tiny_model, tiny_glue, tmp_path):
    out, empty = tmp_path / "out", tmp_path / "empty"
    empty.mkdir()
    output = fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out, epochs=1),
                                    "--init-from", empty],
                   f"--init-from {empty} is not a model folder that can be loaded")
    assert "--model" not in output
    assert nothing_written(out)
