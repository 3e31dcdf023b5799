#!/usr/bin/env python
"""Predictions of a finished run's best model: GLUE submission files, or a CSV for your own task.

    python scripts/predict.py --run outputs/distilroberta-base/single/rte/seed-0 --split test --out predictions/
    python scripts/predict.py --run outputs/distilroberta-base/mtl/rte--mnli/seed-0 --task mnli --split test --out predictions/
    python scripts/predict.py --run outputs/distilroberta-base/single/mysent/seed-0 --file new.csv --out predictions/
"""

import click

from mtlvsift.cli import named_option
from mtlvsift.names import PREDICT_SPLITS


@click.command(context_settings={"show_default": True})
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="A finished run's folder (one seed): its best/ model predicts (a task of a "
                   "multi-task run whose best step differs: its best-<task>/).")
@click.option("--split", type=click.Choice(PREDICT_SPLITS), default=None,
              help="Predict the task's own test (or dev) split; dev also prints the scores beside "
                   "the run record's.")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Predict the examples of this file (in the task's format) instead.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the prediction files (GLUE: RTE.tsv, MNLI-m.tsv, ...; "
                   "your own tasks: <task>.csv).")
@click.option("--task", "task_name", default=None,
              help="Which task of an MTL model (default: its target; MTL_All: every task).")
@named_option("data_dir", help="GLUE folder in the original layout (default: the folder the run was "
                                "trained on, else $MTLVSIFT_GLUE_DIR, else the hub).")
@click.option("--batch-size", default=256, type=click.IntRange(min=1))
@named_option("task_files")
def main(run_dir, split, file, out_dir, task_name, data_dir, batch_size, task_files):
    from mtlvsift.train.predict import predict

    if (split is None) == (file is None):
        raise click.UsageError("Give either --split test|dev or --file FILE.")
    predict(run_dir, out_dir, split=split, file=file, task_name=task_name, data_dir=data_dir,
            batch_size=batch_size, task_files=task_files, say=click.echo)


if __name__ == "__main__":
    main()
