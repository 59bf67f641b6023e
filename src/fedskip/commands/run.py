"""``fedskip run``: one command for every training method.

Parses the arguments and calls the run layer (:func:`fedskip.runs.run`): federated methods
(``layerskip``, ``fedavg``, ``fedprox``, ``lora``) run the fedskip Flower app on Flower's
Simulation Engine (one SuperNode per client); ``centralized`` (all sites' data pooled) and
``local`` (each site alone) train in this process. Every method reads the same data split and
reports on the same global test set. ``--resume RUN_DIR`` continues an interrupted federated
run from its last checkpoint.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedskip.commands.common import (
    add_config_args,
    config_from_args,
    leave_report,
    next_commands,
)
from fedskip.config import Config, read_run_config
from fedskip.errors import ConfigError
from fedskip.finish import SITES


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="federated training on Flower's Simulation Engine (default: layer skipping)",
        description=(
            "Train with the configured method. With no arguments: all-MiniLM-L6-v2 on the "
            "synthetic 4-hospital NER corpus, layer-skipping FedAvg on Flower's Simulation "
            "Engine. Writes OUT/config.json, metrics.jsonl (one row per round), summary.json, "
            "checkpoint/, model/ (loadable with plain transformers) and report.md with plots/ "
            "(what fedskip report OUT renders)."
        ),
    )
    add_config_args(parser)
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the federated run in RUN_DIR from its last checkpoint (its config.json; "
        "--set may change rounds, the plateau keys, device, activation-cache and logging only)",
    )
    parser.set_defaults(func=run)


def resume_config(args: argparse.Namespace) -> Config:
    """The config of the run in ``--resume RUN_DIR`` (+ ``--set`` overrides), resuming."""
    folder = Path(args.resume)
    path = folder / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path}: not a run directory (no config.json) for --resume")
    if args.config:
        raise ConfigError("--resume uses the run's own config.json; drop --config")
    cfg = read_run_config(path)
    if not cfg.method_kind.federated:
        raise ConfigError(f"--resume: method={cfg.method} runs are not resumable; run it again")
    from fedskip.records.checkpoint import DIR, check_checkpoint, find_checkpoint, with_run_wire

    if find_checkpoint(folder) is None:
        raise ConfigError(f"{folder / DIR}: no checkpoint to resume from (no round completed)")
    check_checkpoint(folder)  # a damaged one fails here, before Ray starts
    pairs = [p for group in args.overrides for p in group]
    from fedskip.config import parse_overrides, resume_conflict

    # the wire it sent, even where compression=auto has since come to mean another scheme
    cfg = with_run_wire(cfg, folder)
    resumed = Config.from_mapping(parse_overrides(pairs), base=cfg)
    if problem := resume_conflict(cfg, resumed):  # e.g. other data or seed: another run
        raise ConfigError(problem)
    return resumed.replace(out=str(folder), resume=True, quiet=bool(args.quiet) or resumed.quiet)


def run(args: argparse.Namespace) -> int:
    from fedskip.runs import run as run_method
    from fedskip.tracking import require_backends

    cfg = resume_config(args) if args.resume else config_from_args(args)
    require_backends(cfg)  # a one-line error before any data is read
    summary = run_method(cfg)
    out = summary.get("out", cfg.out)
    leave_report(out)
    if cfg.method_kind.federated:
        print(format_federated(summary))
    elif cfg.method == "centralized":
        from fedskip.commands.centralized import format_summary

        print(format_summary(summary))
    else:
        print(format_local(summary))
    print(next_commands(cfg, out))
    return 0 if summary.finished else 1


def format_federated(summary: Mapping[str, Any]) -> str:
    """The closing lines of a federated run: final metric, bytes, reduction vs FedAvg."""
    from fedskip.fl.progress import human_bytes

    name = summary["primary_metric"]
    label = "F1" if name == "f1" else name
    final, best = summary.get("final_metric"), summary.get("best_metric")
    where = (
        " (the sites' federated evaluation)" if summary.get("final_metric_source") == SITES else ""
    )
    lines = [
        f"final {label} {final:.4f}{where} (best {best:.4f} in round {summary['best_round']})"
        if isinstance(final, float) and isinstance(best, float)
        else f"final {label}: no evaluation (empty global test set, no federated evaluation)"
    ]
    sites = summary.get("site_metrics") or {}
    scored = [f"{s} {v[name]:.4f}" for s, v in sites.items() if isinstance(v.get(name), float)]
    if scored:
        lines.append(f"per site {label}: " + ", ".join(scored))
    moved = summary["bytes"]
    reduction = summary.get("reduction")
    lines.append(
        f"bytes exchanged: {human_bytes(moved['total'])} (down {human_bytes(moved['down'])}, "
        f"up {human_bytes(moved['up'])}) in {summary['rounds_completed']} rounds"
    )
    if reduction is not None:
        lines.append(
            f"reduction vs full-model FedAvg: {100 * reduction:.1f}% "
            f"(FedAvg would move {human_bytes(summary['fedavg_bytes'])})"
        )
    lines += _personalization_lines(summary, name, label)
    if summary.get("failed_rounds"):
        lines.append(f"FAILED rounds (too few valid replies): {summary['failed_rounds']}")
    lines.append(f"wall time {summary['seconds']:.1f} s; run directory: {summary['out']}")
    return "\n".join(lines)


def _personalization_lines(summary: Mapping[str, Any], name: str, label: str) -> list[str]:
    """``personalize``: the sites' own models beside the global one, on the sites' splits."""
    report = summary.get("personalization")
    if not isinstance(report, Mapping) or not report.get("sites"):
        return []
    mean = report.get("mean") or {}
    own = (mean.get("personal") or {}).get(name)
    shared = (mean.get("global") or {}).get(name)
    if not isinstance(own, (int, float)) or not isinstance(shared, (int, float)):
        return []
    return [
        f"personalized ({report['mode']}): mean {label} {own:.4f} of the sites' own models on "
        f"their test splits (global model: {shared:.4f}); site exports in "
        f"{summary['out']}/sites/<site>/model (or each node's state-dir)"
    ]


def format_local(summary: Mapping[str, Any]) -> str:
    name = summary["primary_metric"]
    lines = [f"{s['site']}: {name} {s.get(name, float('nan')):.4f}" for s in summary["sites"]]
    mean = summary.get("final_metric")
    values = [s[name] for s in summary["sites"] if isinstance(s.get(name), float)]
    if isinstance(mean, float) and values:
        lines.append(f"mean over sites {name} {mean:.4f}; best site {max(values):.4f}")
    lines.append(f"wall time {summary['seconds']:.1f} s; run directory: {summary['out']}")
    return "\n".join(lines)
