"""What a run says: the constant-prediction baseline, the start-up summary, the few-steps warning,
Ctrl-C and resuming, quiet third-party output, help texts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from helpers import (model_dir, read_result, run_dir, run_script, run_subprocess, tiny_args, write_tiny_glue,
                     write_user_tasks)


def _words(text: str) -> str:
    """The output with its line wrapping undone (rich wraps at the console's width)."""
    return " ".join(text.split())


def write_skewed_glue(root):
    """Tiny GLUE files whose majority classes are known: RTE trains on 30 not_entailment and 18
    entailment rows, its dev set holds 4 not_entailment of 16; STS-B's training scores are known."""
    write_tiny_glue(root)
    header = "index\tsentence1\tsentence2\tlabel"
    for split, labels in (("train", ["not_entailment"] * 30 + ["entailment"] * 18),
                          ("dev", ["not_entailment"] * 4 + ["entailment"] * 12)):
        rows = [f"{i}\tgood day .\tnice day .\t{label}" for i, label in enumerate(labels)]
        (root / "RTE" / f"{split}.tsv").write_text("\n".join([header, *rows]) + "\n")
    scores = [float(line.rsplit("\t", 1)[1])
              for line in (root / "STS-B" / "train.tsv").read_text().splitlines()[1:]]
    return root, sum(scores) / len(scores)


def test_baselines_summary_warning_and_dev_table(tiny_model, tmp_path):
    glue, stsb_mean = write_skewed_glue(tmp_path / "glue")
    out = tmp_path / "out"
    result = run_script("train_mtl", ["--target", "rte", "--support", "stsb", "--sampling", "size",
                                      *tiny_args(tiny_model, glue, out, epochs=1)])
    record = read_result(out, "mtl", "rte--stsb__sampling-size")
    rte, stsb = record["baselines"]["rte"], record["baselines"]["stsb"]
    assert rte["prediction"] == "not_entailment"
    assert rte["metrics"] == {"accuracy": 0.25} and rte["score"] == 0.25
    assert stsb["prediction"] == pytest.approx(stsb_mean, abs=1e-5)
    assert stsb["metrics"] == {"pearson": 0.0, "spearman": 0.0} and stsb["score"] == 0.0
    text = _words(result.output)
    # The summary: 48 + 48 examples in batches of 8 are 12 steps, evaluated twice.
    assert f"Run folder: {model_dir(out, tiny_model) / 'mtl' / 'rte--stsb__sampling-size' / 'seed-0'}".replace(" ", "") \
        in text.replace(" ", "")  # rich may break a long path anywhere
    assert "Tasks: RTE 48 training, 16 dev; STS-B 48 training, 16 dev" in text
    assert "Training: 12 batches of 8 per epoch x 1 epoch(s) = 12 steps; 2 evaluations" in text
    assert "Hardware: 1 process(es) on cpu, precision no; packed batches on" in text
    assert "Warning: this run takes only 12 optimizer step(s) in all" in text
    assert "--max-train-examples" in text and "--batch-size" in text
    assert "Resuming" not in text
    # The dev table: a baseline column (25.00 for RTE) and the legend of its star.
    assert "baseline" in text and "25.00" in text and "* new best" in text


def test_enough_steps_give_no_warning_and_a_start_model_is_named(tmp_path):
    from mtlvsift.train.run_messages import few_steps_warning, summary_lines

    assert few_steps_warning(20, 2, 10, 8) is None
    assert "19 optimizer step(s)" in few_steps_warning(19, 1, 19, 8)
    config = SimpleNamespace(run_dir=tmp_path / "run", batch_size=8, epochs=2, eval_every=0.5, select_on="dev",
                             init_model="x/best", start_model={"run": "single/sst2/seed-1", "seed": 1,
                                                               "score": 0.875, "seeds": [0, 1]})
    task = SimpleNamespace(display="MNLI")
    data = SimpleNamespace(task=task, train=[0] * 30, available=100, dev={"a": [0] * 5, "b": [0] * 6}, holdout=None)
    device = {"device": "cuda:0", "num_processes": 2, "mixed_precision": "bf16", "packed_batches": False}
    lines = summary_lines(config, [data], 4, 8, 4, device)
    assert "Tasks: MNLI 30 training (of 100), 5 + 6 dev" in lines
    assert "Starts from: single/sst2/seed-1 (seed 1, dev 87.50; the best of seeds 0 1)" in lines
    assert "Hardware: 2 process(es) on cuda:0, precision bf16; packed batches off" in lines


def test_sampling_probabilities_are_labelled(tmp_path):
    from mtlvsift.train.progress_bar import TrainDisplay

    display = TrainDisplay(False, "mtl rte--sst2 seed 0", 10, 0)
    display.status(0.5, 100.0, {"rte": 0.51, "sst2": 0.49})
    assert "p: RTE 0.51 SST-2 0.49" in display.bar.tasks[0].fields["status"]


def test_ctrl_c_says_what_was_saved_and_the_rerun_resumes(tiny_model, tiny_glue, tmp_path):
    """SIGINT at the 5th step (the checkpoint of step 3 is written, then step 5's at the stop): one
    line, exit status 130, no traceback; transformers' load report and progress bars stay out of
    the output."""
    args = ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)]
    stopped = run_subprocess(args, "step:sigint:5")
    assert stopped.returncode == 130, stopped.stderr
    output = stopped.stdout + stopped.stderr
    folder = model_dir(tmp_path, tiny_model) / "single" / "rte" / "seed-0"
    assert "".join(f"Stopped (Ctrl-C): the last checkpoint, at step 5, is saved in {folder / 'state'}. "
                   f"Rerun the same command to resume from it.".split()) in "".join(output.split())
    for noise in ("Traceback", "Aborted!", "LOAD REPORT", "Loading weights", "Writing model shards"):
        assert noise not in output, output
    assert not (folder / "run.lock").exists()
    resumed = run_script("train_stilts", args)
    assert "Resuming from step 5 (epoch 0.83)." in _words(resumed.output)
    assert [h["step"] for h in read_result(tmp_path, "single", "rte")["history"]] == [3, 6, 9, 12]


def test_ctrl_c_before_the_first_checkpoint(tmp_path):
    from mtlvsift.train.run_messages import interrupted_message

    assert "nothing to resume from yet" in interrupted_message(tmp_path / "never-started")


def test_help_texts_describe_the_scripts_and_list_the_tasks(tmp_path):
    glue_names = ("CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI")
    for script, description in (("train_stilts", "Fine-tune on one task (single)"),
                                ("train_mtl", "Pairwise MTL: train the target"),
                                ("train_mtl_all", "MTL_All: train every task jointly")):
        text = _words(run_script(script, ["--help"]).output)
        assert text.split("Options:")[0].split("[OPTIONS]", 1)[1].strip().startswith(description), text
        for name in glue_names:
            assert name in text
        for option, words in (("--seed", "Training seed"), ("--epochs", "Passes over the training"),
                              ("--lr", "Peak learning rate")):
            assert words in text.split(option, 1)[1][:200]
    mtl_all = _words(run_script("train_mtl_all", ["--help"]).output)
    assert '[default: ""]' not in mtl_all and "[default: (the nine GLUE tasks)]" in mtl_all
    # Task-file tasks are listed when the file comes before --help.
    task_file = write_user_tasks(tmp_path)
    text = _words(run_script("train_stilts", ["--task-file", task_file, "--help"]).output)
    assert "mysent" in text.split("--target", 1)[1] and "myscore" in text


def test_control_characters_in_paths_are_shown_escaped(tmp_path):
    """A run folder or a start model whose name holds ESC sequences (a hand-made folder, a copied
    record) is shown escaped in the start-up summary, the Ctrl-C line and an error line."""
    from mtlvsift.errors import MtlvsiftError
    from mtlvsift.train.run_messages import interrupted_message, summary_lines

    hostile = "x\x1b[2J\x07\ry"
    run_dir = tmp_path / hostile / "seed-0"
    (run_dir / "state").mkdir(parents=True)
    (run_dir / "state" / "progress.json").write_text('{"step": 3}')
    config = SimpleNamespace(run_dir=run_dir, batch_size=8, epochs=2, eval_every=0.5, init_model="m", select_on="dev",
                             start_model={"run": f"single/{hostile}/seed-1", "seed": 1, "score": 0.5,
                                          "seeds": [1]})
    data = SimpleNamespace(task=SimpleNamespace(display="RTE"), train=[0], available=1, dev={"d": [0]}, holdout=None)
    device = {"device": "cpu", "num_processes": 1, "mixed_precision": "no", "packed_batches": True}
    texts = [*summary_lines(config, [data], 1, 1, 1, device), interrupted_message(run_dir),
             MtlvsiftError(f"{run_dir} is in use.\nSecond line.").format_message()]
    for text in texts:
        assert not any(c in text for c in "\x1b\x07\r"), text
    assert "x\\x1b[2J\\x07\\ry" in texts[0] and "single/x\\x1b[2J" in texts[3]
    assert "x\\x1b[2J" in texts[-2] and texts[-1].endswith(" is in use.\nSecond line.")


# --- a log file: plain lines, never wrapped nor redrawn (issue 25) --------------------------------

def test_in_a_log_file_a_run_writes_plain_whole_lines(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "a-folder-name-long-enough-to-pass-eighty-columns" / "out"
    result = run_subprocess(["--target", "rte", "--support", "sst2", "--sampling", "size",
                             *tiny_args(tiny_model, tiny_glue, out, epochs=1)], script="train_mtl")
    assert result.returncode == 0, result.stderr
    log = result.stderr
    lines = log.splitlines()
    assert "\r" not in log and "Tokenizing" not in log and "Saving the dataset" not in log
    assert "…" not in log and not any(line != line.rstrip() for line in lines)
    assert f"Run folder: {run_dir(out, 'mtl', 'rte--sst2__sampling-size')}" in lines
    assert "Training: 12 batches of 8 per epoch x 1 epoch(s) = 12 steps; 2 evaluations (every 0.5 epoch)" \
        in lines
    title = "mtl rte--sst2__sampling-size seed 0"
    assert f"{title}: dev at step 12 (epoch 1.00)" in lines
    rows = [line for line in lines if line.startswith(("  RTE  ", "  SST-2  "))]
    assert rows[-1].index(" baseline ") == rows[-2].index(" baseline ")  # columns line up
    assert len(rows) == 4 and all(" main " in r and " baseline " in r and " accuracy " in r for r in rows)
    progress = [line for line in lines if line.startswith(f"{title}: step ")]
    assert progress[-1].startswith(f"{title}: step 12/12  loss ")
    assert "p: RTE 0.50 SST-2 0.50" in progress[-1] and " elapsed, ETA " in progress[-1]


def test_in_a_terminal_the_display_is_rich(monkeypatch, capsys):
    """The same display in a terminal (rich decides: FORCE_COLOR makes it one): a table, not lines."""
    from mtlvsift.train.progress_bar import TrainDisplay

    metrics = {"rte": {"accuracy": 0.5}}
    TrainDisplay(True, "single rte seed 0", 10, 0).evaluation(5, 0.5, metrics, {"rte"})
    plain = capsys.readouterr().err
    assert "  RTE  main 50.00 *  baseline -  accuracy 50.00\n" in plain and "┃" not in plain
    monkeypatch.setenv("FORCE_COLOR", "1")
    display = TrainDisplay(True, "single rte seed 0", 10, 0)
    assert display.live
    display.evaluation(5, 0.5, metrics, {"rte"})
    table = capsys.readouterr().err
    assert "┃" in table and "all metrics (points)" in table
