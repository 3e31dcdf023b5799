"""The exposure regimes of pairwise MTL: passes per epoch over the target's and the support's
training data at GLUE's full sizes and batch 128, under the paper's text, the authors' code and
the standard protocol with each --mtl-epoch (and --max-passes 3), computed by the sampler itself
(``train/batches/sampling.py``): the table of docs/fidelity.md, "Regimes".

    python -m bench.regimes

Epoch 1 is size sampling under every protocol (dynamic sampling has no dev scores yet); later
epochs are shown at p = (0.5, 0.5), where the softmax of single-minus-current gaps on [0, 1]
scores sits once both tasks are near their single-task scores.
"""

from __future__ import annotations

import click

from mtlvsift.tasks import AUTHORS_TASK_ORDER, GLUE_TASKS
from mtlvsift.train.batches.probabilities import size_probabilities
from mtlvsift.train.batches.sampling import epoch_layout, passes

PAIRS = (("rte", "mnli"), ("wnli", "mnli"), ("mnli", "wnli"))  # (target, support)
BATCH = 128
LATER_P = [0.5, 0.5]
# (label, protocol, --mtl-epoch, --max-passes, what it favours)
REGIMES = (
    ("authors' code (`--protocol original`)", "original", "sum", None,
     "STILTs for a large target: after epoch 1 an epoch ends when the small task runs out, so "
     "MNLI with WNLI support sees ~0.22 passes in ten epochs (its single run: 10)"),
    ("standard, `--mtl-epoch sum` (default)", "standard", "sum", None,
     "a small target is repeated 80-300 times an epoch (more updates than its single run, or "
     "overfitting); a large target sees half its single run's passes: STILTs for large targets"),
    ("standard, `--mtl-epoch target`", "standard", "target", None,
     "neither by the target's exposure: it sees its data as often as in its single run; the "
     "support in proportion (MNLI under RTE 0.006 passes an epoch, WNLI under MNLI 618)"),
    ("standard, `--mtl-epoch sum --max-passes 3`", "standard", "sum", 3.0,
     "a small task at most 3 passes, the large one about 1: close to the paper's text"),
)


def epoch_passes(pair: tuple[str, str], p: list[float], protocol: str, mtl_epoch: str,
                 max_passes: float | None) -> list[float]:
    """The target's and the support's passes over their data in one epoch at ``p``."""
    sizes = [GLUE_TASKS[t].train_size for t in pair]
    ranks = {t: i for i, t in enumerate(AUTHORS_TASK_ORDER)}
    order = sorted(range(2), key=lambda i: ranks[pair[i]])
    layout = epoch_layout(sizes, p, BATCH, protocol=protocol, sampling="dynamic", order=order,
                          mtl_epoch=mtl_epoch, max_passes=max_passes)
    return passes(layout.rows, sizes)


def _shown(values: list[float]) -> str:
    return " · ".join(f"{v:.3g}" for v in values)


def table() -> str:
    """The markdown table: one row per regime; per pair, epoch 1 and a later epoch (target ·
    support passes), and what the regime favours."""
    head = ["regime", *(f"{t.upper()} + {s.upper()} {when}" for t, s in PAIRS for when in
                        ("epoch 1", "later")), "favours"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|",
             "| paper's text (an epoch is a pass over the data) | " + " | ".join(["1 · 1"] * 6)
             + " | neither: each task as often as in its single run (which dynamic sampling, "
               "changing p, cannot keep) |"]
    for label, protocol, mtl_epoch, cap, favours in REGIMES:
        cells = []
        for pair in PAIRS:
            sizes = [GLUE_TASKS[t].train_size for t in pair]
            first = epoch_passes(pair, size_probabilities(sizes).tolist(), protocol, mtl_epoch, cap)
            later = epoch_passes(pair, LATER_P, protocol, mtl_epoch, cap)
            cells += [_shown(first), _shown(later)]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {favours} |")
    return "\n".join(lines)


@click.command()
def main() -> None:
    """Print the regimes table (target / support passes per epoch)."""
    click.echo(table())


if __name__ == "__main__":
    main()
