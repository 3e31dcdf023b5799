#!/usr/bin/env python
"""MTL_All: every task trained jointly; each task's own best dev score is recorded.

    accelerate launch scripts/train_mtl_all.py                     # the nine GLUE tasks, size sampling
    accelerate launch scripts/train_mtl_all.py --sampling dynamic
"""

import click

from mtlvsift.train.config import mtl_all_config
from mtlvsift.train.options import mtl_options, plan_options, restart_option, sampling_option, task_option, \
    train_options
from mtlvsift.train.loop import run_training
from mtlvsift.train.plan_display import show_plan


@click.command(context_settings={"show_default": True})
@task_option("--tasks", default=None, show_default="the nine GLUE tasks", help="Comma-separated tasks.")
@sampling_option("size")
@mtl_options
@train_options
@restart_option
@plan_options
def main(tasks, restart, dry_run, plan_json, **options):
    """MTL_All: train every task jointly (the nine GLUE tasks by default), one shared encoder.

    One seed per run; each task's own best dev score is recorded. A rerun of the same command
    resumes an unfinished run and skips a finished one.
    """
    names = tuple(t.strip() for t in (tasks or "").split(",") if t.strip())
    config = mtl_all_config(names, **options)
    if dry_run or plan_json:
        show_plan(config, plan_json)
    else:
        run_training(config, restart=restart)


if __name__ == "__main__":
    main()
