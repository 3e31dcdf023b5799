"""How long ``scripts/recommend.py`` spends per model: the target's training examples embedded
(``mtlvsift.recommend.features.target_features``, the code recommend runs) padded or packed, in
fp32 or bf16 autocast, and the LogME each gives, so that the speed of bf16 is shown with what it
costs in LogME. A recommend call makes one such pass for the pre-trained encoder and one per
scored candidate. From the repository root:

    python -m bench.recommend_features                          # MiniLM, 2,000 RTE examples
    python -m bench.recommend_features --task sst2 --repeats 3 --out outputs/bench/recommend.json

Each configuration runs ``--repeats`` times in alternating order after one warm-up pass (the
tokenized dataset cached, the model files in the page cache); the table gives the median.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import click

from bench import fixtures, report

CONFIGURATIONS = (("padded", "no"), ("packed", "no"), ("packed", "bf16"), ("padded", "bf16"))


def one_pass(model: str, task, data_dir: Path, examples: int, max_seq_length: int, batches: str,
             precision: str) -> tuple[float, float]:
    """(seconds, LogME) of one embedding pass as recommend makes it."""
    from mtlvsift.recommend.features import target_features
    from mtlvsift.recommend.logme import logme

    start = time.perf_counter()
    features, labels, _ = target_features(model, task, data_dir, examples, max_seq_length,
                                          precision, packing=batches == "packed", use_cache=False)
    seconds = time.perf_counter() - start
    return seconds, logme(features, labels if task.is_regression else labels.astype("int64"),
                          regression=task.is_regression)


@click.command()
@click.option("--model", default=None, help="Encoder [default: the MiniLM package's].")
@click.option("--task", default="rte", show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="GLUE folder [default: ../shared/glue].")
@click.option("--examples", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--max-seq-length", type=click.IntRange(min=8), default=128, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("outputs/bench/recommend_features.json"), show_default=True)
def main(model, task, data_dir, examples, max_seq_length, repeats, threads, out):
    fixtures.offline_environment()
    import torch

    from mtlvsift.tasks import get_task

    if threads:
        torch.set_num_threads(threads)
    model = model or fixtures.default_tokenizer_source()  # MiniLM: its tokenizer is the model's
    data_dir = fixtures.source_data_dir(data_dir)
    target = get_task(task)
    one_pass(model, target, data_dir, examples, max_seq_length, "padded", "no")  # warm-up
    times: dict[tuple[str, str], list[float]] = {c: [] for c in CONFIGURATIONS}
    values: dict[tuple[str, str], float] = {}
    for repeat in range(repeats):
        order = CONFIGURATIONS if repeat % 2 == 0 else CONFIGURATIONS[::-1]
        for batches, precision in order:
            seconds, value = one_pass(model, target, data_dir, examples, max_seq_length, batches,
                                      precision)
            times[(batches, precision)].append(seconds)
            values[(batches, precision)] = value
    reference = values[("padded", "no")]
    cases = [{"batches": b, "precision": p, "seconds": times[(b, p)],
              "median_seconds": statistics.median(times[(b, p)]), "logme": values[(b, p)],
              "logme_minus_fp32_padded": values[(b, p)] - reference} for b, p in CONFIGURATIONS]
    head = ["batches", "precision", "median s per pass", "examples/s", "LogME",
            "LogME - padded fp32", "recommend, 4 candidates (5 passes)"]
    rows = [[c["batches"], c["precision"], f"{c['median_seconds']:.2f}",
             f"{examples / c['median_seconds']:.0f}", f"{c['logme']:.6f}",
             f"{c['logme_minus_fp32_padded']:+.2e}", f"{5 * c['median_seconds']:.0f} s"]
            for c in cases]
    console = report.console()
    console.print(report.rich_table(f"recommend's embedding pass: {examples} {target.display} "
                                    f"examples, {Path(model).name}", head, rows, left=2))
    console.print(report.markdown(head, rows, left=2), markup=False, highlight=False)
    report.save_json(out, report.meta(" ".join(["python -m bench.recommend_features", *sys.argv[1:]]),
                                      task=target.name, examples=examples,
                                      threads=torch.get_num_threads(), cases=cases))


if __name__ == "__main__":
    main()
