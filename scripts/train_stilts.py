#!/usr/bin/env python
"""Single-task fine-tuning (--target T) or STILTs (--target T --support S).

    accelerate launch --quiet scripts/train_stilts.py --target rte                 # method "single"
    accelerate launch --quiet scripts/train_stilts.py --target rte --support mnli  # STILTs: MNLI first, then RTE
"""

import click

from mtlvsift.cli import plan_options, restart_option, script_options, task_option


@click.command(context_settings={"show_default": True})
@task_option("--target", required=True, help="The task to fine-tune and select on.")
@task_option("--support", default=None, help="STILTs: start from the best single run of this task.")
@script_options("train_stilts")
@restart_option
@plan_options
def main(target, support, restart, dry_run, plan_json, **options):
    """Fine-tune on one task (single), or on a task after the best single run of another (STILTs).

    One seed per run; a rerun of the same command resumes an unfinished run and skips a finished
    one. Without --support: the method "single"; with it: STILTs.
    """
    from mtlvsift.train.config import stilts_config
    from mtlvsift.train.main import train_or_plan

    train_or_plan(stilts_config(target, support, options), restart, dry_run, plan_json)


if __name__ == "__main__":
    main()
