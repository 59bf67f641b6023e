"""``fedskip centralized``: train one model on the union of every site's training data.

Parses the arguments and calls the run layer (:func:`fedskip.runs.centralized.run_centralized`):
the upper bound a federation is compared with, full fine-tuning with ``--set layers=<blocks>``,
LoRA in the selected blocks with ``--set lora-rank=<r>``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from fedskip.commands.common import (
    add_config_args,
    config_from_args,
    leave_report,
    next_commands,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "centralized",
        help="train on all sites' pooled training data (the centralized upper bound)",
        description=(
            "Train on the union of every site's training data with the configured model and "
            "layer plan, evaluate on the global test set after each epoch, and write the run "
            "directory (config.json, metrics.jsonl, summary.json, model/, report.md and plots/)."
        ),
    )
    add_config_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedskip.runs import run as run_method
    from fedskip.tracking import require_backends

    cfg = config_from_args(args, method="centralized")
    require_backends(cfg)  # a one-line error before any data is read
    summary = run_method(cfg)
    out = summary.get("out", cfg.out)
    leave_report(out)
    print(format_summary(summary))
    print(next_commands(cfg, out))
    return 0


def format_summary(summary: Mapping[str, Any]) -> str:
    """Human-readable final metrics (per-type table for NER)."""
    from fedskip.commands.evaluate import format_metrics

    head = (
        f"centralized {summary['model']}: blocks {summary['selected_layers']} of "
        f"{summary['num_blocks']} trained, {summary['parameters']['trainable']:,} of "
        f"{summary['parameters']['total']:,} parameters, {summary['seconds']:.1f} s"
    )
    return "\n".join([head, format_metrics(summary["final"]), f"run directory: {summary['out']}"])
