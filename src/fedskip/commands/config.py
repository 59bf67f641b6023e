"""``fedskip config [KEY...] [--json]``: every config key with its default, allowed values and
help.

The text output is itself a valid config file (TOML, each key's help and allowed values as
comments above ``key = default``), so ``fedskip config > my.toml`` starts a config to edit and
``--config my.toml`` reads it back unchanged. ``--json`` prints one object per key.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from dataclasses import fields
from typing import Any

from fedskip.config import Config, known_keys, to_key


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config",
        help="list every config key with its default, allowed values and help",
        description=(
            "List the config keys (for --set KEY=VALUE and --config FILE) with their defaults, "
            "allowed values and help. The output is a valid TOML config file: "
            "fedskip config > my.toml, then fedskip run --config my.toml."
        ),
    )
    parser.add_argument("keys", nargs="*", metavar="KEY", help="only these keys (default: all)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead")
    parser.set_defaults(func=run)


def describe_keys(keys: list[str] | None = None) -> list[dict[str, Any]]:
    """One dict per config key (in the order of :class:`~fedskip.config.Config`): ``key``,
    ``default``, ``choices`` (None: any value of the type), ``min`` / ``max`` (None: unbounded),
    ``type`` and ``help``. An unknown key in ``keys`` raises
    :class:`~fedskip.errors.ConfigError` (with the closest known keys)."""
    for key in keys or []:
        if key not in known_keys():
            Config.from_mapping({key: ""})  # raises the one-line "did you mean" message
    defaults = Config()
    rows = []
    for f in fields(Config):
        key = to_key(f.name)
        if keys and key not in keys:
            continue
        value = getattr(defaults, f.name)
        rows.append(
            {
                "key": key,
                "default": value,
                "type": type(value).__name__,
                "choices": list(f.metadata["choices"]) if f.metadata.get("choices") else None,
                "min": f.metadata.get("min"),
                "max": f.metadata.get("max"),
                "help": f.metadata.get("help", ""),
            }
        )
    return rows


def allowed(row: dict[str, Any]) -> str:
    """The allowed values of a key in words: ``one of a, b``, ``>= 1``, ``0.0 to 0.5``, or ``""``."""
    if row["choices"]:
        return "one of " + ", ".join(row["choices"])
    lo, hi = row["min"], row["max"]
    if lo is not None and hi is not None:
        return f"{lo} to {hi}"
    if lo is not None:
        return f">= {lo}"
    if hi is not None:
        return f"<= {hi}"
    return ""


def toml_value(value: Any) -> str:
    """A default as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)  # a basic TOML string


def format_keys(rows: list[dict[str, Any]], width: int = 88) -> str:
    """The keys as a commented TOML file."""
    blocks = []
    for row in rows:
        note = row["help"] + (f" [{allowed(row)}]" if allowed(row) else "")
        comment = textwrap.wrap(note, width - 2) or [""]
        lines = [f"# {line}" for line in comment]
        lines.append(f"{row['key']} = {toml_value(row['default'])}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def run(args: argparse.Namespace) -> int:
    rows = describe_keys(list(args.keys))
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(format_keys(rows))
    return 0
