"""The ``fedskip`` command. Each subcommand lives in ``fedskip.commands.<name>`` and exposes
``register(subparsers)``; heavy libraries (torch, transformers, flwr) are imported only when a
command runs, so ``fedskip --help`` and argument errors are instant.

User errors (:class:`fedskip.errors.FedskipError`) print one line and exit 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from fedskip.errors import FedskipError

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
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedskip",
        description="Layer-Skipping Federated Learning for clinical NLP on Flower.",
    )
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


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except FedskipError as exc:
        print(f"fedskip: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fedskip: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
