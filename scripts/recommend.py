#!/usr/bin/env python
"""Before training: which supporting task helps a target, and MTL or STILTs with it.

    python scripts/recommend.py --target rte --model minilm --data-dir /path/to/glue
    python scripts/recommend.py --target rte --candidates mnli,qnli,sst2 --json advice.json

For each candidate S: the size rule (MTL if the target's training set is smaller than S's, else
STILTs) with how often it held on the finished grid under --outputs, and LogME (You et al., 2021)
of the target's training examples under S's best single run minus under the pre-trained encoder.
"""

from __future__ import annotations

from pathlib import Path

import click

from mtlvsift.cli import named_option, task_option
from mtlvsift.errors import MtlvsiftError

FOLDER = click.Path(path_type=Path, file_okay=False)


@click.command(context_settings={"show_default": True})
@task_option("--target", required=True, help="The task to find a supporting task for.")
@click.option("--candidates", default=None,
              help="Comma-separated supporting tasks to rank [default: every other task].")
@named_option("task_files")
@click.option("--outputs", type=FOLDER, default="outputs",
              help="Root folder of the runs (single runs of the candidates, the finished grid).")
@named_option("data_dir")
@named_option("model")
@named_option("max_seq_length")
@named_option("support_seeds", "stilts")
@named_option("max_train_examples")
@named_option("data_seed")
@click.option("--max-examples", type=click.IntRange(min=1), default=2000,
              help="Target training examples embedded (stratified by class).")
@click.option("--mixed-precision", type=click.Choice(["auto", "no", "bf16"]), default="auto",
              help="bf16: embed in bf16 autocast, about 2.5x faster on a CPU with AVX512-BF16 or AMX and "
                   "on a recent GPU, LogME gains within 3e-4 of fp32 (README: Which supporting "
                   "task?); no: fp32; auto: bf16 where the device computes it natively.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the ranking to this JSON file.")
def main(target, candidates, task_files, outputs, data_dir, model, max_seq_length, support_seeds,
         max_train_examples, data_seed, max_examples, mixed_precision, json_file):
    """Rank supporting tasks for TARGET by LogME gain, with the size rule's MTL-or-STILTs pick."""
    from rich.console import Console

    from mtlvsift.recommend.advice import advise, as_json, ranking_slug
    from mtlvsift.recommend.evaluation import ranking_path
    from mtlvsift.recommend.table import print_ranking
    from mtlvsift.run_folder import atomic_write_json
    from mtlvsift.tasks import get_task

    options = {"task_files": task_files, "output_dir": str(outputs), "data_dir": data_dir,
               "model": model, "max_seq_length": max_seq_length, "support_seeds": support_seeds,
               "max_train_examples": max_train_examples, "data_seed": data_seed}
    names = [n.strip() for n in candidates.split(",") if n.strip()] if candidates else None
    if json_file:
        json_folder_problem(json_file)  # before minutes of embedding, not after
    console = Console(stderr=True)
    entries, mixed_precision = advise(target, names, options, max_examples, mixed_precision,
                                      console)
    print_ranking(target, entries)
    ranking = as_json(get_task(target).name, model, entries, mixed_precision)
    # Kept under the outputs for compare.py, which measures how good the advice was; the table is
    # printed already, so a folder that cannot be written costs only that measurement. A ranking
    # with nothing scored is not kept: it would replace one that has scores.
    kept = ranking_path(outputs, ranking_slug(ranking["target"], options), ranking["target"])
    try:
        if any(entry.rank for entry in entries):
            atomic_write_json(kept, ranking)
    except OSError as error:
        click.echo(f"Warning: the ranking was not kept at {kept} ({error.strerror or error}); "
                   f"compare.py cannot evaluate it.", err=True)
    if json_file:
        try:
            atomic_write_json(json_file, ranking)  # whole or not at all
        except OSError as error:
            raise MtlvsiftError(f"Could not write --json {json_file}: {error.strerror or error}. "
                                f"The ranking is printed above and kept at {kept}.") from error


def json_folder_problem(path: Path) -> None:
    """One clear error when ``path``'s folder cannot be made: a file where a folder must be."""
    for folder in [path.parent, *path.parent.parents]:
        if folder.exists():
            if not folder.is_dir():
                raise MtlvsiftError(f"--json {path}: {folder} is a file, not a folder. Choose "
                                    f"another path.")
            return


if __name__ == "__main__":
    main()
