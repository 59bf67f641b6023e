"""``fedskip centralized``: train one model on the union of every site's training data.

The upper bound a federation is compared with. Same data split, model, layer plan and training
engine as the federated methods (full fine-tuning with ``--set layers=<blocks>`` or
``method=fedavg``); evaluated on the global test set after every epoch.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

from fedskip.commands.common import add_config_args, config_from_args
from fedskip.config import Config


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "centralized",
        help="train on all sites' pooled training data (the centralized upper bound)",
        description=(
            "Train on the union of every site's training data with the configured model and "
            "layer plan, evaluate on the global test set after each epoch, and write the run "
            "directory (config.json, metrics.jsonl, summary.json, model/)."
        ),
    )
    add_config_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedskip.tracking import require_backends

    cfg = config_from_args(args, method="centralized")
    require_backends(cfg)  # a one-line error before any data is read
    summary = train_centralized(cfg)
    print(format_summary(summary))
    return 0


def train_centralized(cfg: Config) -> dict[str, Any]:
    """Train, evaluate per epoch, export; returns the summary written to ``summary.json``."""
    from fedskip.errors import ConfigError
    from fedskip.models.loading import resolve_device
    from fedskip.pipeline import (
        SITES_DATA,
        activation_cache,
        build_model,
        collator,
        encode,
        prepare,
    )
    from fedskip.privacy.dpsgd import local_dpsgd
    from fedskip.privacy.units import bind_units
    from fedskip.rundir import RunDir
    from fedskip.train.engine import TrainSettings, train
    from fedskip.train.metrics import primary_metric

    if cfg.data == SITES_DATA:
        raise ConfigError(
            "config key 'data': centralized training needs the data here; data=sites keeps it "
            "at the sites (give a dataset path or synth)"
        )
    privacy = local_dpsgd(cfg)  # [privacy] dp=sample: DP-SGD over the trainable layers
    started = time.perf_counter()
    prepared = prepare(cfg)
    model, tokenizer, stack = build_model(cfg, prepared)
    train_set = encode(prepared.train_docs, tokenizer, prepared, cfg)
    bind_units(privacy, prepared.train_docs, train_set)  # [privacy] examples → patients / notes
    rundir = RunDir(cfg.out)
    rundir.write_config(cfg)
    log = EpochLog(cfg, model, encode(prepared.global_test, tokenizer, prepared, cfg),
                   collator(tokenizer, prepared), resolve_device(cfg.device), rundir,
                   primary_metric(prepared.task_info), started,
                   activation_cache(cfg, stack, tokenizer))  # fmt: skip
    try:
        result = train(model, train_set.features, log.collate, TrainSettings.from_config(cfg),
                       epochs=cfg.epochs, device=log.device, desc="centralized",
                       on_epoch_end=log, privacy=privacy, cache=log.cache)  # fmt: skip
    except BaseException:
        rundir.close(ok=False)
        raise
    rundir.close()
    summary = _summary(cfg, prepared, model, stack, result, log, train_set)
    if privacy is not None:  # [privacy] ε spent at δ over all epochs
        summary.update(dp="sample", epsilon=privacy.epsilon(), delta=cfg.delta, accountant="rdp",
                       privacy_unit=privacy.unit, dp_units=privacy.num_units)  # fmt: skip
    marker: dict[str, Any] = {}
    if cfg.audit_canaries:  # [audit] the trainer is the auditor here
        from fedskip.audit import audit_marker, run_audit

        summary["audit_run"] = True
        summary["audit"] = run_audit(cfg, model, tokenizer, stack, prepared, out=rundir.path,
                                     accountant_epsilon=summary.get("epsilon"))  # fmt: skip
        marker = audit_marker(cfg)
    rundir.write_summary(summary)
    rundir.save_model(model, tokenizer, cfg=cfg, selected_layers=summary["selected_layers"],
                      extra=marker)  # fmt: skip
    return summary


@dataclass
class EpochLog:
    """``on_epoch_end`` of centralized training: score the test set, append the metrics row."""

    cfg: Config
    model: Any
    test_set: Any
    collate: Any
    device: Any
    rundir: Any
    primary: str
    started: float
    cache: Any = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, epoch: int, loss: float) -> None:
        from fedskip.train.engine import evaluate

        scores: dict[str, Any] = {}
        if self.test_set.features:  # test-fraction=0 leaves no test set
            scores = evaluate(self.model, self.test_set, self.collate,
                              batch_size=self.cfg.batch_size, device=self.device,
                              cache=self.cache)  # fmt: skip
        row = {"epoch": epoch, "train_loss": loss, "elapsed_s": time.perf_counter() - self.started,
               "test": scores}  # fmt: skip
        self.rundir.append_metrics(row)
        self.rows.append(row)
        if not self.cfg.quiet:
            from tqdm.auto import tqdm

            p = self.primary
            score = f"{scores[p]:.4f}" if p in scores else "n/a (no test set)"
            tqdm.write(f"epoch {epoch}/{self.cfg.epochs}: train loss {loss:.4f}, test {p} {score}")


def _summary(cfg: Config, prepared: Any, model: Any, stack: Any, result: Any, log: EpochLog,
             train_set: Any) -> dict[str, Any]:  # fmt: skip
    from fedskip.models.freeze import count_parameters
    from fedskip.pipeline import trainable_blocks

    total, trainable = count_parameters(model)
    return {
        "method": "centralized",
        "task": prepared.task,
        "model": cfg.model,
        "primary_metric": log.primary,
        "final": log.rows[-1]["test"] if log.rows else {},
        "train": {
            "loss": result.loss,
            "examples": result.num_examples,
            "steps": result.steps,
            "seconds": result.seconds,
        },  # fmt: skip
        "parameters": {"total": total, "trainable": trainable},
        "num_blocks": stack.num_blocks,
        "selected_layers": trainable_blocks(model, stack),
        "data": _data_summary(prepared, train_set, log.test_set),
        "seconds": time.perf_counter() - log.started,
        "out": str(log.rundir.path),
    }


def _data_summary(prepared: Any, train_set: Any, test_set: Any) -> dict[str, Any]:
    info = {
        "sites": list(prepared.sites),
        "train_documents": len(prepared.train_docs),
        "test_documents": len(prepared.global_test),
        "train_examples": len(train_set.features),
        "test_examples": len(test_set.features),
    }
    if prepared.task == "ner":
        info["truncated_entities"] = train_set.truncated_entities + test_set.truncated_entities
    else:
        info["truncated_documents"] = train_set.truncated + test_set.truncated
    return info


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable final metrics (per-type table for NER)."""
    from fedskip.commands.evaluate import format_metrics

    head = (
        f"centralized {summary['model']}: blocks {summary['selected_layers']} of "
        f"{summary['num_blocks']} trained, {summary['parameters']['trainable']:,} of "
        f"{summary['parameters']['total']:,} parameters, {summary['seconds']:.1f} s"
    )
    return "\n".join([head, format_metrics(summary["final"]), f"run directory: {summary['out']}"])
