"""Under ``accelerate launch``: a failed run shows the project's one error line, not accelerate's
traceback of its child's exit status (issue 25). accelerate's own ``--quiet`` does that (a launch
config cannot: accelerate reads ``quiet`` only from its command line), so every command the
documentation shows carries it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from helpers import REPO_ROOT

DOCUMENTED = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")),
              *sorted((REPO_ROOT / "launch_configs").glob("*.yaml")),
              *sorted((REPO_ROOT / "scripts").glob("train_*.py"))]


def test_every_documented_launch_is_quiet():
    loud = [f"{path.name}: {line.strip()}" for path in DOCUMENTED for line in path.read_text().splitlines()
            if re.search(r"accelerate launch (scripts/|--config_file)", line)]
    assert loud == []


def test_every_printed_command_is_quiet():
    """The commands mtlvsift prints (errors, missing.sh, grid.sh) launch as the docs do."""
    from mtlvsift.commands import train_command

    assert train_command("single", "rte", seeds=[0]).startswith("accelerate launch --quiet scripts/train_stilts.py")


def _launch(*quiet: str, out) -> subprocess.CompletedProcess:
    """A train script under accelerate launch that fails early (its GLUE folder does not exist)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(
        [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    command = ["accelerate", "launch", *quiet, "--config_file", str(REPO_ROOT / "launch_configs" / "cpu.yaml"),
               "scripts/train_stilts.py", "--target", "rte", "--data-dir", str(out / "no-glue"),
               "--output-dir", str(out)]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="no accelerate command")
def test_a_failed_run_under_accelerate_launch_quiet_is_one_error_line(tmp_path):
    loud = _launch(out=tmp_path)  # what the documentation's commands avoid
    assert loud.returncode == 1 and "CalledProcessError" in loud.stderr
    quiet = _launch("--quiet", out=tmp_path)
    assert quiet.returncode == 1
    assert f"Error: The GLUE folder {tmp_path / 'no-glue'} (--data-dir) does not exist." in quiet.stderr
    assert "Traceback" not in quiet.stderr and "CalledProcessError" not in quiet.stderr
