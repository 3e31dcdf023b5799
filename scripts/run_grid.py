#!/usr/bin/env python
"""The experiment as one command: every single, STILTs, MTL and MTL_All run of a grid of tasks
and seeds, prerequisites first, finished runs skipped.

    python scripts/run_grid.py --tasks rte,mrpc,stsb --seeds 0,1,2 --dry-run    # plan and ETA
    python scripts/run_grid.py --tasks rte,mrpc,stsb --seeds 0,1,2              # train it here
    python scripts/run_grid.py --tasks rte,mrpc --emit slurm --emit-to slurm/   # for a cluster
"""

from pathlib import Path

import click

from mtlvsift.cli import grid_options, named_option, seed_list
from mtlvsift.params import count
from mtlvsift.names import DEFAULT_SEEDS, METHODS, SAMPLINGS
from mtlvsift.tasks import GLUE_TASK_NAMES


@click.command(context_settings={"show_default": True},
               help="The experiment as one command: the single, STILTs, pairwise MTL and MTL_All "
                    "runs of a grid of tasks and seeds, prerequisites first, finished runs "
                    "skipped; --dry-run for the plan and ETA, --emit for shell or SLURM scripts.")
@click.option("--tasks", required=True,
              help=f"Comma-separated tasks, e.g. rte,mrpc,stsb: GLUE's {', '.join(GLUE_TASK_NAMES)}, "
                   f"or a --task-file's.")
@click.option("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), callback=seed_list,
              help="Comma-separated seeds of every run.")
@click.option("--methods", default=",".join(METHODS),
              help="Comma-separated: single, stilts, mtl, mtl_all (single runs that STILTs or "
                   "dynamic sampling read are added when single is left out).")
@click.option("--mtl-sampling", default="dynamic", type=click.Choice(SAMPLINGS, case_sensitive=False),
              help="Pairwise MTL's sampling.")
@click.option("--mtl-all-sampling", default="size", type=click.Choice(SAMPLINGS, case_sensitive=False),
              help="MTL_All's sampling.")
@click.option("--support-ratios", default=None,
              help="The size experiment (Figure 2): STILTs and MTL runs of every ordered pair with "
                   "the supporting task subsampled to K x the target's size, for each K, e.g. "
                   "0.333,0.5,1,2,3.")
@named_option("target_fraction")
@grid_options()
@click.option("--dry-run", is_flag=True,
              help="Print the plan (every run, its command, steps, estimated time), the ETA and "
                   "the disk it needs; train nothing, write nothing under the outputs.")
@click.option("--plan-json", default=None, type=click.Path(dir_okay=False),
              help="Also write the plan (runs, commands, estimates, ETA) as JSON to this file.")
@click.option("--until-decided", is_flag=True,
              help="After the grid's seeds, add seeds (both methods of the cell) only to the cells "
                   "whose verdict is open and whose difference is at least its minimum detectable "
                   "effect at --max-seeds, until none is; the cells' p values are then from a "
                   "sequential design (docs/compare.md).")
@click.option("--max-seeds", default=None, type=count(min=2, max=1000),
              help="With --until-decided: the most seeds per method a cell may get (more than "
                   "the --seeds).")
@click.option("--jobs", default=1, type=click.IntRange(1, 1024),
              help="Runs at once, each its own process (one GPU each where there are GPUs).")
@click.option("--runs-per-gpu", default=None, type=click.IntRange(1, 64),
              help="With --jobs: this many of the runs share each GPU (small models leave most "
                   "of a big GPU idle); default: the runs spread over the GPUs in turn.")
@click.option("--emit", "emit_kind", default=None, type=click.Choice(["shell", "slurm"]),
              help="Write the plan as a shell script (grid.sh) or SLURM array jobs, and train nothing.")
@click.option("--emit-to", default=None, type=click.Path(file_okay=False), help="Folder for --emit.")
@click.option("--sbatch", multiple=True,
              help="An extra #SBATCH line for --emit slurm, e.g. '--gres=gpu:1' (repeatable).")
@click.option("--signal-lead", default=120, type=click.IntRange(0, 86400),
              help="--emit slurm: SLURM warns a run this many seconds before its time limit "
                   "(SIGUSR1): it checkpoints, exits and the task requeues itself; 0: no warning.")
@click.option("--runs-per-task", default=1, type=click.IntRange(1, 10000),
              help="--emit slurm: runs per array task, one after another in one process (one "
                   "start-up).")
@click.option("--nodes", default=1, type=click.IntRange(1, 1024),
              help="--emit slurm: machines per run (DDP over them: srun accelerate launch).")
@click.option("--gpus-per-node", default=0, type=click.IntRange(0, 64),
              help="--emit slurm: GPUs per machine per run (#SBATCH --gres=gpu:G; several: DDP).")
def main(**options):
    from mtlvsift.grid.main import run_grid

    run_grid(repo_root=Path(__file__).resolve().parents[1], **options)


if __name__ == "__main__":
    main()
