"""``fedskip data synth`` (write the synthetic multi-hospital corpus) and
``fedskip data inspect PATH`` (corpus statistics as a table, or one JSON object with --json)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fedskip.config import DATA_FORMATS, LABELS, Config

_DEFAULTS = Config()


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "data",
        help="write the synthetic corpus or inspect a dataset",
        description="Write the synthetic multi-hospital corpus, or print statistics of a dataset.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    actions.required = True

    synth = actions.add_parser("synth", help="write the synthetic multi-hospital corpus")
    synth.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (one subfolder per site)"
    )
    for flag, key, what in (
        ("--sites", "synth_sites", "hospital sites"),
        ("--docs", "synth_docs", "documents per site"),
        (
            "--notes-per-patient",
            "synth_notes_per_patient",
            "notes of every patient; 0 = a stay's natural one to four",
        ),
        ("--note-lines", "synth_note_lines", "lines kept of each note; 0 = whole notes"),
        ("--seed", "seed", "random seed"),
    ):  # the config key's default
        default = getattr(_DEFAULTS, key)
        synth.add_argument(flag, type=int, default=default, help=f"{what} (default %(default)s)")
    synth.add_argument(
        "--label-noise",
        type=float,
        default=_DEFAULTS.label_noise,
        help="fraction of labels flipped at random, 0 to 0.5 (default %(default)s)",
    )
    synth.set_defaults(func=run_synth)

    inspect = actions.add_parser(
        "inspect", help="print notes, patients, sentences, tokens, entities or labels"
    )
    inspect.add_argument(
        "path", metavar="PATH", help="a dataset file or folder, or a folder of site subfolders"
    )
    inspect.add_argument(
        "--data-format",
        "--format",
        dest="fmt",
        default="auto",
        metavar="FORMAT",
        help=f"one of {', '.join(DATA_FORMATS)} (default %(default)s)",
    )
    inspect.add_argument(
        "--label",
        default=_DEFAULTS.label,
        metavar="LABEL",
        help=f"MIMIC-III label: {', '.join(LABELS)} (default %(default)s)",
    )
    inspect.add_argument(
        "--top-k",
        type=int,
        default=_DEFAULTS.icd9_top_k,
        metavar="K",
        help="ICD-9 codes kept for --label icd9 (default %(default)s)",
    )
    inspect.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    inspect.set_defaults(func=run_inspect)


def run_synth(args: argparse.Namespace) -> int:
    # Reuse the config's validation so the bounds live in one place (config.py).
    cfg = Config(
        synth_sites=args.sites,
        synth_docs=args.docs,
        seed=args.seed,
        label_noise=args.label_noise,
        synth_notes_per_patient=args.notes_per_patient,
        synth_note_lines=args.note_lines,
    )
    from fedskip.data.readers import is_sites_folder
    from fedskip.data.synth import write_corpus
    from fedskip.data.synth.cache import note_shape
    from fedskip.data.synth.sites import site_size

    out = Path(
        write_corpus(
            args.out,
            sites=args.sites,
            docs=args.docs,
            seed=args.seed,
            label_noise=args.label_noise,
            shape=note_shape(cfg),
        )
    )
    sizes = ", ".join(str(site_size(k, args.docs)) for k in range(1, args.sites + 1))
    print(
        f"wrote the synthetic corpus to {out} ({args.sites} sites: {sizes} documents per task; "
        f"seed {args.seed})"
    )
    for folder in [out, *sorted(p for p in out.rglob("*") if p.is_dir())]:
        files = [p for p in folder.iterdir() if p.is_file()]
        if files:
            size = sum(p.stat().st_size for p in files)
            print(f"  {folder}/: {len(files)} files, {size:,} bytes")
    for root in [p for p in sorted(out.iterdir()) if is_sites_folder(p)] or [out]:
        print(f"inspect with: fedskip data inspect {root}")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from fedskip.data.inspect import sites_stats
    from fedskip.data.readers import is_sites_folder, read_sites

    path = Path(args.path)
    sites = read_sites(path, args.fmt, label=args.label, icd9_top_k=args.top_k)
    stats = sites_stats(sites, breakdown=is_sites_folder(path))
    if args.json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
    else:
        print_stats(stats, str(path))
    return 0


def print_stats(stats: dict[str, Any], title: str) -> None:
    """A rich table: one column per site (when there are sites) and a total column."""
    from rich.console import Console
    from rich.table import Table

    columns: dict[str, dict[str, Any]] = dict(stats.get("sites", {}))
    columns["total" if columns else "value"] = stats
    key = "entities" if stats["task"] == "ner" else "labels"
    table = Table(title=f"{title} ({stats['task']})", title_justify="left")
    table.add_column("")
    for name in columns:
        table.add_column(name, justify="right")
    rows = [
        ("documents (notes)", "documents"),
        ("patients", "patients"),
        ("notes without patient id", "without_patient"),
        ("sentences", "sentences"),
        ("tokens (words)", "tokens"),
        ("max tokens / document", "max_tokens"),
    ]
    if key == "entities":
        rows.append(("dropped overlaps", "dropped_overlaps"))
    for label, field in rows:
        table.add_row(label, *(f"{c[field]:,}" for c in columns.values()))
    table.add_section()
    for name in stats[key]:
        prefix = "entity " if key == "entities" else "label "
        table.add_row(prefix + name, *(f"{c[key].get(name, 0):,}" for c in columns.values()))
    console = Console(file=sys.stdout, soft_wrap=True)
    console.print(table)
    for warning in stats["warnings"]:
        console.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)
