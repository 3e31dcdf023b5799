#!/usr/bin/env python
"""MTL_All: every task trained jointly; each task's own best dev score is recorded.

    accelerate launch --quiet scripts/train_mtl_all.py                     # the nine GLUE tasks, size sampling
    accelerate launch --quiet scripts/train_mtl_all.py --sampling dynamic
"""

import click

from mtlvsift.cli import plan_options, restart_option, script_options, task_option


@click.command(context_settings={"show_default": True})
@task_option("--tasks", default=None, show_default="the nine GLUE tasks", help="Comma-separated tasks.")
@script_options("train_mtl_all")
@restart_option
@plan_options
def main(tasks, restart, dry_run, plan_json, **options):
    """MTL_All: train every task jointly (the nine GLUE tasks by default), one shared encoder.

    One seed per run; each task's own best dev score is recorded. A rerun of the same command
    resumes an unfinished run and skips a finished one.
    """
    from mtlvsift.train.config import mtl_all_config
    from mtlvsift.train.main import train_or_plan

    names = tuple(t.strip() for t in (tasks or "").split(",") if t.strip())
    train_or_plan(mtl_all_config(names, options), restart, dry_run, plan_json)


if __name__ == "__main__":
    main()
