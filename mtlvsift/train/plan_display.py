"""What ``--dry-run`` prints and ``--plan-json`` writes: ``plan.make_plan`` shown as text or JSON."""

from __future__ import annotations

import os
from typing import Any

import click

from mtlvsift.run_folder import atomic_write_json
from mtlvsift.train.config import TrainConfig
from mtlvsift.train.plan import make_plan
from mtlvsift.train.run_messages import few_steps_warning


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as a few lines of text."""
    def numbers(values, digits=None) -> str:
        shown = ["?" if v is None else (f"{v:.{digits}f}" if digits else f"{v:,}") for v in values]
        return ", ".join(shown)

    batches, runs = plan["batches_per_epoch"], []  # runs of equal values: "498, ? x 9"
    for value in batches:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
    per_epoch = ", ".join(numbers([v]) + (f" x {n}" if n > 1 else "") for v, n in runs)
    lines = [
        f"Plan of {plan['method']} {plan['name']} seed {plan['seed']} (protocol {plan['protocol']}; "
        f"dry run: nothing trained or written) -> {plan['run_dir']}",
        f"  tasks:           {', '.join(plan['tasks'])}",
        f"  train sizes:     {numbers(plan['train_sizes'])} (of {numbers(plan['available_train_sizes'])}; "
        f"{plan['sizes_from']})",
        f"  epoch 1:         p {numbers(plan['probabilities'], 4)}; rows per batch "
        f"{'(one task per batch)' if plan['quotas'] is None else numbers(plan['quotas'])}",
        f"  batches/epoch:   {per_epoch}" + (" (?: set by the dev scores)" if None in batches else ""),
        f"  LR schedule:     {plan['lr_schedule_steps']:,} steps, batch {plan['batch_size']}, "
        f"{plan['num_processes']} process(es); evaluations: {plan['evaluations'] or '?'}",
    ]
    if plan["holdout_rows"]:
        lines.append(f"  selection:       on {numbers(plan['holdout_rows'])} rows held out of training "
                     f"(dev reported)")
    if plan["sampling"]:
        lines.append(f"  sampling:        {plan['sampling']}, {plan['batching']} batches")
        first = plan["passes_per_epoch"][0]
        later = "" if None not in plan["passes_per_epoch"] else "; later epochs: set by the dev scores"
        lines.append(f"  passes/epoch:    {', '.join(f'{t} {x:.3g}' for t, x in zip(plan['tasks'], first))} "
                     f"(epoch 1{later})")
    if plan["start_model"]:
        start = plan["start_model"]
        lines.append(f"  start model:     {start['run']} (best of seeds "
                     f"{' '.join(map(str, start['seeds']))}: "
                     f"{'held-out' if plan['select_on'] == 'holdout' else 'dev'} {100 * start['score']:.2f})")
    if plan["single_scores"]:
        scores = ", ".join(f"{t} {100 * s:.2f}" for t, s in plan["single_scores"].items())
        lines.append(f"  single scores:   {scores}")
    few = few_steps_warning(plan["lr_schedule_steps"], plan["epochs"], batches[0], plan["batch_size"])
    if few:
        lines.append(few)
    return "\n".join(lines)


def show_plan(config: TrainConfig, plan_json: str | None = None) -> dict[str, Any]:
    """--dry-run: print the plan; --plan-json FILE: write it as JSON too (the main process only,
    under ``accelerate launch``)."""
    plan = make_plan(config)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(format_plan(plan))
        if plan_json:
            atomic_write_json(plan_json, plan)
            click.echo(f"Plan written to {plan_json}")
    return plan
