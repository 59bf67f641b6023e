"""``fedskip comm``: parameters and bytes exchanged per round, layer skipping vs full fine-tuning.

Builds the model on the meta device (no weights; no download for presets), so it runs in a
second even for Llama-3.2-1B. Human output is a table (bytes in MB / GB = 10^6 / 10^9 bytes,
as everywhere in fedskip); ``--json`` prints one JSON object (bytes as integers).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fedskip.config import DTYPES, LAYER_STRATEGIES, TASKS, Config
from fedskip.errors import ConfigError

_DEFAULTS = Config()


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "comm",
        help="communication cost per round: layer skipping vs full fine-tuning",
        description="Count trainable parameters and bytes per client per round (each way) for "
        "layer skipping, against exchanging every parameter (full fine-tuning / FedAvg). "
        "The model is built without weights; presets need no download.",
    )
    parser.add_argument(
        "--model",
        default=_DEFAULTS.model,
        metavar="NAME",
        help="preset (minilm, llama-tiny, llama-3.2-1b), hub id or local folder (default %(default)s)",
    )
    parser.add_argument(
        "--layers",
        type=int,
        default=_DEFAULTS.layers,
        metavar="K",
        help="blocks trained and exchanged (default %(default)s)",
    )
    parser.add_argument(
        "--layer-strategy",
        default="top",
        choices=LAYER_STRATEGIES,
        help="which blocks (default %(default)s)",
    )
    parser.add_argument(
        "--layer-ids",
        default="",
        metavar="IDS",
        help="comma-separated block indices for --layer-strategy explicit",
    )
    parser.add_argument(
        "--layer-every",
        type=int,
        default=0,
        metavar="N",
        help="interleaved: every N-th block from the top (0 = spread evenly)",
    )
    parser.add_argument(
        "--dtype",
        default="fp32",
        choices=DTYPES,
        help="bytes per value on the wire: fp32=4, bf16=2 (default %(default)s)",
    )
    parser.add_argument(
        "--lora-rank",
        type=int,
        default=0,
        metavar="R",
        help="count LoRA adapters of rank R in the selected blocks instead (0 = off)",
    )
    parser.add_argument(
        "--lora-freeze-a",
        action="store_true",
        help="with --lora-rank: A matrices frozen, only B (out x R per layer) travels",
    )
    parser.add_argument(
        "--task", default="ner", choices=TASKS, help="task head (default %(default)s)"
    )
    parser.add_argument(
        "--num-labels",
        type=int,
        default=3,
        metavar="N",
        help="labels of the task head (default %(default)s)",
    )
    parser.add_argument(
        "--no-final-norm",
        action="store_true",
        help="do not train the final norm of decoders with the top block",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedskip.models.comm import communication_report
    from fedskip.models.loading import build_meta_model

    if args.num_labels < 1:
        raise ConfigError(f"--num-labels: {args.num_labels} must be >= 1")
    ids = Config(layer_ids=args.layer_ids).layer_id_list()  # same syntax as config key layer-ids
    model = build_meta_model(args.model, task=args.task, num_labels=args.num_labels)
    report = communication_report(
        model,
        layers=args.layers,
        strategy=args.layer_strategy,
        dtype=args.dtype,
        lora_rank=args.lora_rank,
        lora_freeze_a=args.lora_freeze_a,
        layer_ids=ids,
        every=args.layer_every,
        train_final_norm=not args.no_final_norm,
    )
    report = {"model": args.model, "task": args.task, **report}
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(report)
    return 0


def _print_table(r: dict[str, Any]) -> None:
    """The report as a table; bytes in decimal units (kB, MB, GB = 10^3, 10^6, 10^9 bytes), as
    every other fedskip command prints them."""
    from rich.console import Console
    from rich.table import Table

    from fedskip.fl.progress import human_bytes

    method = f"LoRA r={r['lora_rank']} in selected blocks" if r["lora_rank"] else "layer skipping"
    table = Table(title=f"{r['model']} ({r['model_class']}): {method}, {r['dtype']}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("blocks", f"{r['num_blocks']} x {r['block_params']:,} parameters"),
        ("selected blocks", f"{r['selected_layers']} ({r['strategy']})"),
        ("embedding parameters", f"{r['embedding_params']:,}"),
        ("task head parameters", f"{r['head_params']:,}"),
        ("total parameters", f"{r['total_params']:,}"),
        ("trainable / exchanged parameters", f"{r['trainable_params']:,}"),
        ("full fine-tuning parameters", f"{r['full_params']:,}"),
        ("bytes per client per round, up", human_bytes(r["bytes_per_round_up"])),
        ("bytes per client per round, down", human_bytes(r["bytes_per_round_down"])),
        ("full fine-tuning bytes, each way", human_bytes(r["full_bytes_per_round_up"])),
        ("reduction vs full fine-tuning", f"{100 * r['reduction']:.2f} %"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console = Console()
    console.print(table)
    console.print("MB = 10^6 bytes, GB = 10^9 bytes")
    if r.get("note"):
        console.print(f"note: {r['note']}")
