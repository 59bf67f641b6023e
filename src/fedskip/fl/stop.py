"""Stopping a simulated run on a signal.

On Flower's Simulation Engine the ServerApp runs in a thread of its own, which Python's signal
handling never interrupts; a SIGTERM, SIGHUP or Ctrl-C ends the main thread, but the ServerApp
thread went on waiting for replies that no longer come and kept the process alive. The driver
(:func:`fedskip.runs.simulation.simulate`) sets :data:`REQUESTED` when it is interrupted; every
place where the ServerApp waits (for nodes, for replies) checks it through :func:`check` and
ends the run with :class:`RunStopped`; the driver waits for that through :data:`SERVING`. The
last finished round's checkpoint stays on disk, so ``--resume`` continues from it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

REQUESTED = threading.Event()
"""Set by the driver when the run must stop (cleared when a run starts)."""

SERVING = threading.Lock()
"""Held while the ServerApp runs in this process, so that an interrupted driver can wait for
it to end (its last round's records and checkpoint written) before it shuts down."""


class RunStopped(Exception):
    """The ServerApp stopped because the driver was interrupted (an ``Exception``, so the
    Simulation Engine's ServerApp thread ends quietly instead of printing a traceback)."""


class SimulationStopped(KeyboardInterrupt):
    """What an interrupted :func:`fedskip.runs.simulation.simulate` raises: its message says
    where the run can resume. Flower's message workers may still be waiting on Ray actors that
    are gone, so the CLI ends the process without waiting for them."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that stop a run or a deployment (Ctrl-C, a service manager, a closed terminal)."""

Handler = Callable[[int, FrameType | None], object] | int | None
"""What ``signal.signal`` returns: a handler, ``SIG_DFL`` / ``SIG_IGN``, or None (not set from
Python)."""


@contextlib.contextmanager
def handlers_installed(
    signals: Sequence[signal.Signals], handler: Callable[[int, FrameType | None], object]
) -> Iterator[dict[int, Handler]]:
    """Install ``handler`` for ``signals`` while the block runs and restore the previous
    handlers after it; yields those previous handlers by signal number. Outside the main thread
    it changes nothing (and yields an empty dict)."""
    previous: dict[int, Handler] = {}
    for signum in signals:
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[signum] = signal.signal(signum, handler)
    try:
        yield previous
    finally:
        for held, old in previous.items():
            signal.signal(held, old if old is not None else signal.SIG_DFL)  # type: ignore[arg-type]


def check() -> None:
    """Raise :class:`RunStopped` if a stop was requested."""
    if REQUESTED.is_set():
        raise RunStopped("the run was stopped")


@contextlib.contextmanager
def interrupts_as_exceptions(
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP),
    *,
    first: Callable[[], object] | None = None,
) -> Iterator[None]:
    """Turn ``signals`` (default SIGTERM and SIGHUP) into KeyboardInterrupt while the block
    runs; ``first``: called in the handler before it raises (e.g. ``REQUESTED.set``).

    Python already turns Ctrl-C (SIGINT) into KeyboardInterrupt; doing the same for SIGTERM /
    SIGHUP makes ``finally`` blocks (and so process cleanup) run when the command is stopped
    by a service manager or a closed terminal. Outside the main thread it changes nothing.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        if first is not None:
            first()
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    with handlers_installed(signals, handler):
        yield
