"""Stop signals handled as one: Ctrl-C (SIGINT), SIGTERM (``kill``, SLURM's end of a job), SIGHUP
(a closed terminal) and SIGUSR1 (SLURM's ``--signal`` warning).

Inside ``stop_on_signals`` each raises ``Stopped`` (a ``KeyboardInterrupt``, so every clean-up
written for Ctrl-C runs) in the main thread: at once, or, inside ``stops_at_safe_points`` (the
training loop), at the next ``stop_point`` (the end of the step under way): raised in the middle
of torch's C++ code (a backward pass), the exception can abort the process. The process then
exits with ``exit_status``: 128 + the signal's number, the shell's convention (Ctrl-C 130,
SIGTERM 143, SIGHUP 129, SIGUSR1 138). While stopping, a repeated signal is ignored (SLURM gives
30 s or more before SIGKILL), except a second Ctrl-C, which interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)


class Stopped(KeyboardInterrupt):
    """A stop signal arrived (``signum``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class _Stops:
    pending: int | None = None  # the signal received
    deferring: bool = False  # inside stops_at_safe_points
    raised: bool = False  # Stopped was raised for it

    def raise_stopped(self) -> None:
        self.raised = True
        raise Stopped(self.pending)


_current: _Stops | None = None  # the innermost stop_on_signals


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside, a stop signal raises ``Stopped``; the previous handlers come back after. A
    signal that came while stopping was deferred and the work then completed is passed on to
    them (the grid around an in-process run, or the default action). Outside the main thread
    (where Python cannot set handlers) it changes nothing."""
    global _current
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops, outer = _Stops(), _current

    def on_signal(signum: int, frame) -> None:
        if stops.pending is not None:  # already stopping: let the clean-up finish
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: at once
            return
        stops.pending = signum
        if not stops.deferring:
            stops.raise_stopped()

    previous = {number: signal.signal(number, on_signal) for number in STOP_SIGNALS}
    _current = stops
    try:
        yield
    finally:
        _current = outer
        for number, handler in previous.items():
            signal.signal(number, handler)
    if stops.pending is not None and not stops.raised:
        signal.raise_signal(stops.pending)


@contextmanager
def stops_at_safe_points() -> Iterator[None]:
    """Inside, a stop signal is only recorded: ``stop_point`` raises it."""
    stops = _current
    if stops is None:
        yield
        return
    stops.deferring = True
    try:
        yield
    finally:
        stops.deferring = False


def stop_point() -> None:
    """Raise ``Stopped`` for a signal recorded inside ``stops_at_safe_points``: a point where
    stopping loses nothing (a step done, nothing under way but a checkpoint's write)."""
    stops = _current
    if stops is not None and stops.deferring and stops.pending is not None and not stops.raised:
        stops.raise_stopped()


def stop_requested() -> bool:
    """Whether a stop signal was recorded and not yet acted on (a wait can end early for it)."""
    stops = _current
    return stops is not None and stops.pending is not None and not stops.raised


def pending_signal() -> int | None:
    """The stop signal recorded and not yet acted on, or None."""
    return _current.pending if stop_requested() else None


def stop_now(signum: int) -> None:
    """Raise ``Stopped`` for ``signum`` where the run chose to stop for it: recorded here, or
    received by another process of the run (DDP: every process stops at the same step). A
    signal arriving later while stopping is then ignored, as a repeat is."""
    stops = _current
    if stops is not None:
        stops.pending = stops.pending if stops.pending is not None else signum
        stops.raised = True
    raise Stopped(signum)


def signal_number(interrupt: KeyboardInterrupt) -> int:
    """The signal behind an interrupt: the stop signal's, or Ctrl-C's SIGINT."""
    return getattr(interrupt, "signum", signal.SIGINT)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process its signal ended."""
    return 128 + signal_number(interrupt)


def signal_label(interrupt: KeyboardInterrupt) -> str:
    """How the user names it: 'Ctrl-C', 'SIGTERM', 'SIGHUP', 'SIGUSR1'."""
    number = signal_number(interrupt)
    return "Ctrl-C" if number == signal.SIGINT else signal.Signals(number).name
