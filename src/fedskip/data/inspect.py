"""Corpus statistics for ``fedskip data inspect``: counts of documents (notes), patients,
sentences, tokens and entities per type (NER) or documents per label (classification), per site
and in total. Patients are what DP-SGD protects with ``dp-unit=patient`` (see
:mod:`fedskip.privacy.units`); the total adds the sites' counts (the same id at two sites counts
twice: sites do not share patient ids).

Token and sentence counts are word-level: NER counts the reader's tokens and sentences;
classification notes are split with the brat reader's word tokenizer and sentence splitter.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fedskip.data.brat import sentence_starts, tokenize_words
from fedskip.data.types import Dataset, NerDataset

ADDITIVE = ("documents", "patients", "without_patient", "sentences", "tokens", "dropped_overlaps")


def dataset_stats(dataset: Dataset) -> dict[str, Any]:
    """Counts for one dataset: ``documents``, ``patients`` (distinct patient ids),
    ``without_patient`` (documents without a patient id), ``sentences``, ``tokens`` (words),
    ``max_tokens`` (longest document, words), ``entities`` (type → count) or ``labels``
    (label → documents), ``dropped_overlaps`` and ``warnings``."""
    stats: dict[str, Any] = {
        "task": dataset.task,
        "source": dataset.source,
        "documents": len(dataset.documents),
        "patients": len({d.patient_id for d in dataset.documents if d.patient_id is not None}),
        "without_patient": sum(1 for d in dataset.documents if d.patient_id is None),
    }
    if isinstance(dataset, NerDataset):
        sentences = sum(len(d.sentences) for d in dataset.documents)
        per_doc = [sum(len(s) for s in d.sentences) for d in dataset.documents]
    else:
        sentences, per_doc = 0, []
        for doc in dataset.documents:
            tokens = tokenize_words(doc.text)
            per_doc.append(len(tokens))
            sentences += len(sentence_starts(doc.text, tokens)) + 1 if tokens else 0
    stats["sentences"] = sentences
    stats["tokens"] = sum(per_doc)
    stats["max_tokens"] = max(per_doc, default=0)
    if isinstance(dataset, NerDataset):
        counts = dataset.entity_counts()
        stats["entities"] = {
            t: counts.get(t, 0) for t in sorted(set(dataset.entity_types) | set(counts))
        }
        stats["dropped_overlaps"] = dataset.dropped_overlaps
    else:
        counts = dataset.label_counts()
        stats["labels"] = {
            lab: counts.get(lab, 0) for lab in sorted(set(dataset.label_names) | set(counts))
        }
        stats["multi_label"] = dataset.multi_label
        stats["dropped_overlaps"] = 0
    stats["warnings"] = list(dataset.warnings)
    return stats


def sites_stats(sites: dict[str, Dataset], *, breakdown: bool = True) -> dict[str, Any]:
    """Totals over ``sites``, plus (``breakdown``) a ``sites`` map name → :func:`dataset_stats`."""
    per_site = {name: dataset_stats(ds) for name, ds in sites.items()}
    first = next(iter(per_site.values()))
    total: dict[str, Any] = {"task": first["task"]}
    for key in ADDITIVE:
        total[key] = sum(s[key] for s in per_site.values())
    total["max_tokens"] = max(s["max_tokens"] for s in per_site.values())
    key = "entities" if first["task"] == "ner" else "labels"
    merged: Counter[str] = Counter()
    for s in per_site.values():
        merged.update(s[key])
    total[key] = {k: merged[k] for k in sorted(merged)}
    if key == "labels":
        total["multi_label"] = any(s["multi_label"] for s in per_site.values())
    total["warnings"] = [w for s in per_site.values() for w in s["warnings"]]
    if breakdown:
        total["sites"] = per_site
    else:
        total["source"] = first["source"]
    return total
