"""The ``fedskip`` command. Each subcommand lives in ``fedskip.commands.<name>`` and exposes
``register(subparsers)``; heavy libraries (torch, transformers, flwr) are imported only when a
command runs, so ``fedskip --help`` and argument errors are instant.

User errors (:class:`fedskip.errors.FedskipError`) print one line and exit 2, no traceback; so
does a closed output pipe (``fedskip predict --json | head -c1``). Privacy and data warnings
(loggers :data:`CONSOLE_WARNINGS`) print one line each, ``fedskip: warning: ...``, whatever else
a command does with its logs (``fedskip run`` sends them to ``run.log`` too).
"""

from __future__ import annotations

import argparse
import importlib
import io
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from fedskip.errors import FedskipError, print_warning
from fedskip.fl.stop import SimulationStopped

COMMANDS = (
    "data",
    "run",
    "centralized",
    "evaluate",
    "predict",
    "comm",
    "report",
    "audit",
    "bench",
    "deploy",
    "config",
)


CONSOLE_WARNINGS = ("fedskip.privacy", "fedskip.data", "fedskip.models")
"""Loggers whose warnings always reach the console: a setting that weakens a privacy guarantee
(:func:`fedskip.privacy.checks.warn_loudly`), data read with a caveat, a model that is not
pretrained (``model-init=random``) or a tokenizer padded with its eos / unk token."""


class _ConsoleWarnings(logging.Handler):
    """WARNING and above from :data:`CONSOLE_WARNINGS`, one line each on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def filter(self, record: logging.LogRecord) -> bool:
        return any(record.name == n or record.name.startswith(n + ".") for n in CONSOLE_WARNINGS)

    def emit(self, record: logging.LogRecord) -> None:
        print_warning(record.getMessage())


@contextmanager
def console_warnings() -> Iterator[None]:
    """For one command: :data:`CONSOLE_WARNINGS` on the console through a handler on the root
    logger (which also keeps a library's ``logging.basicConfig`` — opacus calls it on import —
    from printing them a second time), and their Python-warning twins
    (:class:`~fedskip.privacy.checks.PrivacyWarning`) off the console: the log line says it."""
    from fedskip.privacy.checks import PrivacyWarning

    root, handler = logging.getLogger(), _ConsoleWarnings()
    root.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=PrivacyWarning)
            yield
    finally:
        root.removeHandler(handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedskip",
        description="Layer-Skipping Federated Learning for clinical NLP on Flower.",
    )
    from fedskip import __version__

    parser.add_argument("--version", action="version", version=f"fedskip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"fedskip.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"fedskip.commands.{name}":
                continue  # command not built in this checkout
            raise
        module.register(sub)
    return parser


def exit_now_if_threads_hang(code: int) -> None:
    """After a stopped simulation, whose Flower message workers can wait forever on Ray actors
    that are gone: if other threads still run, end the process with ``code`` now instead of
    hanging at interpreter exit. Logs and output are flushed first; the run's records and
    checkpoint were written before."""
    stuck = [t for t in threading.enumerate() if t is not threading.current_thread()]
    if any(not t.daemon for t in stuck):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _discard_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's final flush of what is still
    buffered for a closed pipe cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # not a real file (a test's capture): nothing will flush to the pipe


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with console_warnings():
            code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
    except FedskipError as exc:
        print(f"fedskip: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _discard_stdout()
        print(
            "fedskip: error: the output pipe was closed before all output was written",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt as exc:
        print(f"fedskip: interrupted{f' ({exc})' if str(exc) else ''}", file=sys.stderr)
        if isinstance(exc, SimulationStopped):
            exit_now_if_threads_hang(130)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
