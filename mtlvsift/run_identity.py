"""A run folder's stored identity (config.json) against a planned run's: which keys differ, and
whether they differ only in what the run read from other runs (a *stale* run: the STILTs start
model, dynamic sampling's single-task scores), which ``--retrain-stale`` replaces, rather than in
its configuration, which only ``--overwrite`` does. config.json is untrusted: its values are
compared and shown, never relied on to have a shape."""

from __future__ import annotations

from typing import Any

from mtlvsift.errors import MtlvsiftError

# What a run read from other runs.
STALE_KEYS = ("start_model", "single_scores")
# Stored in config.json by an older mtlvsift, no longer identity: the start model and the scores
# say what --support-seeds meant.
_LEGACY_KEYS = ("support_seeds",)


class StaleRun(MtlvsiftError):
    """The folder's run read another start model or other single-task scores than this run would:
    kept as it is, unless --retrain-stale. Exit status 3, which the grid counts as stale."""

    exit_code = 3


def identity_changes(stored: dict[str, Any], planned: dict[str, Any],
                     ignore: tuple[str, ...] = ()) -> list[str]:
    """The identity keys whose values differ between a folder's config.json and a planned run
    (``ignore``: keys not known yet, such as what a run resolves when it starts)."""
    skip = set(ignore) | {k for k in _LEGACY_KEYS if k not in planned}
    if "start_model" not in stored:  # written before the start model was identity
        skip.add("start_model")
    return sorted(k for k in set(stored) | set(planned)
                  if k not in skip and stored.get(k) != planned.get(k))


def stale_reason(stored: dict[str, Any], planned: dict[str, Any], ignore: tuple[str, ...] = ()) -> str | None:
    """What changed, in words, when the runs differ only in what they read (the start model, or
    the single-task scores); None when they are the same run or differ in anything else."""
    changes = identity_changes(stored, planned, ignore)
    if not changes or not set(changes) <= set(STALE_KEYS):
        return None
    if "start_model" in changes:
        return f"its start model {_start(stored)} is now {_start(planned)}"
    return f"its single-task scores ({_scores(stored)}) are now {_scores(planned)}"


def _start(identity: dict[str, Any]) -> str:
    start = identity.get("start_model")
    if not isinstance(start, dict):
        return "(none)"
    score = start.get("score")
    shown = f", dev {score:.4f}" if isinstance(score, (int, float)) else ""
    return f"{start.get('run')} (seed {start.get('seed')}{shown})"


def _scores(identity: dict[str, Any]) -> str:
    scores = identity.get("single_scores")
    if not isinstance(scores, dict):
        return "none"
    return ", ".join(f"{t} {v:.4f}" for t, v in scores.items() if isinstance(v, (int, float)))
