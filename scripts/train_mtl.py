#!/usr/bin/env python
"""Pairwise multi-task learning: the target and its supporting task(s) trained jointly.

    accelerate launch scripts/train_mtl.py --target qnli --support mnli
"""

import click

from mtlvsift.train.config import mtl_config
from mtlvsift.train.options import (mtl_options, plan_options, restart_option, sampling_option, size_options,
                                    task_option, train_options)
from mtlvsift.train.loop import run_training
from mtlvsift.train.plan_display import show_plan


@click.command(context_settings={"show_default": True})
@task_option("--target", required=True, help="The task to select the model on.")
@task_option("--support", multiple=True, help="A supporting task (repeat for several).")
@sampling_option("dynamic")
@mtl_options
@size_options
@train_options
@restart_option
@plan_options
def main(target, support, restart, dry_run, plan_json, **options):
    """Pairwise MTL: train the target and its supporting task(s) jointly, one shared encoder.

    One seed per run, the model selected on the target's dev score; a rerun of the same command
    resumes an unfinished run and skips a finished one.
    """
    config = mtl_config(target, support, **options)
    if dry_run or plan_json:
        show_plan(config, plan_json)
    else:
        run_training(config, restart=restart)


if __name__ == "__main__":
    main()
