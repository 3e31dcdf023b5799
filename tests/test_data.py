"""Data loading: the real GLUE files, the formats we lack files for, errors, tokenization cache,
collation and evaluation batches."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import datasets
import numpy as np
import pytest
import torch

from helpers import REPO_ROOT, RTE_HEADER, tsv, write
from mtlvsift.train.data import glue as data
from mtlvsift.train.data.glue import data_fingerprint, load_split, resolve_data_dir, split_names
from mtlvsift.train.evaluation.dev import length_sorted_batches
from mtlvsift.train.batches.loader import subsample_indices
from mtlvsift.errors import DataError, MtlvsiftError
from mtlvsift.train.batches.padding import make_collator
from mtlvsift.tasks import get_task

OFFICIAL_ROWS = [
    ("cola", "train", 8551), ("cola", "dev", 1043), ("sst2", "train", 67349), ("sst2", "dev", 872),
    ("mrpc", "train", 3668), ("mrpc", "dev", 408), ("stsb", "train", 5749), ("stsb", "dev", 1500),
    ("rte", "train", 2490), ("rte", "dev", 277), ("wnli", "train", 635), ("wnli", "dev", 71),
    ("qnli", "dev", 5463),
]

MNLI_TRAIN_HEADER = (
    "index promptID pairID genre sentence1_binary_parse sentence2_binary_parse sentence1_parse "
    "sentence2_parse sentence1 sentence2 label1 gold_label"
).split()
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER[:-1] + "label2 label3 label4 label5 gold_label".split()


# --------------------------------------------------------------------------- the real files


@pytest.mark.parametrize("name,split,rows", OFFICIAL_ROWS)
def test_real_glue_files_have_official_row_counts(glue_dir, name, split, rows):
    ds = load_split(get_task(name), split, glue_dir)
    assert len(ds) == rows
    expected = ["text_a", "text_b", "label"] if get_task(name).is_pair else ["text_a", "label"]
    assert ds.column_names == expected
    assert ds.features["label"] == datasets.Value("float32")


def test_real_glue_first_rows(glue_dir):
    rte = load_split(get_task("rte"), "train", glue_dir)[0]
    assert rte == {"text_a": "No Weapons of Mass Destruction Found in Iraq Yet.",
                   "text_b": "Weapons of Mass Destruction Found in Iraq.", "label": 1.0}
    cola = load_split(get_task("cola"), "train", glue_dir)[0]
    assert cola["label"] == 1.0
    assert cola["text_a"] == (
        "Our friends won't buy this analysis, let alone the next one we propose.")
    # Trailing spaces are part of SST-2's sentences; MRPC's header starts with a BOM.
    assert load_split(get_task("sst2"), "train", glue_dir)[0]["text_a"] == (
        "hide new secretions from the parental units ")
    mrpc = load_split(get_task("mrpc"), "dev", glue_dir)[0]
    assert mrpc["label"] == 1.0 and mrpc["text_b"].startswith('" The foodservice pie')
    assert load_split(get_task("stsb"), "train", glue_dir)[1]["label"] == pytest.approx(3.8)
    qnli = load_split(get_task("qnli"), "dev", glue_dir)
    assert qnli[0]["label"] == 0.0  # entailment
    assert qnli[694]["text_b"].startswith('" ')  # a stray quote, kept as published


# --------------------------------------------------------------------------- formats we write


def test_mnli_train_and_both_dev_files(tmp_path):
    mnli = get_task("mnli")
    assert split_names(mnli) == ["train", "dev_matched", "dev_mismatched"]

    def row(header: list[str], i: int, gold: str) -> list[str]:
        values = {name: f"{name}-{i}" for name in header}
        values.update(sentence1=f"premise {i}", sentence2=f"hypothesis {i}", gold_label=gold)
        return [values[name] for name in header]

    golds = ["neutral", "contradiction", "entailment"]
    write(tmp_path / "MNLI" / "train.tsv",
          tsv([MNLI_TRAIN_HEADER] + [row(MNLI_TRAIN_HEADER, i, g) for i, g in enumerate(golds)]))
    for name, dev_golds in (("dev_matched", golds[:2]), ("dev_mismatched", golds[1:])):
        dev_rows = [row(MNLI_DEV_HEADER, i, g) for i, g in enumerate(dev_golds)]
        write(tmp_path / "MNLI" / f"{name}.tsv", tsv([MNLI_DEV_HEADER] + dev_rows))
    train = load_split(mnli, "train", tmp_path)
    assert train["text_a"] == ["premise 0", "premise 1", "premise 2"]
    assert train["text_b"] == ["hypothesis 0", "hypothesis 1", "hypothesis 2"]
    assert train["label"] == [1.0, 2.0, 0.0]
    assert load_split(mnli, "dev_matched", tmp_path)["label"] == [1.0, 2.0]
    assert load_split(mnli, "dev_mismatched", tmp_path)["label"] == [2.0, 0.0]


def test_qqp_and_qnli_train_headers(tmp_path):
    write(tmp_path / "QQP" / "train.tsv", tsv([
        "id qid1 qid2 question1 question2 is_duplicate".split(),
        ["7", "13", "14", "How do I cook rice?", "What is the way to cook rice?", "1"],
        ["8", "15", "16", "Why?", "Why not?", "0"]]))
    qqp = load_split(get_task("qqp"), "train", tmp_path)
    assert qqp[0] == {"text_a": "How do I cook rice?", "text_b": "What is the way to cook rice?",
                      "label": 1.0}
    assert qqp["label"] == [1.0, 0.0]
    write(tmp_path / "QNLI" / "train.tsv", tsv([
        "index question sentence label".split(), ["0", "Who?", "Me.", "not_entailment"]]))
    assert load_split(get_task("qnli"), "train", tmp_path)[0] == {
        "text_a": "Who?", "text_b": "Me.", "label": 1.0}


def test_gzip_file_loads_like_plain(tmp_path, rte_dir):
    plain = load_split(get_task("rte"), "train", rte_dir)
    write(tmp_path / "gz" / "RTE" / "train.tsv.gz",
          gzip.compress((rte_dir / "RTE" / "train.tsv").read_bytes()))
    assert load_split(get_task("rte"), "train", tmp_path / "gz").to_dict() == plain.to_dict()


def test_stray_quotes_crlf_and_missing_final_newline_kept_verbatim(tmp_path):
    text = RTE_HEADER + '0\t"Hi," he said.\tShe said "no\tentailment\r\n1\ta "\t"\tnot_entailment'
    write(tmp_path / "RTE" / "train.tsv", text)
    ds = load_split(get_task("rte"), "train", tmp_path)
    assert ds["text_a"] == ['"Hi," he said.', 'a "']
    assert ds["text_b"] == ['She said "no', '"']


def test_blank_lines_are_not_rows(tmp_path):
    write(tmp_path / "RTE" / "train.tsv", RTE_HEADER + "\n0\ta\tb\tentailment\n\n\n")
    assert len(load_split(get_task("rte"), "train", tmp_path)) == 1


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("content,line,words", [
    (RTE_HEADER + "0\ta\tb\tentailment\n1\ta\tnot_entailment\n", 3, ["expected 4", "found 3"]),
    (RTE_HEADER + "0\ta\tb\tmaybe\n", 2, ["'maybe'", "entailment, not_entailment"]),
    ("index\tsentence1\tlabel\n0\ta\tentailment\n", 1, ["sentence2"]),
    (RTE_HEADER.encode() + b"0\ta\tcaf\xe9\tentailment\n", 2, ["UTF-8", "0xe9"]),
    ("", None, ["empty"]),
    (RTE_HEADER, None, ["no data rows"]),
])
def test_bad_files_name_file_and_line(tmp_path, content, line, words):
    path = write(tmp_path / "RTE" / "train.tsv", content)
    with pytest.raises(DataError) as info:
        load_split(get_task("rte"), "train", tmp_path)
    message = str(info.value.message)
    assert str(path) in message and info.value.line == line
    if line is not None:
        assert f"line {line}" in message
    for word in words:
        assert word in message


def test_a_header_with_two_label_columns_is_refused(tmp_path):
    path = write(tmp_path / "SST-2" / "train.tsv", "label\tsentence\tlabel\nx\tgood\t1\n")
    with pytest.raises(DataError, match="line 1: the header names the column 'label' 2 times; SST-2 "
                                        "reads it by name, so keep one") as info:
        load_split(get_task("sst2"), "train", tmp_path)
    assert str(path) in info.value.message


def test_a_bare_carriage_return_gets_our_message(tmp_path):
    write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\ngood\r film\t1\n")
    with pytest.raises(DataError, match=r"line 2: holds a carriage return \(\\r\) inside a field") as info:
        load_split(get_task("sst2"), "train", tmp_path)
    assert "universal-newline" not in info.value.message


def test_long_cells_load_and_an_endless_line_is_refused(tmp_path, monkeypatch):
    from mtlvsift.train.data import user_data

    long = "good " * 40_000  # 200,000 characters: more than csv's default field limit
    write(tmp_path / "SST-2" / "train.tsv", f"sentence\tlabel\n{long}\t1\n")
    assert load_split(get_task("sst2"), "train", tmp_path)["text_a"] == [long]
    # A .tsv.gz that expands to one endless line is refused at the limit, never read whole.
    monkeypatch.setattr(user_data, "MAX_LINE_LENGTH", 2**20)
    path = write(tmp_path / "gz" / "SST-2" / "train.tsv.gz",
                 gzip.compress(b"sentence\tlabel\n" + b"a" * (3 * 2**20)))
    with pytest.raises(DataError, match="line 2: is longer than 1 MiB") as info:
        load_split(get_task("sst2"), "train", tmp_path / "gz")
    assert str(path) in info.value.message
    with pytest.raises(DataError, match="line 2: is longer than 1 MiB"):
        data.count_rows(path, has_header=True)  # a dry run's count too


def test_corrupt_gzip(tmp_path):
    path = write(tmp_path / "RTE" / "train.tsv.gz", b"not gzip at all")
    with pytest.raises(DataError, match="not a valid gzip file") as info:
        load_split(get_task("rte"), "train", tmp_path)
    assert str(path) in info.value.message


@pytest.mark.parametrize("score", ["high", "5.5", "-0.1", "nan"])
def test_bad_stsb_score(tmp_path, score):
    header = "index genre filename year old_index source1 source2 sentence1 sentence2 score".split()
    write(tmp_path / "STS-B" / "dev.tsv", tsv([header, ["0"] * 7 + ["a", "b", "5.000"],
                                               ["1"] * 7 + ["a", "b", score]]))
    with pytest.raises(DataError, match=f"line 3: score '{score}'"):
        load_split(get_task("stsb"), "dev", tmp_path)


def test_cola_wrong_column_count(tmp_path):
    write(tmp_path / "CoLA" / "dev.tsv", "gj04\t1\t\tFine.\ngj04\t0\tBad.\n")
    with pytest.raises(DataError, match=r"dev.tsv, line 2: expected 4 .*found 3"):
        load_split(get_task("cola"), "dev", tmp_path)


def test_missing_folder_file_and_data_dir(tmp_path, rte_dir):
    with pytest.raises(MtlvsiftError, match="CoLA/train.tsv") as info:
        load_split(get_task("cola"), "train", rte_dir)
    assert str(rte_dir / "CoLA" / "train.tsv") in info.value.message
    with pytest.raises(MtlvsiftError) as info:
        load_split(get_task("rte"), "dev", rte_dir)
    assert str(rte_dir / "RTE" / "dev.tsv") in info.value.message
    with pytest.raises(MtlvsiftError, match="no split 'test'"):
        load_split(get_task("rte"), "test", rte_dir)
    with pytest.raises(MtlvsiftError) as info:
        resolve_data_dir(tmp_path / "nope")
    assert str(tmp_path / "nope") in info.value.message and "CoLA/train.tsv" in info.value.message


def test_resolve_data_dir(tmp_path, monkeypatch):
    assert resolve_data_dir(None) is None
    assert resolve_data_dir(str(tmp_path)) == tmp_path
    monkeypatch.setenv("MTLVSIFT_GLUE_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path


_HUB_SCRIPT = """
import json, sys
from mtlvsift.errors import MtlvsiftError
from mtlvsift.tasks import get_task
from mtlvsift.train.data.glue import load_split
try:
    load_split(get_task("rte"), "train", None)
except MtlvsiftError as error:
    print(json.dumps(error.message))
else:
    sys.exit("RTE loaded from the hub while offline")
"""


def test_hub_unreachable_offline_fails_fast(tmp_path):
    # A process of its own, offline, with empty caches (no cached copy of GLUE): the timeout makes
    # a hang (e.g. waiting on the network) fail the test without timing a unit test.
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf"), HF_DATASETS_CACHE=str(tmp_path / "datasets"))
    result = subprocess.run([sys.executable, "-c", _HUB_SCRIPT], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    message = json.loads(result.stdout.strip().splitlines()[-1])
    assert "nyu-mll/glue" in message and "--data-dir DIR" in message and "RTE" in message
    assert "Traceback" not in result.stderr


def test_an_unreachable_hub_fails_at_once_without_offline_mode(tmp_path):
    """No network and no HF_HUB_OFFLINE (issue 25): one error naming --data-dir at once, not after
    datasets' five retries per request (the hub is a closed local port here)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                                            "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"),
               HF_DATASETS_CACHE=str(tmp_path / "datasets"))
    result = subprocess.run([sys.executable, "-c", _HUB_SCRIPT], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    message = json.loads(result.stdout.strip().splitlines()[-1])
    assert "Retrying" not in result.stderr
    assert "it cannot be reached (127.0.0.1:9: [Errno 111] Connection refused)" in message
    assert "--data-dir DIR" in message and "HF_HUB_OFFLINE=1" in message


def test_the_hub_probe(monkeypatch):
    """Offline mode probes nothing; an https proxy is what must answer."""
    import socket

    from mtlvsift.train.data import hub

    asked = []
    monkeypatch.setattr(hub, "_connection_problem", lambda host, port: asked.append((host, port)))
    hub.hub_unreachable.cache_clear()
    assert hub.hub_unreachable() is None and asked == []  # conftest sets HF_HUB_OFFLINE
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    for variable in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    hub.hub_unreachable.cache_clear()
    hub.hub_unreachable()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    hub.hub_unreachable.cache_clear()
    hub.hub_unreachable()
    hub.hub_unreachable.cache_clear()
    assert asked == [("huggingface.co", 443), ("proxy.example", 3128)]
    with socket.socket() as server:  # a port that listens answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.undo()
        assert hub._connection_problem("127.0.0.1", server.getsockname()[1]) is None


def test_hub_columns_mapped(monkeypatch):
    fake = datasets.Dataset.from_dict(
        {"premise": ["p"], "hypothesis": ["h"], "label": [2], "idx": [0]},
        features=datasets.Features({
            "premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
            "idx": datasets.Value("int32")}))
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or fake)
    ds = load_split(get_task("mnli"), "dev_mismatched", None)
    assert calls[0] == (("nyu-mll/glue", "mnli"), {"split": "validation_mismatched"})
    assert ds.to_dict() == {"text_a": ["p"], "text_b": ["h"], "label": [2.0]}
    assert ds.features["label"] == datasets.Value("float32")
    assert data_fingerprint(get_task("mnli"), "dev_mismatched", None) == fake._fingerprint


# --------------------------------------------------------------------------- tokenization


# --------------------------------------------------------------------------- batches


def test_collator_pads_to_multiple_of_8(tokenizer):
    features = [
        {"input_ids": [101, 7592, 102], "attention_mask": [1, 1, 1], "token_type_ids": [0, 0, 0],
         "label": 1.0, "task_id": 2, "length": 3},
        {"input_ids": [101] + [2088] * 8 + [102], "attention_mask": [1] * 10,
         "token_type_ids": [0] * 10, "label": 0.0, "task_id": 0, "length": 10},
    ]
    batch = make_collator(tokenizer, 8)(features)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels", "task_ids"}
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"][0].tolist() == [1, 1, 1] + [0] * 13
    assert batch["input_ids"][0, 3:].eq(tokenizer.pad_token_id).all()
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [1.0, 0.0]
    assert batch["task_ids"].dtype == torch.long and batch["task_ids"].tolist() == [2, 0]
    assert make_collator(tokenizer, None)(features)["input_ids"].shape == (2, 10)


def test_length_sorted_batches():
    lengths = [3, 9, 1, 9, 5, 2, 7]
    batches = length_sorted_batches(lengths, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(7))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert length_sorted_batches([], 4) == []


def test_subsample_indices():
    a = subsample_indices(100, 10, data_seed=3)
    np.random.seed(123)  # the global RNG must not matter
    torch.manual_seed(5)
    assert np.array_equal(a, subsample_indices(100, 10, data_seed=3))
    assert len(set(a.tolist())) == 10 and np.all(np.diff(a) > 0) and a.max() < 100
    assert not np.array_equal(a, subsample_indices(100, 10, data_seed=4))
    assert subsample_indices(5, 5, 0).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(MtlvsiftError, match="Cannot draw 6 examples from a training set of 5"):
        subsample_indices(5, 6, 0)
