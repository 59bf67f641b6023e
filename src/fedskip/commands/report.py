"""``fedskip report RUN_DIR... [--out DIR] [--baseline RUN]``: a Markdown report with plots for run directories."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="render report.md and plots for one or more run directories",
        description=(
            "Compare run directories (written by fedskip run / centralized / bench): final and "
            "best metric, gap to a centralized run among them (never one that failed or scored "
            "0; or to --baseline), MB exchanged, reduction versus a FedAvg run among them (else "
            "the run's own figure, as its console printed it), rounds to 95% of best, and "
            "learning-curve plots. A bench folder (suite.json, runs/) is rendered by "
            "fedskip bench --suite NAME --out DIR --report-only."
        ),
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories")
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="where report.md and plots/ go (default: the single RUN_DIR, else ./report)",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="RUN",
        help="the run directory gaps are measured against, for the runs of its task (default: "
        "the best-matching centralized run among them that finished with a score above 0)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedskip.bench.report import render_report

    out = args.out or (args.run_dirs[0] if len(args.run_dirs) == 1 else "report")
    path = render_report(args.run_dirs, out, baseline=args.baseline)
    print(f"report: {path}")
    return 0
