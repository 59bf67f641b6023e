"""``fedskip audit RUN_DIR``: a run's empirical ε lower bound beside the accountant's ε."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fedskip.errors import ConfigError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="print a run's privacy audit: empirical ε lower bound beside the accountant's ε",
        description=(
            "Read RUN_DIR/summary.json of a run trained with --set audit-canaries=N and print "
            "the one-run lower bound on ε (Steinke, Nasr & Jagielski 2023) from its canaries, "
            "the accountant's ε (an upper bound) and the loss-threshold membership attack's "
            "AUC. See docs/privacy.md for how to read them."
        ),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    parser.set_defaults(func=run)


def read_audit(run_dir: str | Path) -> dict[str, Any]:
    """``summary.json`` of an audit run; a one-line :class:`ConfigError` otherwise."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise ConfigError(f"{path}: no summary.json (not a finished run directory)")
    try:
        summary = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("audit"), dict):
        raise ConfigError(
            f"{run_dir}: not an audit run (train with --set audit-canaries=N, e.g. 64)"
        )
    return summary


def run(args: argparse.Namespace) -> int:
    from fedskip.audit import audit_lines

    summary = read_audit(args.run_dir)
    print(f"privacy audit of {args.run_dir} (audit run: its model has seen canary notes)")
    for line in audit_lines(summary):
        print(f"  {line}")
    return 0
