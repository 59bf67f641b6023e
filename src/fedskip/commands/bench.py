"""``fedskip bench --suite {smoke,paper}``: train a suite of configurations with one harness and
one seed, then write ``results.csv``, ``results.md`` (tables, plots, the paper's claims) and
``plots/`` under ``--out``. Finished configs are skipped, so a suite can run in pieces."""

from __future__ import annotations

import argparse
from typing import Any

from fedskip.bench.suites import SUITES
from fedskip.commands.common import add_set_arg
from fedskip.config import Config
from fedskip.records.schema import RunSummary


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark suite (methods, layer ablation, non-IID, DP) and report",
        description=(
            "Train every configuration of a suite (each in OUT/runs/<name>, with its own "
            "report.md and plots/), skipping those that already have summary.json, then "
            "write OUT/results.csv, OUT/results.md and OUT/plots/. Suites: "
            + "; ".join(f"{s.name}: {s.description}" for s in SUITES.values())
        ),
    )
    parser.add_argument("--suite", required=True, choices=sorted(SUITES), help="which suite")
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="output folder (default bench/<suite>)"
    )
    add_set_arg(
        parser,
        "override a shared setting for every config, e.g. --set rounds=3 synth-docs=20 "
        "(centralized and local-only runs train rounds x local-epochs epochs, so set rounds, "
        "not epochs, to shorten them)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="run only configs whose name matches a glob or that belong to a group "
        "(methods, layers, strategies, noniid, privacy), e.g. --only methods 'ner-*'",
    )
    parser.add_argument(
        "--list", action="store_true", help="print the configs (name, groups, settings) and exit"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing; re-render results from the run directories already in --out",
    )
    parser.add_argument(
        "--publish",
        metavar="DIR",
        help="also copy the records (configs, metrics, summaries; no models) to DIR and render "
        "the results there, e.g. docs/results/paper",
    )
    parser.add_argument(
        "--headline",
        metavar="FILE",
        help="also write a README section (methods table + metric-vs-MB plot + command) to "
        "FILE, links relative to the current directory",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads of in-process training (centralized, local-only); federated "
        "clients use one thread each. On a busy machine 1 avoids thread oversubscription",
    )
    parser.set_defaults(func=run)


def train_and_report(cfg: Config) -> RunSummary:
    """Train one config of a suite (:func:`fedskip.bench.runner.train_one`) and leave its
    report in its run directory, as ``fedskip run`` does."""
    from fedskip.bench.runner import train_one
    from fedskip.commands.common import leave_report

    summary = train_one(cfg)
    leave_report(summary.get("out", cfg.out))
    return summary


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fedskip.bench.report import publish, write_headline, write_results
    from fedskip.bench.runner import (
        check_publishable,
        plan_suite,
        run_suite,
        select,
        settings_line,
    )

    out = Path(args.out or f"bench/{args.suite}")
    pairs = [p for group in args.overrides for p in group]
    if args.list:
        plan = plan_suite(args.suite, pairs)
        for entry in select(plan.configs, args.only):
            print(f"{entry.name:32s} {','.join(entry.groups):28s} {settings_line(entry.settings)}")
        return 0
    failed = 0
    if args.publish:  # refuse before training: a stale run would be published as current
        check_publishable(args.suite, out, pairs)
    if not args.report_only:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        result = run_suite(args.suite, out, pairs, only=args.only, trainer=train_and_report)
        failed = len(result.failed)
    path = write_results(out)
    print(f"results: {path} and {out / 'results.csv'}")
    if args.publish:
        print(f"published: {publish(out, args.publish)}")
    if args.headline:
        source = args.publish or out
        print(f"headline: {write_headline(source, args.headline)}")
    if failed:
        print(f"{failed} config(s) failed; see {out}/runs/<name>/error.txt and {out}/bench.log")
        return 1
    return 0
