"""Experiment trackers (``--report-to tensorboard``, wandb, ...) through accelerate's trackers.

Off by default. The accelerator is made with ``log_with``; ``Trackers`` starts them once the run
folder is claimed (TensorBoard writes under ``<run folder>/tracking/``), logs what the progress
bar shows (loss, learning rate, examples/s, sampling probabilities) and every dev metric, and
ends them with the run. Only the main process writes (accelerate's trackers see to that).

A resumed run trains again the steps after its checkpoint, which the interrupted attempt may
have logged already: a value whose tag TensorBoard's event files hold at that step or later is
not logged again (nor the hyperparameters), so each step is one point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.tracking import get_available_trackers
from accelerate.utils import LoggerType

from mtlvsift.errors import MtlvsiftError
from mtlvsift.run_folder import TRACKING_DIR

TRACKERS = tuple(t.value for t in LoggerType if t.value != "all")
PROJECT = "mtlvsift"
HPARAMS_TAG = "_hparams_/experiment"  # what SummaryWriter.add_hparams writes
# What to install for a tracker whose package is missing (the pip name, when it differs).
_PACKAGES = {"tensorboard": "tensorboard (pip install 'mtlvsift[tensorboard]')", "comet_ml": "comet-ml"}


def check_trackers(names: list[str] | tuple[str, ...]) -> list[str]:
    """The trackers asked for, each installed; a missing package is an error saying what to install.

    (accelerate would skip a missing one silently, and the run would track nothing.)
    """
    available = {str(t) for t in get_available_trackers()}
    for name in names:
        if name not in available:
            package = _PACKAGES.get(name, name)
            raise MtlvsiftError(f"--report-to {name} needs the package {package}, which is not "
                                f"installed. Install it, or leave out --report-to {name}.")
    return list(dict.fromkeys(names))


def tracking_dir(run_dir: Path) -> Path:
    return Path(run_dir) / TRACKING_DIR


class Trackers:
    """The run's trackers; every method does nothing when none were asked for."""

    def __init__(self, accelerator: Accelerator, config) -> None:
        self.accelerator = accelerator
        self.enabled = bool(config.report_to)
        self.logged: dict[str, int] = {}  # each tag's last step in the event files
        if self.enabled:
            if "tensorboard" in config.report_to and accelerator.is_main_process:
                self.logged = logged_steps(tracking_dir(config.run_dir))
            name = f"{config.method}/{config.name}/seed-{config.seed}"
            stored = HPARAMS_TAG in self.logged
            accelerator.init_trackers(PROJECT, config=None if stored else _hyperparameters(config.identity()),
                                      init_kwargs={"wandb": {"name": name}})

    def train(self, step: int, loss: float, lr: float, examples_per_second: float,
              probabilities: dict[str, float]) -> None:
        if self.enabled:
            values = {"train/loss": loss, "train/lr": lr,
                      "train/examples_per_second": examples_per_second}
            values.update({f"sampling/{task}": p for task, p in probabilities.items()})
            self._log(values, step)

    def evaluation(self, step: int, metrics: dict[str, dict[str, float]]) -> None:
        if self.enabled:
            self._log({f"dev/{task}/{name}": value for task, values in metrics.items()
                       for name, value in values.items()}, step)

    def _log(self, values: dict[str, float], step: int) -> None:
        fresh = {tag: value for tag, value in values.items() if step > self.logged.get(tag, -1)}
        if fresh:
            self.accelerator.log(fresh, step=step)

    def end(self) -> None:
        if self.enabled:
            self.accelerator.end_training()


def logged_steps(folder: Path) -> dict[str, int]:
    """Each tag's last step in the TensorBoard event files under ``folder`` (an earlier attempt's;
    a record cut by a kill ends the reading of its file). None known where only tensorboardX,
    without tensorboard's reader, is installed."""
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    except ImportError:
        return {}
    last: dict[str, int] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                last[value.tag] = max(event.step, last.get(value.tag, -1))
    return last


def _hyperparameters(identity: dict[str, Any]) -> dict[str, Any]:
    """The run's identity as the flat scalars trackers take (lists and dicts as JSON text)."""
    flat = {}
    for key, value in identity.items():
        if value is None:
            continue
        flat[key] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    return flat
