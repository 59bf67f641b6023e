"""``fedskip evaluate``: score an exported model on any labeled dataset.

NER: strict entity-level precision/recall/F1, overall and per type. Classification: accuracy
and macro F1 (multi-class) or micro/macro F1 and AUROC (multi-label ICD-9 coding).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedskip.commands.common import add_inference_args
from fedskip.config import DATA_FORMATS, LABELS
from fedskip.data.types import ClsDataset, Dataset, NerDataset
from fedskip.errors import DataError, print_warning

if TYPE_CHECKING:
    from fedskip.records.rundir import Exported


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="metrics of an exported model on a labeled dataset",
        description="Evaluate an exported model (OUT/model) on a labeled dataset or site folder.",
    )
    parser.add_argument(
        "--model", required=True, metavar="DIR", help="exported model folder (OUT/model)"
    )
    parser.add_argument(
        "--data", required=True, metavar="PATH", help="dataset file/folder or folder of sites"
    )
    parser.add_argument(
        "--data-format",
        "--format",
        dest="data_format",
        default="auto",
        choices=DATA_FORMATS,
        help="reader (default: auto)",
    )
    parser.add_argument(
        "--label", choices=LABELS, help="MIMIC-III label (default: the model's training setting)"
    )
    parser.add_argument(
        "--icd9-top-k", type=int, metavar="K", help="ICD-9 codes kept (default: training setting)"
    )
    add_inference_args(parser, batch_size=32, per_pass="examples")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    metrics = evaluate_export(
        args.model,
        args.data,
        data_format=args.data_format,
        label=args.label,
        batch_size=args.batch_size,
        device=args.device,
    )
    if metrics["task"] == "ner" and not any(
        row.get("support") for row in metrics.get("per_type", {}).values()
    ):
        print_warning(
            f"{args.data}: no entity to score (every note is empty or unannotated): the F1 of "
            f"{metrics.get('f1', 0.0):.4f} measures nothing"
        )
    if args.json:
        from fedskip.records.rundir import to_jsonable

        print(json.dumps(to_jsonable(metrics), indent=2))
    else:
        print(f"{metrics['task']} model {metrics['model']} on {metrics['data']}")
        print(format_metrics(metrics))
    return 0


def evaluate_export(
    model_dir: str | Path,
    data: str | Path,
    *,
    data_format: str = "auto",
    label: str | None = None,
    batch_size: int = 32,
    device: str = "auto",
) -> dict[str, Any]:
    """Metrics of the exported model on ``data`` (all sites pooled), plus ``task``/``model``/``data``.

    ICD-9 data is scored on the model's codes: other codes are ignored and notes with none of
    the model's codes are left out (counted in ``dropped_documents``)."""
    from fedskip.data.readers import log_warnings, read_sites
    from fedskip.pipeline import ALL_CODES, collator, encode_docs
    from fedskip.records.rundir import load_export
    from fedskip.train.engine import evaluate

    if batch_size < 1:
        raise DataError(f"--batch-size: {batch_size} must be >= 1")
    exported = load_export(model_dir, device=device)
    label = label or exported.setting("label", "category")
    extra: dict[str, Any] = {}
    if label == "icd9" and exported.multi_label:
        # the model's codes are the label space: read every code, keep the model's
        sites = read_sites(data, data_format, label="icd9", icd9_top_k=ALL_CODES)
        extra["dropped_documents"] = _keep_codes(sites, exported.label_list, str(data))
    else:
        sites = read_sites(data, data_format, label=label)
    log_warnings(sites)
    docs = [d for ds in sites.values() for d in ds.documents]
    check_labels(exported, list(sites.values()), str(data))
    encoded = encode_docs(
        docs,
        exported.tokenizer,
        exported.task_info,
        max_length=exported.max_length,
        stride=exported.stride,
        truncation=exported.truncation,
    )
    collate = collator(exported.tokenizer, exported.task_info)
    metrics = evaluate(
        exported.model, encoded, collate, batch_size=batch_size, device=exported.model.device
    )
    return {"task": exported.task, "model": str(model_dir), "data": str(data), **metrics, **extra}


def _keep_codes(sites: dict[str, Dataset], codes: list[str], where: str) -> int:
    """Restrict multi-label documents to ``codes``; drop (and count) those left without one."""
    allowed, dropped = set(codes), 0
    for ds in sites.values():
        if not isinstance(ds, ClsDataset):
            continue
        for doc in ds.documents:
            doc.labels = [c for c in doc.labels if c in allowed]
        kept = [d for d in ds.documents if d.labels]
        dropped += len(ds.documents) - len(kept)
        ds.documents, ds.label_names = kept, sorted(codes)
    if not any(ds.documents for ds in sites.values()):
        raise DataError(f"{where}: no discharge summary carries any of the model's ICD-9 codes")
    return dropped


def check_labels(exported: Exported, datasets: list[Dataset], where: str) -> None:
    """DataError when the data's task or labels do not fit the model's head."""
    tasks = {ds.task for ds in datasets}
    if tasks != {exported.task}:
        raise DataError(
            f"{where}: holds {'/'.join(sorted(tasks))} data but the model is a {exported.task} model"
        )
    if exported.task == "ner":
        known = {lab[2:] for lab in exported.label_list if lab[:2] in ("B-", "I-")}
        found = {t for ds in datasets if isinstance(ds, NerDataset) for t in ds.entity_types}
        what = "entity types"
    else:
        cls_sets = [ds for ds in datasets if isinstance(ds, ClsDataset)]
        if any(ds.multi_label != exported.multi_label for ds in cls_sets):
            kind = "multi-label" if exported.multi_label else "single-label"
            raise DataError(f"{where}: label kind differs from the model's ({kind}); check --label")
        known = set(exported.label_list)
        found = {n for ds in cls_sets for n in ds.label_names}
        what = "labels"
    unknown = sorted(found - known)
    if unknown:
        raise DataError(
            f"{where}: {what} {', '.join(unknown)} are not in the model's {what} "
            f"({', '.join(sorted(known))})"
        )


def format_metrics(metrics: dict[str, Any]) -> str:
    """Text lines: headline scores, then a per-type table for NER."""
    if "f1" in metrics:
        lines = [
            f"strict entity F1 {metrics['f1']:.4f}  precision {metrics['precision']:.4f}  "
            f"recall {metrics['recall']:.4f}"
        ]
        per_type = metrics.get("per_type", {})
        if per_type:
            width = max(8, *(len(t) for t in per_type))
            lines.append(f"  {'type':<{width}}  precision  recall      f1  support")
            for name, row in per_type.items():
                lines.append(
                    f"  {name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
                    f"{row['f1']:6.4f}  {row['support']:7d}"
                )
        return "\n".join(lines)
    headline = ("accuracy", "micro_f1", "macro_f1", "auroc")
    parts = [f"{k} {v:.4f}" for k, v in metrics.items() if k in headline and v is not None]
    return "  ".join(parts) or "no test data"
