"""What a train script does once its options are read: show the plan, or train."""

from __future__ import annotations

from mtlvsift.train.config import TrainConfig


def train_or_plan(config: TrainConfig, restart: bool, dry_run: bool, plan_json: str | None) -> None:
    """``--dry-run``/``--plan-json``: the plan (nothing trained or written); else the run."""
    if dry_run or plan_json:
        from mtlvsift.train.plan_display import show_plan

        show_plan(config, plan_json)
    else:
        from mtlvsift.train.loop import run_training

        run_training(config, restart=restart)
