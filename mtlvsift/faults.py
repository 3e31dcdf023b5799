"""Fault injection for the reliability tests: kill the process at a named point.

``MTLVSIFT_FAULT=<point>:<n>`` sends SIGKILL to this process the n-th time it reaches ``point``
(for example ``mid_checkpoint:2``: while writing the second checkpoint). ``<point>:oserror:<n>``
raises an OSError there instead, as a full disk would; ``<point>:sigint:<n>`` sends SIGINT, as
Ctrl-C does, and ``sigterm``, ``sighup``, ``sigusr1`` those signals (``kill``, a closed terminal,
SLURM's warning); ``<point>:hang:<n>`` waits there (up to 10 minutes) until a stop signal
arrives, so a test can signal a process that is surely busy training (it first prints
``fault: hanging at <point>`` to stderr). Unset, it costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from collections import Counter

from mtlvsift.stop_signals import stop_requested

_hits: Counter = Counter()


def fault_point(point: str) -> None:
    spec = os.environ.get("MTLVSIFT_FAULT")
    if not spec:
        return
    name, *rest = spec.split(":")
    if name != point:
        return
    _hits[point] += 1
    kind, count = ("kill", rest[0]) if len(rest) == 1 else (rest[0], rest[1])
    if _hits[point] != int(count):
        return
    if kind == "oserror":
        raise OSError(errno.ENOSPC, f"No space left on device (injected at {point})")
    if kind == "hang":
        _hang(point)
        return
    os.kill(os.getpid(), signal.SIGKILL if kind == "kill" else getattr(signal, kind.upper()))


def _hang(point: str) -> None:
    print(f"fault: hanging at {point}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 600
    while not stop_requested() and time.monotonic() < deadline:
        time.sleep(0.05)
