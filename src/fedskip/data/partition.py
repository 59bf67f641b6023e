"""Train/test splits and client partitions for simulated federations.

Schemes (``partition`` config key), all deterministic given ``seed``:

- ``natural``: one partition per hospital (``doc.site``), in sorted site order; the number of
  partitions is the number of sites (``clients`` is ignored).
- ``iid``: a seeded shuffle cut into ``num_partitions`` near-equal parts (sizes differ by ≤ 1),
  via flwr-datasets' ``IidPartitioner``.
- ``dirichlet``: label skew. For each label value ``key(doc)`` its documents are divided among
  partitions in proportions drawn from Dirichlet(α) (small α → each client sees few labels),
  via flwr-datasets' ``DirichletPartitioner`` (self-balancing, resampled until no partition is
  empty). The default key is a classification document's first label and an NER document's most
  frequent entity type (ties: alphabetical; ``O`` without entities).
- ``quantity``: quantity skew with IID labels: partition sizes are
  ``1 + Multinomial(n − k, Dirichlet(α))`` over a seeded shuffle, via ``SizePartitioner``.

Every partition is non-empty; an impossible request is a :class:`~fedskip.errors.DataError`
naming the scheme, α and the number of partitions.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np

from fedskip.config import PARTITIONS
from fedskip.data.types import ClsDocument, NerDocument
from fedskip.errors import ConfigError, DataError

log = logging.getLogger(__name__)

T = TypeVar("T")
Doc = Any  # NerDocument | ClsDocument (or anything a custom ``key`` understands)


def split_train_test(docs: Sequence[T], test_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Seeded split into (train, test), each in the documents' original order, **by patient**.

    All notes of one patient (``patient_id``) land on the same side, so a test note never has a
    sibling from the same stay in training (that would flatter the test score, and a patient
    would be both trained on and tested). Documents without a patient id are their own group.
    The test set holds about ``round(n × test_fraction)`` documents: whole patients are taken in
    a seeded random order until the count is reached, at least one document when the fraction
    is positive and there are two or more groups, and never all groups (train keeps ≥ 1).
    With one document per patient (or no patient ids) this is a plain seeded shuffle-split; when
    every document belongs to one patient it falls back to that (with a warning in the log).
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"config key 'test-fraction': {test_fraction!r} must be >= 0 and < 1")
    n = len(docs)
    if n == 0:
        raise DataError("cannot split an empty set of documents into train and test")
    groups: dict[object, list[int]] = {}
    for i, doc in enumerate(docs):
        patient = getattr(doc, "patient_id", None)
        groups.setdefault(("patient", patient) if patient else ("doc", i), []).append(i)
    members = list(groups.values())
    if len(members) == 1 and n >= 2 and test_fraction > 0:
        # one patient only: no split by patient exists; split the notes (said in the log)
        log.warning("all %d documents belong to one patient: the train/test split is by note", n)
        members = [[i] for i in range(n)]
    n_test = int(n * test_fraction + 0.5)
    if test_fraction > 0 and len(members) >= 2:
        n_test = max(n_test, 1)
    order = np.random.default_rng(seed).permutation(len(members))
    test_idx: set[int] = set()
    for taken, g in enumerate(order.tolist()):
        if len(test_idx) >= n_test or taken >= len(members) - 1:
            break
        test_idx.update(members[g])
    train = [d for i, d in enumerate(docs) if i not in test_idx]
    test = [d for i, d in enumerate(docs) if i in test_idx]
    return train, test


def default_key(doc: Doc) -> str:
    """The label a document is grouped by for ``dirichlet`` partitions (see module docstring)."""
    if isinstance(doc, ClsDocument):
        return doc.labels[0] if doc.labels else "<none>"
    if isinstance(doc, NerDocument):
        counts = Counter(e.type for e in doc.entities)
        if not counts:
            return "O"
        return min(counts, key=lambda t: (-counts[t], t))
    raise TypeError(f"no default partition key for {type(doc).__name__}; pass key=")


def partition_documents(
    docs: Sequence[Doc],
    *,
    scheme: str,
    num_partitions: int,
    alpha: float = 0.5,
    seed: int = 42,
    key: Callable[[Doc], str] | None = None,
) -> list[list[int]]:
    """Document indices (ascending) of each partition; see the module docstring for the schemes.

    ``alpha`` is the Dirichlet concentration of ``dirichlet`` and ``quantity``; ``key`` maps a
    document to its label for ``dirichlet`` (default :func:`default_key`).
    """
    if scheme not in PARTITIONS:
        raise ConfigError(
            f"config key 'partition': {scheme!r} is not one of {', '.join(PARTITIONS)}"
        )
    if not docs:
        raise DataError(f"partition={scheme}: there are no documents to partition")
    if scheme == "natural":
        return _natural(docs)
    if num_partitions < 1:
        raise ConfigError(f"config key 'clients': {num_partitions} must be >= 1")
    if scheme in ("dirichlet", "quantity") and not alpha > 0:
        raise ConfigError(f"config key 'alpha': {alpha!r} must be > 0")
    if num_partitions > len(docs):
        raise DataError(
            f"partition={scheme} (alpha={alpha}): cannot make {num_partitions} non-empty partitions "
            f"from {len(docs)} documents; lower 'clients' or add documents"
        )
    if scheme == "iid":
        parts = _iid(len(docs), num_partitions, seed)
    elif scheme == "quantity":
        parts = _quantity(len(docs), num_partitions, alpha, seed)
    else:
        parts = _dirichlet([(key or default_key)(d) for d in docs], num_partitions, alpha, seed)
    return [sorted(p) for p in parts]


def _natural(docs: Sequence[Doc]) -> list[list[int]]:
    """One partition per site, sites in sorted order (a plain group-by; flwr-datasets'
    ``NaturalIdPartitioner`` would do the same behind a progress bar)."""
    groups: dict[str, list[int]] = {}
    for i, doc in enumerate(docs):
        site = getattr(doc, "site", None)
        if not site:
            raise DataError(
                f"partition=natural: document '{getattr(doc, 'doc_id', i)}' has no site; "
                "use site subfolders or partition=iid/dirichlet/quantity"
            )
        groups.setdefault(site, []).append(i)
    return [groups[s] for s in sorted(groups)]


def _index_dataset(indices: Iterable[int], keys: Sequence[str] | None = None) -> Any:
    """A Hugging Face ``Dataset`` with an ``idx`` column (and ``key``), what partitioners consume."""
    import datasets

    columns: dict[str, list[Any]] = {"idx": [int(i) for i in indices]}
    if keys is not None:
        columns["key"] = list(keys)
    return datasets.Dataset.from_dict(columns)


def _load_all(partitioner: Any, dataset: Any, num_partitions: int) -> list[list[int]]:
    partitioner.dataset = dataset
    return [list(partitioner.load_partition(p)["idx"]) for p in range(num_partitions)]


def _iid(n: int, num_partitions: int, seed: int) -> list[list[int]]:
    from flwr_datasets.partitioner import IidPartitioner

    order = np.random.default_rng(seed).permutation(n)
    return _load_all(IidPartitioner(num_partitions), _index_dataset(order), num_partitions)


def _quantity(n: int, num_partitions: int, alpha: float, seed: int) -> list[list[int]]:
    from flwr_datasets.partitioner import SizePartitioner

    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.full(num_partitions, alpha))
    sizes = [1 + int(s) for s in rng.multinomial(n - num_partitions, shares)]
    order = rng.permutation(n)
    return _load_all(SizePartitioner(sizes), _index_dataset(order), num_partitions)


def _dirichlet(keys: list[str], num_partitions: int, alpha: float, seed: int) -> list[list[int]]:
    from flwr_datasets.partitioner import DirichletPartitioner

    partitioner = DirichletPartitioner(
        num_partitions=num_partitions,
        partition_by="key",
        alpha=alpha,
        min_partition_size=1,
        self_balancing=True,
        shuffle=True,
        seed=seed,
    )
    with warnings.catch_warnings(record=True) as retries:
        warnings.simplefilter("always")
        try:
            parts = _load_all(partitioner, _index_dataset(range(len(keys)), keys), num_partitions)
        except ValueError as exc:
            raise DataError(
                f"partition=dirichlet (alpha={alpha}): could not give each of {num_partitions} partitions "
                f"a document ({len(keys)} documents, {len(set(keys))} labels, seed={seed}); raise 'alpha', "
                f"lower 'clients' or change 'seed'"
            ) from exc
    if retries:
        log.info("partition=dirichlet: resampled %d times to avoid empty partitions", len(retries))
    return parts


def partition_report(
    docs: Sequence[Doc],
    parts: Sequence[Sequence[int]],
    label_fn: Callable[[Doc], Iterable[str]] | None = None,
) -> list[dict[str, Any]]:
    """Per partition: ``partition`` (index), ``documents`` (count), ``sites`` and ``labels`` (sorted
    histograms). Labels default to entity types (one count per entity) for NER documents and
    note labels for classification documents; JSON-serialisable."""
    fn = label_fn or _report_labels
    report = []
    for p, indices in enumerate(parts):
        labels = Counter(lab for i in indices for lab in fn(docs[i]))
        sites = Counter(str(getattr(docs[i], "site", None)) for i in indices)
        report.append(
            {
                "partition": p,
                "documents": len(indices),
                "sites": dict(sorted(sites.items())),
                "labels": dict(sorted(labels.items())),
            }
        )
    return report


def _report_labels(doc: Doc) -> list[str]:
    if isinstance(doc, NerDocument):
        return [e.type for e in doc.entities]
    if isinstance(doc, ClsDocument):
        return list(doc.labels)
    raise TypeError(f"no default report labels for {type(doc).__name__}; pass label_fn=")


def format_partition_report(report: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of :func:`partition_report` rows, one line per partition."""
    lines = []
    for row in report:
        labels = ", ".join(f"{k}={v}" for k, v in row["labels"].items()) or "-"
        sites = ", ".join(row["sites"])
        lines.append(f"client {row['partition']}: {row['documents']} docs [{sites}] {labels}")
    return "\n".join(lines)
