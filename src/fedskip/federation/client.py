"""A client's work in one round, without Flower: train, evaluate or score layers on local data.

Memory: a process keeps one :class:`ClientRuntime` — the prepared data and one pretrained base
model — shared by every simulated client it serves; each call works on a fresh copy of that base
model, loads the global tensors it was sent, and drops the copy when done. The copy is a copy only
of the tensors the call writes (the ones it trains and the ones it loads); every other parameter
is the base model's own tensor, read and never written, so a process holds the frozen weights
once (:meth:`ClientRuntime.fresh`). No client holds a model between rounds.

Randomness: the seed of a client's training in a round is :func:`client_seed` of
``(seed, round, client id)`` only (data order, dropout), so a resumed run trains exactly as an
uninterrupted one whichever process serves which client.

Nothing here returns text: the outputs are tensors of the model and numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
import os
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from fedskip.config import Config
from fedskip.errors import ConfigError, DataError
from fedskip.federation.round_types import client_seed
from fedskip.federation.validation import TRAIN_SECONDS
from fedskip.pipeline import Prepared
from fedskip.trainability import (
    ModelBundle,
    load_bundle,
    personal_names,
    set_trainable,
    shared_names,
    trainable_names,
)

THREADS_ENV = "FEDSKIP_CLIENT_THREADS"
"""Torch threads of a client process (set by ``fedskip run`` for the simulation's workers)."""


@dataclass
class ClientData:
    """One client's documents: ``client_id`` is its partition index."""

    client_id: int
    name: str
    train_docs: list[Any]
    test_docs: list[Any]


@dataclass
class ClientResult:
    """What a client call returns: tensors (training only), example count, numeric metrics."""

    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    personal: dict[str, torch.Tensor] = field(default_factory=dict)
    """``personalize``: the site's personal tensors after training (never sent)."""


class ClientRuntime:
    """Per-process cache: the resolved config, the prepared data and one base model."""

    def __init__(self, cfg: Config) -> None:
        from fedskip.pipeline import prepare

        threads = int(os.environ.get(THREADS_ENV, "0") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        self.cfg = cfg
        self.prepared = prepare(cfg)
        self.base = load_bundle(cfg, self.prepared)

    def fresh(self, written: Collection[str] | None = None) -> ModelBundle:
        """A private copy of the base model (pretrained weights, seeded head).

        ``written``: the names of the only parameters the caller will change (train, or load
        tensors into). Those are copied; every other parameter object is the base model's own
        (modules, buffers and adapters are still copied), so the frozen weights are held once
        per process instead of once more per call: for LLaMA 3.2-1B in bf16 at k = 8 of 16,
        the embeddings and 8 frozen blocks (0.75 B parameters, 1.5 GB) are not copied. The
        caller may switch ``requires_grad`` off on a shared parameter but must not write it or
        give it a gradient. None: a copy of everything."""
        if written is None:
            return copy.deepcopy(self.base)
        keep = set(written)
        shared = {id(p): p for n, p in self.base.model.named_parameters() if n not in keep}
        return copy.deepcopy(self.base, shared)


def release(model: weakref.ref[torch.nn.Module]) -> bool:
    """After a call dropped its copy of the model: run the cycle collector only if something
    still holds the copy (a reference cycle, e.g. hooks or a DP wrapper), so that a process
    serving many clients keeps one copy at a time. Plain calls are freed by reference counting
    alone and skip the full collection (tenths of a second per call on a process holding
    transformers and Ray). Returns whether it collected."""
    if model() is None:
        return False
    gc.collect()
    return True


_RUNTIMES: dict[str, ClientRuntime] = {}


def runtime_for(cfg: Config) -> ClientRuntime:
    """The process's runtime for ``cfg`` (built once; a different config replaces it)."""
    key = json.dumps(cfg.to_run_config(), sort_keys=True, default=str)
    if key not in _RUNTIMES:
        _RUNTIMES.clear()
        gc.collect()
        _RUNTIMES[key] = ClientRuntime(cfg)
    return _RUNTIMES[key]


def client_data_from_node_config(
    runtime: ClientRuntime, node_config: Mapping[str, Any]
) -> ClientData:
    """This node's data, from its Flower node config.

    Simulation: ``partition-id`` / ``num-partitions`` (set by the Simulation Engine) index the
    client partitions of :func:`fedskip.pipeline.prepare`. Deployment hook: a SuperNode started
    with ``--node-config 'data-path=...'`` will read its own site's data here.
    """
    if "data-path" in node_config or runtime.cfg.data == SITES_DATA:
        return site_data_from_node_config(runtime, node_config)
    if "partition-id" not in node_config:
        raise ConfigError("node-config: needs 'partition-id' (simulation) or 'data-path'")
    pid = int(node_config["partition-id"])
    parts = int(node_config.get("num-partitions", runtime.prepared.num_clients))
    prepared = runtime.prepared
    if parts != prepared.num_clients or not 0 <= pid < parts:
        raise DataError(
            f"node-config partition-id={pid} of num-partitions={parts}, but the data has "
            f"{prepared.num_clients} client partition(s); run one SuperNode per client"
        )
    return ClientData(
        pid, prepared.client_names[pid], prepared.client_train[pid], prepared.client_test[pid]
    )


# --------------------------------------------------------------------------- deployment hook
SITES_DATA = "sites"  # fedskip.pipeline.SITES_DATA (imported lazily there: heavy imports)
_SITE_DATA: dict[tuple[Any, ...], ClientData] = {}


def site_config(cfg: Config, node_config: Mapping[str, Any]) -> Config:
    """The run config as this SuperNode uses it: node-config ``model-path`` (a local copy of
    the base model) replaces ``model``."""
    path = node_config.get("model-path")
    return cfg.replace(model=str(path)) if path else cfg


def site_data_from_node_config(
    runtime: ClientRuntime, node_config: Mapping[str, Any]
) -> ClientData:
    """Deployment Engine (``data=sites``): this SuperNode's own documents.

    Node config: ``data-path`` (the site's file or folder), ``data-format`` (default auto),
    ``label`` (MIMIC-III: category or icd9), ``client-id`` (the site's unique number, given by
    the coordinator). The documents are split into train/test with the run's test-fraction and
    seed; their labels must be in the run's ``labels`` schema (ICD-9 codes outside it are
    dropped, as top-k coding drops rarer codes). Read once per process.
    """
    from fedskip.config import DATA_FORMATS, LABELS
    from fedskip.data.partition import split_train_test
    from fedskip.data.readers import read_sites
    from fedskip.pipeline import ALL_CODES

    cfg, prepared = runtime.cfg, runtime.prepared
    if cfg.data != SITES_DATA:
        raise ConfigError(
            f"node-config 'data-path' needs the run's data={SITES_DATA} (got {cfg.data!r})"
        )
    if "data-path" not in node_config:
        raise ConfigError("data=sites: start the SuperNode with --node-config \"data-path='...'\"")
    fmt = str(node_config.get("data-format", "auto"))
    label = str(node_config.get("label", cfg.label))
    for name, value, allowed in (("data-format", fmt, DATA_FORMATS), ("label", label, LABELS)):
        if value not in allowed:
            raise ConfigError(f"node-config '{name}': {value!r} is not one of {', '.join(allowed)}")
    raw_id = node_config.get("client-id", 0)
    try:
        client_id = int(raw_id)
    except (TypeError, ValueError):
        raise ConfigError(f"node-config 'client-id': {raw_id!r} is not an integer") from None
    path = Path(str(node_config["data-path"])).expanduser()
    key = (str(path), fmt, label, client_id, cfg.seed, cfg.test_fraction, *prepared.label_list)
    if key not in _SITE_DATA:
        sites = read_sites(path, fmt, label=label, icd9_top_k=ALL_CODES)
        docs = [doc for ds in sites.values() for doc in ds.documents]
        docs = _within_schema(docs, prepared, path)
        train, test = split_train_test(docs, cfg.test_fraction, cfg.seed + client_id)
        _SITE_DATA.clear()
        name = str(node_config.get("site-name", path.name))
        _SITE_DATA[key] = ClientData(client_id, name, train, test)
    return _SITE_DATA[key]


def _within_schema(docs: list[Any], prepared: Prepared, path: Path) -> list[Any]:
    """Check (NER, single-label) or restrict (multi-label) the documents' labels to the schema."""
    allowed = set(prepared.label_list)
    if prepared.task == "ner":
        unknown = {e.type for d in docs for e in d.entities if f"B-{e.type}" not in allowed}
    elif prepared.multi_label:
        for doc in docs:
            doc.labels = [c for c in doc.labels if c in allowed]
        return [d for d in docs if d.labels]
    else:
        unknown = {lab for d in docs for lab in d.labels if lab not in allowed}
    if unknown:
        raise DataError(
            f"{path}: label(s) {', '.join(sorted(unknown))} are not in the run's config key "
            f"'labels' ({', '.join(sorted(allowed))})"
        )
    return docs


def _load_global(bundle: ModelBundle, state: Mapping[str, torch.Tensor]) -> None:
    from fedskip.models.freeze import load_trainable_state

    load_trainable_state(bundle.model, state, strict_keys=False)


def train_round(
    runtime: ClientRuntime,
    data: ClientData,
    global_state: Mapping[str, torch.Tensor],
    *,
    layers: list[int],
    server_round: int,
    proximal_mu: float = 0.0,
    privacy: Any = None,
    personal: Mapping[str, torch.Tensor] | None = None,
) -> ClientResult:
    """Local training from the global tensors; returns exactly the trained shared tensors.
    ``privacy``: the engine's DP-SGD hook (see :func:`fedskip.fl.dpsgd_node.dpsgd_for`) or None;
    ``personal``: the site's personal tensors of earlier rounds (``personalize``), loaded over
    the global ones and returned updated in :attr:`ClientResult.personal`."""
    from fedskip.models.loading import resolve_device
    from fedskip.pipeline import activation_cache, collator, encode
    from fedskip.privacy.units import bind_units
    from fedskip.train.engine import TrainSettings, train

    cfg = runtime.cfg
    written = {*trainable_names(runtime.base, cfg, layers), *global_state, *(personal or {})}
    bundle = runtime.fresh(written)
    try:
        trainable = set_trainable(bundle, cfg, layers)
        if not written.issuperset(trainable):  # a shared base tensor would be trained
            raise RuntimeError(f"trainable_names missed {sorted(set(trainable) - written)[:3]}")
        shared = shared_names(bundle, cfg, trainable)
        missing = [n for n in shared if n not in global_state]
        if missing:
            raise DataError(f"the server did not send trained tensor(s), e.g. {missing[0]}")
        _load_global(bundle, global_state)
        _load_global(bundle, personal or {})
        encoded = encode(data.train_docs, bundle.tokenizer, runtime.prepared, cfg)
        if not encoded.features:
            raise DataError(f"client {data.client_id} ({data.name}) has no training examples")
        seed = client_seed(cfg.seed, server_round, data.client_id)
        settings = dataclasses.replace(TrainSettings.from_config(cfg), seed=seed, quiet=True)
        reference = {n: global_state[n] for n in shared} if proximal_mu > 0 else None
        bind_units(privacy, data.train_docs, encoded)  # [privacy] examples → patients / notes
        result = train(
            bundle.model,
            encoded.features,
            collator(bundle.tokenizer, runtime.prepared),
            settings,
            epochs=cfg.local_epochs,
            device=resolve_device(cfg.device),
            prox_reference=reference,
            proximal_mu=proximal_mu,
            privacy=privacy,
            desc=f"client {data.client_id}",
            cache=activation_cache(cfg, bundle.stack, bundle.tokenizer),
        )
        from fedskip.models.freeze import trainable_state

        metrics = {
            "train-loss": result.loss,
            "train-steps": result.steps,
            TRAIN_SECONDS: result.seconds,
        }
        state = trainable_state(bundle.model)
        mine = set(personal_names(bundle, cfg, trainable))
        kept = {**(personal or {}), **{k: v for k, v in state.items() if k in mine}}
        shared_state = {k: v for k, v in state.items() if k not in mine}
        return ClientResult(result.num_examples, metrics, shared_state, personal=kept)
    finally:
        copy_of = weakref.ref(bundle.model)
        del bundle
        release(copy_of)


@dataclass(frozen=True)
class TrainOrder:
    """One round's training instruction, decoded the same way from a message's config and from
    a SecAgg+ fit config (:func:`fedskip.fl.node.train_order`)."""

    server_round: int
    layers: list[int]
    """The blocks to train this round (empty: what the method trains without a plan)."""
    proximal_mu: float = 0.0
    dp_steps_done: int = 0
    """DP-SGD steps this client composed before, as the server knows them (restores a lost
    accountant; 0 without DP)."""


class PersonalStore(Protocol):
    """Where a site keeps its personal tensors between rounds (``personalize``; never sent)."""

    def load(self, *, upto: int) -> Mapping[str, torch.Tensor]: ...

    def save(self, server_round: int, state: Mapping[str, torch.Tensor]) -> None: ...


def train_step(
    runtime: ClientRuntime,
    data: ClientData,
    received: Mapping[str, torch.Tensor],
    order: TrainOrder,
    *,
    privacy: Any = None,
    privacy_metrics: Callable[[Any], Mapping[str, float]] | None = None,
    personal: PersonalStore | None = None,
) -> ClientResult:
    """A site's whole training step of one round, whichever exchange carries it (plain
    messages or SecAgg+): load its personal tensors of earlier rounds, train from the received
    global tensors (:func:`train_round`), keep the new personal tensors and report the DP-SGD
    figures (``privacy_metrics`` of the ``privacy`` hook: ε spent so far at δ, ...)."""
    result = train_round(
        runtime,
        data,
        received,
        layers=order.layers,
        server_round=order.server_round,
        proximal_mu=order.proximal_mu,
        privacy=privacy,
        personal=personal.load(upto=order.server_round - 1) if personal else None,
    )
    if personal is not None:
        personal.save(order.server_round, result.personal)
    if privacy is not None and privacy_metrics is not None:
        result.metrics.update(privacy_metrics(privacy))
    return result


def evaluate_round(
    runtime: ClientRuntime,
    data: ClientData,
    global_state: Mapping[str, torch.Tensor],
    *,
    personal: Mapping[str, torch.Tensor] | None = None,
    export_to: Path | None = None,
) -> ClientResult:
    """Metrics of the global model on this client's test documents — of the site's own model
    when ``personal`` (its personal tensors) is given; ``export_to``: also save that model
    there (``RunDir`` layout: ``export_to/model``)."""
    from fedskip.models.loading import resolve_device
    from fedskip.pipeline import activation_cache, collator, encode
    from fedskip.train.engine import evaluate

    cfg = runtime.cfg
    bundle = runtime.fresh({*global_state, *(personal or {})})  # evaluation writes no other
    try:
        _load_global(bundle, global_state)
        _load_global(bundle, personal or {})
        if export_to is not None:
            _export(bundle, cfg, export_to)
        encoded = encode(data.test_docs, bundle.tokenizer, runtime.prepared, cfg)
        if not encoded.features:
            raise DataError(f"client {data.client_id} ({data.name}) has no test examples")
        scores = evaluate(
            bundle.model,
            encoded,
            collator(bundle.tokenizer, runtime.prepared),
            batch_size=cfg.batch_size,
            device=resolve_device(cfg.device),
            cache=activation_cache(cfg, bundle.stack, bundle.tokenizer),
        )
        return ClientResult(len(encoded.features), scores)
    finally:
        copy_of = weakref.ref(bundle.model)
        del bundle
        release(copy_of)


def _export(bundle: ModelBundle, cfg: Config, folder: Path) -> None:
    """The site's own model (shared + personal tensors) as a plain transformers export."""
    from fedskip.records.rundir import RunDir

    extra = {"personalized": cfg.personalize, "site_model": True}
    RunDir(folder).save_model(bundle.model, bundle.tokenizer, cfg=cfg, extra=extra)


def score_round(
    runtime: ClientRuntime, data: ClientData, global_state: Mapping[str, torch.Tensor]
) -> ClientResult:
    """Per-block importance scores (gradient norms) of the global model on local training data."""
    from fedskip.pipeline import encode, importance_scores

    cfg, prepared = runtime.cfg, runtime.prepared
    bundle = runtime.fresh()  # the scores' backward pass gives every block a gradient
    try:
        _load_global(bundle, global_state)
        examples = len(encode(data.train_docs, bundle.tokenizer, prepared, cfg).features)
        scores = importance_scores(
            cfg, bundle.model, bundle.stack, bundle.tokenizer, prepared, data.train_docs
        )
        metrics = {f"score-{i}": float(s) for i, s in enumerate(scores)}
        return ClientResult(examples, metrics)
    finally:
        copy_of = weakref.ref(bundle.model)
        del bundle
        release(copy_of)
