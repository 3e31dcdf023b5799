"""A grid written out instead of run: a shell script, or SLURM array jobs for a cluster.

``--emit shell``: ``grid.sh`` runs every command in the plan's order (``set -e``: it stops at the
first failure; rerunning it skips finished runs and resumes the interrupted one). ``--emit slurm``:
one array job per stage (``#SBATCH --array=0-(n-1)``, one array task per run, its command picked
by ``$SLURM_ARRAY_TASK_ID``), the second stage (runs that read single runs) submitted by
``submit.sh`` with ``--dependency=afterok`` on the first. Nothing is trained. The scripts ``cd``
into the repository, so every path in their commands is made absolute against the folder the
grid was emitted from (``paths.resolved_run``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from mtlvsift.grid.paths import resolved_run
from mtlvsift.grid.plan import GridRun
from mtlvsift.run_folder import atomic_write

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


def slurm_scripts(runs: list[GridRun], repo_root: Path, log_dir: Path,
                  sbatch_lines: list[str], cwd: Path | None = None) -> dict[str, str]:
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
        files[name] = _array_job(chosen, stage, repo_root, log_dir, sbatch_lines)
        dependency = f" --dependency=afterok:${previous}" if previous else ""
        variable = f"stage{stage}"
        submit.append(f"{variable}=$(sbatch --parsable{dependency} {name})")
        submit.append(f'echo "stage {stage} ({len(chosen)} runs): job ${variable}"')
        previous = "{" + variable + "}"
    files["submit.sh"] = "\n".join(submit) + "\n"
    return files


def _array_job(runs: list[GridRun], stage: int, repo_root: Path, log_dir: Path,
               sbatch_lines: list[str]) -> str:
    lines = ["#!/usr/bin/env bash",
             f"#SBATCH --job-name=mtlvsift-stage{stage}",
             f"#SBATCH --array=0-{len(runs) - 1}",
             f"#SBATCH --output={log_dir}/stage{stage}-%A_%a.out",
             *[f"#SBATCH {line}" for line in sbatch_lines],
             f"# Stage {stage}: {STAGE_NAMES[stage]}; one array task per run.",
             "set -euo pipefail",
             f"cd {shlex.quote(str(repo_root))}",
             "commands=("]
    lines += [f"  {shlex.quote(run.command())}  # {_comment(run.label)}" for run in runs]
    lines += [")", 'eval "${commands[$SLURM_ARRAY_TASK_ID]}"']
    return "\n".join(lines) + "\n"


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
