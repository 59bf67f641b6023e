"""``method=centralized``: one model trained on the union of every site's training data.

The upper bound a federation is compared with. Same data split, model, trainability (layer
skip, full fine-tuning or LoRA: :mod:`fedskip.trainability`) and training engine as the
federated methods; evaluated on the global test set after every epoch. With ``val-fraction`` > 0 it is also scored
on the validation split, stops at a plateau (``patience``) and exports the best-validation
epoch's model; ``summary.json`` then carries ``stopped_round``, ``best_round``, ``best_val`` and
``test_at_best`` (``final`` stays the last epoch's scores). The headline keys (``final_metric``,
``best_metric``) mean what they mean for every method: :mod:`fedskip.finish`.
"""

from __future__ import annotations

import time
from typing import Any

from fedskip.config import Config
from fedskip.data.encode import EncodedCls, EncodedNer
from fedskip.finish import Export, finish_summary
from fedskip.models.presets import model_init
from fedskip.pipeline import Prepared
from fedskip.records.schema import RunSummary
from fedskip.runs.epochs import EpochLog
from fedskip.train.engine import TrainResult
from fedskip.trainability import ModelBundle


def run_centralized(cfg: Config) -> RunSummary:
    """Train, evaluate per epoch, export; returns the summary written to ``summary.json``."""
    from fedskip.models.loading import resolve_device
    from fedskip.pipeline import activation_cache, collator, encode, prepare
    from fedskip.privacy.dpsgd import local_dpsgd
    from fedskip.privacy.units import bind_units
    from fedskip.records.rundir import RunDir
    from fedskip.train.engine import TrainSettings, train
    from fedskip.train.metrics import primary_metric
    from fedskip.trainability import build_trainable

    privacy = local_dpsgd(cfg)  # [privacy] dp=sample: DP-SGD over the trainable layers
    started = time.perf_counter()
    prepared = prepare(cfg)
    bundle, _ = build_trainable(cfg, prepared)
    model, tokenizer, stack = bundle.model, bundle.tokenizer, bundle.stack
    train_set = encode(prepared.train_docs, tokenizer, prepared, cfg)
    bind_units(privacy, prepared.train_docs, train_set)  # [privacy] examples → patients / notes
    rundir = RunDir(cfg.out)
    rundir.write_config(cfg)
    log = EpochLog(
        cfg,
        model,
        encode(prepared.global_test, tokenizer, prepared, cfg),
        collator(tokenizer, prepared),
        resolve_device(cfg.device),
        rundir,
        primary_metric(prepared.task_info),
        started,
        activation_cache(cfg, stack, tokenizer),
        val_set=encode(prepared.val_docs, tokenizer, prepared, cfg) if prepared.val_docs else None,
    )
    try:
        result = train(
            model,
            train_set.features,
            log.collate,
            TrainSettings.from_config(cfg),
            epochs=cfg.epochs,
            device=log.device,
            desc="centralized",
            on_epoch_end=log,
            privacy=privacy,
            cache=log.cache,
        )
    except BaseException:
        rundir.close(ok=False)
        raise
    rundir.close()
    log.restore_best()  # [validation] export (and audit) the best-validation epoch's model
    body = _summary(cfg, prepared, bundle, result, log, train_set)
    privacy_fields: dict[str, Any] = {}
    if privacy is not None:  # [privacy] ε spent at δ over all epochs
        privacy_fields = {
            "dp": "sample",
            "epsilon": privacy.epsilon(),
            "delta": cfg.delta,
            "accountant": "rdp",
            "privacy_unit": privacy.unit,
            "dp_units": privacy.num_units,
        }
    export = Export(model, tokenizer, stack, prepared, body["selected_layers"])
    return finish_summary(
        body,
        log.headline(),
        cfg=cfg,
        rundir=rundir,
        chosen=log.choice_summary() or None,
        privacy=privacy_fields,
        export=export,
    )


def _summary(
    cfg: Config,
    prepared: Prepared,
    bundle: ModelBundle,
    result: TrainResult,
    log: EpochLog,
    train_set: EncodedNer | EncodedCls,
) -> dict[str, Any]:
    from fedskip.models.freeze import count_parameters
    from fedskip.trainability import trained_blocks

    total, trainable = count_parameters(bundle.model)
    return {
        "method": "centralized",
        "task": prepared.task,
        "model": cfg.model,
        "model_init": model_init(cfg.model, cfg.model_init),
        "primary_metric": log.primary,
        "final": log.final,
        "train": {
            "loss": result.loss,
            "examples": result.num_examples,
            "steps": result.steps,
            "seconds": result.seconds,
        },
        "parameters": {"total": total, "trainable": trainable},
        "num_blocks": bundle.stack.num_blocks,
        "selected_layers": trained_blocks(bundle),
        "data": data_summary(prepared, train_set, log.test_set),
        "seconds": time.perf_counter() - log.started,
        "out": str(log.rundir.path),
    }


def data_summary(
    prepared: Prepared, train_set: EncodedNer | EncodedCls, test_set: EncodedNer | EncodedCls
) -> dict[str, Any]:
    """Documents and examples trained and tested on, and what truncation cut."""
    info: dict[str, Any] = {
        "sites": list(prepared.sites),
        "train_documents": len(prepared.train_docs),
        "test_documents": len(prepared.global_test),
        "train_examples": len(train_set.features),
        "test_examples": len(test_set.features),
    }
    if isinstance(train_set, EncodedNer) and isinstance(test_set, EncodedNer):
        info["truncated_entities"] = train_set.truncated_entities + test_set.truncated_entities
    elif isinstance(train_set, EncodedCls) and isinstance(test_set, EncodedCls):
        info["truncated_documents"] = train_set.truncated + test_set.truncated
    return info
