#!/usr/bin/env python
"""Pairwise multi-task learning: the target and its supporting task(s) trained jointly.

    accelerate launch --quiet scripts/train_mtl.py --target qnli --support mnli
"""

import click

from mtlvsift.cli import plan_options, restart_option, script_options, task_option


@click.command(context_settings={"show_default": True})
@task_option("--target", required=True, help="The task to select the model on.")
@task_option("--support", multiple=True, help="A supporting task (repeat for several).")
@script_options("train_mtl")
@restart_option
@plan_options
def main(target, support, restart, dry_run, plan_json, **options):
    """Pairwise MTL: train the target and its supporting task(s) jointly, one shared encoder.

    One seed per run, the model selected on the target's dev score; a rerun of the same command
    resumes an unfinished run and skips a finished one.
    """
    from mtlvsift.train.config import mtl_config
    from mtlvsift.train.main import train_or_plan

    train_or_plan(mtl_config(target, support, options), restart, dry_run, plan_json)


if __name__ == "__main__":
    main()
