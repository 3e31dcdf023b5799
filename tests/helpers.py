"""What the test modules share: paths, tiny fixtures' writers, running the scripts, checks.

Test modules import from here, never from each other (``conftest.py`` holds only fixtures).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_GLUE = Path(os.environ.get("MTLVSIFT_TEST_GLUE_DIR", REPO_ROOT.parent / "shared" / "glue"))


# --- tiny fixtures written by the tests themselves -------------------------------------------

TINY_WORDS_POS = ["good", "great", "fine", "lovely", "superb", "nice", "happy", "bright"]
TINY_WORDS_NEG = ["bad", "awful", "poor", "sad", "dull", "ugly", "grim", "weak"]


def write_tiny_glue(root: Path, n_train: int = 48, n_dev: int = 16) -> Path:
    """A GLUE-layout folder with small SST-2, RTE, CoLA and STS-B files with a learnable signal."""
    import random

    rng = random.Random(0)

    def sentence(positive: bool) -> str:
        words = TINY_WORDS_POS if positive else TINY_WORDS_NEG
        return " ".join(rng.choice(words) for _ in range(rng.randint(2, 9))) + " ."

    def rows(n):
        return [(i, rng.random() < 0.5) for i in range(n)]

    for split, n in (("train", n_train), ("dev", n_dev)):
        (root / "SST-2").mkdir(parents=True, exist_ok=True)
        lines = ["sentence\tlabel"] + [f"{sentence(y)}\t{int(y)}" for _, y in rows(n)]
        (root / "SST-2" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
        (root / "RTE").mkdir(exist_ok=True)
        lines = ["index\tsentence1\tsentence2\tlabel"] + [
            f"{i}\t{sentence(y)}\t{sentence(y)}\t{'entailment' if y else 'not_entailment'}" for i, y in rows(n)]
        (root / "RTE" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
        (root / "CoLA").mkdir(exist_ok=True)
        lines = [f"src\t{int(y)}\t\t{sentence(y)}" for _, y in rows(n)]
        (root / "CoLA" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
        (root / "STS-B").mkdir(exist_ok=True)
        header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
        lines = [header] + [f"{i}\tg\tf\t2012\t{i:04d}\tnone\tnone\t{sentence(y)}\t{sentence(y)}\t"
                            f"{(4.0 if y else 1.0) + rng.random():.3f}" for i, y in rows(n)]
        (root / "STS-B" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


def write_tiny_encoder(folder: Path, tokenizer_source: Path, dropout: float = 0.1) -> Path:
    """A randomly initialised 2-layer BERT (hidden size 32) with the MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def load_script(name: str):
    """A script of scripts/ as a module (they are standalone files, not a package)."""
    return load_module(REPO_ROOT / "scripts" / f"{name}.py", f"script_{name}")


def run_script(name: str, args: list[str], expect_ok: bool = True):
    """Invoke a train/compare script in-process with click's test runner."""
    from click.testing import CliRunner

    result = CliRunner().invoke(load_script(name).main, [str(a) for a in args], catch_exceptions=True)
    if expect_ok and result.exit_code != 0:
        import traceback

        tb = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
        raise AssertionError(f"{name} {args} failed ({result.exit_code}):\n{result.output}\n{tb}")
    return result


def glue_sized_folder(root: Path) -> Path:
    """Training files with GLUE's row counts, one word a row: what a dry run counts."""
    from mtlvsift.tasks import GLUE_TASKS

    for task in GLUE_TASKS.values():
        (root / task.folder).mkdir(parents=True)
        header = "h\n" if task.has_header else ""
        (root / task.folder / "train.tsv").write_text(header + "w\n" * task.train_size)
    return root


def plan_json(script: str, out: Path, *args) -> dict:
    """The --plan-json of a train script's dry run over ``<out>/../glue``."""
    run_script(script, [*args, "--data-dir", out.parent / "glue", "--output-dir", out,
                        "--plan-json", out.parent / "plan.json"])
    return json.loads((out.parent / "plan.json").read_text())


def load_module(path: Path, name: str):
    """A standalone Python file (a script of scripts/) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_args(tiny_model, data_dir, out, *extra, epochs=2):
    """The train scripts' options of a quick run on the tiny encoder."""
    return ["--model", tiny_model, "--data-dir", data_dir, "--output-dir", out, "--epochs", epochs,
            "--batch-size", 8, "--lr", 1e-3, *extra]


def model_dir(out: Path, model: str | Path = "distilroberta-base") -> Path:
    """Where the runs of ``model`` go under ``out`` (``<out>/<model slug>``)."""
    from mtlvsift.run_folder import model_slug

    return Path(out) / model_slug(str(model))


def run_dir(out: Path, method: str, name: str, seed: int = 0) -> Path:
    """The folder of one run under ``out``, whichever model's folder holds it: tests find runs
    through this, not by spelling the layout. None or one match; several are an error."""
    out = Path(out)
    found = sorted({*out.glob(f"{method}/{name}/seed-{seed}"), *out.glob(f"*/{method}/{name}/seed-{seed}")})
    found = [path for path in found if path.is_dir()]
    assert len(found) <= 1, f"several runs match {method}/{name}/seed-{seed}: {found}"
    return found[0] if found else out / method / name / f"seed-{seed}"


def read_result(out: Path, method: str, name: str, seed: int = 0) -> dict:
    return json.loads((run_dir(out, method, name, seed) / "result.json").read_text())


def read_log(folder: Path) -> list[dict]:
    """The entries of a run folder's train_log.jsonl."""
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


def run_subprocess(args, fault=None, script="train_stilts"):
    """A train script in its own process (for kills), optionally with a fault point armed."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if fault:
        env["MTLVSIFT_FAULT"] = fault
    return subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / f"{script}.py"), *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=600)


def fails(script: str, arguments: list, *expected: str) -> str:
    """Run a script that must fail with one clear message containing every ``expected`` text."""
    result = run_script(script, arguments, expect_ok=False)
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.output.split())  # rich/click may wrap long lines
    for text in expected:
        assert text in message, f"{text!r} not in {result.output!r}"
    return result.output


def stopped_at_a_checkpoint_then_resumed(monkeypatch, script: str, args: list, fault: str) -> None:
    """Run ``script`` with a failed checkpoint write injected (``fault``, e.g.
    ``after_checkpoint:oserror:3``): it must stop with that error; then rerun it to the end."""
    import mtlvsift.faults as faults

    faults._hits.clear()
    monkeypatch.setenv("MTLVSIFT_FAULT", fault)
    fails(script, args, "Could not write the checkpoint")
    monkeypatch.delenv("MTLVSIFT_FAULT")
    faults._hits.clear()
    run_script(script, args)


def nothing_written(out: Path) -> bool:
    return not out.exists() or not any(out.rglob("*"))


def write_user_tasks(root: Path, n_train: int = 48, n_dev: int = 16) -> Path:
    """A task file (YAML) with a CSV classification task ``mysent`` (labels neg/pos, metrics
    accuracy and f1, main f1) and a JSON-lines regression task ``myscore``; returns its path."""
    import csv
    import random

    rng = random.Random(1)

    def sentence(positive: bool) -> str:
        words = TINY_WORDS_POS if positive else TINY_WORDS_NEG
        return " ".join(rng.choice(words) for _ in range(rng.randint(2, 9))) + " ."

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_dev)):
        with open(data / f"sent_{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "review", "sentiment"])
            for i in range(n):
                positive = rng.random() < 0.5
                writer.writerow([f"{split}-{i}", sentence(positive), "pos" if positive else "neg"])
        with open(data / f"score_{split}.jsonl", "w") as handle:
            for i in range(n):
                positive = rng.random() < 0.5
                score = (4.0 if positive else 1.0) + rng.random()
                handle.write(json.dumps({"first": sentence(positive), "second": sentence(positive),
                                         "score": round(score, 3)}) + "\n")
    task_file = root / "tasks.yaml"
    task_file.write_text(
        "tasks:\n"
        "  - name: mysent\n"
        "    train: data/sent_train.csv\n"
        "    dev: data/sent_dev.csv\n"
        "    test: data/sent_test.csv\n"
        "    text: [review]\n"
        "    label: sentiment\n"
        "    labels: [neg, pos]\n"
        "    metrics: [accuracy, f1]\n"
        "    main_metric: f1\n"
        "    id: id\n"
        "  - name: myscore\n"
        "    train: data/score_train.jsonl\n"
        "    dev: data/score_dev.jsonl\n"
        "    text: [first, second]\n"
        "    label: score\n"
        "    regression: true\n")
    return task_file


def finishes_within(seconds: float, call, fifo: Path | None = None):
    """``call()``'s outcome (its value or its exception), failing the test if it blocks; a
    reader blocked on ``fifo`` is let go by opening the pipe for writing."""
    import threading

    outcome = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 (the outcome under test)
            outcome["value"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive() and fifo is not None:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # unblock the reader
    assert not thread.is_alive() and "value" in outcome, f"still blocked after {seconds} s"
    return outcome["value"]


def folder_of(out, method="single", name="rte", model=None):
    """Seed 0's run folder: the one found, or (``model`` given) where that model's run goes."""
    return model_dir(out, model) / method / name / "seed-0" if model else run_dir(out, method, name, 0)


def stop_after_first_checkpoint(tiny_model, tiny_glue, out, monkeypatch, *extra):
    """Run in-process until the first checkpoint is written, then fail as a full disk would."""
    import mtlvsift.faults as faults

    monkeypatch.setenv("MTLVSIFT_FAULT", "after_checkpoint:oserror:1")
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out), *extra],
          "Could not write the checkpoint")
    monkeypatch.delenv("MTLVSIFT_FAULT")
    faults._hits.clear()
    progress = json.loads((folder_of(out) / "state" / "progress.json").read_text())
    assert progress["step"] == 3


# --- small files written by the data tests, and the grid's options -------------------------------


RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def tsv(rows: list[list[str]]) -> str:
    return "".join("\t".join(row) + "\n" for row in rows)


def grid_options(out: Path, **extra) -> dict:
    """The train scripts' option values (their defaults) as run_grid.py hands them over."""
    from mtlvsift import run_options

    script = load_script("run_grid")
    ctx = script.main.make_context("run_grid", ["--tasks", "rte", "--output-dir", str(out)])
    params = {k: v for k, v in ctx.params.items() if k in run_options.names() and k != "target_fraction"}
    return {**params, **extra}
