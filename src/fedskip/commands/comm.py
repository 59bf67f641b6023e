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
from fedskip.models.comm import TABLE_RANKS, WIRE_SCHEMES

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
        "--table",
        action="store_true",
        help="the paper's arithmetic for k = 1..all blocks: reduction against full fp32 FedAvg "
        "with and without the embeddings counted, in fp32 / bf16 / int8, and LoRA ranks "
        f"{' and '.join(str(r) for r in TABLE_RANKS)} in the selected blocks (Markdown; "
        "with --json one row object per k)",
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
    if args.table:
        return _table(args, model)
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


def _table(args: argparse.Namespace, model: Any) -> int:
    from fedskip.models.comm import reduction_table

    rows = reduction_table(model)
    if args.json:
        json.dump({"model": args.model, "task": args.task, "rows": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(markdown_table(rows))
    return 0


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """``fedskip comm --table``'s Markdown: layer skipping, then LoRA, then the k closest to the
    paper's "≈ 70 % less" under each counting (MB = 10^6 bytes)."""
    schemes = " / ".join(WIRE_SCHEMES)
    out = [
        f"| k | exchanged parameters | MB per client and direction, {schemes} "
        f"| % less, embeddings counted, {schemes} | % less, embeddings not counted, {schemes} |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        mb = " / ".join(f"{r[f'bytes_{s}'] / 10**6:,.1f}" for s in WIRE_SCHEMES)
        counted = " / ".join(_pct(r[f"reduction_{s}"]) for s in WIRE_SCHEMES)
        uncounted = " / ".join(_pct(r[f"reduction_no_embeddings_{s}"]) for s in WIRE_SCHEMES)
        out.append(f"| {r['k']} | {r['params']:,} | {mb} | {counted} | {uncounted} |")
    lora = " | ".join(
        f"LoRA r={q} parameters | r={q} % less, embeddings counted / not" for q in TABLE_RANKS
    )
    out += ["", f"| k | {lora} |", "|---|" + "---|" * (2 * len(TABLE_RANKS))]
    for r in rows:
        cells = " | ".join(
            f"{r[f'lora{q}_params']:,} | {_pct(r[f'lora{q}_reduction'])} / "
            f"{_pct(r[f'lora{q}_reduction_no_embeddings'])}"
            for q in TABLE_RANKS
        )
        out.append(f"| {r['k']} | {cells} |")
    out += ["", "The k closest to the paper's 70 % less than full fp32 FedAvg:", ""]
    for scheme in WIRE_SCHEMES:
        counted = _closest(rows, f"reduction_{scheme}")
        uncounted = _closest(rows, f"reduction_no_embeddings_{scheme}")
        out.append(f"- {scheme}: {counted} with the embeddings counted, {uncounted} without")
    return "\n".join(out) + "\n"


def _closest(rows: list[dict[str, Any]], column: str) -> str:
    """ "k = 6 (70.5 %)", or what the last k saves when no k comes within 2.5 points of 70 %."""
    from fedskip.models.comm import closest_k

    k = closest_k(rows, column)
    value = rows[k - 1][column]
    if abs(value - 0.70) > 0.025:
        return f"no k (every k saves more; k = {rows[-1]['k']}: {_pct(rows[-1][column])} %)"
    return f"k = {k} ({_pct(value)} %)"
