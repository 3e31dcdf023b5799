"""Whether the seeds of a group may be pooled, and every reason why not.

The runs of one report share their model, protocol, data variant and settings (``variants.py``),
and the seeds of one group share its method, tasks and variant (sampling, size-experiment
fractions, MTL_All's task set). What can still differ between the seeds of a group:

- the identity options that neither covers (``--init-from``, and any option added later);
- the data each seed was trained and evaluated on (``data_fingerprints``: each file's sha256), which
  an edited or replaced GLUE file changes;
- the model a STILTs seed started from (``start_model``), and the single-task scores a dynamic
  sampling seed read (``single_scores``): they come from other runs, at the time each seed ran.

``--support-seeds`` is judged by what it selects, the start model and the scores: seeds that name
other support seeds but start from the same model compute the same thing. Seeds that differ in
any of these are not pooled: the cell is refused with every reason (``≠``), and the report gives
the commands that retrain its seeds (``missing.retrain_runs``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mtlvsift.display import safe_text
from mtlvsift.run_options import command_args, identity_names, option
from mtlvsift.run_record import RunRecord
from mtlvsift.scores import is_number

# Not compared as options: the seed is pooled over; the support seeds by what they select.
_NOT_COMPARED = ("seed", "support_seeds")


def pooling_problems(name: str, records: list[RunRecord]) -> list[str]:
    """Every reason the seeds (``records``) of the group ``name`` (``Group.describe``) must not
    be pooled; [] when they agree."""
    checks: list[tuple[str, Callable[[RunRecord], Any], Callable[[Any, list], str]]] = [
        ("were made with different options", _identity_options, _describe_options),
        ("started from different models", lambda r: r.start_model_key, _describe_start),
        ("used different single-task scores", lambda r: r.single_scores_key, _describe_scores),
        ("were trained on different data", _data_key, _describe_data),
    ]
    problems = []
    for what, key, describe in checks:
        # By the value's text: a hand-edited record may hold a list or an object there.
        kinds: dict[str, tuple[Any, list[RunRecord]]] = {}
        for record in records:
            kinds.setdefault(repr(key(record)), (key(record), []))[1].append(record)
        if len(kinds) < 2:
            continue
        values = [value for value, _ in kinds.values()]
        parts = [f"seed(s) {', '.join(str(r.seed) for r in rs)} {describe(value, values)} "
                 f"({', '.join(safe_text(r.folder) for r in rs)})" for value, rs in kinds.values()]
        problems.append(f"not pooled: the seeds of {name} {what}: {'; '.join(parts)}.")
    return problems


def _identity_options(record: RunRecord) -> tuple:
    """The record's identity options that differ from their defaults (``RunRecord.options``)."""
    compared = set(identity_names()) - set(_NOT_COMPARED)
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                        for k, v in record.options.items() if k in compared))


def _describe_options(value: tuple, values: list[tuple]) -> str:
    """The options in which this kind differs from the others: '--init-from /models/a'."""
    given = dict(value)
    differing = sorted({k for other in map(dict, values) for k in {*other, *given}
                        if other.get(k) != given.get(k)})
    return safe_text(" ".join(" ".join(command_args(k, given[k])) if k in given
                              else f"without {option(k).flag.split('/')[0]}" for k in differing))


def _describe_start(value: tuple | None, values: list) -> str:
    if value is None:
        return "recorded none"
    run, seed, score = value
    return f"started from {safe_text(run)} (seed {seed}, dev {score})"


def _describe_scores(value: tuple | None, values: list) -> str:
    if value is None:
        return "recorded none"
    return "read " + ", ".join(f"{safe_text(t)} {_score_text(s)}" for t, s in value)


def _score_text(score: object) -> str:
    """A recorded single-task score: 4 decimals, or (not a number) its text, short."""
    return f"{score:.4f}" if is_number(score) else safe_text(score)[:40]


def _data_key(record: RunRecord) -> str | None:
    """The data's checksums as JSON text (untrusted: compared as text, never trusted as a shape)."""
    fingerprints = record.data_fingerprints
    return json.dumps(fingerprints, sort_keys=True, default=str) if fingerprints else None


def _describe_data(value: str | None, values: list) -> str:
    """'trained on other files of rte': the tasks whose checksums differ from another kind's."""
    if value is None:
        return "recorded no data checksums"
    mine = json.loads(value)
    others = [json.loads(v) for v in values if v is not None and v != value]
    tasks = sorted({str(t) for other in others for t in {*mine, *other} if mine.get(t) != other.get(t)})
    return "trained on other files of " + (", ".join(safe_text(t) for t in tasks) or "its tasks")
