"""A grid written out instead of run: a shell script, or SLURM array jobs for a cluster.

``--emit shell``: ``grid.sh`` runs every command in the plan's order (``set -e``: it stops at the
first failure; rerunning it skips finished runs and resumes the interrupted one). ``--emit slurm``:
one array job per stage (one array task per run, its command picked by ``$SLURM_ARRAY_TASK_ID``,
or K runs per task in one process: ``array_task.py``), the second stage (runs that read single
runs) submitted by ``submit.sh`` with ``--dependency=afterok`` on the first; SLURM's warning is
passed on to the run and the task requeues itself (``_STOPS``); docs/cluster.md. Nothing is
trained. The scripts ``cd``
into the repository, so every path in their commands is made absolute against the folder the
grid was emitted from (``paths.resolved_run``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from mtlvsift.grid.paths import resolved_run
from mtlvsift.grid.plan import GridRun
from mtlvsift.run_folder import atomic_write

DEFAULT_SIGNAL_LEAD = 120  # seconds of warning before the time limit (--signal-lead)
STAGE_NAMES = {1: "runs that read no other run", 2: "runs that read the single runs of stage 1"}


def shell_script(runs: list[GridRun], repo_root: Path, cwd: Path | None = None) -> str:
    """grid.sh: every run's command in order, its paths absolute against ``cwd`` (default: this
    process's folder)."""
    runs = [resolved_run(run, cwd) for run in runs]
    lines = ["#!/usr/bin/env bash",
             f"# The grid's {len(runs)} runs in order (scripts/run_grid.py --emit shell). Rerunning",
             "# it skips finished runs and resumes an interrupted one.",
             "set -euo pipefail",
             f"cd {shlex.quote(str(repo_root))}"]
    for number, run in enumerate(runs, 1):
        lines += [f"echo {shlex.quote(f'[grid {number}/{len(runs)}] {run.label}')}", run.command()]
    return "\n".join(lines) + "\n"


def slurm_path_problem(path: str | Path) -> str | None:
    """Why the ``--emit-to`` folder cannot be written on an ``#SBATCH --output`` line (its logs
    go there), else None: SLURM reads ``%`` as a filename pattern (``%j``, ``%u``, ``%%``...)
    and quotes nothing, so the whole absolute path must be printable, without spaces or ``%``."""
    full = str(Path(path).resolve())
    if "%" in full:
        return (f"--emit-to {str(path)!r}: its path {full!r} holds '%', which SLURM's #SBATCH "
                f"--output line reads as a filename pattern (%j, %u, %%, ...); choose a folder "
                f"whose path has none.")
    if any(c.isspace() for c in full) or not full.isprintable():
        return (f"--emit-to {str(path)!r}: SLURM's #SBATCH --output line cannot quote a path with "
                f"spaces; choose a folder whose path has none.")
    return None


@dataclass(frozen=True)
class SlurmLayout:
    """How the array jobs hold the runs: ``runs_per_task`` runs per array task (one process, one
    start-up: ``grid/array_task.py``), ``nodes`` x ``gpus_per_node`` per run (several: one DDP
    run through ``srun accelerate launch``), SLURM's warning ``signal_lead`` seconds before the
    time limit (0: none), the logs' folder and the user's own ``#SBATCH`` lines."""

    log_dir: Path
    sbatch_lines: tuple[str, ...] = ()
    signal_lead: int = DEFAULT_SIGNAL_LEAD
    runs_per_task: int = 1
    nodes: int = 1
    gpus_per_node: int = 0

    def array_tasks(self, runs: int) -> int:
        return -(-runs // self.runs_per_task)


def slurm_scripts(runs: list[GridRun], repo_root: Path, layout: SlurmLayout,
                  cwd: Path | None = None) -> dict[str, str]:
    """File name -> text: ``stage-<k>.sbatch`` per stage with runs, and ``submit.sh``; the runs'
    paths absolute against ``cwd`` (default: this process's folder)."""
    runs = [resolved_run(run, cwd) for run in runs]
    files: dict[str, str] = {}
    submit = ["#!/usr/bin/env bash",
              "# Submits the grid's array jobs in order (scripts/run_grid.py --emit slurm).",
              "set -euo pipefail", 'cd "$(dirname "$0")"']
    previous = None
    for stage in sorted({r.stage for r in runs}):
        chosen = [r for r in runs if r.stage == stage]
        name = f"stage-{stage}.sbatch"
        files[name] = _array_job(chosen, stage, repo_root, layout)
        dependency = f" --dependency=afterok:${previous}" if previous else ""
        variable = f"stage{stage}"
        submit.append(f"{variable}=$(sbatch --parsable{dependency} {name})")
        submit.append(f'echo "stage {stage} ({len(chosen)} runs in {layout.array_tasks(len(chosen))} '
                      f'array tasks): job ${variable}"')
        previous = "{" + variable + "}"
    files["submit.sh"] = "\n".join(submit) + "\n"
    return files


def _array_job(runs: list[GridRun], stage: int, repo_root: Path, layout: SlurmLayout) -> str:
    per_task, nodes, gpus = layout.runs_per_task, layout.nodes, layout.gpus_per_node
    outputs = str(runs[0].config.output_dir)
    resources = [f"--nodes={nodes}", "--ntasks-per-node=1"] if nodes > 1 else []
    resources += [f"--gres=gpu:{gpus}"] if gpus else []
    lines = ["#!/usr/bin/env bash",
             f"#SBATCH --job-name=mtlvsift-stage{stage}",
             f"#SBATCH --array=0-{layout.array_tasks(len(runs)) - 1}",
             f"#SBATCH --output={layout.log_dir}/stage{stage}-%A_%a.out",
             "#SBATCH --open-mode=append",  # a requeued task's attempts in one log
             "#SBATCH --requeue",
             *([f"#SBATCH --signal=B:USR1@{layout.signal_lead}"] if layout.signal_lead else []),
             *[f"#SBATCH {line}" for line in (*resources, *layout.sbatch_lines)],
             f"# Stage {stage}: {STAGE_NAMES[stage]}; "
             + ("one array task per run." if per_task == 1 else
                f"{per_task} runs per array task, one after another in one process (one start-up)."),
             "set -euo pipefail",
             f"cd {shlex.quote(str(repo_root))}",
             "commands=("]
    lines += [f"  {shlex.quote(run.command())}  # {_comment(run.label)}" for run in runs]
    lines += [")", *_STOPS]
    if nodes > 1:  # the first node's address, where every node's processes meet
        lines.append('export MTLVSIFT_MAIN_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)')
    # The launch (with the nodes' ranks, expanded on each node), then the task's command(s).
    lines.append(f"command={shlex.quote(_launch(nodes, gpus))}")
    if per_task == 1:
        lines.append(f"command+=${{commands[$SLURM_ARRAY_TASK_ID]#{shlex.quote(LAUNCH)}}}")
    else:
        head = f" -m mtlvsift.grid.array_task --outputs {shlex.quote(outputs)} --task-number "
        lines += [f'command+={shlex.quote(head)}"$SLURM_ARRAY_TASK_ID --"',
                  f"first=$((SLURM_ARRAY_TASK_ID * {per_task}))",
                  f'for one in "${{commands[@]:first:{per_task}}}"; do command+=" $(printf %q "$one")"; done']
    runner = ("srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c " if nodes > 1 else "bash -c ")
    lines.append(f"run_stoppable {runner}\"trap '' USR1; exec $command\"")
    return "\n".join(lines) + "\n"


LAUNCH = "accelerate launch --quiet"  # how commands.train_command starts every run


def _launch(nodes: int, gpus: int) -> str:
    """The launch of one run over ``nodes`` x ``gpus`` GPUs (accelerate's documented SLURM
    form: every node runs it, with its rank and the first node's address)."""
    if nodes == 1 and gpus <= 1:
        return LAUNCH
    flags = f" --multi_gpu --num_processes {max(1, gpus) * nodes}"
    if nodes > 1:
        flags += (f" --num_machines {nodes} --machine_rank $SLURM_NODEID --main_process_ip "
                  f"$MTLVSIFT_MAIN_IP --main_process_port {MAIN_PROCESS_PORT} --rdzv_backend static "
                  f"--same_network")
    return LAUNCH + flags


MAIN_PROCESS_PORT = 29500
# Stop signals: SLURM's warning (USR1, --signal-lead seconds before the time limit) comes to this
# shell only (B:): it is passed on to the run's processes (the launcher ignores it: it would
# die of it and leave the run behind), the run checkpoints the step it is in and exits, then
# the task requeues itself and its rerun resumes there. SIGTERM (scancel, preemption, the
# limit) reaches every process of the job from SLURM: the shell only outlives the run (had it
# ended first, SLURM would kill the run at once), passes nothing on (a second SIGTERM makes
# accelerate's launcher kill the run without its 5 s of grace) and requeues nothing.
_STOPS = [
    "set -m  # the run in its own process group, so that a signal reaches all its processes",
    "signalled=''",
    "pass_on() { signalled=$1; [ -n \"${pid:-}\" ] && kill -s \"$1\" -- \"-$pid\" 2>/dev/null || true; }",
    "trap 'pass_on USR1' USR1",
    "trap 'signalled=TERM' TERM",
    "run_stoppable() {",
    "  \"$@\" &",
    "  pid=$!",
    "  status=0",
    "  while :; do",
    "    wait \"$pid\" && status=0 || status=$?",
    "    kill -0 \"$pid\" 2>/dev/null || break  # ended (not a signal waking the wait)",
    "  done",
    "  if [ \"$signalled\" = USR1 ]; then",
    "    task=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}  # this task alone ($SLURM_JOB_ID may name the array)",
    "    echo \"mtlvsift: stopped ahead of the time limit; requeueing $task to resume\"",
    "    scontrol requeue \"$task\"",
    "    exit 0",
    "  fi",
    "  exit \"$status\"",
    "}",
]


def _comment(text: str) -> str:
    return "".join(c for c in text if c.isprintable())


def write_files(folder: Path, files: dict[str, str]) -> list[Path]:
    """Write each file atomically (scripts executable); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = folder / name
        atomic_write(path, text)
        path.chmod(0o755)
        written.append(path)
    return written
