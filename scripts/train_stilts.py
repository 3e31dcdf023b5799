#!/usr/bin/env python
"""Single-task fine-tuning (--target T) or STILTs (--target T --support S).

    accelerate launch scripts/train_stilts.py --target rte                 # method "single"
    accelerate launch scripts/train_stilts.py --target rte --support mnli  # STILTs: MNLI first, then RTE
"""

import click

from mtlvsift.train.config import stilts_config
from mtlvsift.train.options import plan_options, restart_option, size_options, task_option, train_options
from mtlvsift.train.loop import run_training
from mtlvsift.train.plan_display import show_plan


@click.command(context_settings={"show_default": True})
@task_option("--target", required=True, help="The task to fine-tune and select on.")
@task_option("--support", default=None, help="STILTs: start from the best single run of this task.")
@click.option("--init-from", default=None, type=click.Path(exists=True, file_okay=False),
              help="STILTs from this saved model folder instead of the best supporting run.")
@size_options
@train_options
@restart_option
@plan_options
def main(target, support, init_from, restart, dry_run, plan_json, **options):
    """Fine-tune on one task (single), or on a task after the best single run of another (STILTs).

    One seed per run; a rerun of the same command resumes an unfinished run and skips a finished
    one. Without --support: the method "single"; with it: STILTs.
    """
    config = stilts_config(target, support, init_from, **options)
    if dry_run or plan_json:
        show_plan(config, plan_json)
    else:
        run_training(config, restart=restart)


if __name__ == "__main__":
    main()
