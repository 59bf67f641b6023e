"""Arguments shared by the training commands: ``--config F`` and ``--set k=v ...``."""

from __future__ import annotations

import argparse
from typing import Any

from fedskip.config import Config, load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file with config keys (`fedskip config > FILE` writes every default)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        nargs="+",
        action="append",
        default=[],
        help="override config keys (repeatable): --set layers=4 lr=1e-4 --set rounds=3; "
        "`fedskip config` lists every key with its default and allowed values",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace, **command_defaults: Any) -> Config:
    """Resolve defaults < command defaults < --config < --set (< --quiet)."""
    pairs = [p for group in args.overrides for p in group]
    cfg = load_config(args.config, pairs, **command_defaults)
    if getattr(args, "quiet", False):
        cfg = cfg.replace(quiet=True)
    return cfg
