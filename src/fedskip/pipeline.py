"""Config → data + model, shared by every method (centralized, local-only, federated).

:func:`prepare` reads the data as hospital sites, fixes the label list, splits each site into
train/test and cuts the training data into client partitions. Every method trains on exactly
the same documents (the union of the clients' training parts) and is scored on the same global
test set (the union of the sites' test parts):

* ``partition=natural``: one client per site; its test split is its site's test part.
* other schemes: the sites' training parts are pooled and partitioned into ``clients``
  parts; each part is split again into the client's train and test documents (the client test
  documents are then used by no one for training, centralized included).

:func:`encode` tokenizes documents (cached per tokenizer in-process) and :func:`collator` batches
them; what a method trains is :mod:`fedskip.trainability`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedskip.config import Config
from fedskip.data.canaries import Canary, insert_canaries, make_canaries
from fedskip.data.encode import (
    EncodedCls,
    EncodedNer,
    cls_collator,
    encode_cls,
    encode_ner,
    ner_collator,
)
from fedskip.data.partition import partition_documents, partition_report, split_train_test
from fedskip.data.types import ClsDataset, ClsDocument, Dataset, NerDataset, NerDocument
from fedskip.errors import ConfigError
from fedskip.train.activation_dir import activation_dir
from fedskip.train.metrics import TaskInfo
from fedskip.train.prefix_cache import ActivationCache, Collate

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from fedskip.models.layers import LayerStack

Doc = NerDocument | ClsDocument
Encoded = EncodedNer | EncodedCls

ALL_CODES = 10**9
"""``icd9-top-k`` that keeps every ICD-9 code (read a site's codes, restrict them later)."""


@dataclass
class Prepared:
    """The data side of a run: sites, labels, client partitions and test sets."""

    task: str
    label_list: list[str]
    multi_label: bool
    sites: dict[str, Dataset]
    client_names: list[str]
    client_train: list[list[Doc]]
    client_test: list[list[Doc]]
    global_test: list[Doc]
    report: list[dict[str, Any]] = field(default_factory=list)
    client_val: list[list[Doc]] = field(default_factory=list)
    """``val-fraction``: each client's validation documents, held out of its training part
    (never trained on by any method, never in a test set); empty lists when off."""
    data_path: Path | None = None
    canaries: list[Canary] = field(default_factory=list)
    """``audit-canaries``: every canary with its coin flip (the included ones are already in
    ``client_train``); the auditor's knowledge, never sent to anyone."""

    @property
    def num_clients(self) -> int:
        return len(self.client_names)

    @property
    def train_docs(self) -> list[Doc]:
        """Every client's training documents, in client order (what centralized trains on)."""
        return [d for part in self.client_train for d in part]

    @property
    def val_docs(self) -> list[Doc]:
        """Every client's validation documents, in client order (the global validation set the
        server, the centralized trainer and each local model are stopped and chosen on)."""
        return [d for part in self.client_val for d in part]

    @property
    def task_info(self) -> TaskInfo:
        return TaskInfo(self.task, list(self.label_list), self.multi_label)


# --------------------------------------------------------------------------- data
def data_location(cfg: Config) -> tuple[Path, str]:
    """(path, format) of the configured data; ``data=synth`` generates the corpus if needed."""
    if cfg.data == "synth":
        from fedskip.data.synth import ensure_synth

        sub = "ner" if cfg.task == "ner" else "classification"
        return Path(ensure_synth(cfg)) / sub, "auto"
    return Path(cfg.data).expanduser(), cfg.data_format


def prepare(cfg: Config) -> Prepared:
    """Read, label, split and partition the data of ``cfg`` (deterministic given ``seed``)."""
    from fedskip.data.readers import log_warnings, read_sites

    if cfg.data == SITES_DATA:
        return prepare_without_data(cfg)
    path, fmt = data_location(cfg)
    # ICD-9: read_sites ranks the top-k codes over all sites (one label space for the federation)
    sites = read_sites(path, fmt, label=cfg.label, icd9_top_k=cfg.icd9_top_k)
    log_warnings(sites)
    task = next(iter(sites.values())).task
    if task != cfg.task:
        raise ConfigError(
            f"config key 'task': {cfg.task!r}, but {path} holds {task} data; set task={task}"
        )
    labels, multi_label = label_space(sites)
    splits: dict[str, tuple[list[Doc], list[Doc]]] = {
        name: split_train_test(list(ds.documents), cfg.test_fraction, cfg.seed + i)
        for i, (name, ds) in enumerate(sites.items())
    }
    global_test = [d for _, test in splits.values() for d in test]
    if cfg.partition == "natural":
        names = list(splits)
        train = [list(splits[n][0]) for n in names]
        test = [list(splits[n][1]) for n in names]
    else:
        names, train, test = _pooled_clients(cfg, [d for tr, _ in splits.values() for d in tr])
    train, val = hold_out_validation(train, cfg.val_fraction, cfg.seed)
    canaries = make_canaries(
        cfg.audit_canaries, task=task, label_list=labels, client_names=names, seed=cfg.seed
    )
    insert_canaries(train, canaries)  # [audit] after the splits: never in a test set
    return Prepared(
        task=task,
        label_list=labels,
        multi_label=multi_label,
        sites=sites,
        client_names=names,
        client_train=train,
        client_test=test,
        global_test=global_test,
        report=_report(names, train, test),
        client_val=val,
        data_path=path,
        canaries=canaries,
    )


SITES_DATA = "sites"
"""``data=sites``: the data stays at the sites (Flower Deployment Engine); each SuperNode reads its
own ``data-path`` (node config) and the coordinator reads none."""


def schema_labels(cfg: Config) -> tuple[list[str], bool]:
    """The model's labels from the ``labels`` key (NER entity types or class names) and whether
    the task is multi-label (ICD-9 coding)."""
    names = [name.strip() for name in cfg.labels.split(",") if name.strip()]
    if not names:
        raise ConfigError(
            "config key 'labels' is required with data=sites: the federation's NER entity types "
            "or class names, comma-separated, e.g. 'problem,test,treatment'"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"config key 'labels': {cfg.labels!r} names a label twice")
    if cfg.task == "ner":
        return NerDataset([], sorted(names)).bio_labels(), False
    return sorted(names), cfg.label == "icd9"


def prepare_without_data(cfg: Config) -> Prepared:
    """The coordinator's side of ``data=sites``: labels from the schema, ``clients`` empty client
    slots, no documents and so no global test set (evaluation is federated only)."""
    labels, multi_label = schema_labels(cfg)
    count = cfg.clients
    return Prepared(
        task=cfg.task,
        label_list=labels,
        multi_label=multi_label,
        sites={},
        client_names=[f"client-{i}" for i in range(count)],
        client_train=[[] for _ in range(count)],
        client_test=[[] for _ in range(count)],
        global_test=[],
    )


def label_space(sites: dict[str, Dataset]) -> tuple[list[str], bool]:
    """The model's labels over all sites and whether the task is multi-label.

    NER: ``O`` then ``B-``/``I-`` per entity type (sorted); classification: sorted label names.
    A site with fewer types than another still shares the one label list.
    """
    datasets = list(sites.values())
    ner_sets = [ds for ds in datasets if isinstance(ds, NerDataset)]
    if len(ner_sets) == len(datasets):
        types = sorted({t for ds in ner_sets for t in ds.entity_types})
        return NerDataset([], types).bio_labels(), False
    cls_sets = [ds for ds in datasets if isinstance(ds, ClsDataset)]
    names = sorted({name for ds in cls_sets for name in ds.label_names})
    return names, any(ds.multi_label for ds in cls_sets)


VAL_SEED_OFFSET = 7919
"""Added to ``seed + client`` for the validation draw, so it differs from the test split's."""


def hold_out_validation(
    train: list[list[Doc]], fraction: float, seed: int
) -> tuple[list[list[Doc]], list[list[Doc]]]:
    """(train, validation) per client: ``fraction`` of each client's training documents (at
    least one when positive, never all) drawn with ``seed + VAL_SEED_OFFSET + client``.
    ``fraction`` 0 returns the training parts unchanged and empty validation parts."""
    if fraction <= 0:
        return train, [[] for _ in train]
    kept, val = [], []
    for i, part in enumerate(train):
        if len(part) < 2:
            raise ConfigError(
                f"config key 'val-fraction': client {i} has {len(part)} training document(s), "
                "too few to hold out a validation split"
            )
        tr, va = split_train_test(part, fraction, seed + VAL_SEED_OFFSET + i)
        kept.append(tr)
        val.append(va)
    return kept, val


def _pooled_clients(
    cfg: Config, pooled: list[Doc]
) -> tuple[list[str], list[list[Doc]], list[list[Doc]]]:
    parts = partition_documents(
        pooled, scheme=cfg.partition, num_partitions=cfg.clients, alpha=cfg.alpha, seed=cfg.seed
    )
    names, train, test = [], [], []
    for i, indices in enumerate(parts):
        tr, te = split_train_test([pooled[j] for j in indices], cfg.test_fraction, cfg.seed + i)
        names.append(f"client-{i}")
        train.append(tr)
        test.append(te)
    return names, train, test


def _report(
    names: list[str], train: list[list[Doc]], test: list[list[Doc]]
) -> list[dict[str, Any]]:
    """:func:`partition_report` rows over the clients' training documents, plus name and test size."""
    docs = [d for part in train for d in part]
    bounds, start = [], 0
    for part in train:
        bounds.append(list(range(start, start + len(part))))
        start += len(part)
    rows = partition_report(docs, bounds)
    for row, name, tst in zip(rows, names, test):
        row["client"] = name
        row["test_documents"] = len(tst)
    return rows


# --------------------------------------------------------------------------- model
def importance_scores(
    cfg: Config,
    model: nn.Module,
    stack: LayerStack,
    tokenizer: PreTrainedTokenizerBase,
    prepared: Prepared,
    docs: Sequence[Doc],
) -> list[float]:
    """Per-block gradient norms over the first ``importance-batches`` shuffled batches of ``docs``."""
    import torch

    from fedskip.selection.importance import score_layers

    encoded = encode(docs, tokenizer, prepared, cfg)
    if not encoded.features:
        raise ConfigError("layer-strategy=importance: no training examples to score layers on")
    order = torch.randperm(len(encoded.features), generator=torch.Generator().manual_seed(cfg.seed))
    collate = collator(tokenizer, prepared)
    size = cfg.batch_size
    batches = [
        collate([encoded.features[int(i)] for i in order[s : s + size]])
        for s in range(0, min(len(order), size * cfg.importance_batches), size)
    ]
    return score_layers(model, stack, batches)


def activation_cache(
    cfg: Config, stack: LayerStack, tokenizer: PreTrainedTokenizerBase
) -> ActivationCache | None:
    """The frozen-prefix activation cache of ``cfg`` (None with ``activation-cache=off``); its key
    covers the tokenization settings of :func:`encode`."""
    if cfg.activation_cache == "off":
        return None
    return ActivationCache(
        stack,
        mode=cfg.activation_cache,
        budget_mb=cfg.activation_cache_mb,
        tokenization=tokenization_key(tokenizer, cfg),
        batch_size=max(cfg.batch_size, 64),
        folder=activation_dir(cfg.out),
    )


# --------------------------------------------------------------------------- encoding
def tokenization_key(tokenizer: PreTrainedTokenizerBase, cfg: Config) -> tuple[Hashable, ...]:
    """What shapes the encoded examples besides the documents: the tokenizer and the window
    settings (part of the encoding cache's and the activation cache's keys)."""
    return (
        getattr(tokenizer, "name_or_path", ""),
        type(tokenizer).__name__,
        len(tokenizer),
        cfg.max_length,
        cfg.stride,
        cfg.truncation,
    )


_CACHE: OrderedDict[tuple[Hashable, ...], Encoded] = OrderedDict()
_CACHE_SIZE = 16


def encode(
    docs: Sequence[Doc], tokenizer: PreTrainedTokenizerBase, prepared: Prepared, cfg: Config
) -> Encoded:
    """Tokenize ``docs`` for the task (``max-length``/``stride`` from ``cfg``).

    Results are cached in-process per (tokenizer, labels, settings, documents); callers share
    the returned object and must not modify it.
    """
    key = (
        *tokenization_key(tokenizer, cfg),
        prepared.task,
        tuple(prepared.label_list),
        prepared.multi_label,
        tuple((id(d), d.doc_id, hash(d.text)) for d in docs),
    )
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    result = encode_docs(
        docs,
        tokenizer,
        prepared.task_info,
        max_length=cfg.max_length,
        stride=cfg.stride,
        truncation=cfg.truncation,
    )
    _CACHE[key] = result
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return result


def encode_docs(
    docs: Sequence[Doc],
    tokenizer: PreTrainedTokenizerBase,
    task: TaskInfo,
    *,
    max_length: int,
    stride: int,
    truncation: str = "head",
) -> Encoded:
    """Tokenize ``docs`` for ``task`` (NER: windows of ``max_length`` subwords overlapping by
    ``stride``; classification: ``max_length`` subwords chosen by ``truncation``). Not cached:
    what ``evaluate`` and ``predict`` use on an exported model."""
    if task.task == "ner":
        ner_docs = [d for d in docs if isinstance(d, NerDocument)]
        return encode_ner(
            ner_docs, tokenizer, task.label_list, max_length=max_length, stride=stride
        )
    cls_docs = [d for d in docs if isinstance(d, ClsDocument)]
    return encode_cls(
        cls_docs,
        tokenizer,
        task.label_list,
        max_length=max_length,
        multi_label=task.multi_label,
        truncation=truncation,
    )


def collator(tokenizer: PreTrainedTokenizerBase, prepared: Prepared | TaskInfo) -> Collate:
    """The batch collator of the task (right padding with the tokenizer's pad id)."""
    return ner_collator(tokenizer) if prepared.task == "ner" else cls_collator(tokenizer)
